//! Differential tests: `fkctl orphans` must report exactly the rows that
//! PostgreSQL itself rejects, for many foreign-key shapes.
//!
//! Ground truth comes from PostgreSQL's own RI trigger, not from fkctl's SQL:
//! every child row is inserted, one savepoint each, into a probe table that
//! carries the same foreign key; the rows it refuses are the orphans. Then
//! those rows are deleted and a real `VALIDATE CONSTRAINT` must succeed.
//!
//! Each shape runs twice: with the constraint absent (fkctl works out the
//! operators ADD CONSTRAINT would choose for the playbook's definition) and
//! with it present while orphans exist, so fkctl reads the constraint's own
//! operators from pg_constraint. The hand-written shapes below load their
//! data with `session_replication_role = replica` (which disables RI
//! triggers) under a valid constraint; the generated ones (parent type x
//! child type x edge values, and definitions PostgreSQL refuses, where fkctl
//! must refuse too) add it NOT VALID.

mod common;

use common::*;
use std::collections::BTreeSet;

struct Shape {
    name: &'static str,
    /// Creates the (empty) tables, without the foreign key.
    tables: &'static str,
    /// Fills them, orphans included.
    data: &'static str,
    /// The `constraint:` block of the playbook.
    yaml: &'static str,
    /// The constraint's name and clause, as SQL.
    fk_name: &'static str,
    fk_clause: &'static str,
    /// The child table, as SQL, and the JSON key of its row identifier.
    child: &'static str,
    id_column: &'static str,
    partitioned_child: bool,
}

fn rejected_by_postgres(db: &fkctl::testkit::TestDatabase, s: &Shape) -> BTreeSet<String> {
    let id_sql = fkctl::sql::ident::Ident::from_catalog(s.id_column).quoted();
    exec(
        db,
        &format!(
            "DROP TABLE IF EXISTS public.fkctl_probe, public.fkctl_rejected;
             CREATE TABLE public.fkctl_probe (LIKE {child});
             ALTER TABLE public.fkctl_probe ADD CONSTRAINT probe_fk {clause};
             CREATE TABLE public.fkctl_rejected (id text);
             DO $$ DECLARE r {child}%ROWTYPE; BEGIN
               FOR r IN SELECT * FROM {child} LOOP
                 BEGIN
                   INSERT INTO public.fkctl_probe VALUES (r.*);
                 EXCEPTION WHEN foreign_key_violation THEN
                   INSERT INTO public.fkctl_rejected VALUES (r.{id_sql}::text);
                 END;
               END LOOP;
             END $$;",
            child = s.child,
            clause = s.fk_clause
        ),
    );
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let rows = client
        .query("SELECT id FROM public.fkctl_rejected", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let ids = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    exec(db, "DROP TABLE public.fkctl_probe, public.fkctl_rejected");
    ids
}

fn id_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn check(s: &Shape, constraint_present: bool) {
    let mode = if constraint_present {
        "present"
    } else {
        "absent"
    };
    let db = database(&format!("diff_{}_{mode}", s.name));
    exec(&db, s.tables);
    if constraint_present {
        exec(
            &db,
            &format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                s.child, s.fk_name, s.fk_clause
            ),
        );
        exec(
            &db,
            &format!(
                "SET session_replication_role = replica; {} RESET session_replication_role;",
                s.data
            ),
        );
    } else {
        exec(&db, s.data);
    }
    exec(&db, "ANALYZE");
    let dir = TempDir::new(s.name);
    let path = dir.write("playbook.yml", &playbook(s.yaml));

    let truth = rejected_by_postgres(&db, s);
    assert!(
        !truth.is_empty(),
        "{} ({mode}): the data set must contain orphans",
        s.name
    );

    let report = json("orphans", &path, &db, &["--sample", "100000"]);
    let expected_state = if constraint_present {
        "valid"
    } else {
        "absent"
    };
    assert_eq!(report["state"], expected_state, "{} ({mode})", s.name);
    assert_eq!(
        report["orphan_count"].as_i64(),
        Some(truth.len() as i64),
        "{} ({mode}): fkctl's count differs from PostgreSQL's; query: {}",
        s.name,
        report["sql"]
    );
    let reported: BTreeSet<String> = report["sample"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| id_text(&r["row"][s.id_column]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        reported, truth,
        "{} ({mode}): fkctl reported other rows than PostgreSQL rejects",
        s.name
    );

    // Remove exactly PostgreSQL's rejects: then fkctl finds none and VALIDATE succeeds.
    let id_sql = fkctl::sql::ident::Ident::from_catalog(s.id_column).quoted();
    let list = truth
        .iter()
        .map(|t| fkctl::sql::ident::quote_literal(t))
        .collect::<Vec<_>>()
        .join(", ");
    exec(
        &db,
        &format!("DELETE FROM {} WHERE {id_sql}::text IN ({list})", s.child),
    );
    let after = json("orphans", &path, &db, &[]);
    assert_eq!(
        after["orphan_count"].as_i64(),
        Some(0),
        "{} ({mode}) after cleanup",
        s.name
    );
    let restore = if s.partitioned_child {
        // PostgreSQL < 18 refuses NOT VALID on a partitioned table; a validating ADD is the same check.
        format!(
            "ALTER TABLE {c} ADD CONSTRAINT {n} {f}",
            c = s.child,
            n = s.fk_name,
            f = s.fk_clause
        )
    } else {
        format!(
            "ALTER TABLE {c} ADD CONSTRAINT {n} {f} NOT VALID; ALTER TABLE {c} VALIDATE CONSTRAINT {n}",
            c = s.child,
            n = s.fk_name,
            f = s.fk_clause
        )
    };
    let drop = if constraint_present {
        format!("ALTER TABLE {} DROP CONSTRAINT {};", s.child, s.fk_name)
    } else {
        String::new()
    };
    exec(&db, &format!("{drop}{restore}"));
}

fn both(s: Shape) {
    check(&s, false);
    check(&s, true);
}

#[test]
fn match_simple_single_column() {
    both(Shape {
        name: "simple",
        tables: "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int);",
        data: "INSERT INTO parent SELECT g FROM generate_series(1, 50) g;
               INSERT INTO child SELECT g, CASE WHEN g % 9 = 0 THEN NULL ELSE (g * 7) % 70 END FROM generate_series(1, 300) g;",
        yaml: "  name: child_parent_fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }",
        fk_name: "child_parent_fk",
        fk_clause: "FOREIGN KEY (parent_id) REFERENCES parent (id)",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

const TWO_COLUMN_TABLES: &str = "CREATE TABLE parent (a int, b int, PRIMARY KEY (a, b)); CREATE TABLE child (id int PRIMARY KEY, a int, b int);";
const TWO_COLUMN_DATA: &str = "INSERT INTO parent SELECT a, b FROM generate_series(1, 10) a, generate_series(1, 10) b WHERE (a + b) % 3 <> 0;
    INSERT INTO child SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE g % 12 END, CASE WHEN g % 5 = 0 THEN NULL ELSE (g / 3) % 12 END FROM generate_series(1, 400) g;";

#[test]
fn match_simple_multi_column_ignores_partly_null_keys() {
    both(Shape {
        name: "two_simple",
        tables: TWO_COLUMN_TABLES,
        data: TWO_COLUMN_DATA,
        yaml: "  name: child_ab_fk\n  table: child\n  columns: [a, b]\n  references: { table: parent, columns: [a, b] }\n  match: simple",
        fk_name: "child_ab_fk",
        fk_clause: "FOREIGN KEY (a, b) REFERENCES parent (a, b) MATCH SIMPLE",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn match_full_multi_column_counts_partly_null_keys() {
    both(Shape {
        name: "two_full",
        tables: TWO_COLUMN_TABLES,
        data: TWO_COLUMN_DATA,
        yaml: "  name: child_ab_fk\n  table: child\n  columns: [a, b]\n  references: { table: parent, columns: [a, b] }\n  match: full",
        fk_name: "child_ab_fk",
        fk_clause: "FOREIGN KEY (a, b) REFERENCES parent (a, b) MATCH FULL",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn quoted_mixed_case_names_in_a_non_public_schema() {
    both(Shape {
        name: "quoted",
        tables: r#"CREATE SCHEMA "Billing";
            CREATE TABLE "Billing"."Invoices" ("Tenant" int, "No" text, PRIMARY KEY ("Tenant", "No"));
            CREATE TABLE "Billing"."Invoice Lines" ("Line Id" int PRIMARY KEY, "Tenant" int, "Invoice No" text);"#,
        data: r#"INSERT INTO "Billing"."Invoices" SELECT t, 'INV-' || n FROM generate_series(1, 5) t, generate_series(1, 20) n;
            INSERT INTO "Billing"."Invoice Lines" SELECT g, g % 7, CASE WHEN g % 11 = 0 THEN NULL ELSE 'INV-' || (g % 25) END FROM generate_series(1, 300) g;"#,
        yaml: "  name: '\"Lines→Invoice\"'\n  table: '\"Billing\".\"Invoice Lines\"'\n  columns: ['\"Tenant\"', '\"Invoice No\"']\n  references: { table: '\"Billing\".\"Invoices\"', columns: ['\"Tenant\"', '\"No\"'] }",
        fk_name: r#""Lines→Invoice""#,
        fk_clause: r#"FOREIGN KEY ("Tenant", "Invoice No") REFERENCES "Billing"."Invoices" ("Tenant", "No")"#,
        child: r#""Billing"."Invoice Lines""#,
        id_column: "Line Id",
        partitioned_child: false,
    });
}

#[test]
fn self_reference() {
    both(Shape {
        name: "selfref",
        tables: "CREATE TABLE employees (id int PRIMARY KEY, manager_id int);",
        data: "INSERT INTO employees SELECT g, CASE WHEN g <= 50 THEN NULL WHEN g % 5 = 0 THEN 1000 + g ELSE g % 50 + 1 END FROM generate_series(1, 200) g;",
        yaml: "  name: employees_manager_fk\n  table: employees\n  columns: [manager_id]\n  references: { table: employees, columns: [id] }",
        fk_name: "employees_manager_fk",
        fk_clause: "FOREIGN KEY (manager_id) REFERENCES employees (id)",
        child: "employees",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn reference_to_a_unique_non_primary_key_column() {
    both(Shape {
        name: "unique",
        tables: "CREATE SCHEMA auth;
            CREATE TABLE auth.users (id int PRIMARY KEY, email text UNIQUE NOT NULL);
            CREATE TABLE auth.sessions (id int PRIMARY KEY, user_email text);",
        data: "INSERT INTO auth.users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 40) g;
            INSERT INTO auth.sessions SELECT g, CASE WHEN g % 13 = 0 THEN NULL WHEN g % 17 = 0 THEN 'U1@example.com' ELSE 'u' || (g % 55) || '@example.com' END FROM generate_series(1, 300) g;",
        yaml: "  name: sessions_user_email_fkey\n  table: auth.sessions\n  columns: [user_email]\n  references: { table: auth.users, columns: [email] }",
        fk_name: "sessions_user_email_fkey",
        fk_clause: "FOREIGN KEY (user_email) REFERENCES auth.users (email)",
        child: "auth.sessions",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn int_child_referencing_bigint_parent() {
    both(Shape {
        name: "int_bigint",
        tables: "CREATE TABLE parent (id bigint PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int);",
        data: "INSERT INTO parent SELECT g FROM generate_series(1, 50) g UNION ALL SELECT 5000000000;
               INSERT INTO child SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE (g * 3) % 80 END FROM generate_series(1, 200) g;",
        yaml: "  name: child_parent_fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }",
        fk_name: "child_parent_fk",
        fk_clause: "FOREIGN KEY (parent_id) REFERENCES parent (id)",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn bigint_child_referencing_int_parent() {
    both(Shape {
        name: "bigint_int",
        tables: "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id bigint);",
        data: "INSERT INTO parent SELECT g FROM generate_series(1, 50) g;
               INSERT INTO child SELECT g, CASE WHEN g % 10 = 0 THEN 4294967297 + g ELSE (g * 3) % 80 END FROM generate_series(1, 200) g;",
        yaml: "  name: child_parent_fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }",
        fk_name: "child_parent_fk",
        fk_clause: "FOREIGN KEY (parent_id) REFERENCES parent (id)",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn int_child_referencing_numeric_parent() {
    both(Shape {
        name: "int_numeric",
        tables: "CREATE TABLE parent (id numeric PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int);",
        data: "INSERT INTO parent SELECT g FROM generate_series(1, 50) g UNION ALL SELECT 60.5 UNION ALL SELECT 70.000;
               INSERT INTO child SELECT g, (g * 3) % 80 FROM generate_series(1, 200) g;",
        yaml: "  name: child_parent_fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }",
        fk_name: "child_parent_fk",
        fk_clause: "FOREIGN KEY (parent_id) REFERENCES parent (id)",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn columns_with_different_collations() {
    both(Shape {
        name: "collation",
        tables: r#"CREATE TABLE parent (code text COLLATE "C" PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, code text COLLATE "POSIX");"#,
        data: "INSERT INTO parent SELECT 'k' || g FROM generate_series(1, 40) g;
               INSERT INTO child SELECT g, CASE WHEN g % 9 = 0 THEN 'K' || g ELSE 'k' || (g % 50) END FROM generate_series(1, 200) g;",
        yaml: "  name: child_code_fk\n  table: child\n  columns: [code]\n  references: { table: parent, columns: [code] }",
        fk_name: "child_code_fk",
        fk_clause: "FOREIGN KEY (code) REFERENCES parent (code)",
        child: "child",
        id_column: "id",
        partitioned_child: false,
    });
}

#[test]
fn partitioned_child_table() {
    both(Shape {
        name: "partitioned_child",
        tables: "CREATE TABLE customer (customer_id int PRIMARY KEY);
            CREATE TABLE payment (payment_id int, paid_on date NOT NULL, customer_id int, PRIMARY KEY (payment_id, paid_on)) PARTITION BY RANGE (paid_on);
            CREATE TABLE payment_2026_01 PARTITION OF payment FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
            CREATE TABLE payment_2026_02 PARTITION OF payment FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
            CREATE TABLE payment_2026_03 PARTITION OF payment FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');",
        data: "INSERT INTO customer SELECT g FROM generate_series(1, 60) g;
            INSERT INTO payment SELECT g, date '2026-01-01' + (g % 89), CASE WHEN g % 12 = 0 THEN NULL ELSE (g * 11) % 75 END FROM generate_series(1, 450) g;",
        yaml: "  name: payment_customer_id_fkey\n  table: payment\n  columns: [customer_id]\n  references: { table: customer, columns: [customer_id] }",
        fk_name: "payment_customer_id_fkey",
        fk_clause: "FOREIGN KEY (customer_id) REFERENCES customer (customer_id)",
        child: "payment",
        id_column: "payment_id",
        partitioned_child: true,
    });
}

#[test]
fn partitioned_parent_table() {
    both(Shape {
        name: "partitioned_parent",
        tables: "CREATE TABLE region (id int PRIMARY KEY) PARTITION BY RANGE (id);
            CREATE TABLE region_low PARTITION OF region FOR VALUES FROM (MINVALUE) TO (30);
            CREATE TABLE region_high PARTITION OF region FOR VALUES FROM (30) TO (MAXVALUE);
            CREATE TABLE store (id int PRIMARY KEY, region_id int);",
        data: "INSERT INTO region SELECT g FROM generate_series(1, 50) g;
            INSERT INTO store SELECT g, (g * 7) % 65 FROM generate_series(1, 250) g;",
        yaml: "  name: store_region_fk\n  table: store\n  columns: [region_id]\n  references: { table: region, columns: [id] }",
        fk_name: "store_region_fk",
        fk_clause: "FOREIGN KEY (region_id) REFERENCES region (id)",
        child: "store",
        id_column: "id",
        partitioned_child: false,
    });
}

// ---------------------------------------------------------------------------
// Generated shapes: parent key type x child key type x edge-value data, and
// definitions PostgreSQL refuses. One database per test function, one schema
// per shape. For each shape PostgreSQL itself first says whether it accepts
// the definition (`ADD CONSTRAINT .. NOT VALID`, rolled back): if it refuses,
// `fkctl orphans` must refuse too (exit 4); if it accepts, fkctl's orphans
// must be exactly the rows PostgreSQL's RI trigger rejects, with the
// constraint absent and then present, and VALIDATE must succeed once those
// rows are gone. Every mismatch is reported at the end.

use fkctl::sql::ident::quote_literal;

/// One generated shape: `{s}` in the SQL stands for its schema.
struct Gen {
    label: String,
    /// SQL batches creating and filling `{s}.parent` and `{s}.child` (child
    /// rows are identified by `id`). A batch starting with `!` may fail.
    setup: Vec<String>,
    columns: Vec<&'static str>,
    ref_columns: Vec<&'static str>,
    /// Extra clauses of the constraint, as SQL (`MATCH FULL`, `ON DELETE ..`)
    clause: &'static str,
    /// The same, as playbook lines.
    yaml: &'static str,
    /// What PostgreSQL must do, when the shape exists to test exactly that:
    /// Some(true) refuse, Some(false) accept.
    expect_refused: Option<bool>,
}

impl Gen {
    fn new(
        label: impl Into<String>,
        setup: Vec<String>,
        columns: Vec<&'static str>,
        ref_columns: Vec<&'static str>,
    ) -> Gen {
        Gen {
            label: label.into(),
            setup,
            columns,
            ref_columns,
            clause: "",
            yaml: "",
            expect_refused: None,
        }
    }

    fn refused(mut self, refused: bool) -> Gen {
        self.expect_refused = Some(refused);
        self
    }

    fn with(mut self, clause: &'static str, yaml: &'static str) -> Gen {
        self.clause = clause;
        self.yaml = yaml;
        self
    }
}

/// Inserts each value into `table`'s `column` (with `id` 1, 2, ...) as a
/// literal, the way an application would; a value the column cannot hold
/// (too long, not a number, a duplicate parent key) is skipped. Numbers the
/// column refuses as text are tried once more as numeric (1.0 -> 1).
fn fill(table: &str, column: &str, values: &[Option<&str>]) -> String {
    let array = values
        .iter()
        .map(|v| v.map_or("NULL".to_string(), quote_literal))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DO $$ DECLARE v text; i int := 0; BEGIN
           FOREACH v IN ARRAY ARRAY[{array}]::text[] LOOP
             i := i + 1;
             BEGIN
               EXECUTE format('INSERT INTO {table} (id, {column}) VALUES (%s, %L)', i, v);
             EXCEPTION WHEN others THEN
               BEGIN
                 EXECUTE format('INSERT INTO {table} (id, {column}) VALUES (%s, %L::numeric)', i, v);
               EXCEPTION WHEN others THEN NULL;
               END;
             END;
           END LOOP;
         END $$"
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Text,
    Number,
    Time,
    Enum,
    Array,
}

struct KeyType {
    label: &'static str,
    sql: &'static str,
    class: Class,
}

const fn key_type(label: &'static str, sql: &'static str, class: Class) -> KeyType {
    KeyType { label, sql, class }
}

/// Parent keys and child keys of each class, edge values included.
fn class_values(class: Class) -> (Vec<Option<&'static str>>, Vec<Option<&'static str>>) {
    let (parent, child): (&[&str], &[&str]) = match class {
        Class::Text => (
            &["abc", "x ", "Qr", "mm", "a b", "été", "Zeta", "ab"],
            &[
                "abc", "ABC", "abc ", "x", "x ", "X", "qr", "QR", "Qr", "mm  ", "a b", "A B",
                "ÉTÉ", "ete", "été", "zeta", "Zeta", "nope", "", "ab", "ab  ", "a",
            ],
        ),
        Class::Number => (
            &[
                "1", "2", "3.5", "0.1", "10", "-0", "NaN", "40000", "1e10", "2.5",
            ],
            &[
                "1",
                "1.0",
                "1.5",
                "2",
                "2.000",
                "3.5",
                "3.50",
                "0.1",
                "0.30000000000000004",
                "10",
                "10.0000001",
                "-0",
                "0",
                "NaN",
                "40000",
                "1e10",
                "7",
                "4",
                "2.5",
                "3",
            ],
        ),
        Class::Time => (
            &[
                "2024-01-01",
                "2024-01-02 12:00",
                "2024-03-01 00:00:00+00",
                "infinity",
                "2024-05-05 00:00",
            ],
            &[
                "2024-01-01",
                "2024-01-01 00:00",
                "2024-01-01 00:00:01",
                "2024-01-02",
                "2024-01-02 12:00",
                "2024-03-01",
                "2024-03-01 01:00+01",
                "infinity",
                "-infinity",
                "2024-05-05",
                "2024-05-05 00:00:00.000001",
            ],
        ),
        Class::Enum => (&["sad", "ok"], &["sad", "ok", "happy", "ok"]),
        Class::Array => (
            &["{1,2}", "{3}", "{}"],
            &[
                "{1,2}",
                "{2,1}",
                "{3}",
                "{3,NULL}",
                "{}",
                "{4}",
                "{1,2,NULL}",
            ],
        ),
    };
    let mut child: Vec<Option<&str>> = child.iter().map(|v| Some(*v)).collect();
    child.push(None);
    (parent.iter().map(|v| Some(*v)).collect(), child)
}

/// A one-column shape: `{s}.parent (id, k <parent type> PRIMARY KEY)` and
/// `{s}.child (id PRIMARY KEY, k <child type>)`.
fn pair(parent: &KeyType, child: &KeyType) -> Gen {
    let (parent_values, _) = class_values(parent.class);
    let (_, child_values) = class_values(child.class);
    Gen::new(
        format!("{} -> {}", child.label, parent.label),
        vec![
            format!(
                "CREATE TABLE {{s}}.parent (id int, k {} PRIMARY KEY);
                 CREATE TABLE {{s}}.child (id int PRIMARY KEY, k {});",
                parent.sql, child.sql
            ),
            fill("{s}.parent", "k", &parent_values),
            fill("{s}.child", "k", &child_values),
        ],
        vec!["k"],
        vec!["k"],
    )
}

/// What the server offers beyond the core.
struct Features {
    citext: bool,
    icu: bool,
}

/// Runs generated shapes in one database and collects every mismatch.
struct Run {
    db: fkctl::testkit::TestDatabase,
    client: postgres::Client,
    dir: TempDir,
    version: i32,
    features: Features,
    n: usize,
    refused: usize,
    accepted: usize,
    with_orphans: usize,
    /// Rows the RI trigger could not decide, decided by VALIDATE.
    by_validate: usize,
    mismatches: Vec<String>,
}

impl Run {
    fn new(tag: &str) -> Run {
        let db = database(tag);
        let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .unwrap()
            .get(0);
        client
            .batch_execute(
                "CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
                 CREATE DOMAIN public.dmood AS public.mood;
                 CREATE DOMAIN public.dint AS int4;
                 CREATE DOMAIN public.ddint AS public.dint;
                 CREATE DOMAIN public.dtext AS text;
                 CREATE TYPE public.pair AS (n numeric);",
            )
            .unwrap();
        let citext = client
            .batch_execute("CREATE EXTENSION citext SCHEMA public")
            .is_ok();
        if !citext {
            println!(
                "skipped: the citext shapes (the citext extension is not available on this server)"
            );
        }
        let icu = client
            .batch_execute(
                "CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                 CREATE COLLATION public.ai (provider = icu, locale = 'und-u-ks-level1', deterministic = false);",
            )
            .is_ok();
        if !icu {
            println!("skipped: the nondeterministic collation shapes (this server has no ICU)");
        }
        Run {
            db,
            client,
            dir: TempDir::new(tag),
            version,
            features: Features { citext, icu },
            n: 0,
            refused: 0,
            accepted: 0,
            with_orphans: 0,
            by_validate: 0,
            mismatches: Vec::new(),
        }
    }

    fn sql(&mut self, sql: &str) -> Result<(), String> {
        self.client
            .batch_execute(sql)
            .map_err(|e| fkctl::error::describe_postgres(&e).1)
    }

    fn mismatch(&mut self, label: &str, what: String) {
        self.mismatches.push(format!("{label}: {what}"));
    }

    /// Runs `fkctl orphans` on the shape's playbook: its exit code and JSON.
    fn orphans(&self, path: &std::path::Path) -> (Option<i32>, Option<serde_json::Value>, String) {
        // Without TLS: hundreds of handshakes would double the run time, and
        // tests/tls.rs covers TLS.
        let dsn = format!("test={} sslmode=disable", self.db.dsn);
        let path = path.display().to_string();
        let out = fkctl(&[
            "orphans", &path, "--env", "test", "--dsn", &dsn, "--output", "json", "--sample",
            "100000",
        ]);
        let report = serde_json::from_slice(&out.stdout).ok();
        (out.status.code(), report, stderr(&out))
    }

    /// Compares one fkctl report with PostgreSQL's rejected rows.
    fn compare(
        &mut self,
        label: &str,
        mode: &str,
        path: &std::path::Path,
        truth: &BTreeSet<String>,
    ) {
        let (code, report, err) = self.orphans(path);
        let Some(report) = report.filter(|_| code == Some(0)) else {
            self.mismatch(
                label,
                format!("{mode}: fkctl orphans exited {code:?}: {err}"),
            );
            return;
        };
        let reported: BTreeSet<String> = report["sample"]
            .as_array()
            .map(|rows| rows.iter().map(|r| id_text(&r["row"]["id"])).collect())
            .unwrap_or_default();
        if report["orphan_count"].as_i64() != Some(truth.len() as i64) || &reported != truth {
            self.mismatch(
                label,
                format!(
                    "{mode}: PostgreSQL rejects ids {truth:?}, fkctl counted {} and listed {reported:?}; query: {}",
                    report["orphan_count"], report["sql"]
                ),
            );
        }
    }

    fn shape(&mut self, g: Gen) {
        let s = format!("s{}", self.n);
        self.n += 1;
        let label = format!("[{s}] {}", g.label);
        if std::env::var_os("FKCTL_DIFF_VERBOSE").is_some() {
            println!("{label}");
        }
        if let Err(e) = self.sql(&format!("CREATE SCHEMA {s}")) {
            return self.mismatch(&label, format!("setup: {e}"));
        }
        for batch in &g.setup {
            let batch = batch.replace("{s}", &s);
            match batch.strip_prefix('!') {
                Some(may_fail) => {
                    let _ = self.sql(may_fail);
                }
                None => {
                    if let Err(e) = self.sql(&batch) {
                        return self.mismatch(&label, format!("setup: {e}\n{batch}"));
                    }
                }
            }
        }
        let clause = format!(
            "FOREIGN KEY ({}) REFERENCES {s}.parent ({}) {}",
            g.columns.join(", "),
            g.ref_columns.join(", "),
            g.clause
        );
        let yaml = format!(
            "  name: fk\n  table: {s}.child\n  columns: [{}]\n  references: {{ table: {s}.parent, columns: [{}] }}\n{}",
            g.columns.join(", "),
            g.ref_columns.join(", "),
            g.yaml
        );
        let path = self
            .dir
            .write(&format!("{s}.yml"), &playbook(yaml.trim_end()));

        // Does PostgreSQL accept the definition?
        let probe = {
            let mut tx = self.client.transaction().unwrap();
            let r = tx.batch_execute(&format!(
                "ALTER TABLE {s}.child ADD CONSTRAINT fk {clause} NOT VALID"
            ));
            r.map_err(|e| fkctl::error::describe_postgres(&e).1)
        };
        if let Some(expected) = g.expect_refused {
            if expected != probe.is_err() {
                self.mismatch(
                    &label,
                    format!(
                        "the shape expects PostgreSQL to {} it, but: {probe:?}",
                        if expected { "refuse" } else { "accept" }
                    ),
                );
            }
        }
        if let Err(said) = probe {
            self.refused += 1;
            let (code, _, err) = self.orphans(&path);
            if code != Some(4) || !err.contains("PostgreSQL would refuse") {
                self.mismatch(&label, format!("absent: PostgreSQL refuses ADD CONSTRAINT ({said}), fkctl orphans exited {code:?}: {err}"));
            }
            return;
        }
        self.accepted += 1;

        // PostgreSQL's verdict, row by row: its RI trigger on a probe table.
        // Where the trigger cannot decide (PostgreSQL 15 accepts a `name`
        // key referencing a nondeterministic `text` key, then fails every
        // insert with "could not determine which collation to use"), VALIDATE
        // decides, on a table holding that row alone.
        let truth = self.sql(&format!(
            "CREATE TABLE {s}.probe (LIKE {s}.child);
             ALTER TABLE {s}.probe ADD CONSTRAINT probe_fk {clause};
             CREATE TABLE {s}.lone (LIKE {s}.child);
             CREATE TABLE {s}.rejected (id text);
             CREATE TABLE {s}.undecided (id text);
             DO $$ DECLARE r {s}.child%ROWTYPE; BEGIN
               FOR r IN SELECT * FROM ONLY {s}.child LOOP
                 BEGIN
                   INSERT INTO {s}.probe VALUES (r.*);
                 EXCEPTION
                   WHEN foreign_key_violation THEN
                     INSERT INTO {s}.rejected VALUES (r.id::text);
                   WHEN others THEN
                     INSERT INTO {s}.undecided VALUES (r.id::text);
                     BEGIN
                       INSERT INTO {s}.lone VALUES (r.*);
                       ALTER TABLE {s}.lone ADD CONSTRAINT lone_fk {clause} NOT VALID;
                       ALTER TABLE {s}.lone VALIDATE CONSTRAINT lone_fk;
                       RAISE EXCEPTION 'undo';
                     EXCEPTION
                       WHEN foreign_key_violation THEN
                         INSERT INTO {s}.rejected VALUES (r.id::text);
                       WHEN raise_exception THEN NULL;
                     END;
                 END;
               END LOOP;
             END $$;"
        ));
        if let Err(e) = truth {
            return self.mismatch(&label, format!("probe: {e}"));
        }
        let truth: BTreeSet<String> = self
            .client
            .query(&format!("SELECT id FROM {s}.rejected"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let undecided: i64 = self
            .client
            .query_one(&format!("SELECT count(*) FROM {s}.undecided"), &[])
            .unwrap()
            .get(0);
        if undecided > 0 {
            println!("{label}: the RI trigger could not decide {undecided} row(s); VALIDATE decided them");
            self.by_validate += undecided as usize;
        }
        if !truth.is_empty() {
            self.with_orphans += 1;
        }

        self.compare(&label, "absent", &path, &truth);
        if let Err(e) = self.sql(&format!(
            "ALTER TABLE {s}.child ADD CONSTRAINT fk {clause} NOT VALID"
        )) {
            return self.mismatch(&label, format!("ADD NOT VALID: {e}"));
        }
        self.compare(&label, "present", &path, &truth);

        let list = truth.iter().map(|t| quote_literal(t)).collect::<Vec<_>>();
        let delete = if list.is_empty() {
            String::new()
        } else {
            format!(
                "DELETE FROM {s}.child WHERE id::text IN ({});",
                list.join(", ")
            )
        };
        if let Err(e) = self.sql(&format!(
            "{delete} ALTER TABLE {s}.child VALIDATE CONSTRAINT fk"
        )) {
            self.mismatch(
                &label,
                format!("VALIDATE after removing PostgreSQL's rejects: {e}"),
            );
        }
    }

    fn finish(self, at_least: usize) {
        println!(
            "{} shapes on PostgreSQL {}: {} accepted ({} with orphans; {} row(s) decided by VALIDATE), {} refused; {} mismatch(es)",
            self.n,
            self.version,
            self.accepted,
            self.with_orphans,
            self.by_validate,
            self.refused,
            self.mismatches.len()
        );
        assert!(
            self.mismatches.is_empty(),
            "{} of {} shapes differ from PostgreSQL:\n{}",
            self.mismatches.len(),
            self.n,
            self.mismatches.join("\n")
        );
        assert!(self.n >= at_least, "only {} shapes ran", self.n);
    }
}

const TEXT_TYPES: &[KeyType] = &[
    key_type("text", "text", Class::Text),
    key_type("varchar", "varchar", Class::Text),
    key_type("char(4)", "char(4)", Class::Text),
    key_type("name", "name", Class::Text),
    key_type("text C", "text COLLATE \"C\"", Class::Text),
    key_type("dtext", "public.dtext", Class::Text),
    key_type("\"char\"", "\"char\"", Class::Text),
    key_type("citext", "public.citext", Class::Text),
    key_type("text ci", "text COLLATE public.ci", Class::Text),
    key_type("varchar ai", "varchar COLLATE public.ai", Class::Text),
];

const NUMBER_TYPES: &[KeyType] = &[
    key_type("int2", "int2", Class::Number),
    key_type("int4", "int4", Class::Number),
    key_type("int8", "int8", Class::Number),
    key_type("numeric", "numeric", Class::Number),
    key_type("float4", "float4", Class::Number),
    key_type("float8", "float8", Class::Number),
    key_type("dint", "public.dint", Class::Number),
    key_type("ddint", "public.ddint", Class::Number),
];

const OTHER_TYPES: &[KeyType] = &[
    key_type("date", "date", Class::Time),
    key_type("timestamp", "timestamp", Class::Time),
    key_type("timestamptz", "timestamptz", Class::Time),
    key_type("mood", "public.mood", Class::Enum),
    key_type("dmood", "public.dmood", Class::Enum),
    key_type("int4[]", "int4[]", Class::Array),
    key_type("int8[]", "int8[]", Class::Array),
    key_type("dint[]", "public.dint[]", Class::Array),
];

fn available(features: &Features, t: &KeyType) -> bool {
    (features.citext || !t.sql.contains("citext"))
        && (features.icu
            || !(t.sql.contains("COLLATE public.ci") || t.sql.contains("COLLATE public.ai")))
}

/// Every pair of `types` of the same class, both directions, for the
/// parents that `parents` picks (by position).
fn same_class_pairs(run: &mut Run, types: &[KeyType], parents: impl Fn(usize) -> bool) {
    let types: Vec<&KeyType> = types
        .iter()
        .filter(|t| available(&run.features, t))
        .collect();
    for (_, parent) in types.iter().enumerate().filter(|(i, _)| parents(*i)) {
        for child in types.iter().filter(|t| t.class == parent.class) {
            run.shape(pair(parent, child));
        }
    }
}

// The generated pairs are split over several tests so that they run side by
// side: each waits mostly on fkctl and the server.

#[test]
fn generated_text_keys_even_parents() {
    let mut run = Run::new("gen_text_even");
    same_class_pairs(&mut run, TEXT_TYPES, |i| i % 2 == 0);
    run.finish(20);
}

#[test]
fn generated_text_keys_odd_parents() {
    let mut run = Run::new("gen_text_odd");
    same_class_pairs(&mut run, TEXT_TYPES, |i| i % 2 == 1);
    run.finish(20);
}

#[test]
fn generated_number_keys() {
    let mut run = Run::new("gen_number");
    same_class_pairs(&mut run, NUMBER_TYPES, |_| true);
    run.finish(60);
}

#[test]
fn generated_time_enum_array_keys() {
    let mut run = Run::new("gen_time");
    same_class_pairs(&mut run, OTHER_TYPES, |_| true);
    run.finish(20);
}

/// Like [`fill`] for two columns: every combination of the two value lists.
fn fill2(
    table: &str,
    columns: (&str, &str),
    first: &[Option<&str>],
    second: &[Option<&str>],
) -> String {
    let array = |values: &[Option<&str>]| {
        values
            .iter()
            .map(|v| v.map_or("NULL".to_string(), quote_literal))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (a, b) = columns;
    format!(
        "DO $$ DECLARE v text; w text; i int := 0; cast1 text; cast2 text; BEGIN
           FOREACH v IN ARRAY ARRAY[{}]::text[] LOOP
             FOREACH w IN ARRAY ARRAY[{}]::text[] LOOP
               i := i + 1;
               <<casts>>
               FOREACH cast1 IN ARRAY ARRAY['', '::numeric'] LOOP
                 FOREACH cast2 IN ARRAY ARRAY['', '::numeric'] LOOP
                   BEGIN
                     EXECUTE format('INSERT INTO {table} (id, {a}, {b}) VALUES (%s, %L%s, %L%s)', i, v, cast1, w, cast2);
                     EXIT casts;
                   EXCEPTION WHEN others THEN NULL;
                   END;
                 END LOOP;
               END LOOP;
             END LOOP;
           END LOOP;
         END $$",
        array(first),
        array(second)
    )
}

/// Two-column keys whose unique index lists the columns the other way
/// round, so each column must get the operator class at its own position.
fn two_column(first: (&KeyType, &KeyType), second: (&KeyType, &KeyType), full: bool) -> Gen {
    let values = |t: &KeyType, parent: bool, n: usize| {
        let (p, c) = class_values(t.class);
        let mut v: Vec<Option<&str>> = if parent { p } else { c }.into_iter().take(n).collect();
        if !parent {
            v.push(None);
        }
        v
    };
    let g = Gen::new(
        format!(
            "({}, {}) -> ({}, {}){}",
            first.1.label,
            second.1.label,
            first.0.label,
            second.0.label,
            if full { " MATCH FULL" } else { "" }
        ),
        vec![
            format!(
                "CREATE TABLE {{s}}.parent (id int, a {}, b {}, UNIQUE (b, a));
                 CREATE TABLE {{s}}.child (id int PRIMARY KEY, x {}, y {});",
                first.0.sql, second.0.sql, first.1.sql, second.1.sql
            ),
            fill2(
                "{s}.parent",
                ("a", "b"),
                &values(first.0, true, 5),
                &values(second.0, true, 4),
            ),
            fill2(
                "{s}.child",
                ("x", "y"),
                &values(first.1, false, 7),
                &values(second.1, false, 6),
            ),
        ],
        vec!["x", "y"],
        vec!["a", "b"],
    );
    if full {
        g.with("MATCH FULL", "  match: full\n")
    } else {
        g
    }
}

const INT_DATA: &str = "INSERT INTO {s}.parent (id, k) SELECT g, g FROM generate_series(1, 20) g;
    INSERT INTO {s}.child (id, k) SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE g % 30 END FROM generate_series(1, 60) g;";

/// `{s}.parent (id, k int, extra int)` with `index_sql` as its only key, and `{s}.child (id, k int)`, with orphans.
fn int_shape(label: &str, index_sql: &str) -> Gen {
    Gen::new(
        label,
        vec![
            format!(
                "CREATE TABLE {{s}}.parent (id int, k int, extra int);
                 CREATE TABLE {{s}}.child (id int PRIMARY KEY, k int);
                 {index_sql}"
            ),
            INT_DATA.to_string(),
        ],
        vec!["k"],
        vec!["k"],
    )
}

/// Shapes about the referenced unique index, relation kinds, generated
/// columns and operator classes: what ADD CONSTRAINT accepts and refuses.
fn structural(run: &mut Run) {
    let shapes = vec![
        int_shape("no unique index, only a plain one", "CREATE INDEX ON {s}.parent (k);").refused(true),
        int_shape("deferrable unique constraint only", "ALTER TABLE {s}.parent ADD UNIQUE (k) DEFERRABLE;").refused(true),
        int_shape(
            "a deferrable unique constraint, then an immediate one",
            "ALTER TABLE {s}.parent ADD UNIQUE (k) DEFERRABLE INITIALLY DEFERRED; ALTER TABLE {s}.parent ADD UNIQUE (k);",
        )
        .refused(false),
        int_shape("partial unique index", "CREATE UNIQUE INDEX ON {s}.parent (k) WHERE k > 0;").refused(true),
        int_shape("expression unique index", "CREATE UNIQUE INDEX ON {s}.parent ((k + 0));").refused(true),
        int_shape("unique index with INCLUDE", "CREATE UNIQUE INDEX ON {s}.parent (k) INCLUDE (extra);").refused(false),
        Gen::new(
            "an INCLUDE column used as a key column",
            vec![
                "CREATE TABLE {s}.parent (id int, k int, extra int);
                 CREATE UNIQUE INDEX ON {s}.parent (k) INCLUDE (extra);
                 CREATE TABLE {s}.child (id int PRIMARY KEY, k int, e int);"
                    .to_string(),
            ],
            vec!["k", "e"],
            vec!["k", "extra"],
        )
        .refused(true),
        Gen::new(
            "invalid unique index (failed CREATE UNIQUE INDEX CONCURRENTLY)",
            vec![
                "CREATE TABLE {s}.parent (id int, k int); CREATE TABLE {s}.child (id int PRIMARY KEY, k int);
                 INSERT INTO {s}.parent VALUES (1, 1), (2, 1), (3, 2);
                 INSERT INTO {s}.child VALUES (1, 1), (2, 2), (3, 3);"
                    .to_string(),
                "!CREATE UNIQUE INDEX CONCURRENTLY parent_k_key ON {s}.parent (k)".to_string(),
                "DELETE FROM {s}.parent WHERE id = 2;
                 DO $$ BEGIN
                   IF (SELECT indisvalid FROM pg_index WHERE indexrelid = '{s}.parent_k_key'::regclass) THEN
                     RAISE 'the index should be invalid';
                   END IF;
                 END $$;"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(true),
        Gen::new(
            "an invalid unique index, and a valid one",
            vec![
                "CREATE TABLE {s}.parent (id int, k int); CREATE TABLE {s}.child (id int PRIMARY KEY, k int);
                 INSERT INTO {s}.parent VALUES (1, 1), (2, 1), (3, 2);
                 INSERT INTO {s}.child VALUES (1, 1), (2, 2), (3, 3);"
                    .to_string(),
                "!CREATE UNIQUE INDEX CONCURRENTLY parent_k_key ON {s}.parent (k)".to_string(),
                "DELETE FROM {s}.parent WHERE id = 2; CREATE UNIQUE INDEX ON {s}.parent (k);".to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(false),
        Gen::new(
            "referenced table is a view",
            vec![
                "CREATE TABLE {s}.base (id int, k int PRIMARY KEY);
                 CREATE VIEW {s}.parent AS SELECT id, k FROM {s}.base;
                 CREATE TABLE {s}.child (id int PRIMARY KEY, k int);
                 INSERT INTO {s}.child VALUES (1, 1);"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(true),
        Gen::new(
            "permanent child, unlogged parent",
            vec![format!(
                "CREATE UNLOGGED TABLE {{s}}.parent (id int, k int PRIMARY KEY);
                 CREATE TABLE {{s}}.child (id int PRIMARY KEY, k int); {INT_DATA}"
            )],
            vec!["k"],
            vec!["k"],
        )
        .refused(true),
        Gen::new(
            "unlogged child, permanent parent",
            vec![format!(
                "CREATE TABLE {{s}}.parent (id int, k int PRIMARY KEY);
                 CREATE UNLOGGED TABLE {{s}}.child (id int PRIMARY KEY, k int); {INT_DATA}"
            )],
            vec!["k"],
            vec!["k"],
        )
        .refused(false),
        Gen::new(
            "foreign table child",
            vec![
                "CREATE FOREIGN DATA WRAPPER {s}_fdw; CREATE SERVER {s}_srv FOREIGN DATA WRAPPER {s}_fdw;
                 CREATE TABLE {s}.parent (id int, k int PRIMARY KEY);
                 CREATE FOREIGN TABLE {s}.child (id int, k int) SERVER {s}_srv;"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(true),
        Gen::new(
            "partitioned parent, key without the partition column",
            vec![
                "CREATE TABLE {s}.parent (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (id);
                 CREATE TABLE {s}.parent_all PARTITION OF {s}.parent FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
                 CREATE TABLE {s}.child (id int PRIMARY KEY, k int);"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(true),
        Gen::new(
            "partitioned parent, numeric key, int child",
            vec![
                "CREATE TABLE {s}.parent (id int, k numeric PRIMARY KEY) PARTITION BY RANGE (k);
                 CREATE TABLE {s}.parent_low PARTITION OF {s}.parent FOR VALUES FROM (MINVALUE) TO (10);
                 CREATE TABLE {s}.parent_high PARTITION OF {s}.parent FOR VALUES FROM (10) TO (MAXVALUE);
                 CREATE TABLE {s}.child (id int PRIMARY KEY, k int);
                 INSERT INTO {s}.parent VALUES (1, 1.0), (2, 2.5), (3, 12), (4, 13.000);
                 INSERT INTO {s}.child VALUES (1, 1), (2, 2), (3, 3), (4, 12), (5, 13), (6, NULL);"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(false),
        generated("stored generated child, ON DELETE SET NULL", "STORED").with("ON DELETE SET NULL", "  on_delete: set_null\n").refused(true),
        generated("stored generated child, ON DELETE SET DEFAULT", "STORED").with("ON DELETE SET DEFAULT", "  on_delete: set_default\n").refused(true),
        generated("stored generated child, ON UPDATE CASCADE", "STORED").with("ON UPDATE CASCADE", "  on_update: cascade\n").refused(true),
        generated("stored generated child, ON DELETE CASCADE", "STORED").with("ON DELETE CASCADE", "  on_delete: cascade\n").refused(false),
        composite(
            "record_image_ops unique index first (*=), then a record_ops one",
            "CREATE UNIQUE INDEX ON {s}.parent (k record_image_ops); ALTER TABLE {s}.parent ADD UNIQUE (k);",
        )
        .refused(false),
        composite(
            "record_ops unique constraint first, then a record_image_ops index",
            "ALTER TABLE {s}.parent ADD UNIQUE (k); CREATE UNIQUE INDEX ON {s}.parent (k record_image_ops);",
        )
        .refused(false),
        Gen::new(
            "text_pattern_ops unique index, varchar and char(4) children",
            vec![
                "CREATE TABLE {s}.parent (id int, k text); CREATE UNIQUE INDEX ON {s}.parent (k text_pattern_ops);
                 CREATE TABLE {s}.child (id int PRIMARY KEY, k char(4));
                 INSERT INTO {s}.parent VALUES (1, 'ab'), (2, 'ab '), (3, 'x');
                 INSERT INTO {s}.child VALUES (1, 'ab'), (2, 'ab  '), (3, 'x'), (4, 'y'), (5, NULL);"
                    .to_string(),
            ],
            vec!["k"],
            vec!["k"],
        )
        .refused(false),
    ];
    for g in shapes {
        run.shape(g);
    }
    if run.version >= 180000 {
        run.shape(generated("virtual generated child", "VIRTUAL").refused(true));
        if run
            .sql("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public")
            .is_ok()
        {
            run.shape(
                Gen::new(
                    "a WITHOUT OVERLAPS primary key, referenced without PERIOD",
                    vec![
                        "CREATE TABLE {s}.parent (id int, k int, during daterange, PRIMARY KEY (k, during WITHOUT OVERLAPS));
                         CREATE TABLE {s}.child (id int PRIMARY KEY, k int, during daterange);"
                            .to_string(),
                    ],
                    vec!["k", "during"],
                    vec!["k", "during"],
                )
                .refused(true),
            );
        } else {
            println!("skipped: the WITHOUT OVERLAPS shape (btree_gist is not available)");
        }
    }
}

fn generated(label: &str, kind: &str) -> Gen {
    Gen::new(
        label,
        vec![format!(
            "CREATE TABLE {{s}}.parent (id int, k int PRIMARY KEY);
             CREATE TABLE {{s}}.child (id int PRIMARY KEY, raw int, k int GENERATED ALWAYS AS (raw * 2) {kind});
             INSERT INTO {{s}}.parent SELECT g, g FROM generate_series(1, 20) g;
             INSERT INTO {{s}}.child (id, raw) SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE g END FROM generate_series(1, 30) g;"
        )],
        vec!["k"],
        vec!["k"],
    )
}

/// A composite key (`public.pair`, one numeric field): `record_ops`
/// compares 1.0 and 1.00 equal, `record_image_ops` (`*=`) does not.
fn composite(label: &str, indexes: &str) -> Gen {
    Gen::new(
        label,
        vec![format!(
            "CREATE TABLE {{s}}.parent (id int, k public.pair); {indexes}
             CREATE TABLE {{s}}.child (id int PRIMARY KEY, k public.pair);
             INSERT INTO {{s}}.parent VALUES (1, '(1.00)'), (2, '(2)'), (3, '()');
             INSERT INTO {{s}}.child VALUES (1, '(1.0)'), (2, '(1.00)'), (3, '(2)'), (4, '(2.0)'), (5, '(3)'), (6, NULL), (7, '()');"
        )],
        vec!["k"],
        vec!["k"],
    )
}

const CROSS_CLASS: &[KeyType] = &[
    key_type("text", "text", Class::Text),
    key_type("int4", "int4", Class::Number),
    key_type("date", "date", Class::Time),
    key_type("mood", "public.mood", Class::Enum),
    key_type("int4[]", "int4[]", Class::Array),
];

/// (parent, child) pairs of the two-column shapes.
const COLUMN_PAIRS: &[(KeyType, KeyType)] = &[
    (
        key_type("char(4)", "char(4)", Class::Text),
        key_type("text", "text", Class::Text),
    ),
    (
        key_type("varchar", "varchar", Class::Text),
        key_type("char(4)", "char(4)", Class::Text),
    ),
    (
        key_type("int8", "int8", Class::Number),
        key_type("int4", "int4", Class::Number),
    ),
    (
        key_type("numeric", "numeric", Class::Number),
        key_type("int4", "int4", Class::Number),
    ),
    (
        key_type("timestamptz", "timestamptz", Class::Time),
        key_type("date", "date", Class::Time),
    ),
    (
        key_type("citext", "public.citext", Class::Text),
        key_type("citext", "public.citext", Class::Text),
    ),
    (
        key_type("float8", "float8", Class::Number),
        key_type("int8", "int8", Class::Number),
    ),
    (
        key_type("text", "text", Class::Text),
        key_type("name", "name", Class::Text),
    ),
];

#[test]
fn generated_cross_class_multi_column_and_index_shapes() {
    let mut run = Run::new("gen_struct");
    for parent in CROSS_CLASS {
        for child in CROSS_CLASS.iter().filter(|c| c.class != parent.class) {
            run.shape(pair(parent, child));
        }
    }
    let pairs: Vec<&(KeyType, KeyType)> = COLUMN_PAIRS
        .iter()
        .filter(|(p, c)| available(&run.features, p) && available(&run.features, c))
        .collect();
    for (i, first) in pairs.iter().enumerate() {
        for (j, second) in pairs.iter().enumerate().skip(i + 1) {
            run.shape(two_column(
                (&first.0, &first.1),
                (&second.0, &second.1),
                (i + j) % 3 == 0,
            ));
        }
    }
    structural(&mut run);
    run.finish(60);
}

/// A definition PostgreSQL cannot add (a citext key referencing a char(4)
/// key: no equality operator, no implicit cast) is refused with exit 4 by
/// every command that reads the live catalog, before anything changes.
#[test]
fn an_impossible_definition_is_refused_by_every_command_before_any_change() {
    let db = database("impossible");
    let mut client = db.connect().unwrap();
    if client.batch_execute("CREATE EXTENSION citext").is_err() {
        println!("skipped: the citext extension is not available on this server");
        return;
    }
    exec(
        &db,
        "CREATE TABLE parent (code char(4) PRIMARY KEY);
         CREATE TABLE child (id int PRIMARY KEY, code citext);
         INSERT INTO parent VALUES ('abc');
         INSERT INTO child VALUES (1, 'abc'), (2, 'ABC'), (3, 'zzz');",
    );
    let dir = TempDir::new("impossible");
    let path = dir.write(
        "playbook.yml",
        &playbook("  name: child_code_fk\n  table: child\n  columns: [code]\n  references: { table: parent, columns: [code] }"),
    );
    for args in [
        &["orphans"][..],
        &["inspect"],
        &["plan", "--rollback"],
        &["rollback", "--yes"],
        &["drop", "--yes"],
    ] {
        let out = run_env(args[0], &path, &db, &args[1..]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "fkctl {args:?}:\n{err}");
        assert!(
            err.contains("PostgreSQL would refuse to add child_code_fk as the playbook defines it")
                && err.contains("incompatible types")
                && err.contains("playbook.yml:7:"),
            "fkctl {args:?}:\n{err}"
        );
    }
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'child_code_fk'"
        ),
        0
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM child"), 3);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'fkctl'"
        ),
        0,
        "nothing may be journaled for a refused definition"
    );
}
