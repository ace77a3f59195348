//! What both benchmarks need: SQL on a test database, fkctl and psql timed
//! as a DBA would run them, medians, and a writer whose longest insert
//! shows how long a command blocks writes.
#![allow(dead_code)]

use fkctl::testkit::TestDatabase;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn exec(db: &TestDatabase, sql: &str) {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{}\n{sql}", fkctl::error::describe_postgres(&e).1));
}

pub fn scalar(db: &TestDatabase, sql: &str) -> i64 {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    c.query_one(sql, &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs fkctl; returns its wall time, success, and peak resident set size in
/// KiB (from wait4's rusage for that one process).
// The child is reaped by wait4 below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn fkctl_measured(args: &[&str], db: &TestDatabase) -> (f64, bool, i64) {
    let dsn = format!("bench={}", db.dsn);
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_fkctl"))
        .args(args)
        .args(["--dsn", &dsn])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = libc::pid_t::try_from(child.id()).unwrap_or_else(|e| panic!("{e}"));
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (started.elapsed().as_secs_f64(), ok, usage.ru_maxrss)
}

/// The baseline as a DBA runs it: `psql` reading the statements (each one
/// autocommitted), with psql's own connection defaults (TLS preferred, like fkctl).
pub fn timed(db: &TestDatabase, sql: &str) -> f64 {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new("psql")
        .args([
            db.dsn.as_str(),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("the baseline needs psql on PATH: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(sql.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "psql failed on:\n{sql}");
    started.elapsed().as_secs_f64()
}

/// The longest single insert of a writer running `insert` (with $1 a new
/// id) every 5 ms while `work` runs.
pub fn longest_insert_during(
    db: &TestDatabase,
    insert: &'static str,
    work: impl FnOnce(),
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut id: i64 = 900_000_000_000;
        while !flag.load(Ordering::SeqCst) {
            id += 1;
            let t = Instant::now();
            let _ = writer.execute(insert, &[&id]);
            longest = longest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        longest
    });
    std::thread::sleep(Duration::from_millis(100));
    work();
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap_or(Duration::MAX)
}
