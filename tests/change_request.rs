//! The change request: snapshots of the default template, the SQL it shows
//! being exactly fkctl's plan, custom and broken templates, and JSON.

mod common;

use common::staged::Setup;
use common::*;
use std::collections::BTreeSet;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
);

/// Every statement inside the ```sql blocks of a markdown document.
fn sql_statements(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sql = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_sql = line.ends_with("sql");
            continue;
        }
        if in_sql
            && !line.starts_with("--")
            && line != "BEGIN;"
            && line != "COMMIT;"
            && !line.is_empty()
        {
            out.push(line.strip_suffix(';').unwrap_or(line).to_string());
        }
    }
    out
}

/// Every statement and check query of a `fkctl plan --output json` document.
fn plan_statements(plan: &serde_json::Value) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for step in plan["steps"].as_array().cloned().unwrap_or_default() {
        for s in step["statements"].as_array().cloned().unwrap_or_default() {
            set.insert(s.as_str().unwrap_or_default().to_string());
        }
        for key in ["before", "after"] {
            if let Some(sql) = step[key]["sql"].as_str() {
                set.insert(sql.to_string());
            }
        }
    }
    set
}

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{8}T\d{6}\.\d{3}Z-[a-z]+-[0-9a-f]{4}", "[run id]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[time]"),
        (r" in \d+ ms", " in [n] ms"),
        (r"PostgreSQL \d+[^;]*;", "PostgreSQL [version];"),
        (r"by [^ ]+@[^ ]+ at", "by [operator] at"),
        (r"(/[^ `/]+)+/playbook\.yml", "[dir]/playbook.yml"),
    ]
}

#[test]
fn the_default_template_offline() {
    let out = fkctl(&["change-request", SEED]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out).replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
    insta::assert_snapshot!("seed_offline", body);
}

#[test]
fn the_default_template_with_live_evidence_after_a_staging_drop() {
    let s = Setup::new("cr_live", "{}");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = s.playbook.display().to_string();
    let out = s.run(&[
        "change-request",
        &path,
        "--env",
        "staging",
        "--env",
        "production",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(body.contains("### Live evidence from staging"));
    assert!(
        body.contains("drop-constraint: ok in"),
        "staging's measured run is shown"
    );
    assert!(body.contains("Orphaned rows now: **0**"));
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("seed_live", body);
    });
}

/// Every SQL statement in the request is byte for byte a statement of
/// `fkctl plan` (drop per environment, and rollback), and none is missing.
#[test]
fn the_sql_in_the_request_is_the_sql_fkctl_runs() {
    let s = Setup::new("cr_sql", "{ lock_timeout: 250ms }");
    let path = s.playbook.display().to_string();
    let request = s.run(&["change-request", &path, "--env", "production"]);
    assert!(request.status.success(), "{}", stderr(&request));
    let shown = sql_statements(&stdout(&request));
    assert!(shown.len() > 15, "{shown:?}");
    let plan = |args: &[&str]| -> serde_json::Value {
        let out = s.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let mut planned = plan_statements(&plan(&["plan", &path, "--output", "json"]));
    planned.extend(plan_statements(&plan(&[
        "plan",
        &path,
        "--env",
        "production",
        "--output",
        "json",
    ])));
    planned.extend(plan_statements(&plan(&[
        "plan",
        &path,
        "--env",
        "production",
        "--rollback",
        "--output",
        "json",
    ])));
    for statement in &shown {
        assert!(
            planned.contains(statement),
            "not a statement of fkctl plan:\n{statement}"
        );
    }
    let shown: BTreeSet<String> = shown.into_iter().collect();
    for statement in &planned {
        assert!(
            shown.contains(statement),
            "missing from the request:\n{statement}"
        );
    }
}

#[test]
fn a_custom_template_renders_and_a_broken_one_names_its_line() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/templates");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--template",
        &format!("{dir}/custom.md.j2"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains("Criticality C2; rollback with `fkctl rollback"),
        "{body}"
    );
    assert!(body.contains("- production: 4 steps"), "{body}");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--template",
        &format!("{dir}/broken.md.j2"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("broken.md.j2:3: template error"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_playbook_can_name_the_template_next_to_it() {
    let dir = TempDir::new("cr_key");
    let text = std::fs::read_to_string(SEED).unwrap_or_default()
        + "change_request: { template: team.md.j2 }\n";
    let path = dir.write("p.yml", &text);
    dir.write("team.md.j2", "Team template for {{ change }}\n");
    let out = fkctl(&["change-request", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Team template for remove-fk-ci-pipeline-chat-data-chat-names\n"
    );
}

#[test]
fn json_format_and_out_file() {
    let dir = TempDir::new("cr_json");
    let file = dir.0.join("request.json");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--output",
        "json",
        "--out",
        &file.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The old flag name still works.
    let old = fkctl(&["change-request", SEED, "--format", "json"]);
    assert!(old.status.success(), "{}", stderr(&old));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["title"], "Change request: Remove the chat_names -> ci_pipeline_chat_data foreign key (fk_rails_f300456b63 on public.ci_pipeline_chat_data)");
    assert!(doc["body"]
        .as_str()
        .unwrap_or_default()
        .contains("## Rollback"));
    assert_eq!(
        doc["labels"],
        serde_json::json!(["change-request", "database", "criticality::C2", "fkctl"])
    );
}

#[test]
fn names_that_markdown_would_misread_are_escaped() {
    let dir = TempDir::new("cr_escape");
    let path = dir.write(
        "p.yml",
        "version: 1\nchange: weird\nsummary: 'Drop *the* <b>[link](x)</b> | key'\nconstraint:\n  name: '\"fk_*bold*\"'\n  table: '\"my_table|x\"'\n  columns: ['\"a`b\"']\n  references: { table: parent, columns: [id] }\nenvironments: [{ name: staging, dsn_env: X }]\n",
    );
    let out = fkctl(&["change-request", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains(r"Drop \*the\* \<b\>\[link\](x)\</b\> \| key"),
        "{body}"
    );
    assert!(!body.contains("<b>"), "no raw HTML from values");
    // SQL keeps the names exactly, in a fence longer than the backtick in the column name.
    assert!(body.contains(r#"fk."a`b" IS NOT NULL"#), "{body}");
}
