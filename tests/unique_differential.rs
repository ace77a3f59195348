//! Differential test: the duplicate census must be exactly what
//! `CREATE UNIQUE INDEX` judges, on generated shapes (types, collations,
//! NULLs, NULLS NOT DISTINCT, one or two columns).
//!
//! Ground truth comes from PostgreSQL's own unique index, not from fkctl's
//! SQL: every row is inserted, in id order and one savepoint each, into a
//! probe table carrying the unique index; the rows it refuses are the
//! duplicates beyond the first of each key. fkctl's census must count
//! exactly that many, its list (keep.order_by: [id]) must name exactly those
//! rows, and after its archived dedupe batches `CREATE UNIQUE INDEX` on the
//! table must succeed with exactly those rows in the archive.

mod common;

use common::*;
use fkctl::kinds::unique::definition::{OrderColumn, UniqueDef};
use fkctl::kinds::unique::repair;
use fkctl::kinds::unique::violations::DuplicateQuery;
use fkctl::sql::ident::{Ident, QualifiedName};
use std::collections::BTreeSet;

/// A column type and the values (SQL literals) rows draw from.
struct Domain {
    name: &'static str,
    sql_type: &'static str,
    values: &'static [&'static str],
}

const DOMAINS: &[Domain] = &[
    Domain {
        name: "int",
        sql_type: "int4",
        values: &["1", "2", "3", "NULL"],
    },
    Domain {
        name: "text",
        sql_type: "text",
        values: &["'a'", "'A'", "'a '", "'b'", "NULL"],
    },
    Domain {
        name: "text-c",
        sql_type: "text COLLATE \"C\"",
        values: &["'a'", "'A'", "'ä'", "'b'", "NULL"],
    },
    Domain {
        name: "text-ci",
        sql_type: "text COLLATE fkctl_ci",
        values: &["'a'", "'A'", "'b'", "'B'", "NULL"],
    },
    Domain {
        name: "numeric",
        sql_type: "numeric",
        values: &["1", "1.0", "1.00", "2", "NULL"],
    },
    Domain {
        name: "float8",
        sql_type: "float8",
        values: &["0", "'-0'", "'NaN'", "1", "NULL"],
    },
    Domain {
        name: "timestamptz",
        sql_type: "timestamptz",
        values: &[
            "'2020-01-01 00:00+00'",
            "'2020-01-01 01:00+01'",
            "'2020-01-02 00:00+00'",
            "NULL",
        ],
    },
    Domain {
        name: "jsonb",
        sql_type: "jsonb",
        values: &["'{\"a\":1}'", "'{\"a\": 1}'", "'[1]'", "NULL"],
    },
    Domain {
        name: "bool",
        sql_type: "bool",
        values: &["true", "false", "NULL"],
    },
];

const ROWS: u64 = 40;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The ids PostgreSQL's unique index refuses, inserting in id order.
fn refused_by_postgres(client: &mut postgres::Client, columns: &str, nnd: bool) -> BTreeSet<i32> {
    let nulls = if nnd { " NULLS NOT DISTINCT" } else { "" };
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS probe; CREATE TABLE probe (LIKE t INCLUDING ALL); CREATE UNIQUE INDEX ON probe ({columns}){nulls}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<i32> = client
        .query("SELECT id FROM t ORDER BY id", &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut refused = BTreeSet::new();
    let mut tx = client.transaction().unwrap_or_else(|e| panic!("{e}"));
    for id in ids {
        let mut sp = tx.transaction().unwrap_or_else(|e| panic!("{e}"));
        match sp.execute("INSERT INTO probe SELECT * FROM t WHERE id = $1", &[&id]) {
            Ok(_) => sp.commit().unwrap_or_else(|e| panic!("{e}")),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                refused.insert(id);
            }
            Err(e) => panic!("{e}"),
        }
    }
    tx.commit().unwrap_or_else(|e| panic!("{e}"));
    refused
}

/// The census's list of surplus rows, keep.order_by: [id].
fn list_by_id(client: &mut postgres::Client, query: &DuplicateQuery) {
    let order = [OrderColumn {
        column: Ident::from_catalog("id"),
        descending: false,
    }];
    for sql in repair::collect_sql(query, &order) {
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }
}

fn ids(client: &mut postgres::Client, sql: &str) -> BTreeSet<i32> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// Long because it is one shape's whole comparison: ground truth, census,
// list, dedupe and the index that must then build, in order.
fn check_shape(client: &mut postgres::Client, label: &str, def: &UniqueDef) {
    let columns = def
        .columns
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let refused = refused_by_postgres(client, &columns, def.nulls_not_distinct);
    let query = DuplicateQuery::new(def, None);
    let surplus: i64 = client
        .query_one(query.surplus_sql().as_str(), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(
        surplus as usize,
        refused.len(),
        "{label}: census vs CREATE UNIQUE INDEX"
    );
    list_by_id(client, &query);
    let listed = ids(
        client,
        "SELECT t.id FROM t JOIN pg_temp.fkctl_duplicate_rows l ON t.ctid = l.row_id",
    );
    assert_eq!(
        listed, refused,
        "{label}: the rows listed are the rows the index refuses"
    );
    let schema = Ident::from_catalog("fkctl");
    let batch = repair::dedupe_batch_sql(&query, 7, &schema);
    loop {
        let taken: String = client
            .query_one(
                batch.as_str(),
                &[&label, &"differential", &def.name.as_str()],
            )
            .unwrap_or_else(|e| panic!("{e}\n{batch}"))
            .get(0);
        if taken == "0" {
            break;
        }
    }
    let archived = ids(
        client,
        &format!("SELECT (row_data->>'id')::int FROM fkctl.archived_rows WHERE run_id = '{label}'"),
    );
    assert_eq!(
        archived, refused,
        "{label}: the rows archived are the rows the index refuses"
    );
    let nulls = if def.nulls_not_distinct {
        " NULLS NOT DISTINCT"
    } else {
        ""
    };
    client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX t_key ON t ({columns}){nulls}; DROP INDEX t_key"
        ))
        .unwrap_or_else(|e| panic!("{label}: the index does not build after the dedupe: {e}"));
}

#[test]
fn the_census_is_what_create_unique_index_judges() {
    let db = database("uqdiff");
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    // A nondeterministic (case-insensitive) collation, where the server has ICU.
    let icu = client
        .batch_execute("CREATE COLLATION fkctl_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        .is_ok();
    for sql in
        fkctl::kinds::foreign_key::repair::create_archive_sql(&Ident::from_catalog("fkctl"), &[])
    {
        client.batch_execute(&sql).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut rng = Lcg(u64::from(std::process::id()) | 1);
    let mut shapes = 0;
    for a in DOMAINS {
        if a.name == "text-ci" && !icu {
            eprintln!("skipped text-ci: this server has no ICU");
            continue;
        }
        for (two, nnd) in [(false, false), (false, true), (true, false), (true, true)] {
            let b = &DOMAINS[0];
            let mut sql = format!(
                "DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY, a {}, b {});",
                a.sql_type, b.sql_type
            );
            for id in 1..=ROWS {
                let va = a.values[rng.next(a.values.len())];
                let vb = b.values[rng.next(b.values.len())];
                sql.push_str(&format!("INSERT INTO t VALUES ({id}, {va}, {vb});"));
            }
            client.batch_execute(&sql).unwrap_or_else(|e| panic!("{e}"));
            let mut columns = vec![Ident::from_catalog("a")];
            if two {
                columns.push(Ident::from_catalog("b"));
            }
            let def = UniqueDef {
                name: Ident::from_catalog("t_key"),
                table: QualifiedName::parse("public.t").unwrap_or_else(|e| panic!("{e}")),
                columns,
                nulls_not_distinct: nnd,
                deferrable: false,
                initially_deferred: false,
            };
            let label = format!(
                "{}{}{}",
                a.name,
                if two { "+int" } else { "" },
                if nnd { " nulls-not-distinct" } else { "" }
            );
            check_shape(&mut client, &label, &def);
            shapes += 1;
        }
    }
    assert!(shapes >= 32, "{shapes} shapes");
}

/// Each dedupe batch reads only its own entries of the list (an index range
/// from the number kept in a one-row table), never the whole list: taking
/// `n IN (SELECT n ... ORDER BY n LIMIT k)` and deleting it hashed and
/// scanned the rest of the list in every batch, quadratic in the duplicates.
/// Checked with EXPLAIN ANALYZE on a late batch of 20,000 listed rows.
#[test]
fn dedupe_batches_read_only_their_own_entries_of_the_list() {
    let db = database("uqlinear");
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, a int);
             INSERT INTO t SELECT g, g % 1000 FROM generate_series(1, 21000) g;
             ANALYZE t;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let def = UniqueDef {
        name: Ident::from_catalog("t_key"),
        table: QualifiedName::parse("public.t").unwrap_or_else(|e| panic!("{e}")),
        columns: vec![Ident::from_catalog("a")],
        nulls_not_distinct: false,
        deferrable: false,
        initially_deferred: false,
    };
    let query = DuplicateQuery::new(&def, None);
    list_by_id(&mut client, &query);
    let schema = Ident::from_catalog("fkctl");
    for sql in fkctl::kinds::foreign_key::repair::create_archive_sql(&schema, &[]) {
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }
    let batch = repair::dedupe_batch_sql(&query, 500, &schema);
    let binds: [&(dyn postgres::types::ToSql + Sync); 3] = [&"run", &"change", &"t_key"];
    // Most of the list taken, each batch committed on its own.
    for _ in 0..30 {
        client
            .query_one(batch.as_str(), &binds)
            .unwrap_or_else(|e| panic!("{e}\n{batch}"));
    }
    let explained: Vec<String> = client
        .query(format!("EXPLAIN ANALYZE {batch}").as_str(), &binds)
        .unwrap_or_else(|e| panic!("{e}\n{batch}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let text = explained.join("\n");
    assert!(
        !text.contains("Seq Scan on fkctl_duplicate_rows"),
        "a batch must not read the whole list:\n{text}"
    );
    assert_eq!(compares_rows_with_the_batch(&text), None, "{text}");
    let left: i64 = client
        .query_one(repair::remaining_listed_sql().as_str(), &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(left, 20_000 - 31 * 500, "{text}");
}
