//! Every playbook in playbooks/ works against its example schema in
//! examples/schemas/: lint, inspect (no drift), orphans, and both plans.

mod common;

use common::*;

#[test]
fn every_shipped_playbook_runs_against_its_example_schema() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut playbooks: Vec<std::path::PathBuf> = std::fs::read_dir(format!("{root}/playbooks"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    playbooks.sort();
    assert!(playbooks.len() >= 4);
    for playbook in playbooks {
        let stem = playbook
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let schema = std::fs::read_to_string(format!("{root}/examples/schemas/{stem}.sql"))
            .unwrap_or_else(|e| {
                panic!("playbooks/{stem}.yml has no examples/schemas/{stem}.sql: {e}")
            });
        let db = database("shipped");
        exec(&db, &schema);
        // Point the playbook's first environment at the test database.
        let text = std::fs::read_to_string(&playbook).unwrap_or_default();
        let text = text.replacen("- { name: staging,", "- { name: test,", 1);
        let dir = TempDir::new("shipped");
        let path = dir.write(&format!("{stem}.yml"), &text);

        let inspect = json("inspect", &path, &db, &[]);
        assert_eq!(inspect["state"], "valid", "{stem}");
        assert_eq!(
            inspect["drift"],
            serde_json::json!([]),
            "{stem}: {}",
            inspect["drift"]
        );
        let orphans = json("orphans", &path, &db, &["--sample", "3"]);
        if text.contains("kind: unique") {
            assert_eq!(orphans["duplicate_rows"], 0, "{stem}");
        } else {
            assert_eq!(orphans["orphan_count"], 0, "{stem}");
        }
        for extra in [&[][..], &["--rollback"][..]] {
            let plan = json("plan", &path, &db, extra);
            assert!(
                !plan["steps"].as_array().map(Vec::is_empty).unwrap_or(true),
                "{stem} {extra:?}"
            );
        }
    }
}
