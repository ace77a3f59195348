//! Differential tests: `fkctl orphans` must report exactly the rows that
//! PostgreSQL itself rejects, for many foreign-key shapes.
//!
//! Ground truth comes from PostgreSQL's own RI trigger, not from fkctl's SQL:
//! every child row is inserted, one savepoint each, into a probe table that
//! carries the same foreign key; the rows it refuses are the orphans. Then
//! those rows are deleted and a real `VALIDATE CONSTRAINT` must succeed.
//!
//! Each shape runs twice: with the constraint absent (fkctl plans from the
//! playbook) and with it present and valid while orphans exist (loaded with
//! `session_replication_role = replica`, which disables RI triggers), so
//! fkctl reads the constraint's own operators from pg_constraint.

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
