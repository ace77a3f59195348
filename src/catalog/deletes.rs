//! The delete rate of a table, from `pg_stat_user_tables` (a statistics
//! view: no lock on the table, no scan). `pg_partition_tree` lists nothing
//! for a table that is not partitioned, hence the table itself beside it.

use super::query;
use crate::error::Result;
use crate::model::DeleteRate;
use crate::pg::Cell;
use postgres::GenericClient;

const DELETES_SQL: &str = "\
SELECT coalesce(sum(s.n_tup_del), 0)::int8,
       (SELECT extract(epoch FROM clock_timestamp() - d.stats_reset)::float8
          FROM pg_catalog.pg_stat_database d WHERE d.datname = current_database())
  FROM pg_catalog.pg_stat_user_tables s
 WHERE s.relid = $1::oid
    OR s.relid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass))";

/// Rows deleted from the table `oid` (and its partitions) since the
/// statistics were reset.
pub fn delete_rate(client: &mut impl GenericClient, oid: u32) -> Result<DeleteRate> {
    let sql = DELETES_SQL;
    let rows = query(client, sql, &[&oid])?;
    let row = rows
        .first()
        .ok_or_else(|| crate::error::Error::internal("the delete-rate query returned no row"))?;
    Ok(DeleteRate {
        deleted: row.cell(0, sql)?,
        since_seconds: row.cell(1, sql)?,
    })
}
