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
use crate::model::PartitionKey;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};
use serde::Serialize;

pub mod cascade;
pub mod typed;

/// Which archived rows of run `$1` a restore reads: those of one action,
/// and for a cascade level those of its table (`source_table` as the purge
/// wrote it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedSet {
    pub action: String,
    pub source: Option<String>,
}

impl ArchivedSet {
    /// The child's own deleted rows.
    pub fn deleted() -> ArchivedSet {
        ArchivedSet {
            action: "delete".to_string(),
            source: None,
        }
    }

    /// The child's own nullified rows.
    pub fn nullified() -> ArchivedSet {
        ArchivedSet {
            action: "nullify".to_string(),
            source: None,
        }
    }

    /// The condition on archive rows aliased `a`.
    fn condition(&self) -> String {
        let mut out = format!(
            "a.run_id = $1 AND a.action = {}",
            quote_literal(&self.action)
        );
        if let Some(source) = &self.source {
            out.push_str(" AND a.source_table = ");
            out.push_str(&quote_literal(source));
        }
        out
    }
}

/// fkctl's own schema (journal and archive).
pub const DEFAULT_SCHEMA: &str = "fkctl";
const ARCHIVE_TABLE: &str = "archived_rows";
/// Session-local list of orphan addresses, rebuilt on every (re)run.
pub const ORPHAN_LIST: &str = "pg_temp.fkctl_orphan_rows";
/// Session-local: the number of the next batch (row of the list) to take.
const LIST_NEXT: &str = "pg_temp.fkctl_orphan_next";
/// Session-local list of the archived rows a restore works through, and
/// the number of its next batch.
const RESTORE_LIST: &str = "pg_temp.fkctl_restore_rows";
const RESTORE_NEXT: &str = "pg_temp.fkctl_restore_next";

pub fn archive_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema.clone(), Ident::from_catalog(ARCHIVE_TABLE))
}

/// The general archive, the registry of tables of deleted rows (with
/// `typed`'s, the tables a rollback deletes into), and the view over all:
/// one transaction, under `typed::LOCK_SQL`.
pub fn create_archive_sql(schema: &Ident, typed: &[typed::Typed<'_>]) -> Vec<String> {
    let mut sql = vec![
        typed::LOCK_SQL.to_string(),
        format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000) PRIMARY KEY, run_id text NOT NULL, change text NOT NULL, constraint_name text NOT NULL, source_table text NOT NULL, action text NOT NULL, row_data jsonb NOT NULL, archived_at timestamptz NOT NULL DEFAULT now())",
            archive_table(schema).quoted()
        ),
        // Which columns identify a nullified row (NULL for deleted rows):
        // added to archives written before fkctl recorded it.
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS identity_columns text[]",
            archive_table(schema).quoted()
        ),
    ];
    sql.extend(typed::registry_sql(schema));
    for typed in typed {
        sql.extend(typed::prepare_sql(schema, typed));
    }
    sql.push(typed::view_sql(schema));
    sql
}

/// One scan of the child: the address of every orphan, in batches of
/// `batch_size` (one row of the list per batch: its number, its size and
/// its addresses as arrays). An index on the batch number lets each batch
/// find its row directly; the arrays are left out of ANALYZE, which would
/// otherwise read every one of them. A row per address, numbered and
/// indexed, cost about 40 ms more at 100,000 orphans (the index build and
/// ANALYZE), and each batch then gathered its addresses again.
pub fn collect_sql(query: &OrphanQuery, batch_size: u32) -> Vec<String> {
    // A ctid is unique only within its table: a partitioned child keeps each
    // address's partition, both arrays in the list's order. An unpartitioned
    // one needs no order (ordering every batch's addresses cost a sort of the
    // whole list, about a third of this statement at 100,000 orphans).
    // Its partition key values go along, so that each batch reads only the
    // partitions that hold its rows.
    let (addresses, unanalyzed) = if query.child_partitioned {
        let keys = PartitionKey::listed(&query.partition_keys).map(|(name, _)| name);
        let mut addresses =
            "array_agg(row_id ORDER BY n) AS row_ids, array_agg(rel ORDER BY n) AS rels"
                .to_string();
        let mut unanalyzed =
            "ALTER COLUMN row_ids SET STATISTICS 0, ALTER COLUMN rels SET STATISTICS 0".to_string();
        for key in keys {
            addresses.push_str(&format!(", array_agg({key} ORDER BY n) AS {key}s"));
            unanalyzed.push_str(&format!(", ALTER COLUMN {key}s SET STATISTICS 0"));
        }
        (addresses, unanalyzed)
    } else {
        (
            "array_agg(row_id) AS row_ids".to_string(),
            "ALTER COLUMN row_ids SET STATISTICS 0".to_string(),
        )
    };
    let key_values = PartitionKey::values_of(&query.partition_keys, "fk");
    let batch_size = batch_size.max(1);
    vec![
        // Parallel workers for the scan, as the census's count gets them:
        // the planner otherwise prices sending each address to the leader
        // above reading the table alone (about a third of the scan's time
        // at 200,000 rows). For this transaction only.
        "SET LOCAL parallel_setup_cost = 0".to_string(),
        "SET LOCAL parallel_tuple_cost = 0".to_string(),
        format!("DROP TABLE IF EXISTS {ORPHAN_LIST}"),
        format!(
            "CREATE TEMPORARY TABLE fkctl_orphan_rows AS SELECT (n - 1) / {batch_size} AS batch, count(*) AS size, {addresses} FROM (SELECT row_number() OVER () AS n, fk.tableoid AS rel, fk.ctid AS row_id{key_values} FROM {} WHERE {}) listed GROUP BY 1",
            query.child_from(),
            query.predicate()
        ),
        format!("CREATE INDEX ON {ORPHAN_LIST} (batch)"),
        format!("ALTER TABLE {ORPHAN_LIST} {unanalyzed}"),
        format!("ANALYZE {ORPHAN_LIST}"),
        format!("DROP TABLE IF EXISTS {LIST_NEXT}"),
        "CREATE TEMPORARY TABLE fkctl_orphan_next AS SELECT 0::int8 AS n".to_string(),
    ]
}

/// Takes the next batch of the list: the one numbered in `LIST_NEXT`,
/// advanced in the same statement. The list itself is only read (removing
/// each taken address cost about a seventh of the purge at 100,000
/// orphans): the kept number is the progress. A batch that rolls back puts
/// the number back.
fn take_batch() -> String {
    format!(
        "next AS (UPDATE {LIST_NEXT} SET n = n + 1 RETURNING n - 1 AS taken), batch AS (SELECT * FROM {ORPHAN_LIST} WHERE batch = (SELECT taken FROM next))"
    )
}

/// The batch's rows of the child, found by address, at a cost linear in
/// the batch whatever the planner estimates. Unpartitioned (read with
/// ONLY): `ctid = ANY(array)`, a TID scan of exactly the listed rows. A
/// partitioned child needs each address's partition too, since a ctid is
/// unique only within its table: the pairs are unnested from the batch's
/// arrays (estimated at a few rows), and each pair finds its row by a TID
/// lookup. With the row's partition key values beside it (NOT NULL key
/// columns), the executor skips every partition that cannot hold them:
/// one lookup per address. Without them, one per address and partition
/// (a 1,000-row batch took 65 ms in 64 partitions, 5.5 ms with them).
/// There, `ctid = ANY(array)` as well made the planner test every row
/// against the whole array (a filter, not a TID condition): quadratic,
/// 3.5 s for a batch of 5,000 in 4 partitions.
fn batch_rows(query: &OrphanQuery) -> String {
    if !query.child_partitioned {
        return "fk.ctid OPERATOR(pg_catalog.=) ANY ((SELECT row_ids FROM batch)::tid[])"
            .to_string();
    }
    let (mut arrays, mut names) = (
        "(SELECT rels FROM batch)::oid[], (SELECT row_ids FROM batch)::tid[]".to_string(),
        "rel, row_id".to_string(),
    );
    for (name, _) in PartitionKey::listed(&query.partition_keys) {
        arrays.push_str(&format!(", (SELECT {name}s FROM batch)"));
        names.push_str(&format!(", {name}"));
    }
    format!(
        "EXISTS (SELECT FROM unnest({arrays}) AS a({names}) WHERE fk.tableoid OPERATOR(pg_catalog.=) a.rel AND fk.ctid OPERATOR(pg_catalog.=) a.row_id{})",
        PartitionKey::match_listed(&query.partition_keys, "fk", "a.")
    )
}

/// The name of the table a removed row `fk` came from, as archived: its
/// partition's for a partitioned child, read per row; otherwise the child's,
/// read once per statement (per row it cost about 0.2 µs, a twentieth of
/// a purge batch). Both are `regclass` text, as the session names it.
fn source_table(query: &OrphanQuery) -> String {
    if query.child_partitioned {
        "fk.tableoid::regclass::text".to_string()
    } else {
        format!(
            "(SELECT {}::regclass::text)",
            quote_literal(&query.child.quoted())
        )
    }
}

/// How many addresses the batch took off the list (0 once the list is
/// empty).
const BATCH_SIZE: &str = "coalesce((SELECT size FROM batch), 0)";

/// The statement's one result: [`BATCH_SIZE`], as text.
fn taken() -> String {
    format!("SELECT {BATCH_SIZE}::text")
}

/// The first statement of every purge batch's transaction.
pub const ASYNC_BATCH_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// Why a batch commits without waiting for the WAL flush.
// Measured: about 15% of the purge's time at 20,000 orphans in 200,000 rows.
pub const ASYNC_BATCH_COMMIT_WHY: &str = " A batch commits without waiting for its WAL to reach disk (synchronous_commit = off, for that transaction only): a server crash can undo the last batches, each whole (the row is back in its table, not in the archive), and the next commit that does wait (the journal's, right after the batches) makes every batch before it durable.";

/// Deletes one batch and archives every deleted row, whole, in one statement.
/// Parameters: $1 run id, $2 change, $3 constraint name.
pub fn delete_batch_sql(query: &OrphanQuery, schema: &Ident) -> String {
    format!(
        "WITH {}, purged AS (DELETE FROM {} WHERE {} AND {} RETURNING {} AS source_table, to_jsonb(fk) AS row_data), archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, 'delete', row_data FROM purged) {}",
        take_batch(),
        query.child_from(),
        batch_rows(query),
        query.predicate(),
        source_table(query),
        archive_table(schema).quoted(),
        taken()
    )
}

/// Sets the key columns of one batch to NULL, archiving each row as it was
/// with the names of the columns that find it again (`identity`, the child's
/// row identity; NULL when a plan from the playbook alone does not know it).
/// Parameters as for [`delete_batch_sql`]. The UPDATE finds each locked row
/// by a join on its address alone: a `ctid = ANY(array)` test as well was
/// applied as a filter comparing every row with the whole batch (quadratic:
/// 20,000 rows took 2.1 s, 0.26 s without it).
pub fn nullify_batch_sql(
    query: &OrphanQuery,
    schema: &Ident,
    identity: Option<&[Ident]>,
) -> String {
    let identity = identity.map_or_else(|| "NULL::text[]".to_string(), text_array);
    let set = query
        .keys
        .iter()
        .map(|k| format!("{} = NULL", k.fk_column.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    let key_values = PartitionKey::values_of(&query.partition_keys, "fk");
    let key_matches = PartitionKey::match_listed(&query.partition_keys, "fk", "old.");
    format!(
        "WITH {}, old AS (SELECT fk.tableoid AS rel, fk.ctid AS row_id{key_values}, to_jsonb(fk) AS row_data FROM {} WHERE {} AND {} FOR UPDATE OF fk), changed AS (UPDATE {} SET {set} FROM old WHERE fk.tableoid OPERATOR(pg_catalog.=) old.rel AND fk.ctid OPERATOR(pg_catalog.=) old.row_id{key_matches} RETURNING {} AS source_table, old.row_data), archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data, identity_columns) SELECT $1, $2, $3, source_table, 'nullify', row_data, {identity} FROM changed) {}",
        take_batch(),
        query.child_from(),
        batch_rows(query),
        query.predicate(),
        query.child_from(),
        source_table(query),
        archive_table(schema).quoted(),
        taken()
    )
}

/// How many listed orphan addresses are still to be handled: the sizes of
/// the batches not yet taken (one row per batch, never per address).
pub fn remaining_listed_sql() -> String {
    format!("SELECT coalesce(sum(size), 0)::int8 FROM {ORPHAN_LIST} WHERE batch >= (SELECT n FROM {LIST_NEXT})")
}

/// How many rows of `set` the archive still holds: what a restore checks
/// after its batches.
pub fn archived_left_sql(schema: &Ident, set: &ArchivedSet) -> String {
    format!(
        "SELECT count(*) FROM {} a WHERE {}",
        archive_table(schema).quoted(),
        set.condition()
    )
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
    /// The table of the child's own shape the rows are read from, value for
    /// value (`typed`); None: the general archive, through jsonb.
    pub from: Option<QualifiedName>,
}

pub fn text_array(names: &[Ident]) -> String {
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
fn archived_as_child(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
) -> String {
    if let Some(table) = &columns.from {
        return typed::as_child(table);
    }
    format!(
        "{} a CROSS JOIN LATERAL {} fk WHERE {}",
        archive_table(schema).quoted(),
        archived_record(query, "a.row_data", columns),
        set.condition()
    )
}

/// Lists, in one scan, the rows a restore works through: `address` (the
/// archive's `a.id`, or `fk.ctid` in a table of the child's shape) of each
/// row `rows` yields (a FROM ... WHERE on run `$1`), in batches of
/// `batch_size` in address order, with a counter of the batches taken.
/// Each batch then finds its rows by address: however many rows must wait
/// (their parent still missing), each row is read once per restore, and no
/// planner estimate can turn a batch into a sort of every archived row (50,000
/// children with 100,000 grandchildren took 27 s to restore that way).
pub fn restore_list_sql(
    address: &str,
    address_type: &str,
    rows: &str,
    batch_size: u32,
) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {RESTORE_LIST}"),
        format!("CREATE TEMPORARY TABLE fkctl_restore_rows (batch int8 PRIMARY KEY, addresses {address_type}[] NOT NULL)"),
        format!("INSERT INTO {RESTORE_LIST} SELECT (n - 1) / {batch_size}, array_agg(address ORDER BY n) FROM (SELECT row_number() OVER (ORDER BY {address}) AS n, {address} AS address FROM {rows}) listed GROUP BY 1"),
        format!("DROP TABLE IF EXISTS {RESTORE_NEXT}"),
        format!("CREATE TEMPORARY TABLE fkctl_restore_next AS SELECT 0::int8 AS n"),
    ]
}

/// The restore list's batch a statement takes, advancing the counter:
/// CTEs `next` and `listed` (its addresses, no row once the list is done).
pub(crate) fn take_restore_batch() -> String {
    format!(
        "next AS (UPDATE {RESTORE_NEXT} SET n = n + 1 RETURNING n - 1 AS taken), listed AS (SELECT addresses FROM {RESTORE_LIST} WHERE batch = (SELECT taken FROM next))"
    )
}

/// `address` is one of the listed batch's (`listed`, see [`take_restore_batch`]).
pub(crate) fn in_listed(address: &str, address_type: &str) -> String {
    format!(
        "{address} OPERATOR(pg_catalog.=) ANY ((SELECT addresses FROM listed)::{address_type}[])"
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
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
    identity: Option<&[Ident]>,
) -> String {
    let not_taken = identity_taken(query, identity)
        .map(|taken| format!(" AND NOT {taken}"))
        .unwrap_or_default();
    let candidates = format!(
        "{} AND NOT ({}){not_taken}",
        archived_as_child(query, schema, columns, set),
        query.predicate()
    );
    let insert = insert_sql(&query.child, &columns.insert, "fk");
    if let Some(table) = &columns.from {
        return typed::restore_batch_sql(
            table,
            &take_restore_batch(),
            &format!("{candidates} AND {}", in_listed("fk.ctid", "tid")),
            &insert,
        );
    }
    let archive = archive_table(schema).quoted();
    format!(
        "WITH {}, batch AS (SELECT a.id FROM {candidates} AND {} FOR UPDATE OF a), moved AS (DELETE FROM {archive} a USING batch WHERE a.id = batch.id RETURNING a.row_data), put AS ({insert} FROM moved CROSS JOIN LATERAL {} fk RETURNING 1) {}",
        take_restore_batch(),
        in_listed("a.id", "int8"),
        archived_record(query, "moved.row_data", columns),
        listed_moved_as_put()
    )
}

/// What a restore of `set` lists (see [`restore_list_sql`]): every row of
/// run `$1` archived there, whether or not it can go back now.
pub fn restore_rows_list_sql(
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
    batch_size: u32,
) -> Vec<String> {
    match &columns.from {
        Some(table) => restore_list_sql("fk.ctid", "tid", &typed::as_child(table), batch_size),
        None => restore_list_sql(
            "a.id",
            "int8",
            &format!(
                "{} a WHERE {}",
                archive_table(schema).quoted(),
                set.condition()
            ),
            batch_size,
        ),
    }
}

/// [`restore_list_sql`] for a restore of nullified keys.
pub fn restore_keys_list_sql(
    schema: &Ident,
    identity: &[Ident],
    set: &ArchivedSet,
    batch_size: u32,
) -> Vec<String> {
    let (from, archived) = nullified_of_run(schema, identity, set);
    restore_list_sql(
        "a.id",
        "int8",
        &format!("{from} WHERE {archived}"),
        batch_size,
    )
}

/// `INSERT INTO table (columns) OVERRIDING SYSTEM VALUE SELECT alias.column, ...`:
/// a restore's insert of archived rows (aliased `alias`), identity values kept.
pub(crate) fn insert_sql(table: &QualifiedName, columns: &[Ident], alias: &str) -> String {
    let list = columns
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .iter()
        .map(|c| format!("{alias}.{}", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {values}",
        table.quoted()
    )
}

/// The restore batch's result: the rows it moved, as text, or an error
/// (rolling the batch back) when the table took fewer rows (`put`) than
/// left the archive (`moved`): a trigger or rule that skips rows.
pub(crate) fn moved_as_put() -> &'static str {
    "SELECT (CASE WHEN m.n = p.n THEN p.n ELSE ('fkctl: ' || m.n || ' archived row(s) left the archive but ' || p.n || ' went into the table (a trigger or rule skipped rows); the batch is rolled back')::int8 END)::text FROM (SELECT count(*) AS n FROM moved) m, (SELECT count(*) AS n FROM put) p"
}

/// [`moved_as_put`] for a batch of the restore list: no row at all once the
/// list is done (a batch whose rows all wait moves 0 and the next goes on).
pub(crate) fn listed_moved_as_put() -> String {
    format!("{} WHERE EXISTS (SELECT FROM listed)", moved_as_put())
}

/// A live row of the table already has the identity of the archived row
/// `fk` (the application wrote it since the rollback): that row waits in
/// the archive rather than stop every batch after it with a duplicate key.
/// None when the table has no row identity.
fn identity_taken(query: &OrphanQuery, identity: Option<&[Ident]>) -> Option<String> {
    let identity = identity.filter(|columns| !columns.is_empty())?;
    let same = identity
        .iter()
        .map(|c| format!("c.{0} = fk.{0}", c.quoted()))
        .collect::<Vec<_>>()
        .join(" AND ");
    Some(format!(
        "EXISTS (SELECT FROM {} WHERE {same})",
        query.child_as("c")
    ))
}

/// Archived rows of run `$1` whose parent is back but whose identity a live
/// row has taken: they wait in the archive. None without a row identity.
pub fn restore_taken_sql(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
    identity: Option<&[Ident]>,
) -> Option<String> {
    let taken = identity_taken(query, identity)?;
    Some(format!(
        "SELECT count(*) FROM {} AND NOT ({}) AND {taken}",
        archived_as_child(query, schema, columns, set),
        query.predicate()
    ))
}

/// Archived rows of run `$1` that would still be orphans: refused by restore.
pub fn restore_refused_sql(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
) -> String {
    format!(
        "SELECT count(*) FROM {} AND ({})",
        archived_as_child(query, schema, columns, set),
        query.predicate()
    )
}

/// Reads every archived row of run `$1` as a row of the table's current type:
/// fails, changing nothing, if a value no longer converts to its column's type.
pub fn restore_convert_sql(
    query: &OrphanQuery,
    schema: &Ident,
    columns: &RestoreColumns,
    set: &ArchivedSet,
) -> String {
    format!(
        "SELECT count(*) FROM {}",
        archived_as_child(query, schema, columns, set)
    )
}

/// The same conversion for one column alone, to name the column that fails.
pub fn restore_convert_column_sql(
    query: &OrphanQuery,
    schema: &Ident,
    column: &Ident,
    set: &ArchivedSet,
) -> String {
    let key = quote_literal(column.as_str());
    format!(
        "SELECT count(*) FROM {} a CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, jsonb_build_object({key}, a.row_data -> {key})) fk WHERE {}",
        archive_table(schema).quoted(),
        query.child.quoted(),
        set.condition()
    )
}

/// The keys of the archived rows of run `$1`, each with the number of rows
/// that have it (rows archived before a column was added lack its key).
pub fn archived_keys_sql(schema: &Ident, set: &ArchivedSet) -> String {
    format!(
        "SELECT k.key, count(*) FROM {} a CROSS JOIN LATERAL jsonb_object_keys(a.row_data) k(key) WHERE {} GROUP BY k.key ORDER BY k.key",
        archive_table(schema).quoted(),
        set.condition()
    )
}

/// Archived rows of run `$1` in `archive` (a quoted name: the general
/// archive, or the view over every archive table), by action: deleted,
/// nullified, archived from the cascade below the child.
pub fn archived_by_run_sql(archive: &str) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE action = 'delete'), count(*) FILTER (WHERE action = 'nullify'), count(*) FILTER (WHERE action LIKE 'cascade-%') FROM {archive} WHERE run_id = $1"
    )
}

/// The identity and key columns of an archived row (json `a.row_data`) as a
/// row of the child's current type, aliased `fk`: only those columns are
/// read, so a change to another column's type never stops a restore.
fn archived_keys_as_child(query: &OrphanQuery, identity: &[Ident]) -> String {
    let pairs = identity
        .iter()
        .chain(query.keys.iter().map(|k| &k.fk_column))
        .map(|c| {
            let key = quote_literal(c.as_str());
            format!("{key}, a.row_data -> {key}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, jsonb_build_object({pairs})) fk",
        query.child.quoted()
    )
}

/// `c.id = fk.id AND ...`: the live row `c` that archived row `fk` was.
fn same_identity(identity: &[Ident]) -> String {
    identity
        .iter()
        .map(|c| format!("c.{0} = fk.{0}", c.quoted()))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The live row `c` still holds the key values its archived row `a` lost:
/// NULL in every key column (fkctl's nullify, a SET NULL cascade), or, for a
/// SET DEFAULT cascade, the values recorded as written (`a.written_keys`).
fn keys_cleared(query: &OrphanQuery, set: &ArchivedSet) -> String {
    let written = set.action == cascade::SET_DEFAULT;
    query
        .keys
        .iter()
        .map(|k| {
            let column = k.fk_column.quoted();
            if written {
                format!(
                    "c.{column} IS NOT DISTINCT FROM (jsonb_populate_record(NULL::{}, a.written_keys)).{column}",
                    query.child.quoted()
                )
            } else {
                format!("c.{column} IS NULL")
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Archived nullified rows of run `$1` recorded with exactly this identity:
/// the FROM item (aliased `a`) and the condition.
fn nullified_of_run(schema: &Ident, identity: &[Ident], set: &ArchivedSet) -> (String, String) {
    (
        format!("{} a", archive_table(schema).quoted()),
        format!(
            "{} AND a.identity_columns = {}",
            set.condition(),
            text_array(identity)
        ),
    )
}

/// Puts one batch of nullified keys of run `$1` back: each archived row finds
/// its live row by `identity` and gets its archived key values back, only
/// where that row's key columns still hold what fkctl or the cascade wrote
/// (NULL, or the recorded SET DEFAULT values) and the parent exists again; the restored rows leave the archive in the same
/// statement. Returns the rows restored; fails, rolling the batch back, if
/// fewer rows changed than the batch took (a trigger that skips updates).
///
/// Two statements in one transaction: the first locks the batch's rows,
/// waiting for any application transaction that holds them, and the second
/// (with a snapshot taken after those locks, so it sees each row as the
/// application left it) updates them. In one statement, a row the
/// application updated while the batch waited for it was locked in its new
/// version, which that statement's snapshot cannot see, so its update
/// skipped it and the batch failed with a wrong diagnosis.
pub fn restore_keys_batch_sql(
    query: &OrphanQuery,
    schema: &Ident,
    identity: &[Ident],
    set: &ArchivedSet,
) -> Vec<String> {
    let (from, archived) = nullified_of_run(schema, identity, set);
    let keys = query
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("fk.{} AS key_{}", k.fk_column.quoted(), i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let assign = query
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} = batch.key_{}", k.fk_column.quoted(), i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = format!(
        "FROM {from} {} JOIN {} ON {} WHERE {archived} AND {} AND NOT ({}) AND {} FOR UPDATE OF a, c",
        archived_keys_as_child(query, identity),
        query.child_as("c"),
        same_identity(identity),
        keys_cleared(query, set),
        query.predicate(),
        in_listed("a.id", "int8"),
    );
    // The lock reads the batch the update then takes (the counter moves
    // in the update only).
    let lock = format!(
        "WITH listed AS (SELECT addresses FROM {RESTORE_LIST} WHERE batch = (SELECT n FROM {RESTORE_NEXT})) SELECT count(*) FROM (SELECT a.id {rows}) locked"
    );
    let update = format!(
        "WITH {}, batch AS (SELECT a.id AS archive_id, c.tableoid AS rel, c.ctid AS row_id, {keys} {rows}), restored AS (UPDATE {} SET {assign} FROM batch WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT row_id FROM batch)) AND c.tableoid OPERATOR(pg_catalog.=) batch.rel AND c.ctid OPERATOR(pg_catalog.=) batch.row_id RETURNING batch.archive_id), moved AS (DELETE FROM {} a USING restored WHERE a.id = restored.archive_id RETURNING a.id) SELECT (CASE WHEN m.n = b.n THEN m.n ELSE ('fkctl: ' || b.n || ' nullified row(s) were to get their keys back but ' || m.n || ' did (a trigger or rule skipped updates); the batch is rolled back')::int8 END)::text FROM (SELECT count(*) AS n FROM moved) m, (SELECT count(*) AS n FROM batch) b WHERE EXISTS (SELECT FROM listed)",
        take_restore_batch(),
        query.child_as("c"),
        archive_table(schema).quoted(),
    );
    vec![lock, update]
}

/// Why the nullified rows of run `$1` that are still archived cannot go back
/// (yet), as four counts: all of them; those whose row no longer exists (its
/// identity is gone); those whose keys the application has set since (not
/// all NULL any more); those whose parent is still missing.
pub fn nullified_state_sql(
    query: &OrphanQuery,
    schema: &Ident,
    identity: &[Ident],
    set: &ArchivedSet,
) -> String {
    let (from, archived) = nullified_of_run(schema, identity, set);
    format!(
        "SELECT count(*), count(*) FILTER (WHERE c.found IS NULL), count(*) FILTER (WHERE c.found AND NOT c.cleared), count(*) FILTER (WHERE c.cleared AND ({})) FROM {from} {} LEFT JOIN LATERAL (SELECT true AS found, ({}) AS cleared FROM {} WHERE {} LIMIT 1) c ON true WHERE {archived}",
        query.predicate(),
        archived_keys_as_child(query, identity),
        keys_cleared(query, set),
        query.child_as("c"),
        same_identity(identity),
    )
}

/// Nullified rows of run `$1` recorded with no identity, or with other
/// identity columns than `identity` (the child's key changed since).
pub fn nullified_other_identity_sql(
    schema: &Ident,
    identity: &[Ident],
    set: &ArchivedSet,
) -> String {
    format!(
        "SELECT count(*), coalesce(string_agg(DISTINCT coalesce(array_to_string(a.identity_columns, ', '), '(none recorded)'), '; '), '') FROM {} a WHERE {} AND a.identity_columns IS DISTINCT FROM {}",
        archive_table(schema).quoted(),
        set.condition(),
        text_array(identity)
    )
}
