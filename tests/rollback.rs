//! `fkctl rollback` against a real PostgreSQL: the seed case with orphans,
//! each orphan policy, the limits and refusals, and kill -9 at random points.

mod common;

use common::staged::{present, Setup};
use common::*;
use fkctl::testkit::TestDatabase;
use std::process::{Output, Stdio};
use std::time::Duration;

fn setup(tag: &str, rollback: &str) -> Setup {
    Setup::with_rollback(tag, "{ lock_timeout: 300ms }", rollback)
}

fn rollback(s: &Setup, extra: &[&str]) -> Output {
    let path = s.playbook.display().to_string();
    let mut args = vec![
        "rollback",
        path.as_str(),
        "--env",
        "staging",
        "--yes",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Drops the FK with fkctl (recording the snapshot), then deletes parents:
/// returns (orphans, rows before).
fn drop_and_orphan(s: &Setup, every: i64) -> (i64, i64) {
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(
        &s.staging,
        &format!("DELETE FROM chat_names WHERE id % {every} = 0"),
    );
    let orphans = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data d WHERE NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = d.chat_name_id)");
    (
        orphans,
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
    )
}

fn archived(db: &TestDatabase) -> i64 {
    // The archive exists only once a purge was prepared.
    if scalar_i64(
        db,
        "SELECT count(*) FROM pg_class WHERE oid = to_regclass('fkctl.archive')",
    ) == 0
    {
        return 0;
    }
    scalar_i64(db, "SELECT count(*) FROM fkctl.archive")
}

/// Every row is in exactly one place: `orphans` in the archive, the rest of
/// the `rows` there were before in the table.
fn assert_every_row_in_one_place(db: &TestDatabase, orphans: i64, rows: i64) {
    assert_eq!(archived(db), orphans, "archived");
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM ci_pipeline_chat_data") + orphans,
        rows,
        "in the table"
    );
}

fn validated_definition(db: &TestDatabase) -> Option<String> {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    c.query("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND convalidated", &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .first()
        .map(|r| r.get(0))
}

#[test]
fn the_seed_case_comes_back_validated_with_every_orphan_archived() {
    let s = setup("rb_seed", "{ batch_size: 100 }");
    let (orphans, before) = drop_and_orphan(&s, 10);
    assert!(orphans > 1000, "{orphans}");
    let snapshot: String = {
        let mut c = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
        c.query_one("SELECT definition FROM fkctl.snapshots", &[])
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sum = summary(&out);
    assert_eq!(sum["outcome"], "restored");
    assert_eq!(sum["definition_source"], "snapshot");
    assert_eq!(sum["orphans_found"].as_i64(), Some(orphans));
    assert_eq!(sum["rows_archived"].as_i64(), Some(orphans));
    assert!(sum["batches"].as_u64().unwrap_or(0) >= (orphans as u64) / 100);
    assert_eq!(
        validated_definition(&s.staging).as_deref(),
        Some(snapshot.replace("public.", "").as_str()),
        "same definition as dropped"
    );
    assert_every_row_in_one_place(&s.staging, orphans, before);
    // What is archived is exactly the rows that were orphans, whole.
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive a WHERE a.action = 'delete' AND a.source_table = 'ci_pipeline_chat_data' AND NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = (a.row_data->>'chat_name_id')::bigint) AND a.row_data ? 'response_url'"),
        orphans
    );
    // The journal says how the run ended, and status shows it.
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.runs WHERE operation = 'rollback' AND outcome = 'restored'"
        ),
        1
    );
    let path = s.playbook.display().to_string();
    let status = s.run(&["status", &path, "--env", "staging"]);
    assert!(
        stdout(&status).contains(": restored"),
        "{}",
        stdout(&status)
    );
    // rollback.vacuum: auto, on a small table: no VACUUM.
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.steps WHERE step = 'vacuum-child'"
        ),
        0
    );
    // Again: nothing to do.
    let again = rollback(&s, &[]);
    assert!(again.status.success());
    assert_eq!(summary(&again)["outcome"], "already valid");
}

/// VALIDATE is the last check: a row orphaned after the census makes it
/// fail with 23503, and the rollback lists and purges again, archiving that
/// row too, then validates again.
#[test]
fn an_orphan_written_after_the_census_is_archived_when_validate_finds_it() {
    let s = setup("rb_late_orphan", "{ batch_size: 100 }");
    let (orphans, before) = drop_and_orphan(&s, 10);
    write_an_orphan_at_the_first_validate(
        &s.staging,
        "INSERT INTO ci_pipeline_chat_data (pipeline_id, chat_name_id, response_url) SELECT min(id), 99999999, 'late' FROM ci_pipelines",
    );
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("round 2: VALIDATE found orphaned rows the purge did not handle"),
        "{}",
        stderr(&out)
    );
    let sum = summary(&out);
    assert_eq!(sum["outcome"], "restored");
    assert!(validated_definition(&s.staging).is_some());
    assert_every_row_in_one_place(&s.staging, orphans + 1, before + 1);
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.archive WHERE row_data->>'response_url' = 'late'"
        ),
        1
    );
}

/// With `rollback.vacuum: always` the purge is followed by a VACUUM of the
/// child before VALIDATE (`auto` does so only for a large purge on a table
/// of 1 GB or more: the deletes cleared the visibility map of the pages
/// they touched, which makes VALIDATE's index-only scan visit the table
/// for every entry there).
#[test]
fn a_large_purge_vacuums_the_child_before_validating() {
    let s = setup("rb_vacuum", "{ batch_size: 5000, vacuum: always }");
    let (orphans, _) = drop_and_orphan(&s, 1);
    assert!(orphans >= 10_000, "{orphans}");
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["rows_archived"].as_i64(), Some(orphans));
    assert!(validated_definition(&s.staging).is_some());
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM (SELECT step, lead(step) OVER (ORDER BY id) AS next, lag(step) OVER (ORDER BY id) AS before FROM fkctl.steps) s WHERE step = 'vacuum-child' AND before = 'purge-orphans' AND next = 'validate-constraint'"
        ),
        1,
        "the journal shows the VACUUM between the purge and VALIDATE"
    );
    // The server's own statistics: one manual VACUUM of the child (fkctl's
    // session has ended, so its counts are in).
    let mut vacuums = 0;
    for _ in 0..50 {
        vacuums = scalar_i64(
            &s.staging,
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'public.ci_pipeline_chat_data'::regclass",
        );
        if vacuums > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(vacuums, 1);
}

/// A rollback killed between its purge and VALIDATE leaves the deleted rows
/// dead in the child. The run that resumes it finds nothing to purge, and
/// must still VACUUM before VALIDATE when the policy asks for it: it counts
/// the child's dead rows as well as its own purge.
#[test]
fn a_resumed_rollback_vacuums_the_rows_its_killed_predecessor_purged() {
    let s = setup("rb_vacuum_resumed", "{ batch_size: 5000, vacuum: always }");
    let (orphans, _) = drop_and_orphan(&s, 1);
    assert!(orphans > 0);
    // What the killed run left: the constraint NOT VALID, the orphans deleted.
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT fk_rails_f300456b63 FOREIGN KEY (chat_name_id) REFERENCES chat_names (id) ON DELETE CASCADE NOT VALID",
    );
    exec(
        &s.staging,
        "DELETE FROM ci_pipeline_chat_data d WHERE NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = d.chat_name_id)",
    );
    // The server's statistics take a moment to count them.
    let dead = "SELECT pg_stat_get_dead_tuples('public.ci_pipeline_chat_data'::regclass)";
    for _ in 0..100 {
        if scalar_i64(&s.staging, dead) >= orphans {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(scalar_i64(&s.staging, dead) >= orphans);
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["orphans_found"].as_i64(), Some(0));
    assert!(validated_definition(&s.staging).is_some());
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM (SELECT step, lead(step) OVER (ORDER BY id) AS next FROM fkctl.steps) s WHERE step = 'vacuum-child' AND next = 'validate-constraint'"
        ),
        1,
        "the journal shows the VACUUM before VALIDATE:\n{}",
        stderr(&out)
    );
}

#[test]
fn nullify_keeps_the_rows_and_archives_their_old_keys() {
    let s = setup("rb_null", "{ orphans: nullify, batch_size: 64 }");
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL",
    );
    let (orphans, before) = drop_and_orphan(&s, 25);
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["rows_archived"].as_i64(), Some(orphans));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before,
        "no row deleted"
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL"
        ),
        orphans
    );
    assert_eq!(scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive WHERE action = 'nullify' AND row_data->>'chat_name_id' IS NOT NULL"), orphans);
    assert!(validated_definition(&s.staging).is_some());
}

/// A schema ahead of pg_catalog on the search path may define its own `=`
/// for row addresses, oids or bigints; fkctl puts pg_catalog first on its
/// sessions' path and names pg_catalog's `=` where batches find rows by
/// address, so such operators (here ones that match every pair) cannot
/// widen a nullify to rows that are not orphans, nor mislead its catalog
/// queries.
#[test]
fn an_operator_earlier_on_the_search_path_cannot_widen_the_nullify() {
    let s = setup("rb_nullop", "{ orphans: nullify, batch_size: 64 }");
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL",
    );
    let (orphans, before) = drop_and_orphan(&s, 25);
    exec(
        &s.staging,
        &format!(
            "CREATE SCHEMA shadow;
             CREATE FUNCTION shadow.any_two(tid, tid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
             CREATE OPERATOR shadow.= (LEFTARG = tid, RIGHTARG = tid, FUNCTION = shadow.any_two);
             CREATE FUNCTION shadow.any_two(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
             CREATE OPERATOR shadow.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = shadow.any_two);
             CREATE FUNCTION shadow.any_two(bigint, bigint) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
             CREATE OPERATOR shadow.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = shadow.any_two);
             ALTER DATABASE \"{}\" SET search_path = shadow, pg_catalog, public;",
            s.staging.name
        ),
    );
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL"
        ),
        orphans,
        "only the orphans lost their key"
    );
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.archive WHERE action = 'nullify'"
        ),
        orphans
    );
    assert!(validated_definition(&s.staging).is_some());
}

#[test]
fn nullify_on_a_not_null_column_is_refused_before_anything_changes() {
    let s = setup("rb_nullnn", "{ orphans: nullify }");
    let (_, before) = drop_and_orphan(&s, 25);
    let out = rollback(&s, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be NULL"), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    assert!(!present(&s.staging));
}

#[test]
fn abort_policy_refuses_with_the_count_and_deletes_nothing() {
    let s = setup("rb_abort", "{ orphans: abort }");
    let (orphans, before) = drop_and_orphan(&s, 25);
    let out = rollback(&s, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(summary(&out)["orphans_found"].as_i64(), Some(orphans));
    assert_eq!(summary(&out)["outcome"], "refused");
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    assert_eq!(archived(&s.staging), 0);
    assert!(
        !present(&s.staging),
        "exit 4 means nothing was changed: the census runs before ADD NOT VALID"
    );
}

#[test]
fn too_many_orphans_are_refused_unless_the_limit_is_raised() {
    let s = setup("rb_max", "{ max_orphans: 10 }");
    let (orphans, before) = drop_and_orphan(&s, 25);
    let out = rollback(&s, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-orphans"), "{}", stderr(&out));
    assert_eq!(
        summary(&out)["orphans_found"].as_i64(),
        Some(orphans),
        "the JSON reports the count the refusal is based on"
    );
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    assert!(!present(&s.staging), "exit 4: nothing was changed");
    let limit = orphans.to_string();
    let out = rollback(&s, &["--max-orphans", &limit]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(archived(&s.staging), orphans);
}

#[test]
fn a_set_null_grandchild_without_row_identity_is_refused_rather_than_changed_unarchived() {
    let s = setup("rb_grand", "{}");
    exec(&s.staging, "CREATE TABLE chat_data_notes (note text, chat_data_id bigint REFERENCES ci_pipeline_chat_data (id) ON DELETE SET NULL);
        INSERT INTO chat_data_notes (chat_data_id) SELECT id FROM ci_pipeline_chat_data WHERE id % 3 = 0;");
    let (_, before) = drop_and_orphan(&s, 25);
    let out = rollback(&s, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("chat_data_notes"), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    assert_eq!(archived(&s.staging), 0);
}

/// kill -9 at random moments, many times: every time, rows in the table plus
/// rows in the archive equal the rows before; the last run completes.
#[test]
fn killed_at_random_points_it_never_loses_a_row_and_finishes() {
    // Tiny batches make the purge long enough (about a thousand batches) to be killed several times.
    let s = setup("rb_kill", "{ batch_size: 5 }");
    let (orphans, before) = drop_and_orphan(&s, 4);
    assert!(orphans >= 4000, "{orphans}");
    let path = s.playbook.display().to_string();
    let mut seed = u64::from(std::process::id()) | 1;
    let mut kills = 0;
    for _ in 0..12 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // fkctl is fast: kill within its first quarter second, at random.
        let delay = Duration::from_millis(30 + (seed >> 33) % 220);
        let mut child = s
            .command(&["rollback", &path, "--env", "staging", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(delay);
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            kills += 1;
        }
        let _ = child.wait();
        // One statement, one snapshot: the killed client's backend may still
        // be committing its last batch (the server ends it within a second).
        let total = if archived(&s.staging) == 0 {
            scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data")
        } else {
            scalar_i64(&s.staging, "SELECT (SELECT count(*) FROM ci_pipeline_chat_data) + (SELECT count(*) FROM fkctl.archive)")
        };
        assert_eq!(
            total, before,
            "after a kill at {delay:?}: rows lost or duplicated"
        );
    }
    assert!(
        kills >= 3,
        "the test must really interrupt runs ({kills} kills)"
    );
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(validated_definition(&s.staging).is_some());
    assert_every_row_in_one_place(&s.staging, orphans, before);
}

/// After a rollback, parent rows come back in two waves; restore puts back
/// exactly the rows whose parent exists, refuses the others, and keeps every
/// row in exactly one place.
#[test]
fn restore_puts_archived_rows_back_once_their_parents_exist() {
    let s = setup("rb_restore", "{ batch_size: 50 }");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&s.staging, "CREATE TABLE deleted_parents AS SELECT * FROM chat_names WHERE id % 10 = 0; DELETE FROM chat_names WHERE id % 10 = 0;");
    let before = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data");
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_id = summary(&out)["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let orphans = archived(&s.staging);
    assert!(orphans > 0);
    let path = s.playbook.display().to_string();

    // First wave: half of the parents come back.
    exec(
        &s.staging,
        "INSERT INTO chat_names SELECT * FROM deleted_parents WHERE id % 20 = 0",
    );
    let expected_back = scalar_i64(
        &s.staging,
        "SELECT count(*) FROM fkctl.archive WHERE (row_data->>'chat_name_id')::bigint % 20 = 0",
    );
    assert!(expected_back > 0 && expected_back < orphans);
    let out = s.run(&[
        "restore", &path, "--env", "staging", "--run", &run_id, "--yes",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "some rows still lack a parent: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("still lack their parent row"),
        "{}",
        stderr(&out)
    );
    assert_eq!(archived(&s.staging), orphans - expected_back);
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data") + archived(&s.staging),
        before
    );
    assert!(
        validated_definition(&s.staging).is_some(),
        "the constraint stays valid: every restored row has its parent"
    );

    // Second wave: the rest come back; everything is restored.
    exec(
        &s.staging,
        "INSERT INTO chat_names SELECT * FROM deleted_parents WHERE id % 20 <> 0",
    );
    let out = s.run(&[
        "restore", &path, "--env", "staging", "--run", &run_id, "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(archived(&s.staging), 0);
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data"),
        before
    );
    let out = s.run(&[
        "restore", &path, "--env", "staging", "--run", &run_id, "--yes",
    ]);
    assert_eq!(out.status.code(), Some(4), "nothing left to restore");
    let out = s.run(&[
        "restore",
        &path,
        "--env",
        "staging",
        "--run",
        "no-such-run",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(4));
}

/// PostgreSQL 18: a NOT ENFORCED constraint lets orphans in without a trace.
/// The rollback swaps it for an enforced NOT VALID one in one transaction,
/// purges with the archive and validates: never ALTER ... ENFORCED, which
/// checks every row under ACCESS EXCLUSIVE. (Skipped before 18.)
#[test]
fn a_not_enforced_constraint_is_replaced_then_validated_never_enforced_in_place() {
    let s = setup("rb_enforce", "{}");
    if server_version_num(&s.staging) < 180000 {
        eprintln!("skipped: NOT ENFORCED needs PostgreSQL 18");
        return;
    }
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63;
         ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT fk_rails_f300456b63 FOREIGN KEY (chat_name_id) REFERENCES chat_names (id) ON DELETE CASCADE NOT ENFORCED;
         DELETE FROM chat_names WHERE id % 10 = 0;",
    );
    let orphans = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data d WHERE NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = d.chat_name_id)");
    assert!(orphans > 0, "NOT ENFORCED did not cascade");
    let before = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data");
    let path = s.playbook.display().to_string();
    let inspect = s.run(&["inspect", &path, "--env", "staging"]);
    assert!(
        stdout(&inspect).contains("NOT ENFORCED"),
        "{}",
        stdout(&inspect)
    );
    let plan = s.run(&["plan", &path, "--rollback", "--env", "staging"]);
    let plan_text = stdout(&plan);
    assert!(
        plan_text.contains("Replace the NOT ENFORCED constraint"),
        "{plan_text}"
    );
    assert!(
        !plan_text.contains(" ENFORCED;"),
        "never ALTER ... ENFORCED"
    );

    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let sum = summary(&out);
    assert_eq!(sum["outcome"], "restored");
    assert_eq!(sum["orphans_found"].as_i64(), Some(orphans));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND conenforced AND convalidated"),
        1
    );
    assert_every_row_in_one_place(&s.staging, orphans, before);
}

/// The purge's cost is linear in the orphans whatever the planner estimates:
/// each batch finds its rows by TID (a join on ctid can degrade into a
/// nested loop that reads the whole child once per batch). Checked on the
/// plan's own statements with EXPLAIN, with the statistics made as
/// misleading as they were when the join degraded (a list estimated at one row).
#[test]
fn purge_batches_find_their_rows_by_tid_never_by_scanning_the_child() {
    for policy in ["archive-delete", "nullify"] {
        let s = setup(
            &format!("rb_tid_{}", policy.replace('-', "_")),
            &format!("{{ orphans: {policy}, batch_size: 500 }}"),
        );
        if policy == "nullify" {
            exec(
                &s.staging,
                "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL",
            );
        }
        // Statistics from before the parents went: the planner believes
        // almost every child has its parent (the anti-join estimated at one
        // row, as when the old join on ctid degraded).
        exec(&s.staging, "ANALYZE");
        drop_and_orphan(&s, 10);
        let sql_of = |id: &str| rollback_sql(&s, id);
        let batch_id = if policy == "nullify" {
            "nullify-orphans"
        } else {
            "purge-orphans"
        };
        let batch = sql_of(batch_id).pop().unwrap_or_default();
        assert!(!batch.is_empty(), "no {batch_id} step");
        let mut c = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
        for statement in sql_of("collect-orphans") {
            c.batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{e}\n{statement}"));
        }
        // The archive must exist for the INSERT to plan.
        for statement in sql_of("prepare-archive") {
            c.batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{e}\n{statement}"));
        }
        // Misleading statistics: the planner believes the list is one row long.
        c.batch_execute("UPDATE pg_class SET reltuples = 1, relpages = 1 WHERE oid = 'pg_temp.fkctl_orphan_rows'::regclass")
            .unwrap_or_else(|e| panic!("{e}"));
        let text = explain_batch(&mut c, &batch, "fk_rails_f300456b63");
        assert!(text.contains("Tid Scan on ci_pipeline_chat_data"), "{text}");
        assert_eq!(compares_rows_with_the_batch(&text), None, "{text}");
        assert!(
            !text.contains("Seq Scan on ci_pipeline_chat_data"),
            "a batch must never read the whole child:\n{text}"
        );
    }
}

/// The plan's SQL of step `id` (`fkctl plan --rollback --output json`).
fn rollback_sql(s: &Setup, id: &str) -> Vec<String> {
    let path = s.playbook.display().to_string();
    let out = s.run(&[
        "plan",
        &path,
        "--env",
        "staging",
        "--rollback",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    step_statements(&plan, id)
}

/// Deleted rows are copied by position into a table of the child's shape.
/// A column dropped between two batches must stop the purge (the batch
/// rolls back whole), never shift values into the wrong columns. Run with
/// the plan's own statements, batch by batch, the column dropped in between.
#[test]
fn a_column_dropped_between_two_batches_stops_the_purge_and_loses_nothing() {
    let s = setup("rb_shape_mid_run", "{ batch_size: 100 }");
    let (orphans, rows) = drop_and_orphan(&s, 10);
    assert!(orphans > 200, "{orphans}");
    let batch = rollback_sql(&s, "purge-orphans");
    let mut c = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    for step in ["collect-orphans", "prepare-archive"] {
        let mut tx = c.transaction().unwrap_or_else(|e| panic!("{e}"));
        for statement in rollback_sql(&s, step) {
            tx.batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{e}\n{statement}"));
        }
        tx.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    // The settings, the lock and the check of the cascade, then the batch.
    let (purge, before) = batch
        .split_last()
        .unwrap_or_else(|| panic!("no purge batch"));
    let run_batch = |c: &mut postgres::Client| -> Result<(), postgres::Error> {
        let mut tx = c.transaction()?;
        for statement in before {
            tx.batch_execute(statement)?;
        }
        tx.query(purge.as_str(), &[&"run-1"])?;
        tx.commit()
    };
    run_batch(&mut c).unwrap_or_else(|e| panic!("{}", fkctl::error::describe_postgres(&e).1));
    let typed = scalar_text(
        &s.staging,
        "SELECT 'fkctl.' || quote_ident(table_name) FROM fkctl.archive_tables",
    );
    assert_eq!(
        scalar_i64(&s.staging, &format!("SELECT count(*) FROM {typed}")),
        100
    );
    // The application drops the last column: the INSERT would still parse
    // (a missing last value is NULL), so only the batch's own check stops it.
    // (A column dropped before others of another type fails to parse.)
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data DROP COLUMN response_url",
    );
    let err = run_batch(&mut c).expect_err("the batch after the drop must fail");
    let said = fkctl::error::describe_postgres(&err).1;
    assert!(said.contains("changed during the rollback"), "{said}");
    assert_eq!(
        scalar_i64(&s.staging, &format!("SELECT count(*) FROM {typed}")),
        100,
        "the failed batch archived nothing"
    );
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data") + 100,
        rows,
        "and deleted nothing: every row is in its table or the archive"
    );
    // A new run makes a new table of the new shape and finishes the job.
    drop(c);
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive_tables"),
        2,
        "the first table kept (it holds rows), a new one made"
    );
    assert_every_row_in_one_place(&s.staging, orphans, rows);
}

/// Orphans 10% of the parents, rolls back, and checks that every orphan went
/// to the general archive as jsonb (each with `condition` true of its
/// row_data), none to a table of the child's shape.
fn rollback_archives_as_jsonb(s: &Setup, condition: &str) {
    let (orphans, _) = drop_and_orphan(s, 10);
    let out = rollback(s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(
            &s.staging,
            &format!("SELECT count(*) FROM fkctl.archived_rows WHERE {condition}")
        ),
        orphans,
        "every orphan archived as jsonb, with its value"
    );
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive_tables"),
        0,
        "no table of the child's shape"
    );
}

/// A child with a column of the application's own type (an enum) keeps its
/// deleted rows in the general archive, as jsonb: fkctl's tables must not
/// depend on the type, so the application can still change or drop it.
#[test]
fn a_child_with_an_application_type_is_archived_as_jsonb_and_the_type_stays_droppable() {
    let s = setup("rb_enum_child", "{}");
    exec(
        &s.staging,
        "CREATE TYPE mood AS ENUM ('calm', 'busy');
         ALTER TABLE ci_pipeline_chat_data ADD COLUMN m mood NOT NULL DEFAULT 'busy';",
    );
    rollback_archives_as_jsonb(&s, "row_data->>'m' = 'busy'");
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN m DROP DEFAULT, ALTER COLUMN m TYPE text; DROP TYPE mood;",
    );
    let plan = s.run(&[
        "plan",
        &s.playbook.display().to_string(),
        "--env",
        "staging",
        "--rollback",
    ]);
    assert!(
        stdout(&plan).contains("deleted_rows_"),
        "with the type gone, the table of the child's shape again: {}",
        stdout(&plan)
    );
}

/// A NOT NULL ... NOT VALID constraint (PostgreSQL 18) lets through rows
/// that break it; the table of the child's shape must take them too (it
/// copies no NOT NULL), so the rollback archives them as they are.
#[test]
fn rows_a_not_valid_not_null_lets_through_are_archived_whole() {
    let s = setup("rb_nn_not_valid", "{}");
    if server_version_num(&s.staging) < 180000 {
        eprintln!("skipped: NOT NULL ... NOT VALID needs PostgreSQL 18");
        return;
    }
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD COLUMN note text;
         ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT note_nn NOT NULL note NOT VALID;",
    );
    let (orphans, rows) = drop_and_orphan(&s, 10);
    let out = rollback(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.archive WHERE row_data ? 'note' AND row_data->>'note' IS NULL"
        ),
        orphans,
        "every orphan archived, its NULL note included"
    );
    assert_every_row_in_one_place(&s.staging, orphans, rows);
}

/// A child that has a column named like one of fkctl's own keeps the jsonb
/// archive: the table of its shape could not have both.
#[test]
fn a_child_column_named_like_fkctl_s_own_keeps_the_jsonb_archive() {
    let s = setup("rb_fkctl_name", "{}");
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD COLUMN \"fkctl source\" text DEFAULT 'app'",
    );
    rollback_archives_as_jsonb(&s, "row_data->>'fkctl source' = 'app'");
}
