//! A partitioned child (the real-world shape: a time-partitioned payment table
//! referencing customer), on whatever PostgreSQL the tests run against (CI
//! runs them on 15 and on 18). The drop reaches every partition; the rollback
//! brings the constraint back without a validating scan under a lock that
//! blocks writes: leaf by leaf on PostgreSQL < 18, directly on 18+.

mod common;

use common::*;
use fkctl::plan::{rollback_plan, LockMode, Observed, Step};
use fkctl::testkit::TestDatabase;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Two levels of partitioning, a leaf whose attnums differ from its parent's
// (a dropped column before it was attached) and a mixed-case leaf name.
const SCHEMA: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.customer (id int PRIMARY KEY);
INSERT INTO shop.customer SELECT g FROM generate_series(1, 2000) g;
CREATE TABLE shop.payment (id bigint NOT NULL, customer_id int, region text NOT NULL, paid_on date NOT NULL)
    PARTITION BY RANGE (paid_on);
CREATE TABLE shop.payment_2025 PARTITION OF shop.payment FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE shop.payment_2026 PARTITION OF shop.payment FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY LIST (region);
CREATE TABLE shop."Payment 2026 EU" PARTITION OF shop.payment_2026 FOR VALUES IN ('eu');
CREATE TABLE shop.payment_2026_rest (junk int, id bigint NOT NULL, customer_id int, region text NOT NULL, paid_on date NOT NULL);
ALTER TABLE shop.payment_2026_rest DROP COLUMN junk;
ALTER TABLE shop.payment_2026 ATTACH PARTITION shop.payment_2026_rest DEFAULT;
CREATE INDEX ON shop.payment (customer_id);
ALTER TABLE shop.payment ADD CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customer (id);
INSERT INTO shop.payment
SELECT g, CASE WHEN g % 17 = 0 THEN NULL ELSE 1 + g % 2000 END, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END,
       date '2025-06-01' + (g % 400)
  FROM generate_series(1, 40000) g;
ANALYZE shop.customer, shop.payment;
"#;

const LEAVES: [&str; 3] = [
    "shop.payment_2025",
    "shop.\"Payment 2026 EU\"",
    "shop.payment_2026_rest",
];

fn playbook_text() -> String {
    format!(
        "{}safety: {{ lock_timeout: 200ms, lock_retries: 30 }}\nrollback: {{ orphans: archive-delete, batch_size: 500, max_orphans: 100000 }}\n",
        playbook(
            "  name: payment_customer_fk\n  table: shop.payment\n  columns: [customer_id]\n  references: { table: shop.customer, columns: [id] }\n  on_delete: no_action"
        )
    )
}

fn setup(tag: &str) -> (TestDatabase, TempDir, String) {
    let db = database(tag);
    exec(&db, SCHEMA);
    let dir = TempDir::new(tag);
    let path = dir.write("payment.yml", &playbook_text());
    (db, dir, path.display().to_string())
}

fn run(db: &TestDatabase, args: &[&str]) -> std::process::Output {
    fkctl_env(args, &[("FKCTL_TEST_ONLY_DSN", db.dsn.as_str())])
}

fn version_num(db: &TestDatabase) -> i64 {
    scalar_i64(db, "SELECT current_setting('server_version_num')::int8")
}

fn copies(db: &TestDatabase, condition: &str) -> i64 {
    scalar_i64(
        db,
        &format!("SELECT count(*) FROM pg_constraint WHERE conname = 'payment_customer_fk' AND {condition}"),
    )
}

fn orphans(db: &TestDatabase) -> i64 {
    scalar_i64(db, "SELECT count(*) FROM shop.payment p WHERE p.customer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM shop.customer c WHERE c.id = p.customer_id)")
}

fn rollback_plan_json(db: &TestDatabase, path: &str) -> serde_json::Value {
    let out = run(
        db,
        &[
            "plan",
            path,
            "--rollback",
            "--env",
            "test",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
}

fn step_ids(plan: &serde_json::Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Inserts valid rows into the partitioned child until told to stop; returns
/// the longest single insert and how many rows went in.
fn writer(db: &TestDatabase, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(Duration, i64)> {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut n = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            // Customer 1 is never deleted; the rows land in every leaf in turn.
            let region = if n % 2 == 0 { "eu" } else { "us" };
            let day = if n % 3 == 0 {
                "2025-07-01"
            } else {
                "2026-03-01"
            };
            client
                .execute(
                    "INSERT INTO shop.payment VALUES (1000000 + $1::int8, 1, $2::text, $3::text::date)",
                    &[&n, &region, &day],
                )
                .unwrap_or_else(|e| panic!("writer: {e}"));
            longest = longest.max(started.elapsed());
            n += 1;
            std::thread::sleep(Duration::from_millis(3));
        }
        (longest, n)
    })
}

#[test]
fn drop_then_rollback_of_a_partitioned_child_keeps_writes_flowing() {
    let (db, _dir, path) = setup("part_roll");
    let version = version_num(&db);
    assert_eq!(
        copies(&db, "true"),
        1 + 1 + 3,
        "parent, sub-partitioned table, 3 leaves"
    );

    // The change request, written before the drop, shows the rollback's path.
    let out = run(&db, &["change-request", &path, "--env", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let request = stdout(&out);
    if version < 180000 {
        assert!(
            request.contains("**Path:** partition by partition"),
            "{request}"
        );
        assert!(request.contains(
            r#"ALTER TABLE "shop"."Payment 2026 EU" VALIDATE CONSTRAINT "payment_customer_fk";"#
        ));
    } else {
        assert!(
            request.contains("**Path:** on the partitioned table directly"),
            "{request}"
        );
    }

    let out = run(&db, &["drop", &path, "--env", "test", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(copies(&db, "true"), 0, "the drop reaches every partition");

    exec(&db, "DELETE FROM shop.customer WHERE id % 10 = 0");
    let orphaned = orphans(&db);
    assert!(orphaned > 0);
    let rows_before = scalar_i64(&db, "SELECT count(*) FROM shop.payment");

    let plan = rollback_plan_json(&db, &path);
    let ids = step_ids(&plan);
    let notes = plan["notes"].to_string();
    if version < 180000 {
        assert_eq!(
            ids.iter()
                .filter(|i| *i == "add-not-valid-partition")
                .count(),
            3
        );
        assert_eq!(ids.iter().filter(|i| *i == "validate-partition").count(), 3);
        assert_eq!(ids.last().map(String::as_str), Some("attach-constraint"));
        assert!(notes.contains("Path: partition by partition"), "{notes}");
    } else {
        // The census comes first (before any change), then the one ADD.
        assert_eq!(ids.first().map(String::as_str), Some("collect-orphans"));
        assert_eq!(ids.iter().filter(|i| *i == "add-not-valid").count(), 1);
        assert_eq!(ids.last().map(String::as_str), Some("validate-constraint"));
        assert!(
            notes.contains("Path: on the partitioned table directly"),
            "{notes}"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(&db, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let out = run(
        &db,
        &[
            "rollback", &path, "--env", "test", "--yes", "--output", "json",
        ],
    );
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (longest, inserted) = writing.join().unwrap_or_else(|_| panic!("writer panicked"));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary["outcome"], "restored");
    assert_eq!(summary["orphans_found"].as_i64(), Some(orphaned));
    assert!(inserted > 10, "the writer kept writing ({inserted} rows)");
    // lock_timeout is 200ms: a write waits at most that long behind a DDL
    // that is queued for a lock, and DDL that holds one is catalog-only.
    assert!(
        longest < Duration::from_millis(700),
        "a write waited {longest:?} during the rollback"
    );

    assert_eq!(
        copies(
            &db,
            "conrelid = 'shop.payment'::regclass AND convalidated AND conparentid = 0"
        ),
        1
    );
    for leaf in LEAVES {
        assert_eq!(
            copies(
                &db,
                &format!(
                    "conrelid = '{}'::regclass AND convalidated AND conparentid <> 0",
                    leaf.replace('\'', "''")
                )
            ),
            1,
            "{leaf} carries an attached, validated copy"
        );
    }
    assert_eq!(copies(&db, "true"), 5, "no stray copies");
    assert_eq!(orphans(&db), 0);
    let archived = scalar_i64(&db, "SELECT count(*) FROM fkctl.archive");
    assert_eq!(archived, orphaned);
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM shop.payment") + archived,
        rows_before + inserted,
        "every row is in its table or in the archive"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(DISTINCT source_table) FROM fkctl.archive"
        ),
        3,
        "the purge reached every leaf (the archive names each row's partition)"
    );
}

fn query_rows(client: &mut postgres::Client, sql: &str) -> Vec<postgres::Row> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
}

fn seq_scans(client: &mut postgres::Client) -> Vec<(String, i64)> {
    client
        .batch_execute("SELECT pg_stat_force_next_flush(); SELECT pg_stat_clear_snapshot();")
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(50));
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .unwrap_or_else(|e| panic!("{e}"));
    query_rows(
        client,
        "SELECT relid::regclass::text, seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE schemaname = 'shop' AND relname <> 'customer' ORDER BY 1",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn run_step(client: &mut postgres::Client, step: &Step) {
    let sql = step.statements.join(";\n");
    client
        .batch_execute(&format!("BEGIN;\n{sql};\nCOMMIT"))
        .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", step.title));
}

/// The per-partition path, exercised on every server version (on 18 the
/// planner is told the server is 17): once every leaf holds a validated
/// copy, the ADD on the partitioned table scans nothing, and takes exactly
/// the locks the plan declares.
#[test]
fn attaching_validated_copies_scans_nothing_and_takes_the_declared_locks() {
    let (db, _dir, path) = setup("part_attach");
    exec(
        &db,
        "ALTER TABLE shop.payment DROP CONSTRAINT payment_customer_fk",
    );
    let playbook = fkctl::playbook::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let mut inspection =
        fkctl::catalog::inspect(&mut client, &playbook, "test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inspection.leaves.len(), 3);
    inspection.server.version_num = inspection.server.version_num.min(170000);
    let observed = Observed {
        environment: "test",
        inspection: &inspection,
    };
    let plan = rollback_plan(&playbook, Some(&observed));
    for step in plan
        .steps
        .iter()
        .filter(|s| matches!(s.id, "add-not-valid-partition" | "validate-partition"))
    {
        run_step(&mut client, step);
    }
    let attach = plan
        .steps
        .iter()
        .find(|s| s.id == "attach-constraint")
        .unwrap_or_else(|| panic!("no attach step"));
    let before_check = attach
        .before
        .as_ref()
        .map(|c| c.sql.clone())
        .unwrap_or_default();
    assert_eq!(
        scalar_i64(&db, &before_check),
        0,
        "every leaf holds a validated copy"
    );

    let scans_before = seq_scans(&mut client);
    assert_eq!(scans_before.len(), 5);
    let sql = attach.statements.join(";\n");
    client
        .batch_execute(&format!("BEGIN;\n{sql}"))
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    // The strongest lock this transaction holds on each relation.
    let held: Vec<(String, String)> = query_rows(
        &mut client,
        "SELECT c.oid::regclass::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE l.pid = pg_backend_pid() AND l.granted AND c.relkind IN ('r', 'p')
            AND c.relnamespace = 'shop'::regnamespace",
    )
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    client
        .batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let rank = |mode: &str| {
        [
            "AccessShareLock",
            "RowShareLock",
            "RowExclusiveLock",
            "ShareUpdateExclusiveLock",
            "ShareLock",
            "ShareRowExclusiveLock",
            "ExclusiveLock",
            "AccessExclusiveLock",
        ]
        .iter()
        .position(|m| *m == mode)
        .unwrap_or(usize::MAX)
    };
    let strongest = |relation: &str| {
        held.iter()
            .filter(|(r, _)| r == relation)
            .map(|(_, m)| m.as_str())
            .max_by_key(|m| rank(m))
            .unwrap_or("none")
            .to_string()
    };
    assert_eq!(attach.locks[0].mode, LockMode::ShareRowExclusive);
    assert_eq!(attach.locks[1].mode, LockMode::AccessExclusive);
    for table in ["shop.payment", "shop.payment_2026"]
        .iter()
        .chain(LEAVES.iter())
    {
        assert_eq!(
            strongest(table),
            "ShareRowExclusiveLock",
            "{table}: {held:?}"
        );
    }
    assert_eq!(
        strongest("shop.customer"),
        "AccessExclusiveLock",
        "{held:?}"
    );

    let scans_after = seq_scans(&mut client);
    assert_eq!(
        scans_before, scans_after,
        "the ADD on the partitioned table scanned a partition"
    );
    let after_check = attach
        .after
        .as_ref()
        .map(|c| c.sql.clone())
        .unwrap_or_default();
    assert_eq!(scalar_i64(&db, &after_check), 0, "every copy is attached");

    // The control: without the copies, the same ADD does scan every leaf.
    exec(
        &db,
        "ALTER TABLE shop.payment DROP CONSTRAINT payment_customer_fk",
    );
    let scans_before = seq_scans(&mut client);
    exec(&db, &attach.statements[2]);
    let scans_after = seq_scans(&mut client);
    let scanned = scans_before
        .iter()
        .zip(&scans_after)
        .filter(|(b, a)| a.1 > b.1)
        .count();
    assert_eq!(
        scanned, 3,
        "a validating ADD without copies scans each leaf: {scans_before:?} {scans_after:?}"
    );
}

/// A run killed after some leaves got their copy: the next run sees them in
/// the catalog, skips them, and finishes.
#[test]
fn a_half_done_per_partition_rollback_is_continued_and_a_stray_copy_is_refused() {
    let (db, _dir, path) = setup("part_resume");
    exec(
        &db,
        "ALTER TABLE shop.payment DROP CONSTRAINT payment_customer_fk",
    );
    // A copy with another definition under the same name stops the rollback.
    exec(&db, "ALTER TABLE shop.payment_2025 ADD CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customer (id) ON DELETE CASCADE NOT VALID");
    let out = run(&db, &["rollback", &path, "--env", "test", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out)
            .contains("shop.payment_2025 already has a constraint named payment_customer_fk"),
        "{}",
        stderr(&out)
    );
    exec(
        &db,
        "ALTER TABLE shop.payment_2025 DROP CONSTRAINT payment_customer_fk",
    );
    if version_num(&db) >= 180000 {
        // 18 takes the direct path; the stray-copy refusal above is what applies there too.
        return;
    }
    // As a killed run leaves it: one leaf NOT VALID, one validated.
    exec(&db, "ALTER TABLE shop.payment_2025 ADD CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customer (id) NOT VALID;
               ALTER TABLE shop.payment_2026_rest ADD CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customer (id) NOT VALID;
               ALTER TABLE shop.payment_2026_rest VALIDATE CONSTRAINT payment_customer_fk;");
    let plan = rollback_plan_json(&db, &path);
    let done: Vec<String> = plan["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"]["state"] == "already_done")
        .filter_map(|s| s["title"].as_str().map(str::to_string))
        .collect();
    assert_eq!(done.len(), 3, "{done:?}");
    let out = run(&db, &["rollback", &path, "--env", "test", "--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).matches("already done").count(),
        3,
        "{}",
        stdout(&out)
    );
    assert_eq!(
        copies(
            &db,
            "convalidated AND (conparentid <> 0 OR conrelid = 'shop.payment'::regclass)"
        ),
        5
    );
}

/// The purge's batches find a partitioned child's rows by one TID lookup
/// per listed address and partition, never by testing each row against the
/// whole batch (a join filter or `ctid = ANY` as a filter: quadratic in the
/// batch, 3.5 s for 5,000 rows in 4 partitions) nor by reading a partition
/// whole. Checked with EXPLAIN on the plan's own statements, for both
/// policies that change rows, after the list of a real rollback's scan.
#[test]
fn partitioned_purge_batches_look_rows_up_by_address_never_by_scanning_or_comparing() {
    for policy in ["archive-delete", "nullify"] {
        let (db, dir, _) = setup(&format!("part_tid_{}", policy.replace('-', "_")));
        let path = dir.write(
            "nullify.yml",
            &playbook_text().replace("archive-delete", policy),
        );
        let path = path.display().to_string();
        let out = run(&db, &["drop", &path, "--env", "test", "--yes"]);
        assert!(out.status.success(), "{}", stderr(&out));
        exec(&db, "DELETE FROM shop.customer WHERE id % 10 = 0");
        assert!(orphans(&db) > 1000, "several batches of 500");
        let plan = rollback_plan_json(&db, &path);
        let statements = |id: &str| step_statements(&plan, id);
        let batch_id = if policy == "nullify" {
            "nullify-orphans"
        } else {
            "purge-orphans"
        };
        let batch = statements(batch_id)
            .into_iter()
            .rfind(|s| s.starts_with("WITH"))
            .unwrap_or_default();
        assert!(!batch.is_empty(), "no {batch_id} step in {plan}");
        let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
        for id in ["collect-orphans", "prepare-archive"] {
            for statement in statements(id) {
                c.batch_execute(&statement)
                    .unwrap_or_else(|e| panic!("{e}\n{statement}"));
            }
        }
        let text = explain_batch(&mut c, &batch, "payment_customer_fk");
        for leaf in ["payment_2025", "Payment 2026 EU", "payment_2026_rest"] {
            assert!(
                text.contains(&format!("Tid Scan on \"{leaf}\""))
                    || text.contains(&format!("Tid Scan on {leaf}")),
                "{policy}: no TID lookup in {leaf}:\n{text}"
            );
            assert!(
                !text.contains(&format!("Seq Scan on {leaf}"))
                    && !text.contains(&format!("Seq Scan on \"{leaf}\"")),
                "{policy}: a batch must never read a partition whole:\n{text}"
            );
        }
        assert!(
            !text.contains("Join Filter") && !text.contains("= ANY"),
            "{policy}: no row may be compared with the whole batch:\n{text}"
        );
        // Each address is looked up in the one partition its key values
        // lead to, not in all three (nullify looks twice: to lock the row,
        // then to change it).
        let per_address: u64 = if policy == "nullify" { 2 } else { 1 };
        let listed: i64 = c
            .query_one(
                "SELECT size FROM pg_temp.fkctl_orphan_rows WHERE batch = 0",
                &[],
            )
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        let analyzed = explain_analyze_batch(&mut c, &batch, "payment_customer_fk");
        let lookups = tid_lookups(&analyzed);
        assert!(
            lookups > 0 && lookups <= per_address * listed as u64,
            "{policy}: {lookups} TID lookups for a batch of {listed} addresses:\n{analyzed}"
        );
    }
}

// Partitioned by a nullable column (rows with no kind go to a partition of
// their own), then, for kind 'a', by hash of a NOT NULL id.
const NULLABLE_KEY_SCHEMA: &str = r#"
CREATE SCHEMA feed;
CREATE TABLE feed.account (id int PRIMARY KEY);
INSERT INTO feed.account SELECT g FROM generate_series(1, 100) g;
CREATE TABLE feed.event (id bigint NOT NULL, account_id int, kind text) PARTITION BY LIST (kind);
CREATE TABLE feed.event_a PARTITION OF feed.event FOR VALUES IN ('a') PARTITION BY HASH (id);
CREATE TABLE feed.event_a0 PARTITION OF feed.event_a FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE feed.event_a1 PARTITION OF feed.event_a FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE feed.event_none PARTITION OF feed.event FOR VALUES IN (NULL);
CREATE TABLE feed.event_other PARTITION OF feed.event DEFAULT;
INSERT INTO feed.event
SELECT g, 1 + g % 130, CASE g % 3 WHEN 0 THEN 'a' WHEN 1 THEN NULL ELSE 'b' END
  FROM generate_series(1, 3000) g;
ANALYZE feed.account, feed.event;
"#;

/// Only NOT NULL key columns guide a batch to its partitions: a row whose
/// nullable key is NULL would match no `key = value` and stay behind. Here
/// the list's key is nullable and left out, the hash key below it is used,
/// and every orphan, NULL kind included, is archived and gone.
#[test]
fn a_nullable_partition_key_is_not_used_to_find_rows_and_every_orphan_goes() {
    every_orphan_goes_though_the_list_key_holds_nulls("part_nullable_key", "");
}

/// PostgreSQL 18 takes a NOT NULL constraint NOT VALID while NULLs remain
/// (`attnotnull` is then set): such a column is left out as well.
#[test]
fn a_not_valid_not_null_key_is_not_used_to_find_rows() {
    let db = database("part_nn_probe");
    if version_num(&db) < 180_000 {
        eprintln!("skipped: NOT VALID NOT NULL constraints need PostgreSQL 18");
        return;
    }
    drop(db);
    every_orphan_goes_though_the_list_key_holds_nulls(
        "part_nn_not_valid",
        "ALTER TABLE feed.event ADD CONSTRAINT event_kind_not_null NOT NULL kind NOT VALID;",
    );
}

fn every_orphan_goes_though_the_list_key_holds_nulls(tag: &str, then: &str) {
    let db = database(tag);
    exec(&db, NULLABLE_KEY_SCHEMA);
    exec(&db, then);
    let dir = TempDir::new(tag);
    let path = dir.write(
        "event.yml",
        &format!(
            "{}safety: {{ lock_timeout: 200ms, lock_retries: 30 }}\nrollback: {{ orphans: archive-delete, batch_size: 100, max_orphans: 100000 }}\n",
            playbook("  name: event_account_fk\n  table: feed.event\n  columns: [account_id]\n  references: { table: feed.account, columns: [id] }\n  on_delete: no_action")
        ),
    );
    let path = path.display().to_string();
    let orphans = |db: &TestDatabase, kind: &str| {
        scalar_i64(db, &format!("SELECT count(*) FROM feed.event e WHERE {kind} AND NOT EXISTS (SELECT 1 FROM feed.account a WHERE a.id = e.account_id)"))
    };
    let (before, before_null) = (orphans(&db, "true"), orphans(&db, "kind IS NULL"));
    assert!(
        before_null > 100,
        "orphans with no kind, in several batches"
    );
    let plan = rollback_plan_json(&db, &path);
    let collect = step_statements(&plan, "collect-orphans").join("\n");
    assert!(
        collect.contains("fk.\"id\" AS key_1") && !collect.contains("\"kind\""),
        "the hash key guides the batches, the nullable list key does not:\n{collect}"
    );
    let out = run(&db, &["rollback", &path, "--env", "test", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(orphans(&db, "true"), 0);
    let archived = scalar_i64(
        &db,
        "SELECT count(*) FROM fkctl.archive WHERE constraint_name = 'event_account_fk' AND action = 'delete'",
    );
    assert_eq!(archived, before, "every orphan archived once");
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archive WHERE row_data->>'kind' IS NULL"
        ),
        before_null
    );
}

/// VALIDATE is the last check, leaf by leaf (PostgreSQL < 18) as on the
/// whole table (18): an orphan it finds sends the rollback back through
/// the listing and the purge, which archives it, and VALIDATE runs again.
#[test]
fn an_orphan_written_after_the_census_is_purged_when_validate_finds_it() {
    let (db, _dir, path) = setup("part_late_orphan");
    let out = run(&db, &["drop", &path, "--env", "test", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&db, "DELETE FROM shop.customer WHERE id % 10 = 0");
    let listed = orphans(&db);
    write_an_orphan_at_the_first_validate(
        &db,
        "INSERT INTO shop.payment VALUES (999999, 999999, 'us', date '2026-03-01')",
    );
    let out = run(&db, &["rollback", &path, "--env", "test", "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}\n{}", stderr(&out));
    assert!(
        said.contains("round 2: VALIDATE found orphaned rows the purge did not handle"),
        "{said}"
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM public.late_written"),
        1
    );
    assert_eq!(orphans(&db), 0);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archive WHERE row_data->>'id' = '999999'"
        ),
        1,
        "the late orphan is archived"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archive WHERE action = 'delete'"
        ),
        listed + 1
    );
    assert_eq!(
        copies(&db, "conrelid = 'shop.payment'::regclass AND convalidated"),
        1
    );
}
