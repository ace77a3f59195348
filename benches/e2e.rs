//! End-to-end benchmark: fkctl against the hand-written baseline on the same
//! data, alternating (A B A B, medians), on the local PostgreSQL (same
//! discovery as the tests). `cargo bench --bench e2e -- [--quick] [--rows N] [--orphans N]`.
//!
//! Prints a table and one `RESULT {...}` line per measurement.

use fkctl::testkit::TestDatabase;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Size {
    parents: i64,
    children: i64,
    orphans: i64,
    pairs: usize,
}

fn parse_args() -> Size {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let children = value("--rows").unwrap_or(if quick { 200_000 } else { 5_000_000 });
    Size {
        parents: (children / 5).max(1000),
        children,
        orphans: value("--orphans").unwrap_or(if quick { 1_000 } else { 10_000 }),
        pairs: if quick { 3 } else { 5 },
    }
}

fn exec(db: &TestDatabase, sql: &str) {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{}\n{sql}", fkctl::error::describe_postgres(&e).1));
}

fn scalar(db: &TestDatabase, sql: &str) -> i64 {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    c.query_one(sql, &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fkctl(args: &[&str], db: &TestDatabase) -> (f64, bool) {
    let dsn = format!("bench={}", db.dsn);
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_fkctl"))
        .args(args)
        .args(["--dsn", &dsn])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    (started.elapsed().as_secs_f64(), status.success())
}

/// The baseline as a DBA runs it: `psql` reading the statements (each one
/// autocommitted), with psql's own connection defaults (TLS preferred, like fkctl).
fn timed(db: &TestDatabase, sql: &str) -> f64 {
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

const NOT_EXISTS: &str =
    "c.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.parent_id)";

fn result(name: &str, fkctl_s: f64, baseline_s: f64, target: f64) {
    let ratio = fkctl_s / baseline_s;
    println!("{name:<10} fkctl {fkctl_s:>8.3} s   baseline {baseline_s:>8.3} s   ratio {ratio:>5.2}   target <= {target}");
    println!("RESULT {{\"bench\": \"{name}\", \"fkctl_s\": {fkctl_s:.4}, \"baseline_s\": {baseline_s:.4}, \"ratio\": {ratio:.3}}}");
}

/// Puts the database back to "constraint dropped, orphans present".
fn reset(db: &TestDatabase) {
    exec(
        db,
        "ALTER TABLE child DROP CONSTRAINT IF EXISTS child_parent_fk;
        DROP SCHEMA IF EXISTS fkctl CASCADE;
        INSERT INTO child SELECT * FROM orphan_rows ON CONFLICT DO NOTHING;",
    );
    exec(db, "VACUUM ANALYZE child");
}

/// The longest single insert of a writer that inserts valid rows every 5 ms while `work` runs.
fn longest_insert_during(db: &TestDatabase, work: impl FnOnce()) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut id: i64 = 900_000_000_000;
        while !flag.load(Ordering::SeqCst) {
            id += 1;
            let t = Instant::now();
            let _ = writer.execute("INSERT INTO child VALUES ($1, 1, 'w')", &[&id]);
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

fn main() {
    let size = parse_args();
    println!(
        "fkctl e2e benchmark: {} parents, {} children, {} orphans, 5% NULL keys, {} pairs",
        size.parents, size.children, size.orphans, size.pairs
    );
    let db = TestDatabase::create("bench").unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    exec(
        &db,
        &format!(
            "CREATE TABLE parent (id bigint PRIMARY KEY, name text);
         CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint, payload text);
         INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, {p}) g;
         INSERT INTO child SELECT g,
            CASE WHEN g % 20 = 0 THEN NULL
                 WHEN g % ({c} / {o}) = 1 AND g / ({c} / {o}) < {o} THEN {p} + g
                 ELSE 1 + (g::bigint * 7919) % {p} END,
            md5(g::text) FROM generate_series(1, {c}) g;
         CREATE INDEX ON child (parent_id);
         CREATE TABLE orphan_rows AS SELECT * FROM child c WHERE {NOT_EXISTS};",
            p = size.parents,
            c = size.children,
            o = size.orphans
        ),
    );
    // VACUUM refuses to run inside a multi-statement query's implicit transaction.
    exec(&db, "VACUUM ANALYZE parent");
    exec(&db, "VACUUM ANALYZE child");
    let orphans = scalar(&db, "SELECT count(*) FROM orphan_rows");
    println!(
        "data built in {:.1} s ({orphans} orphans)",
        t.elapsed().as_secs_f64()
    );
    let dir = std::env::temp_dir().join(format!("fkctl-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let playbook = dir.join("bench.yml");
    let write_playbook = |batch: u32| {
        std::fs::write(&playbook, format!(
            "version: 1\nchange: bench\nsummary: bench\nconstraint: {{ name: child_parent_fk, table: child, columns: [parent_id], references: {{ table: parent, columns: [id] }} }}\nenvironments: [{{ name: bench, dsn_env: FKCTL_BENCH_UNUSED }}]\nsafety: {{ lock_timeout: 200ms, lock_retries: 3 }}\nrollback: {{ batch_size: {batch}, max_orphans: 100000000 }}\n"
        )).unwrap_or_else(|e| panic!("{e}"));
    };
    write_playbook(1000);
    let pb = playbook.display().to_string();

    // 1. Census.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let _ = timed(
        &db,
        &format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}"),
    );
    for _ in 0..size.pairs {
        let (s, ok) = fkctl(&["orphans", &pb, "--env", "bench"], &db);
        assert!(ok, "fkctl orphans failed");
        a.push(s);
        b.push(timed(
            &db,
            &format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}"),
        ));
    }
    result("census", median(a), median(b), 1.1);

    // 2. Rollback: NOT VALID + archived purge + VALIDATE vs the hand-written sequence.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..size.pairs {
        reset(&db);
        let (s, ok) = fkctl(&["rollback", &pb, "--env", "bench", "--yes"], &db);
        assert!(ok, "fkctl rollback failed");
        a.push(s);
        reset(&db);
        b.push(timed(&db, &format!(
            "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID;
             DELETE FROM child c WHERE {NOT_EXISTS};
             ALTER TABLE child VALIDATE CONSTRAINT child_parent_fk;"
        )));
    }
    result("rollback", median(a), median(b), 1.5);

    // 3. Write stall: the longest insert during fkctl's rollback vs during a validating ADD.
    reset(&db);
    let fkctl_stall = longest_insert_during(&db, || {
        let (_, ok) = fkctl(&["rollback", &pb, "--env", "bench", "--yes"], &db);
        assert!(ok);
    });
    reset(&db);
    exec(&db, &format!("DELETE FROM child c WHERE {NOT_EXISTS}"));
    let naive_stall = longest_insert_during(&db, || {
        exec(&db, "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id)");
    });
    let (f, n) = (
        fkctl_stall.as_secs_f64() * 1000.0,
        naive_stall.as_secs_f64() * 1000.0,
    );
    println!("stall      fkctl {f:>8.1} ms  naive ADD {n:>8.1} ms   ratio {:.3}   target <= 200 ms (lock_timeout) and <= 0.1x", f / n);
    println!("RESULT {{\"bench\": \"write_stall\", \"fkctl_ms\": {f:.1}, \"naive_ms\": {n:.1}, \"lock_timeout_ms\": 200, \"ratio\": {:.3}}}", f / n);

    // 5. Purge scans: sequential scans of the child during the rollback, small vs large batches.
    let mut scans = Vec::new();
    for batch in [100u32, 10_000] {
        write_playbook(batch);
        reset(&db);
        std::thread::sleep(Duration::from_millis(1500)); // let the statistics of the reset settle
        let before = scalar(
            &db,
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'child'",
        );
        let (_, ok) = fkctl(&["rollback", &pb, "--env", "bench", "--yes"], &db);
        assert!(ok);
        std::thread::sleep(Duration::from_millis(1500));
        let after = scalar(
            &db,
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'child'",
        );
        scans.push((batch, after - before));
        println!(
            "scans      batch_size {batch:>6}: {} sequential scan(s) of the child",
            after - before
        );
    }
    println!(
        "RESULT {{\"bench\": \"purge_scans\", \"batch_100\": {}, \"batch_10000\": {}}}",
        scans[0].1, scans[1].1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
