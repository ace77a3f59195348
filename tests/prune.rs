//! What fkctl leaves in the application's database: retention with
//! `fkctl prune`, shown by `status`, and the warning about publications
//! that would replicate fkctl's schema.

mod common;

use common::staged::Setup;
use common::{exec, scalar_i64, stderr, stdout};

fn both(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn prune(s: &Setup, extra: &[&str]) -> serde_json::Value {
    let pb = s.playbook.display().to_string();
    let mut args = vec![
        "prune",
        pb.as_str(),
        "--env",
        "staging",
        "--older-than",
        "30d",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    assert!(out.status.success(), "{}", both(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", both(&out)))
}

#[test]
fn prune_keeps_the_snapshot_run_and_what_restore_needs_unless_forced() {
    let s = Setup::new("prune", "{ lock_timeout: 500ms }");
    let pb = s.playbook.display().to_string();
    let db = &s.staging;
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", both(&out));
    ok(s.drop(&["--env", "staging", "--yes"]));
    exec(db, "DELETE FROM chat_names WHERE id <= 3");
    ok(s.run(&["rollback", &pb, "--env", "staging", "--yes"]));
    ok(s.drop(&["--env", "staging", "--yes"]));
    let archived = scalar_i64(db, "SELECT count(*) FROM fkctl.archive");
    assert!(archived > 0);
    // Nothing is old yet.
    assert_eq!(prune(&s, &["--yes"])["removed"]["runs"], 0);
    exec(db, "UPDATE fkctl.runs SET started_at = started_at - interval '40 days', finished_at = finished_at - interval '40 days'");
    let status = s.run(&["status", &pb, "--env", "staging"]);
    assert!(
        stdout(&status).contains("3 run(s) in the journal"),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains(&format!("{archived} archived row(s) waiting for a restore")),
        "{}",
        stdout(&status)
    );

    // The first drop goes; the rollback (its rows are still archived) and
    // the last drop (its snapshot is what a rollback restores) stay.
    let dry = prune(&s, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM fkctl.runs"),
        3,
        "a dry run removes nothing"
    );
    let done = prune(&s, &["--yes"]);
    assert_eq!(done["removed"]["runs"], 1, "{done}");
    assert!(done["removed"]["steps"].as_i64().unwrap_or(0) > 0);
    assert_eq!(done["removed"]["archived_rows"], 0);
    assert_eq!(
        scalar_i64(
            db,
            "SELECT count(*) FROM fkctl.runs WHERE operation = 'rollback'"
        ),
        1
    );
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM fkctl.archive"),
        archived
    );
    assert_eq!(
        scalar_i64(
            db,
            "SELECT count(*) FROM fkctl.runs r JOIN fkctl.snapshots s USING (run_id)"
        ),
        1,
        "the snapshot's run stays"
    );

    // --force: the rollback and its archived rows go too; the snapshot's run stays.
    let forced = prune(&s, &["--yes", "--force"]);
    assert_eq!(forced["removed"]["runs"], 1, "{forced}");
    assert_eq!(forced["removed"]["archived_rows"], archived);
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM fkctl.archive"), 0);
    assert_eq!(scalar_i64(db, "SELECT count(*) FROM fkctl.runs"), 1);
}

#[test]
fn a_publication_for_all_tables_is_a_warning() {
    let s = Setup::new("publication", "{ lock_timeout: 500ms }");
    exec(&s.staging, "CREATE PUBLICATION everything FOR ALL TABLES");
    let pb = s.playbook.display().to_string();
    let out = s.run(&["inspect", &pb, "--env", "staging"]);
    assert!(
        both(&out)
            .contains("publication everything publishes FOR ALL TABLES: fkctl's schema fkctl"),
        "{}",
        both(&out)
    );
    exec(&s.staging, "DROP PUBLICATION everything");
}
