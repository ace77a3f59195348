//! Reading a unique constraint, its index and the foreign keys that depend
//! on it from the live catalog, in one read-only snapshot.

use super::definition::UniqueDef;
use super::observed::{DependentFk, LiveIndex, LiveUnique, UniqueInspection, UniqueLookup};
use crate::catalog::{find_columns, find_relation, server};
use crate::error::{Error, Result};
use crate::pg::Cell;
use crate::playbook::Playbook;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::{GenericClient, IsolationLevel};

fn db(sql: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::from_postgres(&e, sql)
}

/// The constraint by name on the table, with its index. `nulls` reads
/// indnullsnotdistinct, which exists from PostgreSQL 15.
fn constraint_sql(version_num: i32) -> String {
    let nulls = if version_num >= 150_000 {
        "COALESCE(i.indnullsnotdistinct, false)"
    } else {
        "false"
    };
    format!(
        "SELECT con.contype::text, con.condeferrable, con.condeferred, pg_catalog.pg_get_constraintdef(con.oid), \
         ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), \
         {nulls}, COALESCE(pg_catalog.pg_get_indexdef(con.conindid), ''), COALESCE(ic.relname::text, ''), COALESCE(i.indnatts - i.indnkeyatts, 0)::int2, \
         ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[]) WITH ORDINALITY k(attnum, opc, coll, ord) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum JOIN pg_catalog.pg_opclass o ON o.oid = k.opc \
               WHERE k.ord <= i.indnkeyatts AND (NOT o.opcdefault OR k.coll <> a.attcollation) ORDER BY k.ord) \
         FROM pg_catalog.pg_constraint con LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = con.conindid LEFT JOIN pg_catalog.pg_class ic ON ic.oid = con.conindid \
         WHERE con.conrelid = $1 AND con.conname = $2"
    )
}

const INDEX_SQL: &str = "SELECT i.indrelid = $3, i.indisvalid, i.indisunique, pg_catalog.pg_get_indexdef(i.indexrelid) \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid \
WHERE n.nspname = $1 AND c.relname = $2";

/// Foreign keys whose referenced side is the constraint's index.
const DEPENDENTS_SQL: &str = "SELECT f.conname::text, f.conrelid::regclass::text, pg_catalog.pg_get_constraintdef(f.oid) \
FROM pg_catalog.pg_constraint f JOIN pg_catalog.pg_constraint u ON u.conindid = f.conindid AND u.conrelid = f.confrelid \
WHERE f.contype = 'f' AND u.conrelid = $1 AND u.conname = $2 ORDER BY 2, 1";

const LEAVES_SQL: &str = "SELECT n.nspname::text, c.relname::text, c.relkind = 'f' FROM pg_catalog.pg_partition_tree($1::oid::regclass) t JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf AND t.relid <> $1::oid ORDER BY 1, 2";

/// Foreign keys whose ON DELETE action changes rows, referencing the table
/// or any of its partitions (a partition's copies of one key count once).
fn cascading_sql() -> String {
    format!(
        "SELECT c.conname::text, c.conrelid::regclass::text, pg_catalog.pg_get_constraintdef(c.oid) \
         FROM pg_catalog.pg_constraint c \
         WHERE {} \
           AND c.confrelid IN (SELECT $1::oid UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass)) \
         ORDER BY 2, 1",
        crate::catalog::cascade::fires_on_delete()
    )
}

const FAMILY_SQL: &str =
    "SELECT $1::oid UNION SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass)";

/// Reads everything about the playbook's unique constraint, in one snapshot.
pub fn inspect(
    client: &mut postgres::Client,
    playbook: &Playbook,
    def: &UniqueDef,
    environment: &str,
) -> Result<UniqueInspection> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::from_postgres(&e, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))?;
    // pg_get_constraintdef and ::regclass qualify every name that the
    // search_path would not find; an empty path qualifies them all.
    tx.batch_execute("SET LOCAL search_path = ''")
        .map_err(db("SET LOCAL search_path = ''"))?;
    let server = server(&mut tx)?;
    let at = &playbook.positions;
    let table = find_relation(
        &mut tx,
        playbook,
        &def.table,
        crate::catalog::relations::PartitionKeys::Read,
        at.table,
        environment,
    )?;
    find_columns(
        &mut tx,
        playbook,
        &table,
        &def.columns,
        &at.columns,
        environment,
    )?;
    let constraint = lookup(&mut tx, server.version_num, table.oid, def)?;
    let index = match constraint {
        UniqueLookup::Absent => index(&mut tx, table.oid, def)?,
        _ => None,
    };
    let dependents = dependents(&mut tx, table.oid, def)?;
    let cascading = foreign_keys(&mut tx, &cascading_sql(), table.oid)?;
    let watched = oids(&mut tx, FAMILY_SQL, table.oid)?;
    let leaves = leaves(&mut tx, table.oid)?;
    let columns = names(&mut tx, COLUMNS_SQL, table.oid)?;
    let sessions = crate::catalog::activity::sessions(&mut tx, &watched, 60.0)?;
    tx.commit().map_err(db("COMMIT"))?;
    Ok(UniqueInspection {
        cascading,
        sessions,
        columns,
        leaves,
        server,
        table,
        constraint,
        index,
        dependents,
        watched,
    })
}

const COLUMNS_SQL: &str = "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

fn dependents(
    tx: &mut impl GenericClient,
    table: u32,
    def: &UniqueDef,
) -> Result<Vec<DependentFk>> {
    let rows = tx
        .query(DEPENDENTS_SQL, &[&table, &def.name.as_str()])
        .map_err(db(DEPENDENTS_SQL))?;
    rows.iter()
        .map(|r| {
            Ok(DependentFk {
                name: r.cell(0, DEPENDENTS_SQL)?,
                table: r.cell(1, DEPENDENTS_SQL)?,
                definition: r.cell(2, DEPENDENTS_SQL)?,
            })
        })
        .collect()
}

/// Foreign keys as `sql` lists them (name, table, definition; one oid parameter).
fn foreign_keys(tx: &mut impl GenericClient, sql: &str, table: u32) -> Result<Vec<DependentFk>> {
    let rows = tx.query(sql, &[&table]).map_err(db(sql))?;
    rows.iter()
        .map(|r| {
            Ok(DependentFk {
                name: r.cell(0, sql)?,
                table: r.cell(1, sql)?,
                definition: r.cell(2, sql)?,
            })
        })
        .collect()
}

/// The first column of every row of `sql` (one oid parameter), as oids.
fn oids(tx: &mut impl GenericClient, sql: &str, table: u32) -> Result<Vec<u32>> {
    let rows = tx.query(sql, &[&table]).map_err(db(sql))?;
    rows.iter().map(|r| r.cell(0, sql)).collect()
}

/// The first column of every row of `sql` (one oid parameter), as text.
fn names(tx: &mut impl GenericClient, sql: &str, table: u32) -> Result<Vec<String>> {
    let rows = tx.query(sql, &[&table]).map_err(db(sql))?;
    rows.iter().map(|r| r.cell(0, sql)).collect()
}

fn leaves(tx: &mut impl GenericClient, table: u32) -> Result<Vec<(QualifiedName, bool)>> {
    let rows = tx.query(LEAVES_SQL, &[&table]).map_err(db(LEAVES_SQL))?;
    rows.iter()
        .map(|r| {
            let schema: String = r.cell(0, LEAVES_SQL)?;
            let name: String = r.cell(1, LEAVES_SQL)?;
            Ok((
                QualifiedName::new(Ident::from_catalog(schema), Ident::from_catalog(name)),
                r.cell(2, LEAVES_SQL)?,
            ))
        })
        .collect()
}

fn lookup(
    tx: &mut impl GenericClient,
    version_num: i32,
    table: u32,
    def: &UniqueDef,
) -> Result<UniqueLookup> {
    let sql = constraint_sql(version_num);
    let rows = tx
        .query(sql.as_str(), &[&table, &def.name.as_str()])
        .map_err(db(&sql))?;
    let Some(r) = rows.first() else {
        return Ok(UniqueLookup::Absent);
    };
    let contype: String = r.cell(0, &sql)?;
    if contype != "u" {
        return Ok(UniqueLookup::OtherKind(contype));
    }
    let columns: Vec<String> = r.cell(4, &sql)?;
    Ok(UniqueLookup::Found(Box::new(LiveUnique {
        def: UniqueDef {
            name: def.name.clone(),
            table: def.table.clone(),
            columns: columns.into_iter().map(Ident::from_catalog).collect(),
            nulls_not_distinct: r.cell(5, &sql)?,
            deferrable: r.cell(1, &sql)?,
            initially_deferred: r.cell(2, &sql)?,
        },
        definition: r.cell(3, &sql)?,
        index_definition: r.cell(6, &sql)?,
        index_name: r.cell(7, &sql)?,
        include_columns: r.cell(8, &sql)?,
        nondefault_keys: r.cell(9, &sql)?,
    })))
}

fn index(tx: &mut impl GenericClient, table: u32, def: &UniqueDef) -> Result<Option<LiveIndex>> {
    let rows = tx
        .query(
            INDEX_SQL,
            &[&def.table.schema.as_str(), &def.name.as_str(), &table],
        )
        .map_err(db(INDEX_SQL))?;
    rows.first()
        .map(|r| {
            Ok(LiveIndex {
                on_table: r.cell(0, INDEX_SQL)?,
                valid: r.cell(1, INDEX_SQL)?,
                unique: r.cell(2, INDEX_SQL)?,
                definition: r.cell(3, INDEX_SQL)?,
            })
        })
        .transpose()
}

/// The table's columns that an INSERT can give a value (not generated, not
/// dropped), in table order: what a restore lists.
pub fn insertable_columns(
    client: &mut postgres::Client,
    table: &QualifiedName,
) -> Result<Vec<Ident>> {
    const SQL: &str = "SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum";
    let rows = client.query(SQL, &[&table.quoted()]).map_err(db(SQL))?;
    rows.iter()
        .map(|r| Ok(Ident::from_catalog(r.cell::<String>(0, SQL)?)))
        .collect()
}
