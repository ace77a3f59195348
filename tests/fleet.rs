//! Fleets against a real PostgreSQL: one environment of many databases on
//! the local server, rolled out canary first, then in waves.

mod common;

use common::{exec, scalar_i64, stderr, stdout, TempDir};
use fkctl::testkit::TestDatabase;
use std::path::PathBuf;
use std::process::Output;

const SCHEMA: &str = "CREATE TABLE parent (id bigint PRIMARY KEY);
CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint);
CREATE INDEX ON child (parent_id);
ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE;
INSERT INTO parent SELECT generate_series(1, 100);
INSERT INTO child SELECT g, 1 + g % 100 FROM generate_series(1, 500) g;";

struct Fleet {
    staging: TestDatabase,
    shards: Vec<TestDatabase>,
    _dir: TempDir,
    playbook: PathBuf,
}

const SHARDS: usize = 8;

impl Fleet {
    /// Staging and eight shards; shards 1-4 listed in the playbook, 5-8 in a targets file.
    fn new(tag: &str) -> Fleet {
        let staging = common::database(&format!("{tag}_stg"));
        exec(&staging, SCHEMA);
        let shards: Vec<TestDatabase> = (1..=SHARDS)
            .map(|i| {
                let db = common::database(&format!("{tag}_s{i}"));
                exec(&db, SCHEMA);
                db
            })
            .collect();
        let dir = TempDir::new(tag);
        dir.write(
            "shards.txt",
            "# the second half of the fleet\nshard-05 env=T_SHARD_05\nshard-06 env=T_SHARD_06\n\nshard-07 env=T_SHARD_07  # last but one\nshard-08 env=T_SHARD_08\n",
        );
        let text = "version: 1\nchange: fleet-test\nsummary: s\nconstraint:\n  name: child_parent_fk\n  table: public.child\n  columns: [parent_id]\n  references: { table: public.parent, columns: [id] }\n  on_delete: cascade\nenvironments:\n  - { name: staging, dsn_env: T_STAGING }\n  - name: production\n    protected: true\n    rollout: { canary: 1, concurrency: 3 }\n    targets:\n      - { name: shard-01, dsn_env: T_SHARD_01 }\n      - { name: shard-02, dsn_env: T_SHARD_02 }\n      - { name: shard-03, dsn_env: T_SHARD_03 }\n      - { name: shard-04, dsn_env: T_SHARD_04 }\n    targets_file: shards.txt\n";
        let playbook = dir.write("fleet.yml", text);
        Fleet {
            staging,
            shards,
            _dir: dir,
            playbook,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"));
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd.env("T_STAGING", &self.staging.dsn);
        for (i, db) in self.shards.iter().enumerate() {
            cmd.env(format!("T_SHARD_{:02}", i + 1), &db.dsn);
        }
        cmd.output().unwrap_or_else(|e| panic!("{e}"))
    }

    fn fkctl(&self, command: &str, env: &str, extra: &[&str]) -> Output {
        let pb = self.playbook.display().to_string();
        let mut args = vec![command, pb.as_str(), "--env", env];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn present(&self) -> Vec<bool> {
        self.shards.iter().map(has_fk).collect()
    }
}

fn has_fk(db: &TestDatabase) -> bool {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'child_parent_fk' AND convalidated",
    ) == 1
}

/// Rows in fkctl's archive (0 where no purge ever created it).
fn archived_rows(db: &TestDatabase) -> i64 {
    let exists = scalar_i64(
        db,
        "SELECT count(*) FROM pg_class WHERE oid = to_regclass('fkctl.archive')",
    );
    if exists == 0 {
        return 0;
    }
    scalar_i64(db, "SELECT count(*) FROM fkctl.archive")
}

/// The constraint as the playbook does not describe it.
fn drift(db: &TestDatabase) {
    exec(
        db,
        "ALTER TABLE child DROP CONSTRAINT child_parent_fk;
         ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE SET NULL;",
    );
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn a_drifted_canary_stops_the_fleet_before_any_other_target() {
    let f = Fleet::new("fleet_canary");
    let out = f.fkctl("drop", "staging", &["--yes"]);
    assert!(out.status.success(), "{}", both(&out));
    drift(&f.shards[0]);
    let out = f.fkctl("drop", "production", &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", both(&out));
    assert!(both(&out).contains("production/shard-01"), "{}", both(&out));
    assert!(both(&out).contains("not started"), "{}", both(&out));
    // The canary kept its (drifted) constraint; no other shard was touched.
    assert_eq!(
        scalar_i64(
            &f.shards[0],
            "SELECT count(*) FROM pg_constraint WHERE conname = 'child_parent_fk'"
        ),
        1
    );
    assert_eq!(f.present()[1..], vec![true; SHARDS - 1][..]);
}

#[test]
fn a_drifted_last_target_is_left_alone_rerun_finishes_and_one_rollback_restores_all() {
    let f = Fleet::new("fleet_waves");
    let out = f.fkctl("drop", "staging", &["--yes"]);
    assert!(out.status.success(), "{}", both(&out));
    drift(&f.shards[SHARDS - 1]);
    let out = f.fkctl("drop", "production", &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", both(&out));
    let present = f.present();
    assert_eq!(
        present[..SHARDS - 1],
        vec![false; SHARDS - 1][..],
        "{}",
        both(&out)
    );
    assert!(
        stdout(&out).contains("production/shard-08  FAILED, exit 4"),
        "{}",
        stdout(&out)
    );

    // Fixed, and run again: only shard-08 is left to do.
    exec(
        &f.shards[SHARDS - 1],
        "ALTER TABLE child DROP CONSTRAINT child_parent_fk;
         ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE;",
    );
    let out = f.fkctl("drop", "production", &["--yes", "--output", "json"]);
    assert!(out.status.success(), "{}", both(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["schema_version"], 1, "{doc}");
    let targets = doc
        .pointer("/environments/0/targets/targets")
        .and_then(|t| t.as_array())
        .unwrap_or_else(|| panic!("no targets in {doc}"));
    assert_eq!(targets.len(), SHARDS);
    let outcomes: Vec<String> = targets
        .iter()
        .map(|t| {
            t.pointer("/result/environments/0/outcome")
                .and_then(|o| o.as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| *o == "already absent").count(),
        SHARDS - 1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes[SHARDS - 1], "dropped");
    assert_eq!(f.present(), vec![false; SHARDS]);

    // Orphans on three shards: one rollback restores and validates every one.
    for (i, parents) in [(1, 2), (4, 3), (6, 5)] {
        exec(
            &f.shards[i],
            &format!("DELETE FROM parent WHERE id <= {parents}"),
        );
    }
    let expected: Vec<i64> = f
        .shards
        .iter()
        .map(|db| scalar_i64(db, "SELECT count(*) FROM child c WHERE NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id)"))
        .collect();
    assert_eq!(expected.iter().filter(|n| **n > 0).count(), 3);
    let out = f.fkctl("rollback", "production", &["--yes"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(f.present(), vec![true; SHARDS]);
    for (db, n) in f.shards.iter().zip(&expected) {
        assert_eq!(archived_rows(db), *n, "every purged row archived");
    }

    // Status reads every target; its JSON lists each one.
    let out = f.run(&[
        "status",
        &f.playbook.display().to_string(),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = doc["environments"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .filter_map(|e| e["environment"].as_str())
        .collect();
    assert_eq!(names.len(), SHARDS + 1, "{names:?}");
    assert!(names.contains(&"production/shard-05") && names.contains(&"staging"));
    let out = f.run(&[
        "status",
        &f.playbook.display().to_string(),
        "--env",
        "production",
    ]);
    assert!(
        stdout(&out).contains("production (fleet)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        stdout(&out).matches("valid").count(),
        SHARDS,
        "{}",
        stdout(&out)
    );

    // The change request reads every database of the fleet: a row each.
    let out = f.fkctl("change-request", "production", &[]);
    assert!(out.status.success(), "{}", both(&out));
    let body = stdout(&out);
    assert!(
        body.contains("production is a fleet of 8 databases"),
        "{body}"
    );
    for i in 1..=SHARDS {
        assert!(
            body.contains(&format!("| shard-{i:02} | valid |")),
            "shard-{i:02}: {body}"
        );
    }

    // The census across the fleet: one table, a row per target.
    let out = f.fkctl("orphans", "production", &[]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(stdout(&out).matches("production/shard-").count(), SHARDS);

    // The parents come back; one restore puts each database's rows back.
    for (i, parents) in [(1, 2), (4, 3), (6, 5)] {
        exec(
            &f.shards[i],
            &format!("INSERT INTO parent SELECT generate_series(1, {parents})"),
        );
    }
    let out = f.fkctl("restore", "production", &["--run", "latest", "--yes"]);
    assert!(out.status.success(), "{}", both(&out));
    for db in &f.shards {
        assert_eq!(archived_rows(db), 0);
        assert_eq!(
            scalar_i64(db, "SELECT count(*) FROM child"),
            500,
            "every row is back"
        );
    }
    let out = f.fkctl(
        "restore",
        "production",
        &["--run", "20260101T000000Z-x", "--yes"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a run id means one database: {}",
        both(&out)
    );
}

#[test]
fn fleet_playbook_mistakes_are_reported_at_their_line() {
    let dir = TempDir::new("fleet_lint");
    let base = "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }\nenvironments:\n  - name: production\n";
    let cases: [(&str, &str, &str); 5] = [
        (
            "    targets:\n      - { name: a, dsn_env: A }\n      - { name: a, dsn_env: B }\n",
            "fleet.yml:13:",
            "appears twice",
        ),
        (
            "    rollout: { canary: 2, concurrency: 1 }\n    targets:\n      - { name: a, dsn_env: A }\n      - { name: b, dsn_env: B }\n",
            "fleet.yml:11:",
            "leaves none for the waves",
        ),
        (
            "    rollout: { canary: 1, concurrency: 0 }\n    targets:\n      - { name: a, dsn_env: A }\n      - { name: b, dsn_env: B }\n",
            "fleet.yml:11:",
            "rollout.concurrency",
        ),
        (
            "    targets:\n      - { name: a, dsn_env: A, service: s }\n",
            "fleet.yml:12:",
            "exactly one of dsn_env",
        ),
        (
            "    targets_file: t.txt\n",
            "t.txt:2:",
            "expected env=VARIABLE or service=SERVICE",
        ),
    ];
    dir.write("t.txt", "good env=GOOD\nbad password=hunter2\n");
    for (env_text, at, message) in cases {
        let path = dir.write("fleet.yml", &format!("{base}{env_text}"));
        let out = common::fkctl(&["lint", &path.display().to_string()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env_text}: {err}");
        assert!(
            err.contains(at) && err.contains(message),
            "{env_text}: expected {at} {message} in {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// Citus's metadata, as far as fkctl reads it, on a plain server: a table
/// named like Citus's, listing the child as distributed.
#[test]
fn a_table_citus_distributes_is_refused_before_any_change() {
    let db = common::database("fleet_citus");
    exec(&db, SCHEMA);
    exec(
        &db,
        "SET allow_system_table_mods = on;
         CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass);
         INSERT INTO pg_catalog.pg_dist_partition VALUES ('public.child'::regclass);",
    );
    let dir = TempDir::new("fleet_citus");
    let pb = dir.write(
        "p.yml",
        &common::playbook("  name: child_parent_fk\n  table: public.child\n  columns: [parent_id]\n  references: { table: public.parent, columns: [id] }\n  on_delete: cascade"),
    );
    let out = common::run_env("drop", &pb, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", both(&out));
    assert!(
        stderr(&out).contains("managed by Citus"),
        "{}",
        stderr(&out)
    );
    assert!(has_fk(&db), "nothing was changed");
    exec(
        &db,
        "SET allow_system_table_mods = on; DROP TABLE pg_catalog.pg_dist_partition;",
    );
}

#[test]
fn an_unreachable_target_is_that_target_failing_not_a_hang() {
    let f = Fleet::new("fleet_unreachable");
    let pb = f.playbook.display().to_string();
    let started = std::time::Instant::now();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.args(["orphans", &pb, "--env", "production"]);
    cmd.env("T_STAGING", &f.staging.dsn);
    for (i, db) in f.shards.iter().enumerate() {
        cmd.env(format!("T_SHARD_{:02}", i + 1), &db.dsn);
    }
    // Nothing listens on port 1 of this machine.
    cmd.env(
        "T_SHARD_03",
        "host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=2",
    );
    let out = cmd.output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let text = stdout(&out);
    assert!(
        text.contains("production/shard-03  FAILED, exit 3"),
        "{text}"
    );
    assert_eq!(
        text.matches("  ok  ").count(),
        SHARDS - 1,
        "the others were read: {text}"
    );
    let mut status = std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"));
    status.args(["status", &pb, "--env", "production"]);
    for (i, db) in f.shards.iter().enumerate() {
        status.env(format!("T_SHARD_{:02}", i + 1), &db.dsn);
    }
    status.env(
        "T_SHARD_03",
        "host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=2",
    );
    let out = status.output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));
    assert!(
        stdout(&out).contains("shard-03                 UNREADABLE"),
        "{}",
        stdout(&out)
    );
}
