//! SQL for removing orphans without losing them: the archive table, the one
//! pass that collects orphan row addresses, and the per-batch statement that
//! deletes (or nullifies) a batch and archives it in the same statement.
//!
//! The child table is scanned once to collect addresses (`tableoid`, `ctid`:
//! ctid alone is not unique across partitions); each batch then touches only
//! its own rows by address, re-checking the orphan condition at that moment,
//! so a parent row that has come back saves its child. A row whose address
//! changed in between is skipped and found again by the final census.

use super::violations::OrphanQuery;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};
use serde::Serialize;

/// fkctl's own schema (journal and archive).
pub const DEFAULT_SCHEMA: &str = "fkctl";
const ARCHIVE_TABLE: &str = "archived_rows";
/// Session-local list of orphan addresses, rebuilt on every (re)run.
pub const ORPHAN_LIST: &str = "pg_temp.fkctl_orphan_rows";

pub fn archive_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema.clone(), Ident::from_catalog(ARCHIVE_TABLE))
}

pub fn create_archive_sql(schema: &Ident) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id text NOT NULL, change text NOT NULL, constraint_name text NOT NULL, source_table text NOT NULL, action text NOT NULL, row_data jsonb NOT NULL, archived_at timestamptz NOT NULL DEFAULT now())",
            archive_table(schema).quoted()
        ),
    ]
}

/// One scan of the child: the address of every orphan, numbered, with an
/// index on the number so that each batch takes the next rows without
/// reading the whole list again.
pub fn collect_sql(query: &OrphanQuery) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {ORPHAN_LIST}"),
        format!(
            "CREATE TEMPORARY TABLE fkctl_orphan_rows AS SELECT row_number() OVER () AS n, fk.tableoid AS rel, fk.ctid AS row_id FROM {} WHERE {}",
            query.child_from(),
            query.predicate()
        ),
        format!("CREATE INDEX ON {ORPHAN_LIST} (n)"),
        format!("ANALYZE {ORPHAN_LIST}"),
    ]
}

/// Takes the next `batch_size` addresses off the list (index order).
fn take_batch(batch_size: u32) -> String {
    format!(
        "batch AS (DELETE FROM {ORPHAN_LIST} WHERE n IN (SELECT n FROM {ORPHAN_LIST} ORDER BY n LIMIT {batch_size}) RETURNING rel, row_id)"
    )
}

/// The batch's rows of the child, found by address. `ctid = ANY(array)` is
/// a TID scan on every table or partition, whatever the planner estimates
/// (a join on ctid can degrade into a nested loop over the whole child per
/// batch); the tableoid test then keeps each address to its own partition.
fn batch_rows(batch: &str) -> String {
    format!(
        "fk.ctid = ANY (ARRAY(SELECT row_id FROM {batch})) AND (fk.tableoid, fk.ctid) IN (SELECT rel, row_id FROM {batch})"
    )
}

/// The statement's one result: how many addresses the batch took off the
/// list (0 once the list is empty), as text.
const TAKEN: &str = "SELECT (SELECT count(*) FROM batch)::text";

/// Deletes one batch and archives every deleted row, whole, in one statement.
/// Parameters: $1 run id, $2 change, $3 constraint name.
pub fn delete_batch_sql(query: &OrphanQuery, batch_size: u32, schema: &Ident) -> String {
    format!(
        "WITH {}, purged AS (DELETE FROM {} WHERE {} AND {} RETURNING fk.tableoid::regclass::text AS source_table, to_jsonb(fk) AS row_data), archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, 'delete', row_data FROM purged) {TAKEN}",
        take_batch(batch_size),
        query.child_from(),
        batch_rows("batch"),
        query.predicate(),
        archive_table(schema).quoted()
    )
}

/// Sets the key columns of one batch to NULL, archiving each row as it was.
/// Parameters as for [`delete_batch_sql`].
pub fn nullify_batch_sql(query: &OrphanQuery, batch_size: u32, schema: &Ident) -> String {
    let set = query
        .keys
        .iter()
        .map(|k| format!("{} = NULL", k.fk_column.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH {}, old AS (SELECT fk.tableoid AS rel, fk.ctid AS row_id, to_jsonb(fk) AS row_data FROM {} WHERE {} AND {} FOR UPDATE OF fk), changed AS (UPDATE {} SET {set} FROM old WHERE {} AND fk.tableoid = old.rel AND fk.ctid = old.row_id RETURNING fk.tableoid::regclass::text AS source_table, old.row_data), archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, 'nullify', row_data FROM changed) {TAKEN}",
        take_batch(batch_size),
        query.child_from(),
        batch_rows("batch"),
        query.predicate(),
        query.child_from(),
        batch_rows("old"),
        archive_table(schema).quoted()
    )
}

/// How many listed orphan addresses are still to be handled.
pub fn remaining_listed_sql() -> String {
    format!("SELECT count(*) FROM {ORPHAN_LIST}")
}

/// How many rows the archive holds for this change and constraint.
pub fn archived_count_sql(schema: &Ident, change: &str, constraint: &Ident) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE change = {} AND constraint_name = {}",
        archive_table(schema).quoted(),
        quote_literal(change),
        quote_literal(constraint.as_str())
    )
}

/// How archived rows go back into the child table, decided from the table's
/// live columns and the keys of the archived rows (see `plan::restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreColumns {
    /// The columns the INSERT lists, in table order: live, not generated,
    /// and present in every archived row. Columns left out get their default.
    pub insert: Vec<Ident>,
    /// Archived keys removed before the jsonb is read as a row: generated
    /// columns, which PostgreSQL recomputes, so a value of an older type never
    /// has to convert.
    pub unread: Vec<Ident>,
}

fn text_array(names: &[Ident]) -> String {
    let items = names
        .iter()
        .map(|n| quote_literal(n.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("ARRAY[{items}]::text[]")
}

/// `jsonb_populate_record(NULL::child, json)`: archived json as a row of the
/// child's current type, each value converted to its column's current type.
fn archived_record(query: &OrphanQuery, json: &str, columns: &RestoreColumns) -> String {
    let json = if columns.unread.is_empty() {
        json.to_string()
    } else {
        format!("{json} - {}", text_array(&columns.unread))
    };
    format!(
        "jsonb_populate_record(NULL::{}, {json})",
        query.child.quoted()
    )
}

/// The archived rows of run `$1` as rows of the child table, aliased `fk`,
/// so that the orphan predicate applies to them unchanged.
fn archived_as_child(query: &OrphanQuery, schema: &Ident, columns: &RestoreColumns) -> String {
    format!(
        "{} a CROSS JOIN LATERAL {} fk WHERE a.run_id = $1 AND a.action = 'delete'",
        archive_table(schema).quoted(),
        archived_record(query, "a.row_data", columns)
    )
}

/// Moves one batch of archived rows of run `$1` back into the child table:
/// only rows that would not be orphans now (their parent is back), removed
/// from the archive in the same statement. A row is always in exactly one place.
///
/// The INSERT names its columns (generated columns are recomputed, columns
/// added since the archive was written get their default) and keeps identity
/// values (OVERRIDING SYSTEM VALUE). The statement returns the number of rows
/// moved, and fails, so that the whole batch rolls back, if the table took in
/// fewer rows than left the archive (a trigger that skips rows).
pub fn restore_batch_sql(
    query: &OrphanQuery,
    batch_size: u32,
    schema: &Ident,
    columns: &RestoreColumns,
) -> String {
    let archive = archive_table(schema).quoted();
    let child = query.child.quoted();
    let list = columns
        .insert
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .insert
        .iter()
        .map(|c| format!("fk.{}", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH batch AS (SELECT a.id FROM {} AND NOT ({}) ORDER BY a.id LIMIT {batch_size} FOR UPDATE OF a), moved AS (DELETE FROM {archive} a USING batch WHERE a.id = batch.id RETURNING a.row_data), put AS (INSERT INTO {child} ({list}) OVERRIDING SYSTEM VALUE SELECT {values} FROM moved CROSS JOIN LATERAL {} fk RETURNING 1) SELECT (CASE WHEN m.n = p.n THEN p.n ELSE ('fkctl: ' || m.n || ' archived row(s) left the archive but ' || p.n || ' went into the table (a trigger or rule skipped rows); the batch is rolled back')::int8 END)::text FROM (SELECT count(*) AS n FROM moved) m, (SELECT count(*) AS n FROM put) p",
        archived_as_child(query, schema, columns),
        query.predicate(),
        archived_record(query, "moved.row_data", columns)
    )
}

/// Archived rows of run `$1` that would still be orphans: refused by restore.
pub fn restore_refused_sql(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
) -> String {
    format!(
        "SELECT count(*) FROM {} AND ({})",
        archived_as_child(query, schema, columns),
        query.predicate()
    )
}

/// Reads every archived row of run `$1` as a row of the table's current type:
/// fails, changing nothing, if a value no longer converts to its column's type.
pub fn restore_convert_sql(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
) -> String {
    format!(
        "SELECT count(*) FROM {}",
        archived_as_child(query, schema, columns)
    )
}

/// The same conversion for one column alone, to name the column that fails.
pub fn restore_convert_column_sql(query: &OrphanQuery, schema: &Ident, column: &Ident) -> String {
    let key = quote_literal(column.as_str());
    format!(
        "SELECT count(*) FROM {} a CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, jsonb_build_object({key}, a.row_data -> {key})) fk WHERE a.run_id = $1 AND a.action = 'delete'",
        archive_table(schema).quoted(),
        query.child.quoted()
    )
}

/// The keys of the archived rows of run `$1`, each with the number of rows
/// that have it (rows archived before a column was added lack its key).
pub fn archived_keys_sql(schema: &Ident) -> String {
    format!(
        "SELECT k.key, count(*) FROM {} a CROSS JOIN LATERAL jsonb_object_keys(a.row_data) k(key) WHERE a.run_id = $1 AND a.action = 'delete' GROUP BY k.key ORDER BY k.key",
        archive_table(schema).quoted()
    )
}

/// Archived rows of run `$1`, by action.
pub fn archived_by_run_sql(schema: &Ident) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE action = 'delete'), count(*) FILTER (WHERE action = 'nullify') FROM {} WHERE run_id = $1",
        archive_table(schema).quoted()
    )
}
