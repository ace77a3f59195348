//! The unique kind against a real PostgreSQL: the refusal when a foreign key
//! depends on the constraint, drop, and a rollback that dedupes (archived,
//! the first by keep.order_by kept), builds the index concurrently and adds
//! the identical constraint; re-runs, resumption from the catalog, restore.

mod common;

use common::*;
use fkctl::testkit::TestDatabase;

const SCHEMA: &str = "
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant int NOT NULL,
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_tenant_email_key UNIQUE (tenant, email)
);
INSERT INTO accounts (tenant, email, created_at)
SELECT g % 7, 'user' || g || '@example.com', now() - g * interval '1 minute' FROM generate_series(1, 500) g;
";

fn unique_playbook(extra_rollback: &str) -> String {
    format!(
        "version: 1\nchange: restore-accounts-email\nsummary: accounts email uniqueness\nconstraint:\n  kind: unique\n  name: accounts_tenant_email_key\n  table: public.accounts\n  columns: [tenant, email]\nenvironments:\n  - {{ name: test, dsn_env: FKCTL_TEST_ONLY_DSN }}\nsafety: {{ lock_timeout: 300ms, lock_retries: 3 }}\nrollback: {{ duplicates: archive-delete, keep: {{ order_by: [-created_at, id] }}, batch_size: 7{extra_rollback} }}\n"
    )
}

fn setup(tag: &str) -> (TestDatabase, TempDir, std::path::PathBuf) {
    let db = database(tag);
    exec(&db, SCHEMA);
    let dir = TempDir::new(tag);
    let path = dir.write("unique.yml", &unique_playbook(""));
    (db, dir, path)
}

fn definition(db: &TestDatabase) -> Option<String> {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    client
        .query_opt(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'accounts_tenant_email_key' AND contype = 'u' AND convalidated",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|r| r.get(0))
}

/// Duplicates of three keys (two extra rows each, the newest to keep), and
/// rows whose key has a NULL (never duplicates).
const DUPLICATES: &str = "
INSERT INTO accounts (tenant, email, created_at)
SELECT a.tenant, a.email, a.created_at - (n || ' hours')::interval FROM accounts a, generate_series(1, 2) n WHERE a.email IN ('user1@example.com', 'user2@example.com', 'user3@example.com');
INSERT INTO accounts (tenant, email) VALUES (1, NULL), (1, NULL), (1, NULL);
";

#[test]
fn a_unique_constraint_a_foreign_key_depends_on_is_refused_before_any_change() {
    let (db, _dir, path) = setup("uqdep");
    exec(&db, "CREATE TABLE invites (id int PRIMARY KEY, tenant int, email text, CONSTRAINT invites_account_fkey FOREIGN KEY (tenant, email) REFERENCES accounts (tenant, email));");
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("invites_account_fkey") && err.contains("invites"),
        "{err}"
    );
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'fkctl'"
        ),
        0,
        "nothing was written"
    );
}

#[test]
fn drop_then_rollback_dedupes_archived_and_restores_the_identical_constraint() {
    let (db, _dir, path) = setup("uqdrop");
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db), None);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.snapshots WHERE definition = 'UNIQUE (tenant, email)'"
        ),
        1
    );
    exec(&db, DUPLICATES);
    // The census, as fkctl orphans (alias duplicates) reports it.
    let census = json("duplicates", &path, &db, &[]);
    assert_eq!(census["duplicate_rows"], 6, "{census}");
    assert_eq!(census["duplicate_keys"], 3, "{census}");
    let kept: Vec<i64> = {
        let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
        c.query("SELECT DISTINCT ON (tenant, email) id FROM accounts WHERE email IN ('user1@example.com', 'user2@example.com', 'user3@example.com') ORDER BY tenant, email, created_at DESC, id", &[])
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archived_rows WHERE action = 'dedupe'"
        ),
        6
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM accounts WHERE email IS NULL"),
        3,
        "NULL keys are not duplicates"
    );
    let list = kept
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        scalar_i64(
            &db,
            &format!("SELECT count(*) FROM accounts WHERE id IN ({list})")
        ),
        3,
        "the newest of each key stays"
    );
    assert_eq!(scalar_i64(&db, &format!("SELECT count(*) FROM fkctl.archived_rows WHERE (row_data->>'id')::bigint IN ({list})")), 0);
    // Re-running is a no-op.
    let again = run_env("rollback", &path, &db, &["--yes"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        6
    );
    // Restore: with the constraint in place, no archived row can go back
    // (each key is taken by its kept row) until the kept row is gone.
    // `--run latest`: the newest run of this constraint with rows archived.
    exec(
        &db,
        "DELETE FROM accounts WHERE email = 'user1@example.com'",
    );
    let out = run_env("restore", &path, &db, &["--run", "latest", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("5 archived row(s)"),
        "{}",
        stderr(&out)
    );
    let said = stdout(&out);
    assert!(
        said.contains("1 row(s) put back; 5 still archived"),
        "{said}"
    );
    assert!(said.contains("cannot go back"), "{said}");
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM accounts WHERE email = 'user1@example.com'"
        ),
        1
    );
}

#[test]
fn policy_abort_with_duplicates_changes_nothing() {
    let (db, dir, _) = setup("uqabort");
    let path = dir.write(
        "abort.yml",
        &unique_playbook("").replace(
            "duplicates: archive-delete, keep: { order_by: [-created_at, id] }, ",
            "duplicates: abort, ",
        ),
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("6 duplicate row(s) and rollback.duplicates is abort"),
        "{}",
        stderr(&out)
    );
    assert_eq!(definition(&db), None);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname = 'accounts_tenant_email_key'"
        ),
        0
    );
}

#[test]
fn an_invalid_index_left_by_a_failed_build_is_dropped_and_the_rollback_finishes() {
    let (db, _dir, path) = setup("uqinvalid");
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    // A concurrent build that met the duplicates, as a killed fkctl or a
    // hand-run build leaves it: INVALID.
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    assert!(c.batch_execute("CREATE UNIQUE INDEX CONCURRENTLY accounts_tenant_email_key ON accounts (tenant, email)").is_err());
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        1
    );
    let plan = run_env("plan", &path, &db, &["--rollback"]);
    assert!(stdout(&plan).contains("INVALID index"), "{}", stdout(&plan));
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("dropped the INVALID index"),
        "{}",
        stdout(&out)
    );
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        6
    );
}

/// NULLS NOT DISTINCT (the shipped example): rows whose keys hold NULLs
/// collide, are counted and deduped, and the constraint comes back as it was.
#[test]
fn nulls_not_distinct_rows_with_null_keys_are_duplicates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let schema = std::fs::read_to_string(format!(
        "{root}/examples/schemas/unique-contacts-tenant-external-ref.sql"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(format!(
        "{root}/playbooks/unique-contacts-tenant-external-ref.yml"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
    .replacen("- { name: staging,", "- { name: test,", 1);
    let db = database("uqnnd");
    exec(&db, &schema);
    let dir = TempDir::new("uqnnd");
    let path = dir.write("contacts.yml", &text);
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Tenant 1 already has a contact without a reference: two more collide.
    exec(&db, "INSERT INTO crm.contacts (tenant_id, external_ref, name, updated_at) VALUES (1, NULL, 'dup a', now() - interval '1 year'), (1, NULL, 'dup b', now() - interval '2 years'), (1, 'ext-100', 'dup c', now() - interval '1 year')");
    let census = json("orphans", &path, &db, &[]);
    assert_eq!(census["duplicate_rows"], 3, "{census}");
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_constraint WHERE conname = 'contacts_tenant_external_ref_key' AND pg_get_constraintdef(oid) = 'UNIQUE NULLS NOT DISTINCT (tenant_id, external_ref)'"),
        1
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM crm.contacts WHERE name LIKE 'dup %'"
        ),
        0,
        "the older rows go"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archived_rows WHERE action = 'dedupe'"
        ),
        3
    );
}

fn spawn_rollback(path: &std::path::Path, db: &TestDatabase) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"))
        .args([
            "rollback",
            &path.display().to_string(),
            "--env",
            "test",
            "--dsn",
            &format!("test={}", db.dsn),
            "--yes",
        ])
        .env_remove("FKCTL_TEST_ONLY_DSN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits (up to 20 s) until `sql` returns a count above 0.
fn wait_for(db: &TestDatabase, sql: &str) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < until {
        if scalar_i64(db, sql) > 0 {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// kill -9 in the middle of the dedupe, several times: rows in the table
/// plus rows in the archive stay what they were, no key ever loses its last
/// row, and the last run finishes with exactly the duplicates archived.
#[test]
fn killed_during_the_dedupe_it_loses_nothing_and_resumes() {
    let (db, _dir, _) = setup("uqkill");
    let dir = TempDir::new("uqkill");
    let path = dir.write(
        "k.yml",
        &unique_playbook("").replace("batch_size: 7", "batch_size: 3"),
    );
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key; INSERT INTO accounts (tenant, email, created_at) SELECT a.tenant, a.email, a.created_at - (n || ' hours')::interval FROM accounts a, generate_series(1, 4) n;");
    let before = scalar_i64(&db, "SELECT count(*) FROM accounts");
    let keys = scalar_i64(&db, "SELECT count(DISTINCT (tenant, email)) FROM accounts");
    assert_eq!(before - keys, 2000);
    let mut kills = 0;
    for round in 0..4 {
        let mut child = spawn_rollback(&path, &db);
        // Kill once rows have been archived by this run.
        let started = scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'fkctl'",
        ) > 0;
        let archived_sql = "SELECT count(*) FROM fkctl.archived_rows";
        let threshold = if started {
            scalar_i64(&db, archived_sql)
        } else {
            0
        };
        assert!(wait_for(&db, "SELECT count(*) FROM pg_namespace n WHERE n.nspname = 'fkctl' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = 'archived_rows' AND c.relnamespace = n.oid)"), "round {round}");
        wait_for(
            &db,
            &format!("SELECT (count(*) > {threshold} + 30)::int::int8 FROM fkctl.archived_rows"),
        );
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            kills += 1;
        }
        let _ = child.wait();
        let total = scalar_i64(
            &db,
            "SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM fkctl.archived_rows)",
        );
        assert_eq!(total, before, "after kill {kills}: rows lost or duplicated");
        assert_eq!(
            scalar_i64(&db, "SELECT count(DISTINCT (tenant, email)) FROM accounts"),
            keys,
            "a key lost its last row"
        );
    }
    assert!(
        kills >= 2,
        "the test must really interrupt runs ({kills} kills)"
    );
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        2000
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM accounts"), keys);
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
}

/// kill -9 while CREATE UNIQUE INDEX CONCURRENTLY waits for an older
/// transaction: the server ends the build and leaves the index INVALID; the
/// next run finds it in the catalog, drops it and finishes.
#[test]
fn killed_during_the_concurrent_build_it_resumes_from_the_invalid_index() {
    let (db, dir, _) = setup("uqbuild");
    let path = dir.write(
        "b.yml",
        &unique_playbook("").replace("lock_timeout: 300ms", "lock_timeout: 900ms"),
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    // An older transaction that wrote to the table: the build waits for it.
    let mut holder = db.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute(
            "BEGIN; INSERT INTO accounts (tenant, email) VALUES (99, 'holder@example.com')",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = spawn_rollback(&path, &db);
    assert!(
        wait_for(&db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'"),
        "the build never waited"
    );
    let _ = child.kill();
    let _ = child.wait();
    // The server notices the client is gone (client_connection_check_interval) and ends the build.
    assert!(wait_for(&db, "SELECT (count(*) = 0)::int::int8 FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND state = 'active'"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        1,
        "a killed build leaves an INVALID index"
    );
    holder
        .batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        6
    );
}

/// A session holding a lock on the table: the DROP waits at most
/// lock_timeout per attempt, retries, then gives up with exit 5 naming the
/// holder; nothing changed.
#[test]
fn a_drop_behind_a_lock_holder_gives_up_with_the_holder_named() {
    let (db, dir, _) = setup("uqlock");
    let path = dir.write(
        "l.yml",
        &unique_playbook("").replace("lock_retries: 3", "lock_retries: 1"),
    );
    let mut holder = db.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute("SET application_name = 'long_report'; BEGIN; SELECT count(*) FROM accounts")
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("long_report"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    holder
        .batch_execute("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
}

/// Two environments: production is refused (exit 4) until staging is done.
#[test]
fn production_waits_for_staging() {
    let staging = database("uqstg");
    let production = database("uqprd");
    exec(&staging, SCHEMA);
    exec(&production, SCHEMA);
    let dir = TempDir::new("uqorder");
    let text = unique_playbook("").replace(
        "  - { name: test, dsn_env: FKCTL_TEST_ONLY_DSN }",
        "  - { name: staging, dsn_env: FKCTL_TEST_ONLY_DSN }\n  - { name: production, dsn_env: FKCTL_TEST_ONLY_DSN, protected: true }",
    );
    let path = dir.write("o.yml", &text);
    let p = path.display().to_string();
    let dsns = [
        format!("staging={}", staging.dsn),
        format!("production={}", production.dsn),
    ];
    let args = |env: &str| {
        vec![
            "drop".to_string(),
            p.clone(),
            "--env".into(),
            env.into(),
            "--dsn".into(),
            dsns[0].clone(),
            "--dsn".into(),
            dsns[1].clone(),
            "--yes".into(),
        ]
    };
    let run = |env: &str| {
        let a = args(env);
        fkctl(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run("production");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drop it on staging first"),
        "{}",
        stderr(&out)
    );
    assert!(definition(&production).is_some());
    assert!(run("staging").status.success());
    let out = run("production");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(definition(&production).is_none());
}

/// A partitioned table (two levels): each leaf's index is built
/// concurrently and made a constraint, then the parent's ADD CONSTRAINT
/// attaches them; no index is built under a write-blocking lock.
#[test]
fn partitioned_table_builds_per_leaf_concurrently_then_attaches() {
    let db = database("uqpart");
    exec(&db, "
CREATE TABLE events (id bigint NOT NULL, region int NOT NULL, ref text, at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_region_ref_key UNIQUE (region, ref)) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN (1);
CREATE TABLE events_am PARTITION OF events FOR VALUES IN (2, 3) PARTITION BY LIST (region);
CREATE TABLE events_us PARTITION OF events_am FOR VALUES IN (2);
CREATE TABLE events_br PARTITION OF events_am FOR VALUES IN (3);
INSERT INTO events (id, region, ref) SELECT g, 1 + g % 3, 'r' || g FROM generate_series(1, 300) g;
");
    // What PostgreSQL allows (checked on each version the suite runs on):
    // no concurrent build on a partitioned table, no USING INDEX there.
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    assert!(c
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY x ON events (region, ref)")
        .is_err());
    c.batch_execute("CREATE UNIQUE INDEX events_x ON ONLY events (region, id)")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c
        .batch_execute("ALTER TABLE events ADD CONSTRAINT events_x UNIQUE USING INDEX events_x")
        .is_err());
    c.batch_execute("DROP INDEX events_x")
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("uqpart");
    let text = "version: 1\nchange: events-ref\nsummary: s\nconstraint: { kind: unique, name: events_region_ref_key, table: events, columns: [region, ref] }\nenvironments:\n  - { name: test, dsn_env: FKCTL_TEST_ONLY_DSN }\nrollback: { keep: { order_by: [id] }, batch_size: 4 }\n";
    let path = dir.write("p.yml", text);
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname LIKE 'events%'"), 0);
    exec(&db, "INSERT INTO events (id, region, ref) SELECT 1000 + id, region, ref FROM events WHERE id % 10 = 0");
    let census = json("duplicates", &path, &db, &[]);
    assert_eq!(census["duplicate_rows"], 30, "{census}");
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_constraint WHERE conname = 'events_region_ref_key' AND conrelid = 'events'::regclass AND pg_get_constraintdef(oid) = 'UNIQUE (region, ref)'"),
        1
    );
    // Each leaf has exactly one index, fkctl's concurrent build, attached.
    for leaf in ["events_eu", "events_us", "events_br"] {
        assert_eq!(
            scalar_i64(&db, &format!("SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indexrelid WHERE i.indrelid = '{leaf}'::regclass AND i.indisvalid AND (SELECT relname FROM pg_class WHERE oid = i.indexrelid) = '{leaf}_region_ref_key'")),
            1,
            "{leaf}"
        );
        assert_eq!(
            scalar_i64(
                &db,
                &format!("SELECT count(*) FROM pg_index WHERE indrelid = '{leaf}'::regclass")
            ),
            1,
            "{leaf}"
        );
    }
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows WHERE action = 'dedupe' AND (row_data->>'id')::int > 1000"), 30, "the later ids go");
    let again = run_env("rollback", &path, &db, &["--yes"]);
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    // Drop and roll back again: the names fkctl gives are free again.
    assert!(run_env("drop", &path, &db, &["--yes"]).status.success());
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

/// `--output json`: one summary document for a script; a keep.order_by
/// column the table lacks is refused before any change.
#[test]
fn rollback_json_summary_and_a_bad_keep_column() {
    let (db, dir, path) = setup("uqjson");
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let bad = dir.write(
        "bad.yml",
        &unique_playbook("").replace("order_by: [-created_at, id]", "order_by: [-updated_at, id]"),
    );
    let out = run_env("rollback", &bad, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("updated_at"), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM accounts"),
        509,
        "nothing changed"
    );
    let summary = json("rollback", &path, &db, &["--yes"]);
    assert_eq!(summary["outcome"], "restored", "{summary}");
    assert_eq!(summary["duplicates_found"], 6, "{summary}");
    assert_eq!(summary["rows_archived"], 6, "{summary}");
    assert_eq!(summary["definition"], "UNIQUE (tenant, email)", "{summary}");
    let again = json("rollback", &path, &db, &["--yes"]);
    assert_eq!(again["outcome"], "already in place", "{again}");
}

/// A duplicate committed while the concurrent build waits for its writer:
/// the build fails on it and leaves an INVALID index, which fkctl drops; it
/// dedupes again (the new row archived too) and builds again.
#[test]
fn a_duplicate_written_during_the_build_is_removed_in_another_round() {
    let (db, dir, _) = setup("uqrace");
    let path = dir.write(
        "r.yml",
        &unique_playbook("").replace("lock_timeout: 300ms", "lock_timeout: 900ms"),
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let mut writer = db.connect().unwrap_or_else(|e| panic!("{e}"));
    writer
        .batch_execute("BEGIN; INSERT INTO accounts (tenant, email, created_at) VALUES (4, 'user4@example.com', now() - interval '10 years')")
        .unwrap_or_else(|e| panic!("{e}"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"))
        .args([
            "rollback",
            &path.display().to_string(),
            "--env",
            "test",
            "--dsn",
            &format!("test={}", db.dsn),
            "--yes",
        ])
        .env_remove("FKCTL_TEST_ONLY_DSN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_for(&db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'"),
        "the build never waited for the writer"
    );
    writer
        .batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("new duplicates reached the table during a build"),
        "{}",
        stdout(&out)
    );
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        7
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows WHERE row_data->>'email' = 'user4@example.com'"), 1);
}

/// An application that writes a duplicate for every one removed: fkctl
/// stops after three rounds with a clear message (exit 6) instead of
/// looping; every row it removed is archived.
#[test]
fn duplicates_that_keep_appearing_stop_the_rollback() {
    let (db, _dir, path) = setup("uqloop");
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    exec(&db, "CREATE FUNCTION again() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO accounts (tenant, email, created_at) VALUES (OLD.tenant, OLD.email, OLD.created_at); RETURN OLD; END $$;
               CREATE TRIGGER again AFTER DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION again();");
    let before = scalar_i64(&db, "SELECT count(*) FROM accounts");
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("new duplicates kept appearing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(definition(&db), None);
    let archived = scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows");
    assert_eq!(archived, 18, "three rounds of six");
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM accounts"),
        before,
        "each removed row came back through the trigger"
    );
}

/// What fkctl could not put back alike (INCLUDE columns, storage
/// parameters) and a constraint that differs from the playbook are refused
/// before any change (exit 4), the field named.
#[test]
fn drift_and_definitions_fkctl_cannot_rebuild_are_refused() {
    let (db, dir, path) = setup("uqdrift");
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key; ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key UNIQUE (tenant, email) DEFERRABLE");
    let out = run_env("inspect", &path, &db, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("deferrable"), "{}", stderr(&out));
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deferrable: playbook false, database true"),
        "{}",
        stderr(&out)
    );
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key; ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key UNIQUE (tenant, email) INCLUDE (created_at) WITH (fillfactor = 70)");
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("INCLUDE"), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'accounts_tenant_email_key'"
        ),
        1
    );
    // A constraint of another kind under the name.
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key; ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key CHECK (tenant >= 0)");
    let other = dir.write("o.yml", &unique_playbook(""));
    let out = run_env("drop", &other, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a unique constraint"),
        "{}",
        stderr(&out)
    );
    // status names the state and the runs.
    let out = run_env("status", &path, &db, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A writer's transaction open the whole time: every concurrent build waits
/// for it at most lock_timeout, each failed attempt's INVALID index is
/// dropped before the next, and fkctl gives up with exit 5 naming the
/// writer; once it commits, the same command finishes.
#[test]
fn a_build_blocked_by_an_open_transaction_gives_up_then_resumes() {
    let (db, dir, _) = setup("uqblock");
    let path = dir.write(
        "b.yml",
        &unique_playbook("").replace("lock_retries: 3", "lock_retries: 2"),
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let mut writer = db.connect().unwrap_or_else(|e| panic!("{e}"));
    writer
        .batch_execute("SET application_name = 'slow_import'; BEGIN; INSERT INTO accounts (tenant, email) VALUES (98, 'import@example.com')")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("slow_import"), "{}", stderr(&out));
    assert!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") <= 1,
        "at most the last attempt's leftover"
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        6,
        "the dedupe stays done"
    );
    writer
        .batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
}

/// The change request and the plan of a unique playbook carry the SQL the
/// commands run.
#[test]
fn change_request_and_plan_show_the_unique_sql() {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/playbooks/unique-contacts-tenant-external-ref.yml");
    let out = fkctl(&["change-request", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for sql in [
        r#"ALTER TABLE "crm"."contacts" DROP CONSTRAINT "contacts_tenant_external_ref_key""#,
        r#"CREATE UNIQUE INDEX CONCURRENTLY "contacts_tenant_external_ref_key" ON "crm"."contacts" ("tenant_id", "external_ref") NULLS NOT DISTINCT"#,
        r#"ALTER TABLE "crm"."contacts" ADD CONSTRAINT "contacts_tenant_external_ref_key" UNIQUE USING INDEX "contacts_tenant_external_ref_key""#,
    ] {
        assert!(text.contains(sql), "missing {sql}:\n{text}");
        let plan =
            stdout(&fkctl(&["plan", &path, "--rollback"])) + &stdout(&fkctl(&["plan", &path]));
        assert!(plan.contains(sql), "plan lacks {sql}");
    }
}

/// A DEFERRABLE INITIALLY DEFERRED unique constraint comes back the same
/// (ADD ... USING INDEX ... DEFERRABLE makes the built index deferred).
#[test]
fn a_deferrable_constraint_comes_back_deferrable() {
    let (db, dir, _) = setup("uqdefer");
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key; ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email_key UNIQUE (tenant, email) DEFERRABLE INITIALLY DEFERRED");
    let path = dir.write(
        "d.yml",
        &unique_playbook("").replace(
            "columns: [tenant, email]",
            "columns: [tenant, email]\n  deferrable: true\n  initially_deferred: true",
        ),
    );
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&db, DUPLICATES);
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        definition(&db).as_deref(),
        Some("UNIQUE (tenant, email) DEFERRABLE INITIALLY DEFERRED")
    );
}

/// `--metrics-file` writes the census as the gauge fkctl_duplicate_rows.
#[test]
fn the_duplicate_census_as_a_prometheus_gauge() {
    let (db, dir, path) = setup("uqmetrics");
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let file = dir.0.join("dups.prom");
    let out = run_env(
        "orphans",
        &path,
        &db,
        &["--metrics-file", &file.display().to_string()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(text.contains("# TYPE fkctl_duplicate_rows gauge"), "{text}");
    assert!(
        text.contains("constraint=\"accounts_tenant_email_key\"")
            && text.trim_end().ends_with(" 6"),
        "{text}"
    );
}

/// Ctrl-C while the concurrent build waits: the build is cancelled (exit
/// 130), its INVALID index is left, and the next run drops it and finishes.
#[test]
fn ctrl_c_during_the_build_cancels_it_and_the_next_run_finishes() {
    let (db, dir, _) = setup("uqint");
    let path = dir.write(
        "i.yml",
        &unique_playbook("").replace("lock_timeout: 300ms", "lock_timeout: 5s"),
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    let mut writer = db.connect().unwrap_or_else(|e| panic!("{e}"));
    writer
        .batch_execute(
            "BEGIN; INSERT INTO accounts (tenant, email) VALUES (97, 'late@example.com')",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = spawn_rollback(&path, &db);
    assert!(wait_for(&db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'"));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent);
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(130));
    assert!(wait_for(&db, "SELECT (count(*) = 0)::int::int8 FROM pg_stat_activity WHERE query LIKE 'CREATE UNIQUE INDEX CONCURRENTLY%' AND state = 'active'"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        1
    );
    writer
        .batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(definition(&db).as_deref(), Some("UNIQUE (tenant, email)"));
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        0
    );
}

/// Deleting duplicates would cascade to rows that reference them: refused
/// before any delete, naming the foreign key; without duplicates the same
/// table rolls back.
#[test]
fn duplicates_whose_delete_would_cascade_are_refused() {
    let (db, _dir, path) = setup("uqcascade");
    exec(&db, "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key;
        CREATE TABLE sessions (id int PRIMARY KEY, account_id bigint REFERENCES accounts (id) ON DELETE CASCADE);
        INSERT INTO sessions SELECT g, g FROM generate_series(1, 50) g;");
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(
        out.status.success(),
        "no duplicates, nothing to delete: {}",
        stderr(&out)
    );
    exec(
        &db,
        "ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_email_key",
    );
    exec(&db, DUPLICATES);
    let before = scalar_i64(&db, "SELECT count(*) FROM accounts");
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sessions_account_id_fkey"),
        "{}",
        stderr(&out)
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM accounts"), before);
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM sessions"), 50);
}

/// A dedupe batch on a partitioned table looks each listed row, and the
/// row its group keeps, up in the one partition its key values lead to
/// (run-time pruning on the NOT NULL partition key the list carries), not
/// in every partition: checked with EXPLAIN ANALYZE on the plan's own
/// statements, counting the TID lookups.
#[test]
fn partitioned_dedupe_batches_look_rows_up_in_their_own_partition() {
    let db = database("uqpart_tid");
    exec(
        &db,
        "
CREATE TABLE events (id bigint NOT NULL, region int NOT NULL, ref text) PARTITION BY LIST (region);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
CREATE TABLE events_2 PARTITION OF events FOR VALUES IN (2);
CREATE TABLE events_3 PARTITION OF events FOR VALUES IN (3);
CREATE TABLE events_4 PARTITION OF events FOR VALUES IN (4);
INSERT INTO events SELECT g, 1 + g % 4, 'r' || g FROM generate_series(1, 4000) g;
INSERT INTO events SELECT 10000 + id, region, ref FROM events WHERE id % 4 = 0;
ANALYZE events;
",
    );
    let dir = TempDir::new("uqpart_tid");
    let text = "version: 1\nchange: events-ref\nsummary: s\nconstraint: { kind: unique, name: events_region_ref_key, table: events, columns: [region, ref] }\nenvironments:\n  - { name: test, dsn_env: FKCTL_TEST_ONLY_DSN }\nrollback: { keep: { order_by: [id] }, batch_size: 200 }\n";
    let path = dir.write("p.yml", text);
    let plan = json("plan", &path, &db, &["--rollback"]);
    let batch = step_statements(&plan, "dedupe-rows")
        .into_iter()
        .rfind(|s| s.starts_with("WITH"))
        .unwrap_or_default();
    assert!(batch.contains("key_1"), "{batch}");
    let mut c = db.connect().unwrap_or_else(|e| panic!("{e}"));
    for id in ["collect-duplicates", "prepare-archive"] {
        for statement in step_statements(&plan, id) {
            c.batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{e}\n{statement}"));
        }
    }
    let analyzed = explain_analyze_batch(&mut c, &batch, "events_region_ref_key");
    let lookups = tid_lookups(&analyzed);
    // One lookup for the kept row, one for the listed row: 2 per row, not
    // 2 per row and partition.
    assert!(
        lookups > 0 && lookups <= 2 * 200,
        "{lookups} TID lookups for a batch of 200:\n{analyzed}"
    );
    assert!(!analyzed.contains("Seq Scan on events_"), "{analyzed}");
}

/// Restore works through a list of the run's archived rows: batches whose
/// rows all collide with a live row (here every batch but the last, of one
/// row each) do not end it, and the rows after them still go back.
#[test]
fn restore_goes_past_batches_whose_rows_all_collide() {
    let (db, dir, _) = setup("uqrestore_list");
    let path = dir.write(
        "one.yml",
        &unique_playbook("").replace("batch_size: 7", "batch_size: 1"),
    );
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&db, DUPLICATES);
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The key archived last: its live row goes, so that its first archived
    // row can go back; every row archived before that one collides.
    let last_key = scalar_text(
        &db,
        "SELECT row_data->>'email' FROM fkctl.archived_rows GROUP BY 1 ORDER BY min(id) DESC LIMIT 1",
    );
    let archived_before_it = scalar_i64(
        &db,
        &format!("SELECT count(*) FROM fkctl.archived_rows WHERE id < (SELECT min(id) FROM fkctl.archived_rows WHERE row_data->>'email' = '{last_key}')"),
    );
    assert!(archived_before_it >= 2, "{archived_before_it}");
    exec(
        &db,
        &format!("DELETE FROM accounts WHERE email = '{last_key}'"),
    );
    let out = run_env("restore", &path, &db, &["--run", "latest", "--yes"]);
    assert_refused(&out, 4, "5 archived row(s)");
    assert!(
        stdout(&out).contains("1 row(s) put back; 5 still archived"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        scalar_i64(
            &db,
            &format!("SELECT count(*) FROM accounts WHERE email = '{last_key}'")
        ),
        1
    );
}

/// The UNIQUE restore's reads of fkctl's archive wait within the lock
/// timeout, retried, and name the session holding the archive; nothing
/// moves, and the same restore finishes once it is gone.
#[test]
fn a_restore_waiting_for_the_archive_is_bounded_and_names_the_holder() {
    let (db, _dir, path) = setup("uqrestore_wait");
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&db, DUPLICATES);
    let out = run_env("rollback", &path, &db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(
        &db,
        "DELETE FROM accounts WHERE email = 'user1@example.com'",
    );
    let mut holder = db.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute("SET idle_in_transaction_session_timeout = '20s'; BEGIN; LOCK TABLE fkctl.archived_rows IN ACCESS EXCLUSIVE MODE")
        .unwrap_or_else(|e| panic!("{e}"));
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let out = run_env("restore", &path, &db, &["--run", "latest", "--yes"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(5), "{text}");
    // 300 ms x 4 attempts and three backoffs of at most 375 + 750 + 1500 ms.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{text}"
    );
    assert!(text.contains(&format!("pid {pid} ")), "{text}");
    drop(holder);
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM fkctl.archived_rows"),
        6,
        "nothing moved"
    );
    let out = run_env("restore", &path, &db, &["--run", "latest", "--yes"]);
    assert!(
        stdout(&out).contains("1 row(s) put back; 5 still archived"),
        "{}",
        stdout(&out)
    );
}
