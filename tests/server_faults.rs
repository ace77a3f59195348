//! Faults that need a server of the test's own: password authentication and
//! a restart in the middle of a run. Each test starts a throwaway cluster
//! from the local PostgreSQL binaries.

mod common;

use common::*;
use fkctl::testkit::Cluster;
use rexpect::process::WaitStatus;
use rexpect::session::spawn_command;
use std::process::Command;

const SEED_SQL: &str =
    include_str!("../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql");
const PASSWORD: &str = "correct horse battery";

fn cluster(password: Option<&str>) -> Cluster {
    Cluster::start(password).unwrap_or_else(|e| panic!("cannot start a test cluster: {e}"))
}

fn admin(dsn: &str) -> postgres::Client {
    postgres::Client::connect(dsn, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"))
}

fn seed_playbook(dir: &TempDir, safety: &str) -> std::path::PathBuf {
    dir.write(
        "p.yml",
        &format!("version: 1\nchange: faults\nsummary: s\nconstraint:\n  name: fk_rails_f300456b63\n  table: ci_pipeline_chat_data\n  columns: [chat_name_id]\n  references: {{ table: chat_names, columns: [id] }}\n  on_delete: cascade\nenvironments:\n  - {{ name: staging, dsn_env: F_STAGING_DSN }}\nsafety: {safety}\n"),
    )
}

#[test]
fn a_wrong_password_exits_3_and_is_never_shown_while_pgpass_works() {
    let c = cluster(Some(PASSWORD));
    let base = c.base_dsn();
    let mut a = admin(&format!(
        "{base} user=postgres password='{PASSWORD}' dbname=postgres"
    ));
    a.batch_execute("CREATE DATABASE app")
        .unwrap_or_else(|e| panic!("{e}"));
    admin(&format!(
        "{base} user=postgres password='{PASSWORD}' dbname=app"
    ))
    .batch_execute(SEED_SQL)
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("pw");
    let playbook = seed_playbook(&dir, "{}");
    let p = playbook.display().to_string();

    let wrong = fkctl_env(
        &["orphans", &p, "--env", "staging"],
        &[(
            "F_STAGING_DSN",
            &format!("{base} user=postgres password=wrong-secret-123 dbname=app"),
        )],
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    let err = stderr(&wrong);
    assert!(
        err.contains("28P01") && err.contains("password authentication failed"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-123"), "{err}");

    let right = fkctl_env(
        &["orphans", &p, "--env", "staging"],
        &[(
            "F_STAGING_DSN",
            &format!("{base} user=postgres password='{PASSWORD}' dbname=app"),
        )],
    );
    assert!(right.status.success(), "{}", stderr(&right));
    assert!(!stdout(&right).contains(PASSWORD) && !stderr(&right).contains(PASSWORD));

    // No password in the string: ~/.pgpass supplies it (and only with 0600 permissions).
    let home = TempDir::new("home");
    let pgpass = home.write(
        ".pgpass",
        &format!(
            "127.0.0.1:{}:app:postgres:{}\n",
            c.port,
            PASSWORD.replace(':', "\\:")
        ),
    );
    let env = [
        ("F_STAGING_DSN", format!("{base} user=postgres dbname=app")),
        ("HOME", home.0.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644));
        let open = fkctl_env(&["orphans", &p, "--env", "staging"], &env);
        assert_eq!(
            open.status.code(),
            Some(3),
            "a world-readable pgpass is ignored: {}",
            stderr(&open)
        );
        assert!(
            stderr(&open).contains("group or world access"),
            "{}",
            stderr(&open)
        );
        let _ = std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600));
    }
    let via_pgpass = fkctl_env(&["orphans", &p, "--env", "staging"], &env);
    assert!(via_pgpass.status.success(), "{}", stderr(&via_pgpass));
}

/// The server restarts after the snapshot, while fkctl asks whether to drop:
/// the drop fails with exit 3 and a clear message, the journal shows the run
/// unfinished, and the next run picks up from the catalog and completes.
#[test]
fn a_server_restart_between_steps_is_survived_by_the_next_run() {
    let c = cluster(None);
    let base = format!("{} user=postgres", c.base_dsn());
    admin(&format!("{base} dbname=postgres"))
        .batch_execute("CREATE DATABASE app")
        .unwrap_or_else(|e| panic!("{e}"));
    admin(&format!("{base} dbname=app"))
        .batch_execute(SEED_SQL)
        .unwrap_or_else(|e| panic!("{e}"));
    let dsn = format!("{base} dbname=app");
    let dir = TempDir::new("restart");
    let playbook = seed_playbook(&dir, "{ lock_timeout: 300ms }");
    let p = playbook.display().to_string();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.args(["drop", &p]).env("F_STAGING_DSN", &dsn);
    let mut session = spawn_command(cmd, Some(30_000)).unwrap_or_else(|e| panic!("{e}"));
    session
        .exp_string("recorded: FOREIGN KEY")
        .unwrap_or_else(|e| panic!("{e}"));
    session
        .exp_string("[y/N]")
        .unwrap_or_else(|e| panic!("{e}"));
    c.restart()
        .unwrap_or_else(|e| panic!("restart failed: {e}"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    session.send_line("y").unwrap_or_else(|e| panic!("{e}"));
    session
        .exp_string("run the same command again")
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = session.exp_eof();
    let code = match session.process().wait() {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        _ => None,
    };
    assert_eq!(code, Some(3));

    let mut db = admin(&dsn);
    let count = |db: &mut postgres::Client, sql: &str| -> i64 {
        db.query_one(sql, &[])
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63'"
        ),
        1,
        "still there"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM fkctl.runs WHERE outcome IS NULL"
        ),
        1,
        "the interrupted run is visible as unfinished"
    );
    assert_eq!(count(&mut db, "SELECT count(*) FROM fkctl.snapshots"), 1);

    let again = fkctl_env(
        &["drop", &p, "--env", "staging", "--yes"],
        &[("F_STAGING_DSN", &dsn)],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM fkctl.runs WHERE outcome = 'dropped'"
        ),
        1
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM fkctl.runs WHERE outcome = 'abandoned' AND message LIKE '%took over%'"
        ),
        1,
        "the next run marks the interrupted one abandoned"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM fkctl.steps WHERE outcome IS NULL"
        ),
        0
    );
    let status = fkctl_env(&["status", &p], &[("F_STAGING_DSN", &dsn)]);
    assert!(stdout(&status).contains("abandoned"), "{}", stdout(&status));
}
