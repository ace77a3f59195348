//! The interactive path, in a real pseudo-terminal: prompts are answered as
//! a person would, a protected environment needs its name typed, and Ctrl-C
//! cancels a waiting statement without leaving anything half-done.

mod common;

use common::scalar_i64;
use common::staged::{present, Setup};
use rexpect::process::WaitStatus;
use rexpect::session::{spawn_command, PtySession};
use std::process::Command;

fn spawn(setup: &Setup, args: &[&str]) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.args(args);
    for (k, v) in setup.env() {
        cmd.env(k, v);
    }
    spawn_command(cmd, Some(30_000)).unwrap_or_else(|e| panic!("cannot start fkctl in a pty: {e}"))
}

fn expect(session: &mut PtySession, text: &str) {
    if let Err(e) = session.exp_string(text) {
        panic!("expected {text:?} on the terminal: {e}");
    }
}

/// Answers a prompt once the terminal is in raw mode (switching modes drops pending input).
fn answer(session: &mut PtySession, prompt_end: &str, line: &str) {
    expect(session, prompt_end);
    std::thread::sleep(std::time::Duration::from_millis(300));
    session.send_line(line).unwrap_or_else(|e| panic!("{e}"));
}

fn exit_code(session: &mut PtySession) -> Option<i32> {
    let _ = session.exp_eof();
    match session.process().wait() {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        _ => None,
    }
}

#[test]
fn a_dba_drops_on_staging_then_types_production_to_go_on() {
    let s = Setup::new("pty_full", "{ lock_timeout: 300ms }");
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["drop", &path]);
    expect(&mut session, "Drop fk_rails_f300456b63 on staging now?");
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, "the catalog confirms it is gone");
    expect(&mut session, "Evidence from staging");
    expect(&mut session, "Go on to production?");
    answer(
        &mut session,
        "Type the environment name (production)",
        "production",
    );
    expect(&mut session, "Drop fk_rails_f300456b63 on production now?");
    answer(
        &mut session,
        "Type the environment name (production)",
        "production",
    );
    expect(&mut session, "the catalog confirms it is gone");
    assert_eq!(exit_code(&mut session), Some(0));
    assert!(!present(&s.staging));
    assert!(!present(&s.production));
}

#[test]
fn typing_anything_but_the_name_stops_before_production() {
    let s = Setup::new("pty_stop", "{}");
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["drop", &path]);
    expect(&mut session, "Drop fk_rails_f300456b63 on staging now?");
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, "Go on to production?");
    answer(&mut session, "Type the environment name (production)", "y");
    expect(&mut session, "stopped: before production at your request");
    assert_eq!(
        exit_code(&mut session),
        Some(7),
        "a decline has its own exit code"
    );
    assert!(!present(&s.staging));
    assert!(present(&s.production));
}

#[test]
fn answering_no_changes_nothing() {
    let s = Setup::new("pty_no", "{}");
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["drop", &path, "--env", "staging"]);
    expect(&mut session, "Drop fk_rails_f300456b63 on staging now?");
    answer(&mut session, "[y/N]", "n");
    expect(&mut session, "stopped: at your request");
    assert_eq!(
        exit_code(&mut session),
        Some(7),
        "a decline has its own exit code"
    );
    assert!(present(&s.staging));
}

#[test]
fn ctrl_c_while_waiting_for_a_lock_cancels_and_rolls_back() {
    let s = Setup::new("pty_ctrlc", "{ lock_timeout: 400ms, lock_retries: 1000 }");
    let mut holder = s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute("BEGIN; LOCK TABLE chat_names IN ACCESS SHARE MODE")
        .unwrap_or_else(|e| panic!("{e}"));
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["drop", &path, "--env", "staging", "--yes"]);
    expect(&mut session, "lock not granted within lock_timeout");
    // Let it get back into the lock queue, then interrupt.
    std::thread::sleep(std::time::Duration::from_millis(300));
    session.send_control('c').unwrap_or_else(|e| panic!("{e}"));
    expect(&mut session, "interrupted");
    assert_eq!(exit_code(&mut session), Some(130));
    assert!(present(&s.staging), "nothing was dropped");
    // The server notices the closed connection a moment after the exit.
    let mut left = -1;
    for _ in 0..50 {
        left = scalar_i64(
            &s.staging,
            // Only this test's database: other fkctl runs on the server are not ours.
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkctl' AND datname = current_database()",
        );
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        left, 0,
        "no fkctl session is left waiting in the lock queue"
    );
    drop(holder);
}

#[test]
fn an_interactive_rollback_asks_before_the_purge_and_before_validate() {
    let s = Setup::new("pty_rollback", "{ lock_timeout: 300ms }");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::exec(&s.staging, "DELETE FROM chat_names WHERE id % 10 = 0");
    let orphans = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data d WHERE NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = d.chat_name_id)");
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["rollback", &path, "--env", "staging"]);
    expect(&mut session, "Roll back fk_rails_f300456b63 on staging?");
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, &format!("Delete {orphans} orphaned row(s) of public.ci_pipeline_chat_data on staging, archiving each one in fkctl.archive?"));
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, "Validate fk_rails_f300456b63 on staging now?");
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, "restored");
    assert_eq!(exit_code(&mut session), Some(0));
    assert_eq!(scalar_i64(&s.staging, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND convalidated"), 1);
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive"),
        orphans
    );
}

#[test]
fn the_demo_waits_for_enter_between_chapters() {
    let prefix = format!("fkctl_demo_p{}", std::process::id());
    let server = fkctl::testkit::server().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.arg("demo")
        .env("FKCTL_DEMO_DSN", &server.base_dsn)
        .env("FKCTL_DEMO_PREFIX", &prefix);
    let mut session = spawn_command(cmd, Some(60_000)).unwrap_or_else(|e| panic!("{e}"));
    expect(&mut session, "1/11 The change");
    for chapter in 2..=11 {
        expect(&mut session, "(press Enter to go on)");
        session.send_line("").unwrap_or_else(|e| panic!("{e}"));
        expect(&mut session, &format!("{chapter}/11"));
    }
    expect(&mut session, "fkctl demo --clean");
    assert_eq!(exit_code(&mut session), Some(0));
    let mut clean = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    let out = clean
        .args(["demo", "--clean"])
        .env("FKCTL_DEMO_DSN", &server.base_dsn)
        .env("FKCTL_DEMO_PREFIX", &prefix)
        .output();
    assert!(out.map(|o| o.status.success()).unwrap_or(false));
}

/// A protected environment's name is typed once per command: the rollback's
/// later questions (purge, VALIDATE) are y/N.
#[test]
fn a_protected_rollback_asks_for_the_name_once() {
    let s = Setup::new("pty_rb_prod", "{ lock_timeout: 300ms }");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = s.drop(&["--env", "production", "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    common::exec(&s.production, "DELETE FROM chat_names WHERE id % 10 = 0");
    let path = s.playbook.display().to_string();
    let mut session = spawn(&s, &["rollback", &path, "--env", "production"]);
    expect(&mut session, "Roll back fk_rails_f300456b63 on production?");
    answer(
        &mut session,
        "Type the environment name (production)",
        "production",
    );
    expect(
        &mut session,
        "orphaned row(s) of public.ci_pipeline_chat_data on production",
    );
    answer(&mut session, "[y/N]", "y");
    expect(
        &mut session,
        "Validate fk_rails_f300456b63 on production now?",
    );
    answer(&mut session, "[y/N]", "y");
    expect(&mut session, "restored");
    assert_eq!(exit_code(&mut session), Some(0));
    assert!(present(&s.production));
}

/// A unique constraint's rollback at a terminal asks before starting and
/// again before the dedupe, with the count; "n" there deletes nothing (exit 7).
#[test]
fn a_unique_rollback_asks_before_the_dedupe_with_the_count() {
    let db = common::database("pty_unique");
    common::exec(
        &db,
        "CREATE TABLE accounts (id int PRIMARY KEY, email text);
        INSERT INTO accounts SELECT g, 'u' || (g % 10) FROM generate_series(1, 30) g;",
    );
    let dir = common::TempDir::new("pty_unique");
    let path = dir.write("u.yml", "version: 1\nchange: pty-unique\nsummary: s\nconstraint: { kind: unique, name: accounts_email_key, table: accounts, columns: [email] }\nenvironments:\n  - { name: test, dsn_env: FKCTL_TEST_ONLY_DSN }\nrollback: { keep: { order_by: [id] } }\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.args([
        "rollback",
        &path.display().to_string(),
        "--env",
        "test",
        "--dsn",
        &format!("test={}", db.dsn),
    ])
    .env_remove("FKCTL_TEST_ONLY_DSN");
    let mut session = spawn_command(cmd, Some(30_000)).unwrap_or_else(|e| panic!("{e}"));
    expect(&mut session, "Restore accounts_email_key on test now");
    answer(&mut session, "[y/N]", "y");
    expect(
        &mut session,
        "Delete 20 duplicate row(s) of public.accounts",
    );
    answer(&mut session, "[y/N]", "n");
    assert_eq!(exit_code(&mut session), Some(7));
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM accounts"), 30);
}
