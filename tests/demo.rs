//! `fkctl demo` runs the whole story on a sandbox, can be re-run from
//! scratch, and `--clean` leaves nothing behind.

mod common;

use common::*;
use std::process::{Command, Output};

fn demo(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.arg("demo").args(args).env_remove("FKCTL_DEMO_DSN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("{e}"))
}

fn count(dsn: &str, sql: &str) -> i64 {
    let mut c = postgres::Client::connect(dsn, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"));
    c.query_one(sql, &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_demo_tells_the_whole_story_and_cleans_up() {
    let server = fkctl::testkit::server().unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("fkctl_demo_t{}", std::process::id());
    let env = [
        ("FKCTL_DEMO_DSN", server.base_dsn.clone()),
        ("FKCTL_DEMO_PREFIX", prefix.clone()),
    ];
    let production = server.dsn_for(&format!("{prefix}_production"));
    for run in 1..=2 {
        let out = demo(&["--yes"], &env);
        assert!(out.status.success(), "run {run}: {}", stderr(&out));
        let text = stdout(&out);
        for chapter in [
            "1/11 The change",
            "3/11 Drop on staging",
            "6/11 Orphan census",
            "7/11 Incident: roll back on production",
            "8/11 A UNIQUE constraint, too",
            "9/11 UNIQUE rollback, without blocking writes",
            "11/11 Your turn",
        ] {
            assert!(text.contains(chapter), "run {run}: no chapter {chapter:?}");
        }
        assert!(text.contains("restored"), "{text}");
        assert!(!text.contains("password"), "no secrets in the narration");
        // Every run starts fresh: the archive holds this run's rows only.
        assert_eq!(
            count(
                &production,
                "SELECT count(*) FROM fkctl.archive WHERE action <> 'dedupe'"
            ),
            400,
            "run {run}"
        );
        assert_eq!(
            count(
                &production,
                "SELECT count(*) FROM fkctl.archive WHERE action = 'dedupe'"
            ),
            50,
            "run {run}: the UNIQUE chapter's duplicates"
        );
        assert_eq!(
            count(
                &production,
                "SELECT count(*) FROM pg_constraint WHERE conname = 'contacts_tenant_email_key'"
            ),
            1
        );
        assert_eq!(count(&production, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND convalidated"), 1);
    }
    let dir = std::env::temp_dir().join(prefix.replace('_', "-"));
    let request = std::fs::read_to_string(dir.join("change-request.md")).unwrap_or_default();
    assert!(
        request.contains("## Rollback"),
        "the change request was written"
    );
    let out = demo(&["--clean"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.exists());
    let admin = server.dsn_for("postgres");
    assert_eq!(
        count(
            &admin,
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{prefix}%'")
        ),
        0
    );
}

#[test]
fn without_a_server_the_demo_starts_two_clusters_and_clean_stops_them() {
    let prefix = format!("fkctl_demo_c{}", std::process::id());
    let env = [
        ("FKCTL_DEMO_FORCE_CLUSTERS", "1".to_string()),
        ("FKCTL_DEMO_PREFIX", prefix.clone()),
    ];
    let out = demo(&["--yes"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = std::env::temp_dir().join(prefix.replace('_', "-"));
    let state = std::fs::read_to_string(dir.join("sandbox.json")).unwrap_or_default();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
    assert_eq!(
        state["clusters"].as_array().map(Vec::len),
        Some(2),
        "{state}"
    );
    assert_ne!(
        state["staging_base"], state["production_base"],
        "two clusters on two ports"
    );
    let production = format!(
        "{} dbname={prefix}_production",
        state["production_base"].as_str().unwrap_or_default()
    );
    assert_eq!(
        count(
            &production,
            "SELECT count(*) FROM fkctl.archive WHERE action <> 'dedupe'"
        ),
        400
    );
    let out = demo(&["--clean"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.exists());
    assert!(
        postgres::Client::connect(&production, postgres::NoTls).is_err(),
        "the clusters are stopped"
    );
}

#[test]
fn without_a_terminal_the_demo_needs_yes() {
    let out = demo(
        &[],
        &[("FKCTL_DEMO_PREFIX", "fkctl_demo_never".to_string())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"));
}

/// Two demos at once on one server, each with its own prefix, both succeed;
/// a second demo with a prefix in use is refused instead of dropping the
/// first one's databases.
#[test]
fn two_demos_at_once_do_not_collide() {
    let server = fkctl::testkit::server().unwrap_or_else(|e| panic!("{e}"));
    let spawn = |prefix: &str| {
        Command::new(env!("CARGO_BIN_EXE_fkctl"))
            .args(["demo", "--yes", "--prefix", prefix])
            .env_remove("FKCTL_DEMO_PREFIX")
            .env("FKCTL_DEMO_DSN", &server.base_dsn)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (a, c) = (
        format!("fkctl_demo_p{}", std::process::id()),
        format!("fkctl_demo_q{}", std::process::id()),
    );
    let first = spawn(&a);
    let other = spawn(&c);
    let lock = std::env::temp_dir()
        .join(a.replace('_', "-"))
        .join("demo.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first demo never took its sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let same = spawn(&a)
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(same.status.code(), Some(4), "{}", stderr(&same));
    assert!(
        stderr(&same).contains("another fkctl demo"),
        "{}",
        stderr(&same)
    );
    for (name, child) in [("first", first), ("other", other)] {
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains("11/11 Your turn"), "{name}");
    }
    for prefix in [&a, &c] {
        let out = demo(&["--clean", "--prefix", prefix], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
