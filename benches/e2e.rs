//! End-to-end benchmark: fkctl against the hand-written baseline on the same
//! data, alternating (A B A B, medians), on the local PostgreSQL (same
//! discovery as the tests).
//! `cargo bench --bench e2e -- [--quick] [--rows N] [--orphans N] [--pairs N]
//! [--only census,rollback,write_stall,purge_scans,drop_contention,peak_rss,fleet,loose,curve,purge_linear,purge_partitions]`
//! [--curve-rows 200000,2000000,20000000]`; `-- --plot-from LOG` draws
//! docs/scaling.svg again from a saved output's curve RESULT lines.
//!
//! Prints a table and one `RESULT {...}` line per measurement.

#[path = "support/mod.rs"]
mod support;

use fkctl::testkit::TestDatabase;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{exec, fkctl_measured, longest_insert_during, median, scalar, timed};

struct Size {
    parents: i64,
    children: i64,
    orphans: i64,
    pairs: usize,
    /// `--only NAME[,NAME]`: run just these measurements.
    only: Option<Vec<String>>,
}

impl Size {
    fn wants(&self, bench: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == bench))
    }
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
        pairs: value("--pairs").map_or(if quick { 3 } else { 5 }, |n| n.max(1) as usize),
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.split(',').map(str::to_string).collect()),
    }
}

fn fkctl(args: &[&str], db: &TestDatabase) -> (f64, bool) {
    let (seconds, ok, _) = fkctl_measured(args, db);
    (seconds, ok)
}

/// A valid child row for the writer of `longest_insert_during`.
const CHILD_INSERT: &str = "INSERT INTO child VALUES ($1, 1, 'w')";

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

/// A copy of the built data for one run, after a CHECKPOINT: fkctl and the
/// baseline each start from the same rows at the same addresses, with the
/// same visibility map (a run on what the other's run and a reset left
/// behind, orphans moved to the table's end, measured a different layout).
fn fresh_copy(db: &TestDatabase) -> TestDatabase {
    let copy = db.copy("run").unwrap_or_else(|e| panic!("{e}"));
    exec(&copy, "CHECKPOINT");
    copy
}

/// The hand-written rollback a DBA would run in psql.
fn baseline_rollback() -> String {
    format!(
        "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID;
         DELETE FROM child c WHERE {NOT_EXISTS};
         ALTER TABLE child VALIDATE CONSTRAINT child_parent_fk;"
    )
}

/// Another session holds a lock on the parent for HOLD; a third session reads
/// the child every few ms. Its longest read while fkctl's DROP waits (lock
/// timeout, back off, retry) vs while a plain DROP without lock_timeout waits.
fn drop_under_contention(db: &TestDatabase, playbook: &str) {
    const HOLD: Duration = Duration::from_millis(2000);
    let contended = |work: &dyn Fn()| -> Duration {
        let mut holder = db.connect().unwrap_or_else(|e| panic!("{e}"));
        holder
            .batch_execute("BEGIN; LOCK TABLE parent IN ACCESS SHARE MODE")
            .unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = db.connect().unwrap_or_else(|e| panic!("{e}"));
        let flag = stop.clone();
        let reading = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut id: i64 = 1;
            while !flag.load(Ordering::SeqCst) {
                id = id * 7 % 1_000_003 + 1;
                let t = Instant::now();
                let _ = reader.query("SELECT payload FROM child WHERE id = $1", &[&id]);
                longest = longest.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(5));
            }
            longest
        });
        let release = std::thread::spawn(move || {
            std::thread::sleep(HOLD);
            let _ = holder.batch_execute("COMMIT");
        });
        std::thread::sleep(Duration::from_millis(50));
        work();
        let _ = release.join();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        reading.join().unwrap_or(Duration::MAX)
    };
    let fkctl_wait = contended(&|| {
        let (_, ok) = fkctl(&["drop", playbook, "--env", "bench", "--yes"], db);
        assert!(ok, "fkctl drop failed (the lock holder lets go after 2 s)");
    });
    exec(db, "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID");
    let naive_wait = contended(&|| {
        exec(db, "ALTER TABLE child DROP CONSTRAINT child_parent_fk");
    });
    let (f, n) = (
        fkctl_wait.as_secs_f64() * 1000.0,
        naive_wait.as_secs_f64() * 1000.0,
    );
    println!("contention fkctl {f:>8.1} ms  plain DROP {n:>8.1} ms   longest read of the child while DROP waits; target <= 200 ms (lock_timeout)");
    println!("RESULT {{\"bench\": \"drop_contention\", \"fkctl_ms\": {f:.1}, \"naive_ms\": {n:.1}, \"lock_timeout_ms\": 200}}");
}

struct Bench<'a> {
    db: &'a TestDatabase,
    size: &'a Size,
    playbook: &'a str,
    write_playbook: &'a dyn Fn(u32),
}

/// 1. Census: `fkctl orphans` vs the hand-written count in psql.
fn census(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    reset(db);
    let count = format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}");
    let _ = timed(db, &count);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..b.size.pairs {
        let (s, ok) = fkctl(&["orphans", pb, "--env", "bench"], db);
        assert!(ok, "fkctl orphans failed");
        ours.push(s);
        theirs.push(timed(db, &count));
    }
    result("census", median(ours), median(theirs), 1.1);
}

/// 2. Rollback: NOT VALID + archived purge + VALIDATE vs the hand-written
///    sequence, each on its own copy of the built data.
fn rollback(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..b.size.pairs {
        let run = fresh_copy(db);
        let (s, ok) = fkctl(&["rollback", pb, "--env", "bench", "--yes"], &run);
        assert!(ok, "fkctl rollback failed");
        ours.push(s);
        drop(run);
        let run = fresh_copy(db);
        theirs.push(timed(&run, &baseline_rollback()));
    }
    result("rollback", median(ours), median(theirs), 1.5);
}

/// 3. Write stall: the longest insert during fkctl's rollback vs during a validating ADD.
fn write_stall(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    reset(db);
    let fkctl_stall = longest_insert_during(db, CHILD_INSERT, || {
        let (_, ok) = fkctl(&["rollback", pb, "--env", "bench", "--yes"], db);
        assert!(ok);
    });
    reset(db);
    exec(db, &format!("DELETE FROM child c WHERE {NOT_EXISTS}"));
    let naive_stall = longest_insert_during(db, CHILD_INSERT, || {
        exec(db, "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id)");
    });
    let (f, n) = (
        fkctl_stall.as_secs_f64() * 1000.0,
        naive_stall.as_secs_f64() * 1000.0,
    );
    println!("stall      fkctl {f:>8.1} ms  naive ADD {n:>8.1} ms   ratio {:.3}   target <= 200 ms (lock_timeout) and <= 0.1x", f / n);
    println!("RESULT {{\"bench\": \"write_stall\", \"fkctl_ms\": {f:.1}, \"naive_ms\": {n:.1}, \"lock_timeout_ms\": 200, \"ratio\": {:.3}}}", f / n);
}

/// 5. Purge scans: sequential scans of the child during the rollback, small vs large batches.
fn purge_scans(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    let seq_scans = || {
        scalar(
            db,
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'child'",
        )
    };
    let mut scans = Vec::new();
    for batch in [100u32, 10_000] {
        (b.write_playbook)(batch);
        reset(db);
        std::thread::sleep(Duration::from_millis(1500)); // let the statistics of the reset settle
        let before = seq_scans();
        let (_, ok) = fkctl(&["rollback", pb, "--env", "bench", "--yes"], db);
        assert!(ok);
        std::thread::sleep(Duration::from_millis(1500));
        let after = seq_scans();
        scans.push(after - before);
        println!(
            "scans      batch_size {batch:>6}: {} sequential scan(s) of the child",
            after - before
        );
    }
    println!(
        "RESULT {{\"bench\": \"purge_scans\", \"batch_100\": {}, \"batch_10000\": {}}}",
        scans[0], scans[1]
    );
}

/// 4. Drop under contention, from "constraint present and valid".
fn drop_contention(b: &Bench) {
    (b.write_playbook)(1000);
    reset(b.db);
    let (_, ok) = fkctl(&["rollback", b.playbook, "--env", "bench", "--yes"], b.db);
    assert!(ok, "fkctl rollback failed");
    drop_under_contention(b.db, b.playbook);
}

/// Memory: peak RSS of fkctl orphans and rollback, with about 10x more orphans the second time.
fn peak_rss(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    let mut rss = Vec::new();
    for extra in [false, true] {
        reset(db);
        if extra {
            exec(db, "DELETE FROM parent WHERE id % 50 = 0");
        }
        let n = scalar(
            db,
            &format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}"),
        );
        let (_, ok, census_kib) = fkctl_measured(&["orphans", pb, "--env", "bench"], db);
        assert!(ok, "fkctl orphans failed");
        let (_, ok, rollback_kib) =
            fkctl_measured(&["rollback", pb, "--env", "bench", "--yes"], db);
        assert!(ok, "fkctl rollback failed");
        println!(
            "memory     {n:>8} orphans: peak RSS orphans {:.1} MiB, rollback {:.1} MiB   target < 50 MiB, flat",
            census_kib as f64 / 1024.0,
            rollback_kib as f64 / 1024.0
        );
        rss.push((n, census_kib, rollback_kib));
    }
    println!(
        "RESULT {{\"bench\": \"peak_rss\", \"orphans\": [{}, {}], \"orphans_cmd_kib\": [{}, {}], \"rollback_kib\": [{}, {}]}}",
        rss[0].0, rss[1].0, rss[0].1, rss[1].1, rss[0].2, rss[1].2
    );
}

/// Median seconds of `sql` on one connection, `pairs` times, with and
/// without user triggers (session_replication_role = replica skips them).
fn timed_with_and_without_triggers(
    db: &TestDatabase,
    setup: &str,
    sql: &str,
    pairs: usize,
) -> (f64, f64) {
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        for (role, into) in [("origin", &mut with), ("replica", &mut without)] {
            c.batch_execute(setup).unwrap_or_else(|e| panic!("{e}"));
            c.batch_execute(&format!("SET session_replication_role = {role}"))
                .unwrap_or_else(|e| panic!("{e}"));
            let t = Instant::now();
            c.batch_execute(sql).unwrap_or_else(|e| panic!("{e}"));
            into.push(t.elapsed().as_secs_f64());
            c.batch_execute("SET session_replication_role = origin")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    (median(with), median(without))
}

/// The loose replacement: what its capture trigger adds to a 1,000-row parent
/// DELETE, and how many child rows per second `fkctl cleanup` handles. It
/// leaves the replacement installed and parents deleted, so it runs last.
fn loose(b: &Bench) {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    reset(db);
    let (_, ok) = fkctl(&["rollback", pb, "--env", "bench", "--yes"], db);
    assert!(ok, "fkctl rollback failed");
    // The replacement of an ON DELETE CASCADE key, as in the seed case.
    exec(
        db,
        "ALTER TABLE child DROP CONSTRAINT child_parent_fk;
         ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE;",
    );
    let loose_pb = format!("{pb}.loose.yml");
    let text = std::fs::read_to_string(pb)
        .unwrap_or_else(|e| panic!("{e}"))
        .replace("columns: [id] }", "columns: [id] }, on_delete: cascade")
        + "loose: { batch_size: 1000, max_runtime: 1h, max_rows_per_run: 100000000 }\n";
    std::fs::write(&loose_pb, text).unwrap_or_else(|e| panic!("{e}"));
    let (_, ok) = fkctl(&["drop", &loose_pb, "--env", "bench", "--yes"], db);
    assert!(ok, "fkctl drop with loose: failed");
    let first = b.size.parents * 10;
    let (with, without) = timed_with_and_without_triggers(
        db,
        &format!("INSERT INTO parent SELECT g, 'x' FROM generate_series({first}, {first} + 999) g"),
        &format!("DELETE FROM parent WHERE id BETWEEN {first} AND {first} + 999"),
        b.size.pairs.max(5),
    );
    println!(
        "trigger    1,000-row parent DELETE: {:.2} ms with the capture trigger, {:.2} ms without ({:+.2} ms)",
        with * 1000.0,
        without * 1000.0,
        (with - without) * 1000.0
    );
    let queue = fkctl::kinds::foreign_key::loose::LooseObjects::new(
        &fkctl::sql::ident::Ident::from_catalog("fkctl"),
        "bench",
    )
    .queue()
    .quoted();
    exec(db, &format!("TRUNCATE {queue}"));
    // 2% of the parents, with their children (about 5 each).
    exec(db, "DELETE FROM parent WHERE id % 50 = 7");
    let children = scalar(
        db,
        &format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}"),
    );
    let (seconds, ok) = fkctl(&["cleanup", &loose_pb, "--env", "bench"], db);
    assert!(ok, "fkctl cleanup failed");
    let left = scalar(db, &format!("SELECT count(*) FROM {queue}"));
    assert_eq!(left, 0, "the cleanup left queued keys");
    println!(
        "cleanup    {children} child rows of 2% of the parents in {seconds:.2} s: {:.0} rows/s, each archived (the whole command)",
        children as f64 / seconds
    );
    println!(
        "RESULT {{\"bench\": \"loose\", \"delete_with_trigger_ms\": {:.2}, \"delete_without_ms\": {:.2}, \"cleanup_rows\": {children}, \"cleanup_s\": {seconds:.3}, \"rows_per_s\": {:.0}}}",
        with * 1000.0,
        without * 1000.0,
        children as f64 / seconds
    );
}

/// Fleets: drop then rollback over 32 small databases, one at a time vs 8
/// at a time; wall time, speed-up, and fkctl's cost per target.
fn fleet(_: &Bench) {
    const TARGETS: usize = 32;
    let dbs: Vec<TestDatabase> = (0..TARGETS)
        .map(|i| {
            let db = TestDatabase::create(&format!("bench_fleet_{i}")).unwrap_or_else(|e| panic!("{e}"));
            exec(
                &db,
                "CREATE TABLE parent (id bigint PRIMARY KEY);
                 CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint REFERENCES parent (id));
                 INSERT INTO parent SELECT generate_series(1, 1000);
                 INSERT INTO child SELECT g, 1 + g % 1000 FROM generate_series(1, 10000) g;
                 ANALYZE parent, child;",
            );
            db
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("fkctl-bench-fleet-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let run = |concurrency: usize, command: &str| -> f64 {
        let targets: String = (0..TARGETS)
            .map(|i| format!("      - {{ name: t{i:02}, dsn_env: BENCH_FLEET_{i} }}\n"))
            .collect();
        let playbook = dir.join(format!("fleet-{concurrency}.yml"));
        std::fs::write(&playbook, format!(
            "version: 1\nchange: bench-fleet\nsummary: s\nconstraint: {{ name: child_parent_id_fkey, table: child, columns: [parent_id], references: {{ table: parent, columns: [id] }} }}\nenvironments:\n  - name: production\n    rollout: {{ canary: 1, concurrency: {concurrency} }}\n    targets:\n{targets}"
        )).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
        cmd.args([
            command,
            &playbook.display().to_string(),
            "--env",
            "production",
            "--yes",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for (i, db) in dbs.iter().enumerate() {
            cmd.env(format!("BENCH_FLEET_{i}"), &db.dsn);
        }
        let started = Instant::now();
        let status = cmd.status().unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "fkctl {command} over the fleet failed");
        started.elapsed().as_secs_f64()
    };
    let mut results = Vec::new();
    for concurrency in [1, 8] {
        let drop = run(concurrency, "drop");
        let rollback = run(concurrency, "rollback");
        println!(
            "fleet      {TARGETS} databases, concurrency {concurrency}: drop {drop:.2} s, rollback {rollback:.2} s ({:.0} / {:.0} ms per target)",
            drop * 1000.0 / TARGETS as f64,
            rollback * 1000.0 / TARGETS as f64
        );
        results.push((drop, rollback));
    }
    println!(
        "RESULT {{\"bench\": \"fleet\", \"targets\": {TARGETS}, \"drop_s\": [{:.3}, {:.3}], \"rollback_s\": [{:.3}, {:.3}], \"speedup_drop\": {:.2}, \"speedup_rollback\": {:.2}}}",
        results[0].0, results[1].0, results[0].1, results[1].1,
        results[0].0 / results[1].0, results[0].1 / results[1].1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The benchmark's tables: `children` rows, 5% NULL keys, `orphans` of
/// them pointing at no parent, an index on the key, and a copy of the
/// orphans (`reset` puts them back between runs). fkctl's schema goes
/// too: an earlier measurement's journal and loose replacement would be
/// copied into every run's database (a rollback then drains and removes
/// the replacement, and the journal holds other runs' steps).
fn build(db: &TestDatabase, parents: i64, children: i64, orphans: i64) {
    build_child(db, parents, children, orphans, None);
}

/// [`build`], with the child range-partitioned on its NOT NULL id into
/// `partitions` tables of equal size when asked.
fn build_child(
    db: &TestDatabase,
    parents: i64,
    children: i64,
    orphans: i64,
    partitions: Option<i64>,
) {
    let t = Instant::now();
    let child = match partitions {
        None => "CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint, payload text);".to_string(),
        Some(n) => format!(
            "CREATE TABLE child (id bigint NOT NULL, parent_id bigint, payload text) PARTITION BY RANGE (id);
             DO $$ BEGIN FOR i IN 0..{n} - 1 LOOP
                 EXECUTE format('CREATE TABLE child_%s PARTITION OF child FOR VALUES FROM (%s) TO (%s)',
                                i, i * {step} + 1, (i + 1) * {step} + 1);
             END LOOP; END $$;",
            step = (children + n - 1) / n
        ),
    };
    exec(
        db,
        &format!(
            "DROP TABLE IF EXISTS child, parent, orphan_rows;
         DROP SCHEMA IF EXISTS fkctl CASCADE;
         CREATE TABLE parent (id bigint PRIMARY KEY, name text);
         {child}
         INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, {p}) g;
         INSERT INTO child SELECT g,
            CASE WHEN g % 20 = 0 THEN NULL
                 WHEN g % ({c} / {o}) = 1 AND g / ({c} / {o}) < {o} THEN {p} + g
                 ELSE 1 + (g::bigint * 7919) % {p} END,
            md5(g::text) FROM generate_series(1, {c}) g;
         CREATE INDEX ON child (parent_id);
         CREATE TABLE orphan_rows AS SELECT * FROM child c WHERE {NOT_EXISTS};",
            p = parents,
            c = children,
            o = orphans
        ),
    );
    // VACUUM refuses to run inside a multi-statement query's implicit transaction.
    exec(db, "VACUUM ANALYZE parent");
    exec(db, "VACUUM ANALYZE child");
    let found = scalar(db, "SELECT count(*) FROM orphan_rows");
    println!(
        "data built in {:.1} s ({children} children, {found} orphans{})",
        t.elapsed().as_secs_f64(),
        partitions.map_or(String::new(), |n| format!(", {n} partitions"))
    );
}

/// Purge linear in the orphans (`--only purge_linear`): in a 200,000-row
/// child with 2,000, 20,000 and 100,000 orphans, fkctl's purge (listing the
/// orphans and the archived batches, from the journal's step times) against
/// one plain `DELETE ... NOT EXISTS` timed on its connection. Each runs on
/// its own copy of the data, after a CHECKPOINT (the same full-page writes).
fn purge_linear(b: &Bench) {
    for orphans in [2_000i64, 20_000, 100_000] {
        build(b.db, 40_000, 200_000, orphans);
        let t = purge_against_delete(b);
        println!(
            "purge      200000 children {orphans:>6} orphans: {}   target < 2x at 20000",
            t.describe(orphans)
        );
        println!(
            "RESULT {{\"bench\": \"purge_linear\", \"children\": 200000, \"orphans\": {orphans}, {}}}",
            t.json()
        );
    }
}

/// The purge of a partitioned child (`--only purge_partitions`): 200,000
/// children with 10,000 orphans, range-partitioned on their NOT NULL id into
/// 4, 16 and 64 partitions, measured as `purge_linear` does. Each batch
/// looks an address up in the one partition its key leads to, so the time
/// per orphan should not grow with the number of partitions.
fn purge_partitions(b: &Bench) {
    const ORPHANS: i64 = 10_000;
    for partitions in [4i64, 16, 64] {
        build_child(b.db, 40_000, 200_000, ORPHANS, Some(partitions));
        let t = purge_against_delete(b);
        println!(
            "partitions {partitions:>3} partitions, 200000 children {ORPHANS} orphans: {}",
            t.describe(ORPHANS)
        );
        println!(
            "RESULT {{\"bench\": \"purge_partitions\", \"partitions\": {partitions}, \"children\": 200000, \"orphans\": {ORPHANS}, {}}}",
            t.json()
        );
    }
}

/// Medians of the three ways to purge the orphans, each on its own copy of
/// the built data.
struct PurgeTimes {
    /// fkctl's listing and archived batches (the journal's step times).
    fkctl: f64,
    /// One plain `DELETE ... NOT EXISTS`, which archives nothing.
    delete: f64,
    /// The same DELETE copying every row it removes into a table of the
    /// child's shape, in one statement: the least an archiving purge does.
    archived_delete: f64,
}

impl PurgeTimes {
    /// The three times, fkctl's ratio to each baseline, and its time per orphan.
    fn describe(&self, orphans: i64) -> String {
        format!(
            "fkctl list + archived batches {:.1} ms, plain DELETE {:.1} ms, ratio {:.2}, {:.2} us per orphan; one archiving DELETE {:.1} ms (fkctl {:.2}x)",
            self.fkctl * 1000.0,
            self.delete * 1000.0,
            self.fkctl / self.delete,
            self.fkctl * 1e6 / orphans as f64,
            self.archived_delete * 1000.0,
            self.fkctl / self.archived_delete
        )
    }

    /// The RESULT line's fields.
    fn json(&self) -> String {
        format!(
            "\"fkctl_s\": {:.4}, \"delete_s\": {:.4}, \"archived_delete_s\": {:.4}, \"ratio\": {:.3}",
            self.fkctl,
            self.delete,
            self.archived_delete,
            self.fkctl / self.delete
        )
    }
}

fn purge_against_delete(b: &Bench) -> PurgeTimes {
    let (db, pb) = (b.db, b.playbook);
    (b.write_playbook)(1000);
    let (mut ours, mut plain, mut archived) = (Vec::new(), Vec::new(), Vec::new());
    let timed_on = |sql: &str, setup: &str| {
        let run = fresh_copy(db);
        let mut c = run.connect().unwrap_or_else(|e| panic!("{e}"));
        c.batch_execute(setup).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        c.batch_execute(sql).unwrap_or_else(|e| panic!("{e}"));
        started.elapsed().as_secs_f64()
    };
    for _ in 0..b.size.pairs.min(3) {
        let run = fresh_copy(db);
        let (_, ok) = fkctl(&["rollback", pb, "--env", "bench", "--yes"], &run);
        assert!(ok, "fkctl rollback failed");
        let ms = scalar(
            &run,
            "SELECT (sum(extract(epoch FROM finished_at - started_at)) * 1000000)::bigint FROM fkctl.steps WHERE step IN ('collect-orphans', 'purge-orphans') AND run_id = (SELECT max(run_id) FROM fkctl.runs WHERE operation = 'rollback')",
        );
        ours.push(ms as f64 / 1e6);
        if std::env::var_os("FKCTL_BENCH_STEPS").is_some() {
            let steps: String = run.connect().unwrap_or_else(|e| panic!("{e}")).query_one("SELECT string_agg(step || ' ' || round(extract(epoch FROM finished_at - started_at) * 1000) || ' ms', ', ' ORDER BY id) FROM fkctl.steps WHERE run_id = (SELECT max(run_id) FROM fkctl.runs WHERE operation = 'rollback')", &[]).unwrap_or_else(|e| panic!("{e}")).get(0);
            println!("steps      {steps}");
        }
        drop(run);
        plain.push(timed_on(
            &format!("DELETE FROM child c WHERE {NOT_EXISTS}"),
            "SELECT 1",
        ));
        archived.push(timed_on(
            &format!("WITH removed AS (DELETE FROM child c WHERE {NOT_EXISTS} RETURNING c.*) INSERT INTO removed_rows SELECT * FROM removed"),
            "CREATE TABLE removed_rows AS SELECT * FROM child WITH NO DATA",
        ));
    }
    PurgeTimes {
        fkctl: median(ours),
        delete: median(plain),
        archived_delete: median(archived),
    }
}

/// One point of the scaling curve.
struct Point {
    children: i64,
    orphans: i64,
    census: (f64, f64),
    rollback: (f64, f64),
    rss_kib: i64,
}

/// The scaling curve (`--only curve`): census and rollback against the
/// baseline at 200k, 2M and 20M children (`--curve-rows A,B,C`), with 1,000
/// and 100,000 orphans; a table, RESULT lines, and docs/scaling.svg.
fn curve(b: &Bench) {
    let args: Vec<String> = std::env::args().collect();
    let rows: Vec<i64> = args
        .iter()
        .position(|a| a == "--curve-rows")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![200_000, 2_000_000, 20_000_000]);
    let (db, pb) = (b.db, b.playbook);
    let mut points = Vec::new();
    for &children in &rows {
        for orphans in [1_000i64, 100_000] {
            if orphans * 2 > children {
                continue;
            }
            build(db, (children / 5).max(1000), children, orphans);
            (b.write_playbook)(1000);
            let count = format!("SELECT count(*) FROM child c WHERE {NOT_EXISTS}");
            let pairs = b.size.pairs.min(3);
            let (mut cf, mut cb, mut rf, mut rb, mut rss) = (vec![], vec![], vec![], vec![], 0);
            reset(db);
            for _ in 0..pairs {
                let (s, ok, kib) = fkctl_measured(&["orphans", pb, "--env", "bench"], db);
                assert!(ok, "fkctl orphans failed");
                cf.push(s);
                rss = rss.max(kib);
                cb.push(timed(db, &count));
            }
            for _ in 0..pairs {
                let run = fresh_copy(db);
                let (s, ok, kib) =
                    fkctl_measured(&["rollback", pb, "--env", "bench", "--yes"], &run);
                assert!(ok, "fkctl rollback failed");
                rf.push(s);
                rss = rss.max(kib);
                drop(run);
                let run = fresh_copy(db);
                rb.push(timed(&run, &baseline_rollback()));
            }
            let p = Point {
                children,
                orphans,
                census: (median(cf), median(cb)),
                rollback: (median(rf), median(rb)),
                rss_kib: rss,
            };
            println!(
                "curve      {children:>9} children {orphans:>6} orphans: census {:.3}/{:.3} s ({:.2}x), rollback {:.3}/{:.3} s ({:.2}x), peak RSS {:.1} MiB",
                p.census.0, p.census.1, p.census.0 / p.census.1,
                p.rollback.0, p.rollback.1, p.rollback.0 / p.rollback.1,
                p.rss_kib as f64 / 1024.0
            );
            println!(
                "RESULT {{\"bench\": \"curve\", \"children\": {children}, \"orphans\": {orphans}, \"census_s\": [{:.4}, {:.4}], \"rollback_s\": [{:.4}, {:.4}], \"rss_kib\": {}}}",
                p.census.0, p.census.1, p.rollback.0, p.rollback.1, p.rss_kib
            );
            points.push(p);
        }
    }
    write_plot(&points);
}

fn write_plot(points: &[Point]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scaling.svg");
    std::fs::write(path, scaling_svg(points)).unwrap_or_else(|e| panic!("{e}"));
    println!("curve      plot written to docs/scaling.svg");
}

/// `--plot-from LOG`: docs/scaling.svg drawn again from the curve's RESULT
/// lines in a saved benchmark output, measuring nothing (a later `--only
/// curve --curve-rows ...` run overwrites the plot with its own points).
fn plot_from(log: &str) {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    let points: Vec<Point> = text
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|v| v["bench"] == "curve")
        .map(|v| {
            let pair = |key: &str| {
                let at = |i: usize| v[key][i].as_f64().unwrap_or(f64::NAN);
                (at(0), at(1))
            };
            Point {
                children: v["children"].as_i64().unwrap_or(0),
                orphans: v["orphans"].as_i64().unwrap_or(0),
                census: pair("census_s"),
                rollback: pair("rollback_s"),
                rss_kib: v["rss_kib"].as_i64().unwrap_or(0),
            }
        })
        .collect();
    assert!(!points.is_empty(), "no curve RESULT line in {log}");
    write_plot(&points);
}

/// The curve as an SVG: ratio to the baseline (y) per table size (x, log
/// scale), one line per (command, orphans), the targets dashed.
fn scaling_svg(points: &[Point]) -> String {
    use std::fmt::Write;
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 60.0, 40.0, 200.0);
    let xs: Vec<f64> = points.iter().map(|p| (p.children as f64).log10()).collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let ratios = points
        .iter()
        .flat_map(|p| [p.census.0 / p.census.1, p.rollback.0 / p.rollback.1]);
    let ymax = ratios.fold(1.6f64, f64::max).ceil().max(2.0);
    let x = |v: f64| left + (v - xmin) / (xmax - xmin).max(1e-9) * (w - left - right);
    let y = |r: f64| h - bottom - r / ymax * (h - bottom - top);
    let mut out = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"15\">fkctl / hand-written SQL (ratio; lower is better)</text>\n");
    for tick in 0..=(ymax * 2.0) as i32 {
        let r = f64::from(tick) / 2.0;
        let _ = writeln!(out, "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{r:.1}</text>", w - right, y(r), y(r), left - 6.0, y(r) + 4.0);
    }
    for (target, label) in [
        (1.1, "census target (large)"),
        (1.2, "rollback target (large)"),
    ] {
        let _ = writeln!(out, "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"5,4\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#666\">{label} {target}</text>", w - right, y(target), y(target), w - right + 6.0, y(target) + 4.0);
    }
    let mut sizes: Vec<i64> = points.iter().map(|p| p.children).collect();
    sizes.dedup();
    for c in sizes {
        let px = x((c as f64).log10());
        let label = if c >= 1_000_000 {
            format!("{}M", c / 1_000_000)
        } else {
            format!("{}k", c / 1000)
        };
        let _ = writeln!(
            out,
            "<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{label} children</text>",
            h - bottom + 20.0
        );
    }
    let series: [(&str, &str, i64, bool); 4] = [
        ("census, 1k orphans", "#1f77b4", 1_000, true),
        ("census, 100k orphans", "#6baed6", 100_000, true),
        ("rollback, 1k orphans", "#d62728", 1_000, false),
        ("rollback, 100k orphans", "#fc9272", 100_000, false),
    ];
    for (i, (label, color, orphans, census)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .filter(|p| p.orphans == *orphans)
            .map(|p| {
                let r = if *census {
                    p.census.0 / p.census.1
                } else {
                    p.rollback.0 / p.rollback.1
                };
                format!("{:.1},{:.1}", x((p.children as f64).log10()), y(r))
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\" points=\"{}\"/>",
            pts.join(" ")
        );
        for p in &pts {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                out,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"3.5\" fill=\"{color}\"/>"
            );
        }
        let ly = top + 20.0 * i as f64 + 40.0;
        let _ = writeln!(out, "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2.5\"/><text x=\"{}\" y=\"{}\">{label}</text>", w - right + 6.0, w - right + 30.0, w - right + 36.0, ly + 4.0);
    }
    out.push_str("</svg>\n");
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(log) = args
        .iter()
        .position(|a| a == "--plot-from")
        .and_then(|i| args.get(i + 1))
    {
        plot_from(log);
        return;
    }
    let size = parse_args();
    println!(
        "fkctl e2e benchmark: {} parents, {} children, {} orphans, 5% NULL keys, {} pairs",
        size.parents, size.children, size.orphans, size.pairs
    );
    let db = TestDatabase::create("bench").unwrap_or_else(|e| panic!("{e}"));
    // The curve and the purge measurements build their own tables.
    let builds_own =
        |name: &String| matches!(name.as_str(), "curve" | "purge_linear" | "purge_partitions");
    if !size
        .only
        .as_ref()
        .is_some_and(|names| names.iter().all(builds_own))
    {
        build(&db, size.parents, size.children, size.orphans);
    }
    let dir = std::env::temp_dir().join(format!("fkctl-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let playbook = dir.join("bench.yml");
    let write_playbook = |batch: u32| {
        std::fs::write(&playbook, format!(
            "version: 1\nchange: bench\nsummary: bench\nconstraint: {{ name: child_parent_fk, table: child, columns: [parent_id], references: {{ table: parent, columns: [id] }} }}\nenvironments: [{{ name: bench, dsn_env: FKCTL_BENCH_UNUSED }}]\nsafety: {{ lock_timeout: 200ms, lock_retries: 30, max_orphans_before_drop: 100000000 }}\nrollback: {{ batch_size: {batch}, max_orphans: 100000000 }}\n"
        )).unwrap_or_else(|e| panic!("{e}"));
    };
    write_playbook(1000);
    let pb = playbook.display().to_string();

    let bench = Bench {
        db: &db,
        size: &size,
        playbook: &pb,
        write_playbook: &write_playbook,
    };
    type Measurement = fn(&Bench);
    let all: [(&str, Measurement); 11] = [
        ("census", census),
        ("rollback", rollback),
        ("write_stall", write_stall),
        ("purge_scans", purge_scans),
        ("drop_contention", drop_contention),
        ("peak_rss", peak_rss),
        ("fleet", fleet),
        ("loose", loose),
        // Before the curve: its 20M-row tables leave the server writing
        // for minutes after, which measured the purge 1.5x slower.
        ("purge_linear", purge_linear),
        ("purge_partitions", purge_partitions),
        ("curve", curve),
    ];
    for (name, run) in all {
        // The curve builds tables of up to 20M rows, and the purge
        // measurement rebuilds the data: only when asked for.
        let on_request = matches!(name, "curve" | "purge_linear" | "purge_partitions");
        if size.wants(name) && (!on_request || size.only.is_some()) {
            run(&bench);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
