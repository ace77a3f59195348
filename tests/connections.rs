//! Connections as libpq makes them: the OS user when none is given, and
//! network failures in libpq's words with the host and port tried.

mod common;

use common::{fkctl_env, stderr, TempDir};

fn playbook(dir: &TempDir) -> String {
    dir.write(
        "p.yml",
        &common::playbook("  name: fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }"),
    )
    .display()
    .to_string()
}

#[test]
fn without_a_user_the_os_user_is_taken_not_the_user_variable() {
    let dir = TempDir::new("conn_user");
    let pb = playbook(&dir);
    let os_user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    // Port 1: nothing listens, so the message (with the connection's user) comes quickly.
    let out = fkctl_env(
        &["orphans", &pb, "--env", "test"],
        &[
            ("FKCTL_TEST_ONLY_DSN", "host=127.0.0.1 port=1 dbname=x"),
            ("USER", "somebody_else"),
            ("LOGNAME", "somebody_else"),
            ("PGUSER", ""),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("user={os_user} ")), "{err}");
    assert!(
        err.contains("connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
        "{err}"
    );
}

#[test]
fn an_unknown_host_is_named() {
    let dir = TempDir::new("conn_host");
    let pb = playbook(&dir);
    let out = fkctl_env(
        &["orphans", &pb, "--env", "test"],
        &[(
            "FKCTL_TEST_ONLY_DSN",
            "host=no-such-host.invalid user=postgres dbname=x",
        )],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("could not translate host name \"no-such-host.invalid\" to address"),
        "{err}"
    );
}
