//! Every wait is bounded: with another session holding ACCESS EXCLUSIVE on
//! the parent (then on the child) for 20 s, every command fkctl has returns
//! within lock_timeout x (retries + 1) plus backoff, and a command that needed
//! the table names the session that holds it. Nothing waits the 20 s out.

mod common;

use common::staged::{present, Setup};
use common::*;
use std::time::{Duration, Instant};

/// lock_timeout 200 ms, 2 retries: 3 attempts (600 ms) plus two backoffs of at
/// most 375 + 750 ms, plus process start and catalog reads.
const BOUND: Duration = Duration::from_secs(5);

struct Holder {
    client: postgres::Client,
    pid: i32,
}

fn hold(db: &fkctl::testkit::TestDatabase, table: &str) -> Holder {
    hold_in(db, table, "ACCESS EXCLUSIVE")
}

fn hold_in(db: &fkctl::testkit::TestDatabase, table: &str, mode: &str) -> Holder {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '20s'; BEGIN; LOCK TABLE {table} IN {mode} MODE"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    Holder { client, pid }
}

/// Runs fkctl with `args` while `holder` holds fkctl's archive: it gives
/// up with exit 5 within [`BOUND`], naming the holder. Returns what it said.
fn waits_bounded_naming(s: &Setup, args: &[&str], holder: &Holder) -> String {
    let started = Instant::now();
    let out = s.run(args);
    let took = started.elapsed();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(took < BOUND, "{took:?}:\n{text}");
    assert!(
        text.contains(&format!("pid {} ", holder.pid)),
        "the holder of fkctl.archived_rows (pid {}) is named:\n{text}",
        holder.pid
    );
    text
}

fn check_bounded(s: &Setup, table: &str) {
    let staging = hold(&s.staging, table);
    let production = hold(&s.production, table);
    let path = s.playbook.display().to_string();
    let commands: Vec<(&str, Vec<&str>, i32)> = vec![
        (
            "inspect",
            vec!["inspect", &path, "--env", "staging"],
            staging.pid,
        ),
        (
            "orphans",
            vec!["orphans", &path, "--env", "staging"],
            staging.pid,
        ),
        ("plan", vec!["plan", &path, "--env", "staging"], staging.pid),
        (
            "plan --rollback",
            vec!["plan", &path, "--env", "production", "--rollback"],
            production.pid,
        ),
        (
            "status",
            vec!["status", &path, "--env", "staging"],
            staging.pid,
        ),
        (
            "change-request",
            vec!["change-request", &path, "--env", "staging"],
            staging.pid,
        ),
        (
            "drop",
            vec!["drop", &path, "--env", "staging", "--yes"],
            staging.pid,
        ),
        (
            "rollback",
            vec!["rollback", &path, "--env", "production", "--yes"],
            production.pid,
        ),
    ];
    let started = Instant::now();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .iter()
            .map(|(name, args, pid)| {
                scope.spawn(move || {
                    let t = Instant::now();
                    let out = s.run(args);
                    (*name, *pid, t.elapsed(), out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a command thread panicked"))
            })
            .collect()
    });
    let held_for = started.elapsed();
    for (name, pid, took, out) in &runs {
        eprintln!(
            "{table} locked: {name} exited {:?} in {took:?}",
            out.status.code()
        );
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(
            *took < BOUND,
            "{name} took {took:?} while {table} was locked (bound {BOUND:?}):\n{text}"
        );
        match out.status.code() {
            Some(5) => assert!(
                text.contains(&format!("pid {pid} ")),
                "{name}: the lock holder (pid {pid}) is named:\n{text}"
            ),
            // Commands that never needed the locked table finish normally.
            Some(0) => {}
            other => panic!("{name} exited {other:?} while {table} was locked:\n{text}"),
        }
    }
    for needs_table in ["inspect", "orphans", "drop", "rollback"] {
        let code = runs
            .iter()
            .find(|r| r.0 == needs_table)
            .and_then(|r| r.3.status.code());
        assert_eq!(
            code,
            Some(5),
            "{needs_table} needed {table} and could not get it"
        );
    }
    assert!(held_for < Duration::from_secs(20));
    drop(staging.client);
    drop(production.client);
}

#[test]
fn every_command_returns_within_its_bound_while_a_table_is_locked() {
    let s = Setup::new("bounded", "{ lock_timeout: 200ms, lock_retries: 2 }");
    // Production is mid-incident: the FK was dropped and must come back.
    exec(
        &s.production,
        "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63",
    );
    check_bounded(&s, "chat_names");
    check_bounded(&s, "ci_pipeline_chat_data");
    // Nothing changed: staging still has the FK, production still lacks it.
    assert!(present(&s.staging));
    assert!(!present(&s.production));
}

/// A step that waits for one of fkctl's own tables (here the archive,
/// which the rollback's archive step alters, while a long report reads it)
/// names the session that holds it, as for the application's tables.
#[test]
fn a_wait_for_fkctl_s_own_archive_names_its_holder() {
    let s = Setup::new(
        "bounded_archive",
        "{ lock_timeout: 200ms, lock_retries: 2 }",
    );
    let path = s.playbook.display().to_string();
    // A first drop and rollback make the journal and the archive; a second
    // drop and other deleted parents leave orphans for the rollback below.
    for (every, roll_back) in [(50, true), (47, false)] {
        let out = s.run(&["drop", &path, "--env", "staging", "--yes"]);
        assert!(out.status.success(), "{}", stderr(&out));
        exec(
            &s.staging,
            &format!("DELETE FROM chat_names WHERE id % {every} = 0"),
        );
        if roll_back {
            let out = s.run(&["rollback", &path, "--env", "staging", "--yes"]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let holder = hold_in(&s.staging, "fkctl.archived_rows", "ACCESS SHARE");
    waits_bounded_naming(
        &s,
        &["rollback", &path, "--env", "staging", "--yes"],
        &holder,
    );
    drop(holder.client);
}

/// A rollback with nothing to purge reads fkctl's archive once, at the end,
/// to count what the run archived: a session holding the archive then (a
/// rollback of another change altering it) makes that read wait within the
/// lock timeout, retried, and the holder is named; it is not a raw error.
#[test]
fn the_rollback_s_count_of_its_archive_waits_bounded_and_names_the_holder() {
    let s = Setup::new("bounded_count", "{ lock_timeout: 200ms, lock_retries: 2 }");
    let path = s.playbook.display().to_string();
    // A first drop and rollback make the archive; a second drop leaves no
    // orphan, so the second rollback's only read of the archive is its count.
    for roll_back in [true, false] {
        let out = s.run(&["drop", &path, "--env", "staging", "--yes"]);
        assert!(out.status.success(), "{}", stderr(&out));
        if roll_back {
            exec(&s.staging, "DELETE FROM chat_names WHERE id % 50 = 0");
            let out = s.run(&["rollback", &path, "--env", "staging", "--yes"]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let holder = hold(&s.staging, "fkctl.archived_rows");
    let text = waits_bounded_naming(
        &s,
        &["rollback", &path, "--env", "staging", "--yes"],
        &holder,
    );
    assert!(text.contains("the rollback itself is complete"), "{text}");
    drop(holder.client);
}

/// `restore` reads fkctl's archive before anything else (which run, how many
/// rows): with another session holding it, each read waits within the lock
/// timeout, retried, names the holder, and nothing moves. `status` and `prune` the same.
#[test]
fn a_restore_waiting_for_the_archive_is_bounded_and_names_the_holder() {
    let s = Setup::new(
        "bounded_restore",
        "{ lock_timeout: 200ms, lock_retries: 2 }",
    );
    let path = s.playbook.display().to_string();
    let out = s.run(&["drop", &path, "--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(
        &s.staging,
        "CREATE TABLE gone AS SELECT * FROM chat_names WHERE id % 50 = 0;
         DELETE FROM chat_names WHERE id % 50 = 0;",
    );
    let out = s.run(&["rollback", &path, "--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&s.staging, "INSERT INTO chat_names SELECT * FROM gone");
    let archived = "SELECT count(*) FROM fkctl.archive";
    let before = scalar_i64(&s.staging, archived);
    assert!(before > 0);
    let holder = hold(&s.staging, "fkctl.archived_rows");
    waits_bounded_naming(
        &s,
        &[
            "restore", &path, "--env", "staging", "--run", "latest", "--yes",
        ],
        &holder,
    );
    // `status` reads the archive too: within the bound, the holder named.
    let started = Instant::now();
    let status = s.run(&["status", &path, "--env", "staging"]);
    let text = format!("{}{}", stdout(&status), stderr(&status));
    assert!(started.elapsed() < BOUND, "{text}");
    assert!(text.contains(&format!("pid {} ", holder.pid)), "{text}");
    waits_bounded_naming(
        &s,
        &[
            "prune",
            &path,
            "--env",
            "staging",
            "--older-than",
            "1s",
            "--yes",
        ],
        &holder,
    );
    drop(holder.client);
    assert_eq!(scalar_i64(&s.staging, archived), before, "nothing moved");
    let out = s.run(&[
        "restore", &path, "--env", "staging", "--run", "latest", "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(scalar_i64(&s.staging, archived), 0);
}
