//! Tables and their columns, looked up by name with bound parameters.

use super::query;
use crate::error::Result;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::GenericClient;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Relation {
    #[serde(skip)]
    pub oid: u32,
    pub name: QualifiedName,
    /// `pg_class.relkind`: r table, p partitioned table, f foreign table, ...
    pub kind: String,
    pub partitioned: bool,
    /// Planner estimate, summed over leaf partitions; None if never analyzed.
    pub row_estimate: Option<i64>,
    pub total_bytes: i64,
    /// Leaf partitions (empty for an ordinary table).
    pub partitions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub attnum: i16,
    pub name: Ident,
    pub type_name: String,
    pub not_null: bool,
    /// Its collation, schema-qualified; None for types without one.
    #[serde(skip)]
    pub collation: Option<QualifiedName>,
}

// pg_partition_tree lists nothing for a table that is not partitioned, so
// `leaves` adds the table itself: an ordinary table is its own single leaf.
const RELATION_SQL: &str = "\
WITH rel AS (
    SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2),
leaves AS (
    SELECT t.relid FROM rel, pg_partition_tree(rel.oid) t WHERE t.isleaf
    UNION SELECT rel.oid FROM rel WHERE rel.relkind <> 'p')
SELECT rel.oid, rel.relkind::text,
       (SELECT CASE WHEN bool_or(l.reltuples >= 0) THEN sum(greatest(l.reltuples, 0))::float8 END
          FROM leaves JOIN pg_class l ON l.oid = leaves.relid),
       (SELECT coalesce(sum(pg_total_relation_size(leaves.relid)), 0)::int8 FROM leaves),
       ARRAY(SELECT leaves.relid::regclass::text FROM leaves WHERE leaves.relid <> rel.oid ORDER BY 1)
  FROM rel";

pub fn find(client: &mut impl GenericClient, name: &QualifiedName) -> Result<Option<Relation>> {
    let rows = query(
        client,
        RELATION_SQL,
        &[&name.schema.as_str(), &name.name.as_str()],
    )?;
    Ok(rows.first().map(|row| {
        let kind: String = row.get(1);
        Relation {
            oid: row.get(0),
            name: name.clone(),
            partitioned: kind == "p",
            kind,
            row_estimate: row.get::<_, Option<f64>>(2).map(|v| v.round() as i64),
            total_bytes: row.get(3),
            partitions: row.get(4),
        }
    }))
}

const COLUMN_SQL: &str = "\
SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       cn.nspname::text, co.collname::text
  FROM pg_attribute a
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1 AND a.attname = ANY($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped";

/// Looks up columns by name (one query), in the order given; None for a column that does not exist.
pub fn columns(
    client: &mut impl GenericClient,
    relation: u32,
    names: &[Ident],
) -> Result<Vec<Option<Column>>> {
    let wanted: Vec<&str> = names.iter().map(Ident::as_str).collect();
    let rows = query(client, COLUMN_SQL, &[&relation, &wanted])?;
    let found: Vec<Column> = rows
        .iter()
        .map(|row| Column {
            attnum: row.get(0),
            name: Ident::from_catalog(row.get::<_, String>(1)),
            type_name: row.get(2),
            not_null: row.get(3),
            collation: row.get::<_, Option<String>>(4).map(|schema| {
                QualifiedName::new(
                    Ident::from_catalog(schema),
                    Ident::from_catalog(row.get::<_, Option<String>>(5).unwrap_or_default()),
                )
            }),
        })
        .collect();
    Ok(names
        .iter()
        .map(|name| {
            found
                .iter()
                .find(|c| c.name.as_str() == name.as_str())
                .cloned()
        })
        .collect())
}
