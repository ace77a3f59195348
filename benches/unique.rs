//! UNIQUE rollback benchmark: `fkctl rollback` of a unique constraint (census,
//! archived dedupe, CREATE UNIQUE INDEX CONCURRENTLY, ADD ... USING INDEX)
//! against the hand-written `DELETE ... USING` + `CREATE UNIQUE INDEX
//! CONCURRENTLY` + `ADD CONSTRAINT ... USING INDEX` in psql, alternating
//! (medians of pairs), and the longest write stall of a concurrent writer
//! during fkctl's rollback vs during a plain `ADD CONSTRAINT ... UNIQUE`
//! (which builds its index under a lock that blocks writes).
//! `cargo bench --bench unique -- [--quick] [--rows N] [--duplicates N] [--pairs N]`.

#[path = "support/mod.rs"]
mod support;

use fkctl::testkit::TestDatabase;
use support::{exec, fkctl_measured, longest_insert_during, median, timed};

/// A new key for the writer of `longest_insert_during`.
const ACCOUNT_INSERT: &str = "INSERT INTO accounts VALUES ($1, -1, 'writer' || $1::text, now())";

fn arg(flag: &str) -> Option<i64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn fkctl(args: &[&str], db: &TestDatabase) -> f64 {
    let (seconds, ok, _) = fkctl_measured(args, db);
    assert!(ok, "fkctl {args:?} failed");
    seconds
}

/// Back to "constraint dropped, duplicates present".
fn reset(db: &TestDatabase) {
    exec(
        db,
        "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_tenant_email_key;
         DROP INDEX IF EXISTS accounts_tenant_email_key;
         DROP SCHEMA IF EXISTS fkctl CASCADE;
         DELETE FROM accounts WHERE id >= 900000000000;
         INSERT INTO accounts SELECT * FROM duplicate_rows ON CONFLICT DO NOTHING;",
    );
    exec(db, "VACUUM ANALYZE accounts");
}

const BASELINE: &str = "DELETE FROM accounts a USING accounts b WHERE a.tenant = b.tenant AND a.email = b.email AND a.id > b.id;
CREATE UNIQUE INDEX CONCURRENTLY accounts_tenant_email_key ON accounts (tenant, email);
ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key UNIQUE USING INDEX accounts_tenant_email_key;";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rows = arg("--rows").unwrap_or(if quick { 200_000 } else { 2_000_000 });
    let duplicates = arg("--duplicates").unwrap_or(if quick { 1_000 } else { 10_000 });
    let pairs = arg("--pairs").map_or(if quick { 3 } else { 5 }, |n| n.max(1) as usize);
    println!("fkctl unique benchmark: {rows} rows, {duplicates} duplicate rows, {pairs} pairs");
    let db = TestDatabase::create("ubench").unwrap_or_else(|e| panic!("{e}"));
    exec(
        &db,
        &format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, tenant int NOT NULL, email text, created_at timestamptz NOT NULL);
             INSERT INTO accounts SELECT g, g % 100, 'user' || g || '@example.com', now() - g * interval '1 second' FROM generate_series(1, {rows}) g;
             CREATE TABLE duplicate_rows AS SELECT {rows} + g AS id, a.tenant, a.email, a.created_at - interval '1 day' AS created_at
               FROM generate_series(1, {duplicates}) g JOIN accounts a ON a.id = 1 + (g * 7919) % {rows};"
        ),
    );
    let dir = std::env::temp_dir().join(format!("fkctl-ubench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let playbook = dir.join("unique.yml");
    std::fs::write(
        &playbook,
        "version: 1\nchange: ubench\nsummary: bench\nconstraint: { kind: unique, name: accounts_tenant_email_key, table: accounts, columns: [tenant, email] }\nenvironments: [{ name: bench, dsn_env: FKCTL_BENCH_UNUSED }]\nsafety: { lock_timeout: 200ms, lock_retries: 30 }\nrollback: { keep: { order_by: [id] }, batch_size: 1000, max_duplicates: 100000000 }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pb = playbook.display().to_string();
    let rollback = ["rollback", pb.as_str(), "--env", "bench", "--yes"];
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        reset(&db);
        ours.push(fkctl(&rollback, &db));
        reset(&db);
        theirs.push(timed(&db, BASELINE));
    }
    let (f, b) = (median(ours), median(theirs));
    println!(
        "rollback   fkctl {f:>8.3} s   baseline {b:>8.3} s   ratio {:>5.2}",
        f / b
    );
    println!("RESULT {{\"bench\": \"unique_rollback\", \"fkctl_s\": {f:.4}, \"baseline_s\": {b:.4}, \"ratio\": {:.3}}}", f / b);
    reset(&db);
    let ours = longest_insert_during(&db, ACCOUNT_INSERT, || {
        fkctl(&rollback, &db);
    });
    reset(&db);
    exec(&db, "DELETE FROM accounts a USING accounts b WHERE a.tenant = b.tenant AND a.email = b.email AND a.id > b.id");
    let naive = longest_insert_during(&db, ACCOUNT_INSERT, || {
        exec(
            &db,
            "ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key UNIQUE (tenant, email)",
        );
    });
    let (f, n) = (ours.as_secs_f64() * 1000.0, naive.as_secs_f64() * 1000.0);
    println!(
        "stall      fkctl {f:>8.1} ms  plain ADD UNIQUE {n:>8.1} ms   ratio {:.3}",
        f / n
    );
    println!("RESULT {{\"bench\": \"unique_write_stall\", \"fkctl_ms\": {f:.1}, \"naive_ms\": {n:.1}, \"ratio\": {:.3}}}", f / n);
    let _ = std::fs::remove_dir_all(&dir);
}
