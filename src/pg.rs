//! Reading rows PostgreSQL returned, without panicking: `postgres::Row::get`
//! panics on a type or NULL mismatch, which in fkctl would surface as an
//! "internal error" in the middle of a change. Every column is read with
//! [`Cell::cell`] instead, and a mismatch is an error naming the column, the
//! Rust type fkctl expected, and the query.

use crate::error::{Error, Result};
use postgres::types::FromSql;
use postgres::Row;

pub trait Cell {
    /// Column `index` of this row as a `T`, or an error naming it and `sql`.
    fn cell<'a, T: FromSql<'a>>(&'a self, index: usize, sql: &str) -> Result<T>;
}

impl Cell for Row {
    fn cell<'a, T: FromSql<'a>>(&'a self, index: usize, sql: &str) -> Result<T> {
        self.try_get(index).map_err(|e| {
            let name = self.columns().get(index).map_or("?", |c| c.name());
            Error::internal(format!(
                "column {index} ({name}) of a query fkctl sent could not be read as {}: {e}",
                std::any::type_name::<T>()
            ))
            .with("sql", sql)
        })
    }
}

/// The single value of a one-row, one-column query.
pub fn scalar<'a, T: FromSql<'a>>(rows: &'a [Row], sql: &str) -> Result<T> {
    rows.first()
        .ok_or_else(|| Error::internal("a query fkctl sent returned no row").with("sql", sql))?
        .cell(0, sql)
}

/// Runs a query that returns one row of one column, and reads that value.
pub fn query_scalar<T: for<'a> FromSql<'a>>(
    client: &mut impl postgres::GenericClient,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<T> {
    let row = client
        .query_one(sql, params)
        .map_err(|e| Error::from_postgres(&e, sql))?;
    row.cell(0, sql)
}

/// Whether a relation exists, by its quoted, qualified name (fkctl's own
/// tables: the archive, the queue, the counters, created on first use).
pub fn relation_exists(
    client: &mut impl postgres::GenericClient,
    quoted_name: &str,
) -> Result<bool> {
    query_scalar(
        client,
        "SELECT to_regclass($1) IS NOT NULL",
        &[&quoted_name],
    )
}
