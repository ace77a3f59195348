//! The live foreign key: its definition read back from `pg_constraint`, the
//! exact comparisons PostgreSQL uses for it, and its partition copies.

use crate::catalog::query;
use crate::error::{Error, Result};
use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef, MatchType};
use crate::kinds::foreign_key::violations::{KeyComparison, Operator};
use crate::model::{ConstraintCopy, LiveConstraint, Lookup};
use crate::pg::Cell;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::GenericClient;

/// `pg_constraint c`'s enforced flag (PostgreSQL 18 has NOT ENFORCED).
pub(crate) fn enforced_column(server_version: i32) -> &'static str {
    if server_version >= 180000 {
        "c.conenforced"
    } else {
        "true"
    }
}

/// The columns `ON DELETE SET NULL / DEFAULT (columns)` of `pg_constraint c`
/// sets, by name (PostgreSQL 15+; empty before).
pub(crate) fn delete_set_columns(server_version: i32) -> &'static str {
    if server_version >= 150000 {
        "ARRAY(SELECT a.attname::text FROM unnest(c.confdelsetcols) k(n) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n)"
    } else {
        "ARRAY[]::text[]"
    }
}

fn constraint_sql(server_version: i32) -> String {
    let enforced = enforced_column(server_version);
    let set_cols = delete_set_columns(server_version);
    format!(
        "\
SELECT c.oid, c.contype::text, c.confupdtype::text, c.confdeltype::text, c.confmatchtype::text,
       c.condeferrable, c.condeferred, c.convalidated, {enforced},
       pg_get_constraintdef(c.oid), nullif(c.conindid, 0)::regclass::text,
       pn.nspname::text, p.relname::text, {set_cols},
       c.confrelid, c.conkey, c.confkey, c.conpfeqop
  FROM pg_constraint c
  LEFT JOIN pg_class p ON p.oid = c.confrelid
  LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE c.conrelid = $1 AND c.conname = $2"
    )
}

// One row per key column, in constraint order: how PostgreSQL's
// RI_Initial_Check compares it (ri_GenerateQual, generate_operator_clause,
// ri_GenerateQualCollation). `$3`, `$4`, `$5` are the child's and the parent's
// attnums and the equality operators (`conpfeqop`), element by element.
const KEYS_SQL: &str = "\
SELECT fa.attname::text, pa.attname::text,
       opn.nspname::text, o.oprname::text,
       CASE WHEN pa.atttypid <> o.oprleft THEN ltn.nspname::text END, lt.typname::text,
       CASE WHEN fa.atttypid <> o.oprright THEN rtn.nspname::text END, rt.typname::text,
       CASE WHEN pa.attcollation <> fa.attcollation AND pa.attcollation <> 0 THEN colln.nspname::text END,
       coll.collname::text
  FROM unnest($3::int2[], $4::int2[], $5::oid[]) WITH ORDINALITY AS k(fk_att, pk_att, eqop, ord)
  JOIN pg_attribute fa ON fa.attrelid = $1 AND fa.attnum = k.fk_att
  JOIN pg_attribute pa ON pa.attrelid = $2 AND pa.attnum = k.pk_att
  JOIN pg_operator o ON o.oid = k.eqop
  JOIN pg_namespace opn ON opn.oid = o.oprnamespace
  JOIN pg_type lt ON lt.oid = o.oprleft JOIN pg_namespace ltn ON ltn.oid = lt.typnamespace
  JOIN pg_type rt ON rt.oid = o.oprright JOIN pg_namespace rtn ON rtn.oid = rt.typnamespace
  LEFT JOIN pg_collation coll ON coll.oid = pa.attcollation
  LEFT JOIN pg_namespace colln ON colln.oid = coll.collnamespace
 ORDER BY k.ord";

const COPIES_SQL: &str = "\
WITH RECURSIVE copies AS (
    SELECT oid, conrelid, confrelid, convalidated FROM pg_constraint WHERE conparentid = $1
    UNION ALL
    SELECT c.oid, c.conrelid, c.confrelid, c.convalidated
      FROM pg_constraint c JOIN copies p ON c.conparentid = p.oid)
SELECT conrelid::regclass::text, confrelid::regclass::text, convalidated FROM copies ORDER BY 1, 2";

fn qualified(schema: Option<String>, name: String) -> QualifiedName {
    QualifiedName::new(
        Ident::from_catalog(schema.unwrap_or_default()),
        Ident::from_catalog(name),
    )
}

/// How each key column is compared, as PostgreSQL's own validation compares
/// it: `fk_attnums[i]` of the child against `pk_attnums[i]` of the parent with
/// the equality operator `operators[i]` (a `conpfeqop` element, read from the
/// live constraint or worked out as ADD CONSTRAINT would choose it).
pub fn key_comparisons(
    client: &mut impl GenericClient,
    child_oid: u32,
    parent_oid: u32,
    fk_attnums: &[i16],
    pk_attnums: &[i16],
    operators: &[u32],
) -> Result<Vec<KeyComparison>> {
    let rows = query(
        client,
        KEYS_SQL,
        &[
            &child_oid,
            &parent_oid,
            &fk_attnums,
            &pk_attnums,
            &operators,
        ],
    )?;
    if rows.len() != operators.len()
        || fk_attnums.len() != operators.len()
        || pk_attnums.len() != operators.len()
    {
        return Err(Error::internal(format!(
            "the catalog described {} of {} key column(s) of the foreign key",
            rows.len(),
            operators.len()
        )));
    }
    let mut keys = Vec::with_capacity(rows.len());
    for k in &rows {
        let symbol: String = k.cell(3, KEYS_SQL)?;
        if !Operator::is_valid_symbol(&symbol) {
            return Err(Error::internal(format!(
                "the equality operator {symbol:?} is not an operator name fkctl can write safely"
            )));
        }
        let cast = |schema: Option<String>, name: String| schema.map(|s| qualified(Some(s), name));
        let collation_name: Option<String> = k.cell(9, KEYS_SQL)?;
        keys.push(KeyComparison {
            fk_column: Ident::from_catalog(k.cell::<String>(0, KEYS_SQL)?),
            pk_column: Ident::from_catalog(k.cell::<String>(1, KEYS_SQL)?),
            operator: Operator {
                schema: Ident::from_catalog(k.cell::<String>(2, KEYS_SQL)?),
                symbol,
                pk_cast: cast(k.cell(4, KEYS_SQL)?, k.cell(5, KEYS_SQL)?),
                fk_cast: cast(k.cell(6, KEYS_SQL)?, k.cell(7, KEYS_SQL)?),
            },
            collation: k
                .cell::<Option<String>>(8, KEYS_SQL)?
                .map(|s| qualified(Some(s), collation_name.unwrap_or_default())),
        });
    }
    Ok(keys)
}

/// Reads the named constraint of `child` (whose name the playbook gives).
pub fn lookup(
    client: &mut impl GenericClient,
    server_version: i32,
    child_oid: u32,
    child: &QualifiedName,
    name: &Ident,
) -> Result<Lookup> {
    let sql = constraint_sql(server_version);
    let rows = query(client, &sql, &[&child_oid, &name.as_str()])?;
    let Some(row) = rows.first() else {
        return Ok(Lookup::Absent);
    };
    let contype: String = row.cell(1, &sql)?;
    if contype != "f" {
        return Ok(Lookup::NotAForeignKey { contype });
    }
    let oid: u32 = row.cell(0, &sql)?;
    let bad = |what: &str, code: String| {
        Error::internal(format!("unexpected {what} code {code:?} in pg_constraint"))
    };
    let on_update: String = row.cell(2, &sql)?;
    let on_delete: String = row.cell(3, &sql)?;
    let matching: String = row.cell(4, &sql)?;
    let keys = key_comparisons(
        client,
        child_oid,
        row.cell(14, &sql)?,
        &row.cell::<Vec<i16>>(15, &sql)?,
        &row.cell::<Vec<i16>>(16, &sql)?,
        &row.cell::<Vec<u32>>(17, &sql)?,
    )?;
    let columns = keys.iter().map(|k| k.fk_column.clone()).collect();
    let ref_columns = keys.iter().map(|k| k.pk_column.clone()).collect();
    let definition = ForeignKeyDef {
        name: name.clone(),
        table: child.clone(),
        columns,
        ref_table: qualified(
            row.cell(11, &sql)?,
            row.cell::<Option<String>>(12, &sql)?.unwrap_or_default(),
        ),
        ref_columns,
        on_delete: FkAction::from_catalog_code(&on_delete)
            .ok_or_else(|| bad("confdeltype", on_delete.clone()))?,
        on_update: FkAction::from_catalog_code(&on_update)
            .ok_or_else(|| bad("confupdtype", on_update.clone()))?,
        match_type: MatchType::from_catalog_code(&matching)
            .ok_or_else(|| bad("confmatchtype", matching.clone()))?,
        deferrable: row.cell(5, &sql)?,
        initially_deferred: row.cell(6, &sql)?,
    };
    let copies = query(client, COPIES_SQL, &[&oid])?
        .iter()
        .map(|r| {
            Ok(ConstraintCopy {
                table: r.cell(0, COPIES_SQL)?,
                references: r.cell(1, COPIES_SQL)?,
                validated: r.cell(2, COPIES_SQL)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Lookup::Found(Box::new(LiveConstraint {
        oid,
        definition,
        validated: row.cell(7, &sql)?,
        enforced: row.cell(8, &sql)?,
        pg_definition: row.cell(9, &sql)?,
        parent_index: row.cell(10, &sql)?,
        on_delete_set_columns: row.cell(13, &sql)?,
        keys,
        copies,
    })))
}
