//! Counting and sampling orphaned rows in the live database.
//!
//! One statement, one pass over the child table. Like PostgreSQL's own
//! validation (`RI_Initial_Check`), the count runs with `work_mem` raised to
//! `maintenance_work_mem`, so the anti-join's hash of parent keys stays in memory.

use crate::error::{Error, Result};
use crate::sql::orphans::OrphanQuery;
use serde::Serialize;

const RAISE_WORK_MEM: &str =
    "SELECT pg_catalog.set_config('work_mem', pg_catalog.current_setting('maintenance_work_mem'), true)";

#[derive(Debug, Clone, Serialize)]
pub struct OrphanSample {
    /// The table (partition) the row lives in.
    pub relation: String,
    pub row: serde_json::Value,
}

/// The exact number of orphaned rows now.
pub fn count(client: &mut postgres::Client, query: &OrphanQuery) -> Result<i64> {
    let sql = query.count_sql();
    let mut tx = client
        .transaction()
        .map_err(|e| Error::from_postgres(&e, "BEGIN"))?;
    tx.execute(RAISE_WORK_MEM, &[])
        .map_err(|e| Error::from_postgres(&e, RAISE_WORK_MEM))?;
    let row = tx
        .query_one(sql.as_str(), &[])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    tx.commit()
        .map_err(|e| Error::from_postgres(&e, "COMMIT"))?;
    Ok(row.get(0))
}

/// Up to `limit` orphaned rows, whole, as JSON.
pub fn sample(
    client: &mut postgres::Client,
    query: &OrphanQuery,
    limit: i64,
) -> Result<Vec<OrphanSample>> {
    let sql = query.sample_sql();
    let rows = client
        .query(sql.as_str(), &[&limit])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    Ok(rows
        .iter()
        .map(|r| OrphanSample {
            relation: r.get(0),
            row: r.get(1),
        })
        .collect())
}
