//! Foreign keys that point at the child table: deleting (purging) child rows
//! fires their actions, so the DBA must see them before anything is removed.

use super::query;
use crate::error::Result;
use crate::kinds::foreign_key::definition::FkAction;
use crate::model::DependentKey;
use crate::pg::Cell;
use postgres::GenericClient;

const DEPENDENTS_SQL: &str = "\
SELECT c.conname::text, c.conrelid::regclass::text,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.ord),
       c.confdeltype::text, c.confupdtype::text, c.convalidated
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.confrelid = $1 AND c.conparentid = 0
 ORDER BY 2, 1";

pub fn referencing(client: &mut impl GenericClient, table_oid: u32) -> Result<Vec<DependentKey>> {
    let sql = DEPENDENTS_SQL;
    query(client, sql, &[&table_oid])?
        .iter()
        .map(|r| {
            Ok(DependentKey {
                name: r.cell(0, sql)?,
                table: r.cell(1, sql)?,
                columns: r.cell(2, sql)?,
                on_delete: FkAction::from_catalog_code(&r.cell::<String>(3, sql)?)
                    .unwrap_or(FkAction::NoAction),
                on_update: FkAction::from_catalog_code(&r.cell::<String>(4, sql)?)
                    .unwrap_or(FkAction::NoAction),
                validated: r.cell(5, sql)?,
            })
        })
        .collect()
}
