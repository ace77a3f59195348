//! Shared helpers for integration tests: a real PostgreSQL database per test
//! (see fkctl::testkit) and running the real fkctl binary.
#![allow(dead_code)]

pub mod staged;

use fkctl::testkit::TestDatabase;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn database(prefix: &str) -> TestDatabase {
    match TestDatabase::create(prefix) {
        Ok(db) => db,
        Err(e) => panic!("test setup: {e}"),
    }
}

pub fn exec(db: &TestDatabase, sql: &str) {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = client.batch_execute(sql) {
        panic!(
            "test setup SQL failed: {}\n{sql}",
            fkctl::error::describe_postgres(&e).1
        );
    }
}

/// The server's version as a number (180006 for 18.6).
pub fn server_version_num(db: &TestDatabase) -> i64 {
    scalar_i64(db, "SELECT current_setting('server_version_num')::int8")
}

/// The one text value `sql` returns.
pub fn scalar_text(db: &TestDatabase, sql: &str) -> String {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .get(0)
}

pub fn scalar_i64(db: &TestDatabase, sql: &str) -> i64 {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .get(0)
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fkctl-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A playbook with one environment called `test`.
pub fn playbook(constraint_yaml: &str) -> String {
    format!(
        "version: 1\nchange: test-change\nsummary: a test change\nconstraint:\n{constraint_yaml}\nenvironments:\n  - {{ name: test, dsn_env: FKCTL_TEST_ONLY_DSN }}\n"
    )
}

pub fn fkctl(args: &[&str]) -> Output {
    fkctl_env(args, &[])
}

/// Runs fkctl with these environment variables (and never an inherited test DSN).
pub fn fkctl_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
    cmd.args(args).env_remove("FKCTL_TEST_ONLY_DSN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run fkctl: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command ended with exit code `code` and said `says` on stderr.
pub fn assert_refused(out: &Output, code: i32, says: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
    assert!(stderr(out).contains(says), "{}", stderr(out));
}

/// Runs `fkctl COMMAND PLAYBOOK --env test --dsn test=<db> EXTRA...`.
pub fn run_env(command: &str, playbook: &Path, db: &TestDatabase, extra: &[&str]) -> Output {
    let dsn = format!("test={}", db.dsn);
    let path = playbook.display().to_string();
    let mut args = vec![
        command,
        path.as_str(),
        "--env",
        "test",
        "--dsn",
        dsn.as_str(),
    ];
    args.extend_from_slice(extra);
    fkctl(&args)
}

/// Runs fkctl with `--env test --dsn test=<db>` and `--output json`, expecting success.
pub fn json(
    command: &str,
    playbook: &Path,
    db: &TestDatabase,
    extra: &[&str],
) -> serde_json::Value {
    let dsn = format!("test={}", db.dsn);
    let path = playbook.display().to_string();
    let mut args = vec![
        command,
        path.as_str(),
        "--env",
        "test",
        "--dsn",
        dsn.as_str(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = fkctl(&args);
    assert!(
        out.status.success(),
        "fkctl {command} failed ({:?}):\n{}",
        out.status.code(),
        stderr(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON from fkctl {command}: {e}\n{}", stdout(&out)));
    // Every JSON document starts with its schema version.
    assert_eq!(doc["schema_version"], 1, "fkctl {command}: {doc}");
    assert!(
        stdout(&out)
            .trim_start()
            .starts_with("{\n  \"schema_version\": 1"),
        "fkctl {command}: schema_version comes first"
    );
    doc
}

/// The SQL of step `id` in a plan printed with `--output json`.
pub fn step_statements(plan: &serde_json::Value, id: &str) -> Vec<String> {
    plan["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == id))
        .and_then(|s| s["statements"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// EXPLAIN of a purge batch statement, with its parameters (run id; the
/// jsonb archive's batches take change and constraint too), as one text.
pub fn explain_batch(c: &mut postgres::Client, batch: &str, constraint: &str) -> String {
    explain_with(c, "EXPLAIN", batch, constraint)
}

/// Runs a batch statement under `EXPLAIN ANALYZE` in a transaction rolled
/// back after: the plan as executed, with each node's loops.
pub fn explain_analyze_batch(c: &mut postgres::Client, batch: &str, constraint: &str) -> String {
    let mut tx = c.transaction().unwrap_or_else(|e| panic!("{e}"));
    let text = explain_with(&mut tx, "EXPLAIN (ANALYZE, COSTS OFF)", batch, constraint);
    tx.rollback().unwrap_or_else(|e| panic!("{e}"));
    text
}

fn explain_with(
    c: &mut impl postgres::GenericClient,
    explain: &str,
    batch: &str,
    constraint: &str,
) -> String {
    let binds: [&(dyn postgres::types::ToSql + Sync); 3] = [&"run", &"change", &constraint];
    let explained: Vec<String> = c
        .query(
            format!("{explain} {batch}").as_str(),
            &binds[..if batch.contains("$3") { 3 } else { 1 }],
        )
        .unwrap_or_else(|e| panic!("{e}\n{batch}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    explained.join("\n")
}

/// How many TID lookups an executed plan made: the loops of its TID scans
/// (a scan never executed made none).
pub fn tid_lookups(analyzed: &str) -> u64 {
    analyzed
        .lines()
        .filter(|l| l.contains("Tid Scan on"))
        .filter_map(|l| l.split("loops=").nth(1))
        .filter_map(|rest| rest.trim_end_matches(')').trim().parse::<u64>().ok())
        .sum()
}

/// A plan line that tests each row against a whole array of addresses
/// (`ctid = ANY` applied as a filter, not as a TID scan's condition): a
/// cost quadratic in the batch.
pub fn compares_rows_with_the_batch(plan: &str) -> Option<&str> {
    plan.lines()
        .find(|l| l.trim_start().starts_with("Filter:") && l.contains("ctid = ANY"))
}

/// Makes `insert` write a row orphaned after the census: a trigger on
/// fkctl's journal runs it, with the constraint's checks off for that one
/// statement, when fkctl records its first VALIDATE (of the table or of a
/// partition). The journal must exist (run a drop first); the trigger's
/// table `public.late_written` holds a row once it has fired.
pub fn write_an_orphan_at_the_first_validate(db: &TestDatabase, insert: &str) {
    exec(
        db,
        &format!(
            "CREATE TABLE public.late_written (done int);
CREATE FUNCTION public.write_late_orphan() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.step IN ('validate-partition', 'validate-constraint')
       AND NOT EXISTS (SELECT 1 FROM public.late_written) THEN
        INSERT INTO public.late_written VALUES (1);
        SET LOCAL session_replication_role = replica;
        {insert};
        SET LOCAL session_replication_role = origin;
    END IF;
    RETURN NEW;
END $fn$;
CREATE TRIGGER write_late_orphan AFTER INSERT ON fkctl.steps
    FOR EACH ROW EXECUTE FUNCTION public.write_late_orphan();"
        ),
    );
}
