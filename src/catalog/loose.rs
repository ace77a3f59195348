//! Reads fkctl's loose replacement: which tables of the parent carry the
//! capture triggers, whether the queue exists, what it holds, the counters.

use super::query;
use crate::error::Result;
use crate::kinds::foreign_key::loose::{counters_sql, pending_sql, LooseObjects};
use crate::model::{LooseCounters, LooseState};
use crate::pg::Cell;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::GenericClient;

// The parent and every table below it (pg_partition_tree lists the table
// itself first, and nothing for a table that is not partitioned).
const TABLES_SQL: &str = "\
SELECT n.nspname::text, c.relname::text,
       ARRAY(SELECT t.tgname::text FROM pg_trigger t
              WHERE t.tgrelid = c.oid AND t.tgenabled <> 'D' AND t.tgname = ANY($2::text[])
              ORDER BY 1)
  FROM (SELECT $1::oid AS relid UNION SELECT relid FROM pg_partition_tree($1::oid)) tree
  JOIN pg_class c ON c.oid = tree.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY c.oid = $1::oid DESC, 1, 2";

pub fn read(
    client: &mut impl GenericClient,
    objects: &LooseObjects,
    parent_oid: u32,
) -> Result<LooseState> {
    let names = vec![
        objects.delete_trigger().as_str().to_string(),
        objects.update_trigger().as_str().to_string(),
    ];
    let mut state = LooseState::default();
    for row in query(client, TABLES_SQL, &[&parent_oid, &names])? {
        let table = QualifiedName::new(
            Ident::from_catalog(row.cell::<String>(0, TABLES_SQL)?),
            Ident::from_catalog(row.cell::<String>(1, TABLES_SQL)?),
        );
        for trigger in row.cell::<Vec<String>>(2, TABLES_SQL)? {
            state
                .triggers
                .push(format!("{}: {trigger}", table.display()));
        }
        state.parent_tables.push(table);
    }
    let queue = objects.queue().quoted();
    state.queue_exists = crate::pg::relation_exists(client, &queue)?;
    if state.queue_exists {
        let sql = pending_sql(objects);
        if let Some(row) = query(client, &sql, &[])?.first() {
            state.pending = row.cell(0, &sql)?;
            state.violating_child_rows = row.cell(1, &sql)?;
        }
    }
    state.counters = counters(client, objects)?;
    Ok(state)
}

/// The change's counters; None before any install.
pub fn counters(
    client: &mut impl GenericClient,
    objects: &LooseObjects,
) -> Result<Option<LooseCounters>> {
    let table = objects.counters().quoted();
    if !crate::pg::relation_exists(client, &table)? {
        return Ok(None);
    }
    let sql = counters_sql(objects);
    query(client, &sql, &[&objects.change])?
        .first()
        .map(|row| {
            Ok(LooseCounters {
                processed_deletions: row.cell(0, &sql)?,
                child_rows_deleted: row.cell(1, &sql)?,
                child_rows_nullified: row.cell(2, &sql)?,
                rescheduled: row.cell(3, &sql)?,
                runs: row.cell(4, &sql)?,
                last_success_epoch_s: row.cell(5, &sql)?,
                last_run_seconds: row.cell(6, &sql)?,
            })
        })
        .transpose()
}
