//! Removing duplicates without losing them, and putting them back.
//!
//! One scan of the table lists every surplus row's address (`tableoid`,
//! `ctid`) with the address of the row its group keeps: the first by
//! `keep.order_by`, the row's address breaking ties. Each batch then takes
//! the next addresses off the list and, in one statement, locks the kept
//! rows (FOR SHARE: the application cannot delete a kept row while its
//! duplicates go), deletes the listed rows that still have the key of their
//! kept row, and archives each deleted row whole in fkctl's archive
//! (`fkctl.archived_rows`, action `dedupe`, shared with foreign keys). A
//! listed row whose kept row has gone or changed stays, and the census after
//! the batches finds it for the next round: fkctl never removes the last row
//! of a key.

use super::definition::OrderColumn;
use super::violations::DuplicateQuery;
use crate::kinds::foreign_key::repair::archive_table;
use crate::model::PartitionKey;
use crate::sql::ident::{Ident, QualifiedName};

/// Session-local list of surplus rows, rebuilt on every (re)run.
pub const DUPLICATE_LIST: &str = "pg_temp.fkctl_duplicate_rows";
/// Session-local: the number of the next listed row a batch takes.
const DUPLICATE_NEXT: &str = "pg_temp.fkctl_duplicate_next";
/// The archive's action for rows a dedupe removed.
pub const ACTION: &str = "dedupe";

/// The window's order: `keep.order_by`, then the address, so that one run
/// keeps one well-defined row even when the order has ties.
fn keep_order(order_by: &[OrderColumn]) -> String {
    let mut parts: Vec<String> = order_by
        .iter()
        .map(|o| {
            format!(
                "d.{}{}",
                o.column.quoted(),
                if o.descending { " DESC" } else { "" }
            )
        })
        .collect();
    parts.push("d.tableoid".to_string());
    parts.push("d.ctid".to_string());
    parts.join(", ")
}

/// Every row but the first of each group of equal keys, numbered, with
/// its group's kept row; indexed on the number so that each batch takes the
/// next rows without reading the list again.
///
/// With NULLs distinct, a hash semi-join (the table against itself, on the
/// key, at another address) keeps only rows whose key repeats, so only
/// duplicates are sorted: the join's equality is the grouping's own (the
/// columns' `=` under their collations), and a NULL key joins nothing, as it
/// collides with nothing. NULLS NOT DISTINCT needs `IS NOT DISTINCT FROM`,
/// which no hash or merge join takes, so there the window sorts the whole
/// table.
pub fn collect_sql(query: &DuplicateQuery, order_by: &[OrderColumn]) -> Vec<String> {
    let source = if query.nulls_not_distinct {
        format!("{} WHERE {}", query.from("d"), query.candidates("d"))
    } else {
        format!(
            "{} WHERE {} AND EXISTS (SELECT 1 FROM {} WHERE {} AND NOT (b.tableoid OPERATOR(pg_catalog.=) d.tableoid AND b.ctid OPERATOR(pg_catalog.=) d.ctid))",
            query.from("d"),
            query.candidates("d"),
            query.from("b"),
            query.same_key("b", "d")
        )
    };
    // A partitioned table's rows carry their partition key values, and
    // their kept row's, so that a batch looks each address up only in the
    // partition that can hold it.
    let (mut listed, mut values) = (String::new(), String::new());
    for (name, key) in PartitionKey::listed(&query.partition_keys) {
        let column = key.column.quoted();
        listed.push_str(&format!(", s.{name}, s.keep_{name}"));
        values.push_str(&format!(
            ", d.{column} AS {name}, first_value(d.{column}) OVER w AS keep_{name}"
        ));
    }
    vec![
        format!("DROP TABLE IF EXISTS {DUPLICATE_LIST}"),
        format!(
            "CREATE TEMPORARY TABLE fkctl_duplicate_rows AS SELECT row_number() OVER () AS n, s.rel, s.row_id, s.keep_rel, s.keep_id{listed} FROM (SELECT d.tableoid AS rel, d.ctid AS row_id, first_value(d.tableoid) OVER w AS keep_rel, first_value(d.ctid) OVER w AS keep_id{values}, row_number() OVER w AS place FROM {source} WINDOW w AS (PARTITION BY {} ORDER BY {})) s WHERE s.place > 1",
            query.key("d"),
            keep_order(order_by)
        ),
        format!("CREATE INDEX ON {DUPLICATE_LIST} (n)"),
        format!("ANALYZE {DUPLICATE_LIST}"),
        format!("DROP TABLE IF EXISTS {DUPLICATE_NEXT}"),
        "CREATE TEMPORARY TABLE fkctl_duplicate_next AS SELECT 1::int8 AS n".to_string(),
    ]
}

/// Deletes one batch of listed rows and archives each, whole, in one
/// statement. Parameters: $1 run id, $2 change, $3 constraint name. Returns
/// (as text) how many addresses it took off the list: 0 once it is empty.
/// The batch is the index range of numbers from the one kept in
/// `DUPLICATE_NEXT`, advanced in the same statement; the list is only read.
/// (Deleting `n IN (SELECT n ... ORDER BY n LIMIT k)` hashed the rest of the
/// list and scanned all of it in every batch: quadratic in the duplicates,
/// 40 ms a batch at 200,000.) The deleted rows are found by the join on
/// their address alone: a `ctid = ANY(array)` test as well was applied as a
/// filter comparing every row with the whole batch (20,000 rows: 2 s, 0.13 s
/// without it).
pub fn dedupe_batch_sql(query: &DuplicateQuery, batch_size: u32, schema: &Ident) -> String {
    let key = query
        .columns
        .iter()
        .map(|c| format!("k.{}", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    // The kept rows by address: on a table read with ONLY a TID scan of the
    // batch's addresses; a partitioned table's by (partition, address),
    // since the same ctid in another partition is another row, and by
    // their partition key values, which lead each lookup to one partition.
    let keys = &query.partition_keys;
    let listed: String = PartitionKey::listed(keys)
        .map(|(name, _)| format!(", {name}, keep_{name}"))
        .collect();
    let kept_keys = PartitionKey::match_listed(keys, "k", "b.keep_");
    let deleted_keys = PartitionKey::match_listed(keys, "d", "b.");
    let kept_rows = if query.partitioned {
        format!("EXISTS (SELECT FROM batch b WHERE k.tableoid OPERATOR(pg_catalog.=) b.keep_rel AND k.ctid OPERATOR(pg_catalog.=) b.keep_id{kept_keys})")
    } else {
        "k.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT keep_id FROM batch))".to_string()
    };
    format!(
        "WITH next AS (UPDATE {DUPLICATE_NEXT} SET n = n + {batch_size} RETURNING n - {batch_size} AS first), batch AS (SELECT rel, row_id, keep_rel, keep_id{listed} FROM {DUPLICATE_LIST} WHERE n >= (SELECT first FROM next) AND n < (SELECT first FROM next) + {batch_size}), kept AS (SELECT k.tableoid AS fkctl_rel, k.ctid AS fkctl_row_id, {key} FROM {} WHERE {kept_rows} FOR SHARE OF k), purged AS (DELETE FROM {} USING batch b, kept k WHERE d.tableoid OPERATOR(pg_catalog.=) b.rel AND d.ctid OPERATOR(pg_catalog.=) b.row_id{deleted_keys} AND k.fkctl_rel OPERATOR(pg_catalog.=) b.keep_rel AND k.fkctl_row_id OPERATOR(pg_catalog.=) b.keep_id AND {} RETURNING d.tableoid::regclass::text AS source_table, to_jsonb(d) AS row_data), archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, '{ACTION}', row_data FROM purged) SELECT (SELECT count(*) FROM batch)::text",
        query.from("k"),
        query.from("d"),
        query.same_key("k", "d"),
        archive_table(schema).quoted()
    )
}

/// The listed rows not yet taken by a batch: the list is numbered 1..N
/// without gaps, so N less the numbers taken.
pub fn remaining_listed_sql() -> String {
    format!("SELECT greatest(coalesce((SELECT max(n) FROM {DUPLICATE_LIST}), 0) - (SELECT n FROM {DUPLICATE_NEXT}) + 1, 0)::int8")
}

/// The archived duplicates of run `$1` as rows of the table's current type, aliased `r`.
fn archived_rows(table: &QualifiedName, schema: &Ident) -> String {
    format!(
        "{} a CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, a.row_data) r WHERE a.run_id = $1 AND a.action = '{ACTION}'",
        archive_table(schema).quoted(),
        table.quoted()
    )
}

/// A live row has the archived row `r`'s key.
fn collides(query: &DuplicateQuery) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {} WHERE {})",
        query.from("d"),
        query.same_key("d", "r")
    )
}

/// Moves one listed batch of archived duplicates of run `$1` back into the
/// table: only rows whose key no live row has now, and of several archived
/// rows with one key only the first archived, so that the table stays free of
/// duplicates; each removed from the archive in the same statement. Returns
/// the rows moved, as text, and fails (rolling the batch back) if the table
/// took in fewer rows than left the archive. `columns`: the table's
/// columns that take a value (not generated); identity values are kept.
pub fn restore_batch_sql(query: &DuplicateQuery, schema: &Ident, columns: &[Ident]) -> String {
    use crate::kinds::foreign_key::repair as shared;
    let archive = archive_table(schema).quoted();
    let insert = shared::insert_sql(&query.table, columns, "r");
    format!(
        "WITH {take}, first AS (SELECT DISTINCT ON ({key}) a.id FROM {archive} a CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, a.row_data) r WHERE {listed} AND NOT {collides} ORDER BY {key}, a.id), batch AS (SELECT a.id FROM {archive} a WHERE a.id IN (SELECT id FROM first) FOR UPDATE OF a), moved AS (DELETE FROM {archive} a USING batch WHERE a.id = batch.id RETURNING a.row_data), put AS ({insert} FROM moved CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, moved.row_data) r RETURNING 1) {moved_as_put}",
        take = shared::take_restore_batch(),
        key = query.key("r"),
        // The listed rows alone (the list was made of the run's dedupe rows):
        // with the run and action tested again the planner estimated a
        // single row and checked each row's key against the table by a
        // scan of it, which a table whose unique index is gone (dropped
        // again since the rollback) cannot afford: 25,000 rows put back of
        // 100,000 took 168 s.
        listed = "a.id IN (SELECT unnest(addresses) FROM listed)",
        collides = collides(query),
        table = query.table.quoted(),
        moved_as_put = shared::listed_moved_as_put(),
    )
}

/// The list a restore works through (see
/// `foreign_key::repair::restore_list_sql`): every archived duplicate of
/// run `$1`, in archive order, so that of several rows with one key the
/// first archived comes first.
pub fn restore_list_sql(schema: &Ident, batch_size: u32) -> Vec<String> {
    crate::kinds::foreign_key::repair::restore_list_sql(
        "a.id",
        "int8",
        &format!(
            "{} a WHERE a.run_id = $1 AND a.action = '{ACTION}'",
            archive_table(schema).quoted()
        ),
        batch_size,
    )
}

/// Archived duplicates of run `$1` still in the archive.
pub fn archived_left_sql(query: &DuplicateQuery, schema: &Ident) -> String {
    format!(
        "SELECT count(*) FROM {}",
        archived_rows(&query.table, schema)
    )
}

/// Up to 20 archived rows of run `$1` that collide with a live row: their
/// archive id and key, to name them.
pub fn colliding_sql(query: &DuplicateQuery, schema: &Ident) -> String {
    let key_text = query
        .columns
        .iter()
        .map(|c| format!("r.{}::text", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT a.id, ARRAY[{key_text}]::text[] FROM {} AND {} ORDER BY a.id LIMIT 20",
        archived_rows(&query.table, schema),
        collides(query)
    )
}
