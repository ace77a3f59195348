//! Tables and their columns, looked up by name with bound parameters.

use super::query;
use crate::error::Result;
use crate::model::{Column, Filling, PartitionKey, Relation, TableColumn};
use crate::pg::Cell;
use crate::sql::ident::{Ident, QualifiedName};
use crate::sql::operator::Operator;
use postgres::GenericClient;

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

// The columns of every level's partition key of the partitioned table $1 by
// which a lookup can be sent to one partition, kept only where
// `column = value` is safe and prunes: a plain column (not an expression),
// NOT NULL in the table with no NOT VALID not-null constraint (PostgreSQL
// 18 allows one while NULLs remain, and a NULL matches no `=`), of its
// operator class's own input type (no cast), under the key's own
// collation, with the class's equality operator from pg_catalog (an
// extension's schema may need a privilege the session lacks). A query of
// its own, run for partitioned tables only: planning its joins of the
// operator catalogs costs about 10 ms, twice per command otherwise.
const PARTITION_KEYS_SQL: &str = "\
SELECT DISTINCT a.attname::text, opn.nspname::text, o.oprname::text
  FROM pg_partition_tree($1::oid::regclass) t
  JOIN pg_partitioned_table pt ON pt.partrelid = t.relid
  CROSS JOIN LATERAL unnest(pt.partattrs::int2[], pt.partclass::oid[], pt.partcollation::oid[])
                  AS k(attnum, opclass, collation_oid)
  JOIN pg_attribute level ON level.attrelid = t.relid AND level.attnum = k.attnum
  JOIN pg_attribute a ON a.attrelid = $1 AND a.attname = level.attname
                     AND a.attnotnull AND NOT a.attisdropped
                     AND a.attcollation = k.collation_oid
  JOIN pg_opclass oc ON oc.oid = k.opclass AND oc.opcintype = a.atttypid
  JOIN pg_am am ON am.oid = oc.opcmethod
  JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                 AND ao.amoprighttype = oc.opcintype AND ao.amoppurpose = 's'
                 AND ao.amopstrategy = CASE am.amname WHEN 'hash' THEN 1 ELSE 3 END
  JOIN pg_operator o ON o.oid = ao.amopopr
  JOIN pg_namespace opn ON opn.oid = o.oprnamespace AND opn.nspname = 'pg_catalog'
 WHERE NOT EXISTS (SELECT FROM pg_constraint nn
                    WHERE nn.conrelid = $1 AND nn.contype = 'n'
                      AND NOT nn.convalidated AND nn.conkey = ARRAY[a.attnum])
 ORDER BY 1, 2, 3";

/// Whether [`find`] reads a partitioned table's partition keys: only a
/// table whose rows fkctl removes or changes looks rows up by them, and the
/// query costs about 10 ms of planning.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartitionKeys {
    Read,
    Skip,
}

pub fn find(
    client: &mut impl GenericClient,
    name: &QualifiedName,
    keys: PartitionKeys,
) -> Result<Option<Relation>> {
    let rows = query(
        client,
        RELATION_SQL,
        &[&name.schema.as_str(), &name.name.as_str()],
    )?;
    let sql = RELATION_SQL;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let kind: String = row.cell(1, sql)?;
    let oid: u32 = row.cell(0, sql)?;
    let partitioned = kind == "p";
    Ok(Some(Relation {
        oid,
        name: name.clone(),
        partitioned,
        kind,
        row_estimate: row.cell::<Option<f64>>(2, sql)?.map(|v| v.round() as i64),
        total_bytes: row.cell(3, sql)?,
        partitions: row.cell(4, sql)?,
        partition_keys: if partitioned && keys == PartitionKeys::Read {
            partition_keys(client, oid)?
        } else {
            Vec::new()
        },
    }))
}

/// The partitioned table's keys by which lookups skip partitions (see
/// `PARTITION_KEYS_SQL`). An operator whose name is not made of operator
/// characters (it cannot be written unquoted) is left out, which only
/// costs the skipping of partitions.
fn partition_keys(client: &mut impl GenericClient, table: u32) -> Result<Vec<PartitionKey>> {
    let sql = PARTITION_KEYS_SQL;
    let mut keys = Vec::new();
    for row in query(client, sql, &[&table])? {
        let symbol: String = row.cell(2, sql)?;
        if !Operator::is_valid_symbol(&symbol) {
            continue;
        }
        keys.push(PartitionKey {
            column: Ident::from_catalog(row.cell::<String>(0, sql)?),
            equality: Operator {
                schema: Ident::from_catalog(row.cell::<String>(1, sql)?),
                symbol,
                pk_cast: None,
                fk_cast: None,
            },
        });
    }
    Ok(keys)
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
        .map(|row| {
            let sql = COLUMN_SQL;
            let collation_name: Option<String> = row.cell(5, sql)?;
            Ok(Column {
                attnum: row.cell(0, sql)?,
                name: Ident::from_catalog(row.cell::<String>(1, sql)?),
                type_name: row.cell(2, sql)?,
                not_null: row.cell(3, sql)?,
                collation: row.cell::<Option<String>>(4, sql)?.map(|schema| {
                    QualifiedName::new(
                        Ident::from_catalog(schema),
                        Ident::from_catalog(collation_name.unwrap_or_default()),
                    )
                }),
            })
        })
        .collect::<Result<_>>()?;
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

const TABLE_COLUMNS_SQL: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
       a.attnotnull OR (t.typtype = 'd' AND t.typnotnull),
       a.atthasdef OR (t.typtype = 'd' AND t.typdefaultbin IS NOT NULL),
       a.attidentity::text, a.attgenerated::text
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum";

/// Every live (not dropped) column of a table, in table order.
pub fn table_columns(client: &mut impl GenericClient, relation: u32) -> Result<Vec<TableColumn>> {
    let rows = query(client, TABLE_COLUMNS_SQL, &[&relation])?;
    rows.iter()
        .map(|row| {
            let sql = TABLE_COLUMNS_SQL;
            let identity: String = row.cell(4, sql)?;
            let generated: String = row.cell(5, sql)?;
            Ok(TableColumn {
                name: Ident::from_catalog(row.cell::<String>(0, sql)?),
                type_name: row.cell(1, sql)?,
                not_null: row.cell(2, sql)?,
                has_default: row.cell(3, sql)?,
                filling: match (identity.as_str(), generated.as_str()) {
                    (_, g) if !g.is_empty() => Filling::Generated,
                    ("a", _) => Filling::IdentityAlways,
                    ("d", _) => Filling::IdentityByDefault,
                    _ => Filling::Plain,
                },
            })
        })
        .collect()
}

const INSERT_TRIGGERS_SQL: &str = "\
SELECT format('%I on %s (%s)', t.tgname, t.tgrelid::regclass,
              CASE WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF INSERT' ELSE 'BEFORE INSERT' END)
  FROM pg_trigger t
 WHERE t.tgrelid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass) UNION SELECT $1::oid)
   AND NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled IN ('O', 'A')
   AND t.tgtype & 1 <> 0 AND t.tgtype & 4 <> 0 AND t.tgtype & 66 <> 0
 ORDER BY 1";

/// User row triggers that run before (or instead of) each row inserted into
/// the table or its partitions: they may change or skip the rows inserted.
pub fn insert_triggers(client: &mut impl GenericClient, relation: u32) -> Result<Vec<String>> {
    let rows = query(client, INSERT_TRIGGERS_SQL, &[&relation])?;
    rows.iter()
        .map(|r| r.cell(0, INSERT_TRIGGERS_SQL))
        .collect()
}

// Key columns only (indnkeyatts: INCLUDE columns do not identify a row), of
// a valid, immediate unique index without predicate or expressions, all NOT
// NULL; the primary key first, then the replica identity, then the narrowest.
const IDENTITY_SQL: &str = "\
SELECT ARRAY(SELECT a.attname::text
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
  FROM pg_index i
 WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
   AND i.indpred IS NULL AND i.indexprs IS NULL
   AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   WHERE k.ord <= i.indnkeyatts AND (k.attnum <= 0 OR a.attnotnull IS NOT TRUE))
 ORDER BY i.indisprimary DESC, i.indisreplident DESC, i.indnkeyatts, i.indexrelid
 LIMIT 1";

// Columns whose values a table of fkctl's should not copy as they are: a
// type (or array element type, or collation) outside pg_catalog would make
// fkctl's table depend on the application's (DROP TYPE would fail, or with
// CASCADE drop archived values), and fkctl's own column names would clash.
const NOT_COPYABLE_SQL: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
   AND (t.typnamespace <> 'pg_catalog'::regnamespace
        OR e.typnamespace <> 'pg_catalog'::regnamespace
        OR co.collnamespace <> 'pg_catalog'::regnamespace
        OR a.attname = ANY($2::text[]))
 ORDER BY a.attnum";

/// The columns of `relation` that stop its rows being copied into a table
/// of its own shape, as `name (type)`; `reserved` are fkctl's column names.
pub fn not_copyable(
    client: &mut impl GenericClient,
    relation: u32,
    reserved: &[&str],
) -> Result<Vec<String>> {
    let reserved: Vec<String> = reserved.iter().map(|r| r.to_string()).collect();
    query(client, NOT_COPYABLE_SQL, &[&relation, &reserved])?
        .iter()
        .map(|row| {
            let name: String = row.cell(0, NOT_COPYABLE_SQL)?;
            let type_name: String = row.cell(1, NOT_COPYABLE_SQL)?;
            Ok(format!("{} ({type_name})", Ident::from_catalog(name)))
        })
        .collect()
}

/// The columns that identify one row of `relation` (see `Inspection::child_identity`).
pub fn row_identity(client: &mut impl GenericClient, relation: u32) -> Result<Option<Vec<Ident>>> {
    let rows = query(client, IDENTITY_SQL, &[&relation])?;
    rows.first()
        .map(|row| {
            let names: Vec<String> = row.cell(0, IDENTITY_SQL)?;
            Ok(names.into_iter().map(Ident::from_catalog).collect())
        })
        .transpose()
}
