//! Indexes on the foreign-key columns of the child table.

use super::query;
use crate::error::Result;
use crate::model::IndexInfo;
use crate::pg::Cell;
use postgres::GenericClient;

const INDEXES_SQL: &str = "\
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indkey::int2[]
  FROM pg_index i
 WHERE i.indrelid = $1
 ORDER BY 1";

/// Indexes of `table_oid` that contain at least one of the FK columns.
pub fn on_columns(
    client: &mut impl GenericClient,
    table_oid: u32,
    fk_attnums: &[i16],
) -> Result<Vec<IndexInfo>> {
    let mut out = Vec::new();
    for r in query(client, INDEXES_SQL, &[&table_oid])? {
        let keys: Vec<i16> = r.cell(3, INDEXES_SQL)?;
        if !keys.iter().any(|k| fk_attnums.contains(k)) {
            continue;
        }
        let leading = keys.get(..fk_attnums.len()).unwrap_or(&[]);
        let covers =
            leading.len() == fk_attnums.len() && fk_attnums.iter().all(|a| leading.contains(a));
        out.push(IndexInfo {
            name: r.cell(0, INDEXES_SQL)?,
            definition: r.cell(1, INDEXES_SQL)?,
            valid: r.cell(2, INDEXES_SQL)?,
            covers_foreign_key: covers,
        });
    }
    Ok(out)
}
