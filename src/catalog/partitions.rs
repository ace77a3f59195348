//! The leaf partitions of a partitioned child table and what each one holds
//! under the constraint's name. On PostgreSQL < 18 the rollback adds and
//! validates the constraint leaf by leaf, so a run killed half-way leaves some
//! leaves with their own copy: the next run reads this to continue.

use super::query;
use crate::error::Result;
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::model::{Leaf, LeafState};
use crate::pg::Cell;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::GenericClient;

// One row per leaf. "Intended" is compared field by field with the
// definition, the keys by column name (a partition's attnums may differ
// from its parent's), so that PostgreSQL can attach the copy later.
fn leaves_sql(server_version: i32) -> String {
    let enforced = if server_version >= 180000 {
        "c.conenforced"
    } else {
        "true"
    };
    format!(
        "\
SELECT n.nspname::text, l.relname::text, c.oid IS NOT NULL, coalesce(c.convalidated, false),
       coalesce(c.conparentid <> 0, false),
       coalesce(c.contype = 'f' AND {enforced} AND c.confrelid = $3
            AND c.confupdtype::text = $4 AND c.confdeltype::text = $5 AND c.confmatchtype::text = $6
            AND c.condeferrable = $7 AND c.condeferred = $8
            AND ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) = $9::text[]
            AND ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) = $10::text[],
            false),
       CASE WHEN c.oid IS NOT NULL THEN pg_get_constraintdef(c.oid) END
  FROM pg_partition_tree($1::oid::regclass) t
  JOIN pg_class l ON l.oid = t.relid
  JOIN pg_namespace n ON n.oid = l.relnamespace
  LEFT JOIN pg_constraint c ON c.conrelid = t.relid AND c.conname = $2
 WHERE t.isleaf AND t.relid <> $1::oid
 ORDER BY 1, 2"
    )
}

/// Every leaf partition of `child_oid` (none for an ordinary table), with its copy of `fk`.
pub fn leaves(
    client: &mut impl GenericClient,
    server_version: i32,
    child_oid: u32,
    parent_oid: u32,
    fk: &ForeignKeyDef,
) -> Result<Vec<Leaf>> {
    let names = |columns: &[Ident]| -> Vec<String> {
        columns.iter().map(|c| c.as_str().to_string()).collect()
    };
    let sql = leaves_sql(server_version);
    let rows = query(
        client,
        &sql,
        &[
            &child_oid,
            &fk.name.as_str(),
            &parent_oid,
            &fk.on_update.catalog_code(),
            &fk.on_delete.catalog_code(),
            &fk.match_type.catalog_code(),
            &fk.deferrable,
            &fk.initially_deferred,
            &names(&fk.columns),
            &names(&fk.ref_columns),
        ],
    )?;
    rows.iter()
        .map(|row| {
            let sql = sql.as_str();
            let (exists, validated, intended): (bool, bool, bool) =
                (row.cell(2, sql)?, row.cell(3, sql)?, row.cell(5, sql)?);
            let state = match (exists, intended, validated) {
                (false, _, _) => LeafState::Absent,
                (true, true, true) => LeafState::Valid,
                (true, true, false) => LeafState::NotValid,
                (true, false, _) => {
                    LeafState::Different(row.cell::<Option<String>>(6, sql)?.unwrap_or_default())
                }
            };
            Ok(Leaf {
                table: QualifiedName::new(
                    Ident::from_catalog(row.cell::<String>(0, sql)?),
                    Ident::from_catalog(row.cell::<String>(1, sql)?),
                ),
                state,
                attached: row.cell(4, sql)?,
            })
        })
        .collect()
}
