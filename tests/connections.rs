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

#[test]
fn keepalive_and_channel_binding_parameters_are_libpq_s() {
    let server = fkctl::testkit::server().unwrap_or_else(|e| panic!("{e}"));
    let dsn = format!(
        "{} dbname=postgres keepalives=1 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 channel_binding=prefer",
        server.base_dsn
    );
    let target = fkctl::connect::Target::from_dsn("test", &dsn).unwrap_or_else(|e| panic!("{e}"));
    let mut client = target
        .connect(std::time::Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(one, 1);
    let bad = fkctl::connect::Target::from_dsn("test", "host=x channel_binding=sometimes")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(bad.to_string().contains("channel_binding must be"), "{bad}");
}
