//! Deleted rows kept in a table of their own table's shape.
//!
//! Writing each purged row as jsonb into the general archive cost about as
//! much as the DELETE itself (building the jsonb, five text columns and an
//! index entry per row): measured at 20,000 rows, 139 ms against 40 ms for a
//! copy of the row into a table of the child's columns. And jsonb does not
//! keep every value as it was (a `json` column's text, an array's bounds,
//! `-0`). So a rollback that deletes orphans archives them into one table
//! per change, constraint and table, `deleted_rows_<hash>`, with three
//! columns of fkctl's first: the run, when, and the partition the row was in
//! (for a cascade level, its table). The rows an ON DELETE CASCADE below the
//! child deletes go the same way, each level into its own table.
//!
//! Only for a table whose column types and collations are all PostgreSQL's
//! own (`pg_catalog`): fkctl's table must not depend on the application's
//! types, or a later DROP TYPE would fail (see
//! `Inspection::child_not_copyable`, `CascadeLevel::copyable`). `restore`
//! copies a run's rows straight back from there while the columns match;
//! a table whose columns changed since is first filed into the general
//! archive (one statement deletes its rows here and inserts them there,
//! counted) and read as every archived row.
//!
//! The registries say which change and table each such table serves:
//! `archive_tables` for a child's deleted rows, `cascade_archive_tables`
//! (with the rows' action) for a cascade level's. Two, so that an older
//! fkctl, which takes every table in `archive_tables` for the child's,
//! never reads a level's rows as the child's. The view `archive` shows every
//! archived row in the general archive's columns, whichever table holds it:
//! what a person, `status` and `prune` read.

use super::archive_table;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};

const REGISTRY: &str = "archive_tables";
const LEVEL_REGISTRY: &str = "cascade_archive_tables";
/// The action of the rows a table in `archive_tables` keeps.
const CHILD_ACTION: &str = "delete";
const VIEW: &str = "archive";
/// The columns fkctl adds before the child's own, in this order. Spaces
/// keep them clear of any application column name.
const RUN: &str = "fkctl run";
const SOURCE: &str = "fkctl source";
const AT: &str = "fkctl archived at";
/// fkctl's column names, which a child's own columns must not use.
pub const RESERVED: [&str; 3] = [RUN, AT, SOURCE];

fn fkctl_columns() -> String {
    let names: Vec<String> = RESERVED.iter().map(|n| quote_literal(n)).collect();
    format!("ARRAY[{}]::text[]", names.join(", "))
}

/// The registry of the tables of a child's deleted rows.
pub fn registry(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema.clone(), Ident::from_catalog(REGISTRY))
}

/// The registry of the tables of the rows a cascade deleted.
pub fn level_registry(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema.clone(), Ident::from_catalog(LEVEL_REGISTRY))
}

/// Both registries, each with the SQL of its tables' action.
pub fn registries(schema: &Ident) -> [(QualifiedName, String); 2] {
    [
        (registry(schema), quote_literal(CHILD_ACTION)),
        (level_registry(schema), "action".to_string()),
    ]
}

/// The registry of tables that keep rows of `action`.
fn registry_for(schema: &Ident, action: &str) -> QualifiedName {
    if action == CHILD_ACTION {
        registry(schema)
    } else {
        level_registry(schema)
    }
}

/// Every archived row, whichever table holds it.
pub fn view(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema.clone(), Ident::from_catalog(VIEW))
}

/// 64-bit FNV-1a: a stable, short name for a change's table (the registry
/// says what it is).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The table that keeps the deleted rows of `source` (the child, or a
/// cascade level's table) for one change and constraint.
pub fn table(
    schema: &Ident,
    change: &str,
    constraint: &Ident,
    source: &QualifiedName,
) -> QualifiedName {
    let hash = fnv1a(&[change, constraint.as_str(), &source.display()]);
    QualifiedName::new(
        schema.clone(),
        Ident::from_catalog(format!("deleted_rows_{hash:016x}")),
    )
}

/// Both registries.
pub fn registry_sql(schema: &Ident) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, change text NOT NULL, constraint_name text NOT NULL, source_table text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            registry(schema).quoted()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, change text NOT NULL, constraint_name text NOT NULL, source_table text NOT NULL, action text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
            level_registry(schema).quoted()
        ),
    ]
}

/// Rebuilds the view over the general archive and every registered table
/// (under `LOCK_SQL`, taken first: see `super::create_archive_sql`).
pub fn view_sql(schema: &Ident) -> String {
    let general = format!(
        "SELECT id, run_id, change, constraint_name, source_table, action, row_data, archived_at, identity_columns FROM {}",
        archive_table(schema).quoted()
    );
    let each = format!(
        "SELECT NULL::bigint, a.%2$I, %3$L::text, %4$L::text, a.%5$I, %7$L::text, to_jsonb(a) - {}, a.%6$I, NULL::text[] FROM %1$s a",
        fkctl_columns()
    );
    let body = format!(
        "BEGIN EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', {view}, concat_ws(' UNION ALL ', {general}, (SELECT string_agg(format({each}, quote_ident({schema}) || '.' || quote_ident(r.table_name), {run}, r.change, r.constraint_name, {source}, {at}, r.action), ' UNION ALL ' ORDER BY r.created_at, r.table_name) FROM (SELECT table_name, change, constraint_name, created_at, {child_action}::text AS action FROM {registry} UNION ALL SELECT table_name, change, constraint_name, created_at, action FROM {level_registry}) r WHERE to_regclass(quote_ident({schema}) || '.' || quote_ident(r.table_name)) IS NOT NULL))); END",
        view = quote_literal(&view(schema).quoted()),
        general = quote_literal(&general),
        each = quote_literal(&each),
        schema = quote_literal(schema.as_str()),
        run = quote_literal(RUN),
        source = quote_literal(SOURCE),
        at = quote_literal(AT),
        registry = registry(schema).quoted(),
        level_registry = level_registry(schema).quoted(),
        child_action = quote_literal(CHILD_ACTION),
    );
    do_block(&body)
}

fn do_block(body: &str) -> String {
    let tag = crate::sql::ident::dollar_tag(body);
    format!("DO {tag} {body} {tag}")
}

/// `name type` of each live column of `relation`, in order, without
/// fkctl's own: what must match for a row to be copied as it is.
fn shape(relation: &str) -> String {
    format!(
        "(SELECT array_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum) FROM pg_catalog.pg_attribute WHERE attrelid = {relation} AND attnum > 0 AND NOT attisdropped AND NOT attname = ANY ({}))",
        fkctl_columns()
    )
}

/// Taken first by every transaction that creates archive tables or
/// rebuilds the view: two changes' rollbacks (or cleanups) at once must
/// neither race on CREATE ... IF NOT EXISTS nor deadlock on the view.
pub const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtext('fkctl: create the archive'))";

/// The table of one change's deleted rows of `source`, and what it serves.
pub struct Typed<'a> {
    pub table: QualifiedName,
    pub change: &'a str,
    pub constraint: &'a Ident,
    /// The table whose rows it keeps: the child, or a cascade level's.
    pub source: &'a QualifiedName,
    /// The archive's action for its rows (`delete`, `cascade-delete`).
    pub action: &'a str,
}

/// Creates the table if missing and registers it (after the registry
/// exists, before the view is rebuilt: see `super::create_archive_sql`). A
/// table left from an earlier run whose columns no longer match the child's
/// (the child changed since) is dropped when empty, else renamed with the
/// time and kept, so that rows are always copied into a table of their own
/// shape. (The view goes with a dropped table; it is built again later in
/// the same transaction.) Dynamic SQL throughout: PL/pgSQL would otherwise
/// resolve the table's name before the check that it exists.
pub fn prepare_sql(schema: &Ident, typed: &Typed<'_>) -> Vec<String> {
    let table = &typed.table;
    let registry = registry_for(schema, typed.action);
    // Only the cascade levels' registry records an action.
    let (action_column, action) = if typed.action == CHILD_ACTION {
        ("", String::new())
    } else {
        (", action", format!(", {}", quote_literal(typed.action)))
    };
    let quoted = quote_literal(&table.quoted());
    let name = quote_literal(table.name.as_str());
    let body = format!(
        "DECLARE kept text; holds boolean; BEGIN IF to_regclass({quoted}) IS NOT NULL AND {} IS DISTINCT FROM {} THEN EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', {quoted}) INTO holds; IF holds THEN kept := {name} || '_' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISS'); EXECUTE format('ALTER TABLE %s RENAME TO %I', {quoted}, kept); UPDATE {registry} SET table_name = kept WHERE table_name = {name}; ELSE EXECUTE format('DROP VIEW IF EXISTS %s', {view}); EXECUTE format('DROP TABLE %s', {quoted}); DELETE FROM {registry} WHERE table_name = {name}; END IF; END IF; END",
        shape(&format!("to_regclass({quoted})")),
        shape(&format!("to_regclass({})", quote_literal(&typed.source.quoted()))),
        registry = registry.quoted(),
        view = quote_literal(&view(schema).quoted()),
    );
    vec![
        do_block(&body),
        // CREATE TABLE AS, not LIKE: the child's column names, types and
        // collations without its NOT NULLs (a NOT VALID one on PostgreSQL
        // 18 would refuse the very rows it lets through) or defaults.
        format!(
            "CREATE TABLE IF NOT EXISTS {} AS SELECT NULL::text AS {}, NULL::timestamptz AS {}, NULL::text AS {}, fk.* FROM {} fk WITH NO DATA",
            table.quoted(),
            Ident::from_catalog(RUN).quoted(),
            Ident::from_catalog(AT).quoted(),
            Ident::from_catalog(SOURCE).quoted(),
            typed.source.quoted()
        ),
        format!(
            "INSERT INTO {} (table_name, change, constraint_name, source_table{action_column}) VALUES ({name}, {}, {}, {}{action}) ON CONFLICT (table_name) DO NOTHING",
            registry.quoted(),
            quote_literal(typed.change),
            quote_literal(typed.constraint.as_str()),
            quote_literal(&typed.source.display()),
        ),
    ]
}

/// True when `source` still has `table`'s columns; else fails the
/// statement, naming them. The copy into `table` is by position: the
/// statement's lock on `source` keeps its columns from changing while it
/// runs, but a column dropped between two batches would otherwise shift
/// every later value into the column before it (PostgreSQL replans the
/// statement with the new row type). Then the batch fails, rolls back
/// whole, and a new run makes a new table.
fn same_columns_check(source: &QualifiedName, table: &QualifiedName) -> String {
    let source_shape = shape(&format!("{}::regclass", quote_literal(&source.quoted())));
    // The message reads the catalog, so that the planner cannot fold the
    // failing cast into an error before the CASE is decided.
    format!(
        "CASE WHEN {source_shape} IS NOT DISTINCT FROM {} THEN true ELSE ('fkctl: the columns of ' || {} || ' changed during the rollback (now ' || array_to_string({source_shape}, ', ') || '); the batch is rolled back')::int::bool END",
        shape(&format!("{}::regclass", quote_literal(&table.quoted()))),
        quote_literal(&source.display()),
    )
}

/// Deletes one batch and copies every deleted row, whole, into `table`, in
/// one statement, after checking the child still has the table's columns.
/// Parameter: $1 run id.
pub fn delete_batch_sql(query: &super::OrphanQuery, table: &QualifiedName) -> String {
    format!(
        "WITH {}, purged AS (DELETE FROM {} WHERE {} AND {} RETURNING now(), {}, fk.*), archived AS (INSERT INTO {} SELECT $1, purged.* FROM purged WHERE {}) {}",
        super::take_batch(),
        query.child_from(),
        super::batch_rows(query),
        query.predicate(),
        super::source_table(query),
        table.quoted(),
        same_columns_check(&query.child, table),
        super::taken()
    )
}

/// Copies the rows `row` of `rows` (a CTE holding whole rows of `source`)
/// into `table`, for run $1, noting `from` (an SQL expression) as the table
/// each came from: the INSERT of a purge statement that deletes them.
pub fn copy_sql(
    table: &QualifiedName,
    source: &QualifiedName,
    rows: &str,
    row: &str,
    from: &str,
) -> String {
    format!(
        "INSERT INTO {} SELECT $1, now(), {from}, ({row}).* FROM {rows} WHERE {}",
        table.quoted(),
        same_columns_check(source, table)
    )
}

/// The tables `registry` lists for a change, each with the table whose
/// rows it keeps and their action (`action`, SQL: see [`registries`]):
/// $1 change, $2 constraint.
pub fn tables_sql(schema: &Ident, registry: &QualifiedName, action: &str) -> String {
    format!(
        "SELECT table_name, source_table, {action} FROM {} WHERE change = $1 AND constraint_name = $2 AND to_regclass(quote_ident({}) || '.' || quote_ident(table_name)) IS NOT NULL ORDER BY created_at, table_name",
        registry.quoted(),
        quote_literal(schema.as_str())
    )
}

/// Moves every row of `table` into the general archive as jsonb, in one
/// statement; returns the rows that left and the rows that arrived.
/// Parameters: $1 change, $2 constraint name, $3 the rows' action.
pub fn file_sql(schema: &Ident, table: &QualifiedName) -> String {
    format!(
        "WITH moved AS (DELETE FROM {} a RETURNING a.*), filed AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data, archived_at) SELECT m.{}, $1, $2, m.{}, $3, to_jsonb(m) - {}, m.{} FROM moved m RETURNING 1) SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM filed)",
        table.quoted(),
        archive_table(schema).quoted(),
        Ident::from_catalog(RUN).quoted(),
        Ident::from_catalog(SOURCE).quoted(),
        fkctl_columns(),
        Ident::from_catalog(AT).quoted(),
    )
}

/// The rows of run `$1` in `table`, aliased `fk`: each already a row of the
/// child's columns (same names and types), so the orphan check and the
/// INSERT read them as they are.
pub fn as_child(table: &QualifiedName) -> String {
    format!(
        "{} fk WHERE fk.{} = $1",
        table.quoted(),
        Ident::from_catalog(RUN).quoted()
    )
}

/// Rows of run `$1` still in `table`.
pub fn rows_of_run_sql(table: &QualifiedName) -> String {
    format!("SELECT count(*) FROM {}", as_child(table))
}

/// Moves one batch of `candidates` (rows of `table` aliased `fk` that may go
/// back, as a FROM ... WHERE, limited to the batch `take` lists: see
/// `super::restore_list_sql`) into the child with `insert` (`INSERT ...
/// SELECT` of `fk`'s columns), removing them from `table` in the same
/// statement: the rows are copied as they are, no value converted. No row
/// once the list is done.
pub fn restore_batch_sql(
    table: &QualifiedName,
    take: &str,
    candidates: &str,
    insert: &str,
) -> String {
    format!(
        "WITH {take}, batch AS (SELECT fk.ctid AS row_id FROM {candidates} FOR UPDATE OF fk), moved AS (DELETE FROM {} fk WHERE fk.ctid OPERATOR(pg_catalog.=) ANY ((SELECT array_agg(row_id) FROM batch)::tid[]) RETURNING fk.*), put AS ({insert} FROM moved fk RETURNING 1) {}",
        table.quoted(),
        super::listed_moved_as_put()
    )
}

/// The child's columns in `table` ($1, its quoted name), fkctl's left out:
/// what the rows of a table of the child's shape can fill.
pub fn columns_sql() -> String {
    format!(
        "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped AND NOT attname = ANY ({}) ORDER BY attnum",
        fkctl_columns()
    )
}

/// Whether `table` still has its source's columns, names and types in
/// order ($1: the table, $2: the source, as names PostgreSQL reads): its
/// rows then go back straight from it; else they are filed into the general
/// archive first and converted from jsonb. A source that no longer exists
/// counts as matching: nothing to convert to, and restore refuses it by name.
pub fn same_shape_sql() -> String {
    format!(
        "SELECT to_regclass($2::text) IS NULL OR {} IS NOT DISTINCT FROM {}",
        shape("$1::text::regclass"),
        shape("to_regclass($2::text)")
    )
}

/// The rows a table holds, and its run column: what prune removes.
pub fn run_column() -> Ident {
    Ident::from_catalog(RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child() -> QualifiedName {
        QualifiedName::new(
            Ident::from_catalog("public"),
            Ident::from_catalog("ci_pipeline_chat_data"),
        )
    }

    #[test]
    fn each_change_and_constraint_has_its_own_table() {
        let s = Ident::from_catalog("fkctl");
        let fk = Ident::from_catalog("fk_chat");
        let a = table(&s, "drop-fk", &fk, &child());
        assert_eq!(a, table(&s, "drop-fk", &fk, &child()));
        assert_ne!(a, table(&s, "drop-fk-2", &fk, &child()));
        assert_ne!(
            a,
            table(&s, "drop-fk", &Ident::from_catalog("fk_other"), &child())
        );
        assert!(a.name.as_str().starts_with("deleted_rows_"));
        assert!(a.name.as_str().len() + 15 < 63, "room for the kept suffix");
    }

    #[test]
    fn the_batch_copies_the_row_after_fkctl_s_columns_in_their_order() {
        let schema = Ident::from_catalog("fkctl");
        let constraint = Ident::from_catalog("k");
        let sql = prepare_sql(
            &schema,
            &Typed {
                table: table(&schema, "c", &constraint, &child()),
                change: "c",
                constraint: &constraint,
                source: &child(),
                action: "delete",
            },
        );
        let create = sql
            .iter()
            .find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS \"fkctl\".\"deleted_rows_"))
            .map(String::as_str)
            .unwrap_or_default();
        let order = [
            "\"fkctl run\"",
            "\"fkctl archived at\"",
            "\"fkctl source\"",
            "fk.*",
        ];
        let at: Vec<usize> = order.iter().filter_map(|c| create.find(c)).collect();
        assert_eq!(at.len(), 4, "{create}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{create}");
        // The batch fills them in the same order: run, time, partition, row.
        let query = crate::kinds::foreign_key::violations::OrphanQuery::from_definition(
            &crate::model::fixtures::seed_playbook().constraint,
        );
        let batch = delete_batch_sql(&query, &table(&schema, "c", &constraint, &child()));
        assert!(
            batch.contains(&format!(
                "RETURNING now(), {}, fk.*)",
                super::super::source_table(&query)
            )) && batch.contains("SELECT $1, purged.* FROM purged"),
            "{batch}"
        );
    }
}
