//! The purge batch when deleting child rows sets off other tables' ON DELETE
//! actions: the same statement that deletes the batch also archives, level
//! by level, the rows the cascade will delete (whole: into a table of the
//! level's own columns where it can have one, see `typed`) or change
//! (whole, with the columns that find them again). The statement reads them before its
//! delete fires the cascade (RI actions run at the end of the statement), and
//! locks them, so that what is archived is what the cascade finds.
//!
//! A second statement in the same transaction then compares, per level, the
//! rows archived with the rows the transaction deleted or updated in that
//! table (`pg_stat_get_xact_tuples_*`, exact within a transaction): a row
//! inserted under a purged row between the two moments makes the batch fail
//! and roll back instead of disappearing unarchived.

use super::{
    archive_table, batch_rows, source_table, take_batch, taken, text_array, typed, ArchivedSet,
    BATCH_SIZE,
};
use crate::kinds::foreign_key::definition::FkAction;
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::model::CascadeLevel;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};

/// Where a purge batch archives what it deletes: the child's rows, and
/// each level's (aligned with the levels), in a table of their own columns
/// (`Some`) or in the general archive as jsonb (`None`; always for the rows
/// a SET NULL / SET DEFAULT changes, which restore finds again by identity).
pub struct Destinations<'a> {
    pub child: Option<&'a QualifiedName>,
    pub levels: &'a [Option<QualifiedName>],
}

impl Destinations<'_> {
    /// Whether some row goes into the general archive, whose rows also
    /// carry the change ($2) and constraint name ($3).
    pub fn names_bound(&self) -> bool {
        self.child.is_none() || self.levels.iter().any(Option::is_none)
    }
}

/// The table of its own columns that a level's deleted rows go to, if any:
/// CASCADE levels whose columns allow one (`CascadeLevel::copyable`).
pub fn level_table(
    schema: &Ident,
    change: &str,
    constraint: &Ident,
    level: &CascadeLevel,
) -> Option<QualifiedName> {
    (level.on_delete == FkAction::Cascade && level.copyable)
        .then(|| typed::table(schema, change, constraint, &level.table))
}

/// Session-local counts of the running batch, level by level (level 0: the
/// addresses the batch took off the list).
pub const COUNTS: &str = "pg_temp.fkctl_cascade_counts";

/// Session-local archive ids of the running batch's SET DEFAULT rows, whose
/// written key values the check after the cascade records.
const WRITTEN: &str = "pg_temp.fkctl_cascade_written";

/// The archive's `action` for rows a SET DEFAULT cascade changed.
pub const SET_DEFAULT: &str = "cascade-set-default";

/// The archive's `action` for the rows of a level.
pub fn action(level: &CascadeLevel) -> &'static str {
    match level.on_delete {
        FkAction::SetNull => "cascade-set-null",
        FkAction::SetDefault => SET_DEFAULT,
        _ => "cascade-delete",
    }
}

/// The archived rows of one level, as a restore selects them.
pub fn archived_set(level: &CascadeLevel) -> ArchivedSet {
    ArchivedSet {
        action: action(level).to_string(),
        source: Some(level.table.display()),
    }
}

/// The batch's session tables, emptied, and the archive's column for the
/// key values a SET DEFAULT cascade wrote: run before the batches.
pub fn prepare_sql(schema: &Ident) -> Vec<String> {
    vec![
        format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS written_keys jsonb",
            archive_table(schema).quoted()
        ),
        "CREATE TEMPORARY TABLE IF NOT EXISTS fkctl_cascade_counts (level int NOT NULL, source_table text, action text, archived bigint NOT NULL, changed_before bigint)".to_string(),
        format!("DELETE FROM {COUNTS}"),
        "CREATE TEMPORARY TABLE IF NOT EXISTS fkctl_cascade_written (level int NOT NULL, archive_id bigint NOT NULL)".to_string(),
        format!("DELETE FROM {WRITTEN}"),
    ]
}

/// Rows of the level's table this transaction has deleted (CASCADE) or
/// updated (SET NULL / DEFAULT), summed over its leaf partitions.
fn changed_so_far(level: &CascadeLevel) -> String {
    let function = if level.on_delete == FkAction::Cascade {
        "pg_stat_get_xact_tuples_deleted"
    } else {
        "pg_stat_get_xact_tuples_updated"
    };
    let table = quote_literal(&level.table.quoted());
    if level.partitioned {
        format!("(SELECT coalesce(sum({function}(t.relid)), 0) FROM pg_partition_tree({table}::regclass) t WHERE t.isleaf)")
    } else {
        format!("{function}({table}::regclass)")
    }
}

fn rows_cte(index: usize) -> String {
    format!("cascade_{}", index + 1)
}

/// The rows of level `index` that reference the rows the level above loses
/// (`purged` for the child), whole and locked.
fn level_rows(levels: &[CascadeLevel], index: usize) -> Option<String> {
    let level = levels.get(index)?;
    let above = level.above.map_or("purged".to_string(), rows_cte);
    let matches = level
        .keys
        .iter()
        .map(|k| k.equal(&format!("(p.fkctl_row).{}", k.pk_column.quoted()), "g"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let only = if level.partitioned { "" } else { "ONLY " };
    Some(format!(
        "{} AS (SELECT g AS fkctl_row FROM {only}{} g WHERE EXISTS (SELECT 1 FROM {above} p WHERE {matches}) FOR UPDATE OF g)",
        rows_cte(index),
        level.table.quoted()
    ))
}

fn level_archive(
    levels: &[CascadeLevel],
    index: usize,
    schema: &Ident,
    to: &Destinations<'_>,
) -> Option<String> {
    let level = levels.get(index)?;
    if let Some(table) = to.levels.get(index).and_then(Option::as_ref) {
        return Some(format!(
            "{0}_archived AS ({1})",
            rows_cte(index),
            typed::copy_sql(
                table,
                &level.table,
                &format!("{} c", rows_cte(index)),
                "c.fkctl_row",
                &quote_literal(&level.table.display())
            )
        ));
    }
    let identity = match (&level.identity, level.on_delete) {
        (Some(identity), FkAction::SetNull | FkAction::SetDefault) => text_array(identity),
        _ => "NULL::text[]".to_string(),
    };
    let mut archived = format!(
        "{}_archived AS (INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data, identity_columns) SELECT $1, $2, $3, {}, {}, to_jsonb(fkctl_row), {identity} FROM {}",
        rows_cte(index),
        archive_table(schema).quoted(),
        quote_literal(&level.table.display()),
        quote_literal(action(level)),
        rows_cte(index)
    );
    if level.on_delete == FkAction::SetDefault {
        archived.push_str(&format!(
            " RETURNING id), {0}_written AS (INSERT INTO {WRITTEN} (level, archive_id) SELECT {1}, id FROM {0}_archived)",
            rows_cte(index),
            index + 1
        ));
    } else {
        archived.push(')');
    }
    Some(archived)
}

/// Deletes one batch of the child, archiving its rows and every row the
/// cascade below will delete or change, in one statement, then checks the
/// counts in a second one (same transaction). Parameters: $1 run id, and
/// when [`Destinations::names_bound`], $2 change, $3 constraint name (the
/// first statement only).
pub fn delete_batch_sql(
    query: &OrphanQuery,
    schema: &Ident,
    levels: &[CascadeLevel],
    to: &Destinations<'_>,
) -> Vec<String> {
    let purged = format!(
        "purged AS (DELETE FROM {} WHERE {} AND {} RETURNING {} AS source_table, fk AS fkctl_row)",
        query.child_from(),
        batch_rows(query),
        query.predicate(),
        source_table(query)
    );
    let archived = match to.child {
        Some(table) => typed::copy_sql(
            table,
            &query.child,
            "purged p",
            "p.fkctl_row",
            "p.source_table",
        ),
        None => format!(
            "INSERT INTO {} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, 'delete', to_jsonb(fkctl_row) FROM purged",
            archive_table(schema).quoted()
        ),
    };
    let mut ctes = vec![take_batch(), purged, format!("archived AS ({archived})")];
    ctes.extend((0..levels.len()).filter_map(|i| level_rows(levels, i)));
    ctes.extend((0..levels.len()).filter_map(|i| level_archive(levels, i, schema, to)));
    let mut counts = vec![format!("(0, NULL, NULL, {BATCH_SIZE}, NULL)")];
    counts.extend(levels.iter().enumerate().map(|(i, level)| {
        format!(
            "({}, {}, {}, (SELECT count(*) FROM {}), {})",
            i + 1,
            quote_literal(&level.table.display()),
            quote_literal(action(level)),
            rows_cte(i),
            changed_so_far(level)
        )
    }));
    ctes.push(format!(
        "counted AS (INSERT INTO {COUNTS} (level, source_table, action, archived, changed_before) VALUES {})",
        counts.join(", ")
    ));
    vec![
        format!("WITH {} {}", ctes.join(", "), taken()),
        verify_sql(levels, schema),
    ]
}

/// Records, for each row a SET DEFAULT level changed, the key values the
/// cascade wrote (read from the row, found by its identity), so that a
/// restore puts the old ones back only where they are still there.
fn record_written(levels: &[CascadeLevel], index: usize, schema: &Ident) -> Option<String> {
    let level = levels.get(index)?;
    let identity = level.identity.as_deref()?;
    if level.on_delete != FkAction::SetDefault {
        return None;
    }
    let table = level.table.quoted();
    let keys = level
        .keys
        .iter()
        .map(|k| {
            format!(
                "{}, g.{}",
                quote_literal(k.fk_column.as_str()),
                k.fk_column.quoted()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let same = identity
        .iter()
        .map(|c| {
            format!(
                "g.{0} = (jsonb_populate_record(NULL::{table}, a.row_data)).{0}",
                c.quoted()
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let only = if level.partitioned { "" } else { "ONLY " };
    Some(format!(
        "{}_recorded AS (UPDATE {} a SET written_keys = (SELECT jsonb_build_object({keys}) FROM {only}{table} g WHERE {same}) FROM {WRITTEN} w WHERE w.level = {} AND a.id = w.archive_id)",
        rows_cte(index),
        archive_table(schema).quoted(),
        index + 1
    ))
}

/// After the batch's statement (and the cascade it fired): each level's
/// archived rows must be exactly the rows the transaction deleted or changed
/// in its table; otherwise the statement fails, rolling the batch back.
/// Returns the number of addresses the batch took, as the batch loop expects.
fn verify_sql(levels: &[CascadeLevel], schema: &Ident) -> String {
    let cases = levels
        .iter()
        .enumerate()
        .map(|(i, level)| format!("WHEN {} THEN {}", i + 1, changed_so_far(level)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut recorded: String = (0..levels.len())
        .filter_map(|i| record_written(levels, i, schema))
        .map(|cte| format!("{cte}, "))
        .collect();
    if !recorded.is_empty() {
        recorded.push_str(&format!("written_done AS (DELETE FROM {WRITTEN}), "));
    }
    format!(
        "WITH {recorded}counts AS (DELETE FROM {COUNTS} RETURNING level, source_table, action, archived, changed_before), measured AS (SELECT level, source_table, action, archived, (CASE level {cases} END) - changed_before AS changed FROM counts WHERE level > 0), wrong AS (SELECT string_agg(format('%s: %s row(s) archived but %s row(s) %s', source_table, archived, changed, CASE WHEN action = 'cascade-delete' THEN 'deleted by the cascade' ELSE 'changed by it' END), '; ' ORDER BY level) AS what FROM measured WHERE archived IS DISTINCT FROM changed) SELECT CASE WHEN wrong.what IS NULL THEN (SELECT archived FROM counts WHERE level = 0)::text ELSE ('fkctl: ' || wrong.what)::int8::text END FROM wrong"
    )
}

/// The cascade levels run `$1` archived rows of, in `archive` (the view
/// over every archive table, see `journal::archive::readable`):
/// (source_table, action).
pub fn archived_levels_sql(archive: &str) -> String {
    format!(
        "SELECT DISTINCT source_table, action FROM {archive} WHERE run_id = $1 AND action LIKE 'cascade-%' ORDER BY 1, 2"
    )
}
