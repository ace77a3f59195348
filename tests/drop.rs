//! `fkctl drop` and `fkctl status` against two real databases (staging and
//! production), including the faults a DBA meets at 3 a.m.

mod common;

use common::staged::{present, Setup};
use common::*;
use fkctl::testkit::TestDatabase;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn journal_exists(db: &TestDatabase) -> bool {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'fkctl'",
    ) == 1
}

#[test]
fn staged_drop_on_staging_then_production_with_journal_and_status() {
    let s = Setup::new("staged", "{ lock_timeout: 300ms, lock_retries: 3 }");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!present(&s.staging));
    assert!(
        present(&s.production),
        "production is untouched until it is named"
    );
    let out = s.drop(&["--env", "production", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!present(&s.production));
    for db in [&s.staging, &s.production] {
        assert_eq!(
            scalar_i64(
                db,
                "SELECT count(*) FROM fkctl.runs WHERE outcome = 'dropped'"
            ),
            1
        );
        assert_eq!(
            scalar_i64(db, "SELECT count(*) FROM fkctl.steps WHERE outcome = 'ok'"),
            4
        );
        assert_eq!(
            scalar_i64(db, "SELECT count(*) FROM fkctl.snapshots WHERE definition = 'FOREIGN KEY (chat_name_id) REFERENCES public.chat_names(id) ON DELETE CASCADE'"),
            1
        );
    }
    // Re-running is a no-op that says so.
    let again = s.drop(&["--env", "production", "--yes"]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("already done"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        scalar_i64(&s.production, "SELECT count(*) FROM fkctl.runs"),
        1,
        "a no-op run records nothing"
    );

    let path = s.playbook.display().to_string();
    let status = s.run(&["status", &path, "--output", "json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    for env in status["environments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        assert_eq!(env["constraint"], "absent", "{env}");
        assert!(env["snapshot"]["definition"]
            .as_str()
            .unwrap_or_default()
            .contains("ON DELETE CASCADE"));
        assert_eq!(env["runs"][0]["outcome"], "dropped");
        assert_eq!(env["runs"][0]["steps"].as_array().map(Vec::len), Some(4));
    }
}

#[test]
fn dry_run_changes_nothing() {
    let s = Setup::new("dry", "{}");
    let out = s.drop(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("dry run"), "{}", stdout(&out));
    for db in [&s.staging, &s.production] {
        assert!(present(db));
        assert!(!journal_exists(db), "a dry run writes no journal");
    }
}

#[test]
fn without_a_terminal_it_refuses_unless_told_yes() {
    let s = Setup::new("notty", "{}");
    let out = s.drop(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no terminal"), "{}", stderr(&out));
    let out = s.drop(&["--yes"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--yes alone must not reach a protected environment"
    );
    assert!(
        stderr(&out).contains("--env production --yes"),
        "{}",
        stderr(&out)
    );
    for db in [&s.staging, &s.production] {
        assert!(present(db));
        assert!(!journal_exists(db));
    }
}

#[test]
fn drift_stops_before_any_ddl() {
    let s = Setup::new("driftdrop", "{}");
    exec(&s.staging, "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63;
        ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT fk_rails_f300456b63 FOREIGN KEY (chat_name_id) REFERENCES chat_names (id) ON DELETE RESTRICT;");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("on_delete: playbook cascade, database restrict"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("playbook.yml:9:14"),
        "points at on_delete's value, the field that differs: {}",
        stderr(&out)
    );
    assert!(present(&s.staging));
}

/// Another session holds a lock on the parent. fkctl waits at most lock_timeout
/// per attempt, names the blocker, gives up with exit 5, and a third session's
/// reads of the child never wait much longer than lock_timeout behind it.
#[test]
fn lock_contention_is_retried_reported_and_bounded() {
    let s = Setup::new("contention", "{ lock_timeout: 200ms, lock_retries: 2 }");
    let mut holder = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute(
            "BEGIN; LOCK TABLE chat_names IN ACCESS SHARE MODE; SELECT 'tok_live_4242' AS api_key",
        )
        .unwrap_or_else(|e| panic!("{e}"));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut client = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
        std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let _ = client.query_one(
                    "SELECT count(*) FROM ci_pipeline_chat_data WHERE id < 10",
                    &[],
                );
                longest = longest.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
            longest
        })
    };
    let started = Instant::now();
    let out = s.drop(&["--env", "staging", "--yes"]);
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let longest_read = reader.join().unwrap_or(Duration::MAX);
    drop(holder);

    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {holder_pid}")),
        "the blocker is named: {err}"
    );
    assert!(err.contains("after 2 retries"), "{err}");
    assert!(present(&s.staging), "nothing changed");
    assert!(
        took >= Duration::from_millis(600),
        "three attempts of 200ms each: {took:?}"
    );
    assert!(
        longest_read < Duration::from_millis(200 + 250),
        "a reader waited {longest_read:?} behind fkctl (lock_timeout is 200ms)"
    );
    // Another session's literals never reach fkctl's output or journal.
    assert!(!err.contains("tok_live_4242"), "{err}");
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.steps WHERE blockers LIKE '%tok_live%' OR detail LIKE '%tok_live%'"
        ),
        0
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.steps WHERE blockers LIKE '%SELECT ? AS api_key%'"
        ),
        1,
        "the query is still recognisable: {err}"
    );
    // The journal keeps the failed step with the blocker it saw.
    assert_eq!(
        scalar_i64(
            &s.staging,
            &format!("SELECT count(*) FROM fkctl.steps WHERE step = 'drop-constraint' AND outcome LIKE 'failed%' AND blockers LIKE '%pid {holder_pid} %'")
        ),
        1
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.runs WHERE outcome = 'failed'"
        ),
        1
    );
}

#[test]
fn a_second_operator_is_told_the_change_is_already_running() {
    let s = Setup::new("guard", "{}");
    let mut other = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    other
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&fkctl::execute::guard::LOCK_CLASS, &"remove-fk-guard"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let pid: i32 = other
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is already running"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(present(&s.staging));
    drop(other);
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(
        out.status.success(),
        "free again once the other run ends: {}",
        stderr(&out)
    );
}

/// fkctl's connection is terminated while its DROP waits for a lock: it exits
/// with the unreachable code, the journal shows the step unfinished or failed,
/// and the next run completes the change.
#[test]
fn a_killed_connection_is_reported_and_the_next_run_resumes() {
    let s = Setup::new("killed", "{ lock_timeout: 300ms, lock_retries: 1000 }");
    let mut holder = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute("BEGIN; LOCK TABLE chat_names IN ACCESS SHARE MODE")
        .unwrap_or_else(|e| panic!("{e}"));
    let child = s
        .command(&[
            "drop",
            &s.playbook.display().to_string(),
            "--env",
            "staging",
            "--yes",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut admin = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut terminated = false;
    while Instant::now() < deadline && !terminated {
        std::thread::sleep(Duration::from_millis(100));
        // End fkctl's session while its DROP waits in the lock queue.
        let at_drop = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkctl' AND datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE%DROP CONSTRAINT%'", &[])
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false);
        if at_drop {
            terminated = admin
                .query_one("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fkctl' AND datname = current_database()) t", &[])
                .map(|r| r.get::<_, i64>(0) > 0)
                .unwrap_or(false);
        }
    }
    assert!(terminated, "fkctl never reached the drop step");
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run the same command again"),
        "{}",
        stderr(&out)
    );
    assert!(present(&s.staging));
    drop(holder);
    let unfinished = scalar_i64(
        &s.staging,
        "SELECT count(*) FROM fkctl.runs WHERE outcome IS NULL OR outcome = 'failed'",
    );
    assert_eq!(unfinished, 1);
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!present(&s.staging));
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM fkctl.runs WHERE outcome = 'dropped'"
        ),
        1
    );
}

#[test]
fn insufficient_privilege_is_a_clear_precondition_failure() {
    let s = Setup::new("noprivs", "{}");
    let role = format!("fkctl_plain_{}", std::process::id());
    exec(&s.staging, &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"));
    let dsn = format!(
        "staging={} user={role}",
        s.staging.dsn.replace("user=postgres", "")
    );
    let path = s.playbook.display().to_string();
    let out = s.run(&["drop", &path, "--env", "staging", "--yes", "--dsn", &dsn]);
    let code = out.status.code();
    exec(
        &s.staging,
        &format!("DROP OWNED BY {role}; DROP ROLE {role}"),
    );
    assert_eq!(code, Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("42501"), "{}", stderr(&out));
    assert!(present(&s.staging));
}

#[test]
fn an_unreachable_environment_stops_the_rollout_with_exit_3() {
    let s = Setup::new("unreach", "{}");
    let path = s.playbook.display().to_string();
    let out = s.run(&[
        "drop",
        &path,
        "--env",
        "staging",
        "--yes",
        "--dsn",
        "staging=host=127.0.0.1 port=1 user=x password=secret-pw connect_timeout=2",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!stderr(&out).contains("secret-pw"));
    assert!(present(&s.staging));
}

#[test]
fn a_missing_table_stops_before_any_ddl_naming_the_playbook_line() {
    let s = Setup::new("notable", "{}");
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data RENAME TO ci_pipeline_chat_data_old",
    );
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("table public.ci_pipeline_chat_data does not exist"),
        "{err}"
    );
    assert!(err.contains("playbook.yml:6:10"), "{err}");
    assert!(!journal_exists(&s.staging), "nothing was written");
}

/// The playbook's order is the rollout: production is refused while staging
/// still has the constraint, unless the operator says why, and the reason is
/// kept in the journal and shown by status.
#[test]
fn a_later_environment_waits_for_the_earlier_ones_unless_a_reason_is_given() {
    let s = Setup::new("order", "{}");
    let out = s.drop(&["--env", "production", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("staging still has fk_rails_f300456b63"),
        "{err}"
    );
    assert!(err.contains("--out-of-order"), "{err}");
    assert!(present(&s.production), "nothing changed");
    assert!(!journal_exists(&s.production));

    let out = s.drop(&["--env", "production", "--yes", "--out-of-order", "  "]);
    assert_eq!(out.status.code(), Some(2), "an empty reason is no reason");

    let reason = "staging is being rebuilt; CHG-42 approves production first";
    let out = s.drop(&["--env", "production", "--yes", "--out-of-order", reason]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!present(&s.production));
    assert!(present(&s.staging), "staging is still untouched");
    assert_eq!(
        scalar_i64(
            &s.production,
            &format!("SELECT count(*) FROM fkctl.runs WHERE outcome = 'dropped' AND note = 'out of order (--out-of-order): {reason}'")
        ),
        1
    );
    let path = s.playbook.display().to_string();
    let status = s.run(&["status", &path, "--env", "production"]);
    assert!(stdout(&status).contains(reason), "{}", stdout(&status));

    // In order, no reason is needed.
    let s = Setup::new("order_ok", "{}");
    assert!(s.drop(&["--env", "staging", "--yes"]).status.success());
    let out = s.drop(&["--env", "production", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
