//! Reading the live database: everything fkctl needs to know about one
//! foreign key, taken in a single read-only snapshot so that all the facts
//! agree with each other. Names are always bound as parameters.

pub mod activity;
pub mod cascade;
pub mod deletes;
pub mod dependents;
pub mod indexes;
pub mod loose;
pub mod partitions;
pub mod relations;

use crate::error::{Error, Result};
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::kinds::foreign_key::{catalog as constraint, implement};
use crate::pg::Cell;
use crate::playbook::{Playbook, Position};
use crate::sql::ident::QualifiedName;
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Row};

use crate::model::{Column, Inspection, Lookup, Relation, Server};

/// Runs a catalog query; failures carry the SQL for the message.
pub(crate) fn query(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    client
        .query(sql, params)
        .map_err(|e| Error::from_postgres(&e, sql))
}

/// Sessions with a transaction open longer than this are reported.
pub const LONG_TRANSACTION_S: f64 = 60.0;

fn missing(playbook: &Playbook, at: Position, what: String, environment: &str) -> Error {
    Error::precondition(what)
        .with("environment", environment)
        .with("playbook", playbook.locate(at))
        .next("check the name in the playbook (unquoted names fold to lower case; quote mixed-case names) and the database the connection points at")
}

pub(crate) fn find_relation(
    tx: &mut impl GenericClient,
    playbook: &Playbook,
    name: &QualifiedName,
    keys: relations::PartitionKeys,
    at: Position,
    environment: &str,
) -> Result<Relation> {
    relations::find(tx, name, keys)?.ok_or_else(|| {
        missing(
            playbook,
            at,
            format!("table {name} does not exist"),
            environment,
        )
    })
}

pub(crate) fn find_columns(
    tx: &mut impl GenericClient,
    playbook: &Playbook,
    relation: &Relation,
    names: &[crate::sql::ident::Ident],
    positions: &[Position],
    environment: &str,
) -> Result<Vec<Column>> {
    let found = relations::columns(tx, relation.oid, names)?;
    found
        .into_iter()
        .zip(names.iter().zip(positions))
        .map(|(column, (name, at))| {
            column.ok_or_else(|| {
                missing(
                    playbook,
                    *at,
                    format!("column {name} does not exist in table {}", relation.name),
                    environment,
                )
            })
        })
        .collect()
}

const FAMILY_SQL: &str = "\
WITH RECURSIVE family AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
    UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN family f ON i.inhparent = f.oid)
SELECT oid FROM family ORDER BY 1";

/// The tables of `schema` (fkctl's own, for naming who holds a lock on
/// them while fkctl waits), read from pg_class without locking them.
pub fn schema_tables(client: &mut impl GenericClient, schema: &str) -> Result<Vec<u32>> {
    let sql = "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1";
    query(client, sql, &[&schema])?
        .iter()
        .map(|r| r.cell::<u32>(0, sql))
        .collect()
}

/// The oids of `tables` and of every partition below them, read from
/// pg_class and pg_inherits, which takes no lock on the tables themselves:
/// it works while another session holds ACCESS EXCLUSIVE on them, which is
/// exactly when fkctl needs to say who that is.
pub fn relation_family(
    client: &mut impl GenericClient,
    tables: &[&QualifiedName],
) -> Result<Vec<u32>> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = query(client, FAMILY_SQL, &[&schemas, &names])?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, u32>(0).map_err(|e| {
                Error::internal(format!("reading pg_inherits: {e}")).with("sql", FAMILY_SQL)
            })
        })
        .collect()
}

const SETTINGS_SQL: &str = "\
SELECT current_setting('server_version'), current_setting('server_version_num')::int4, current_database()::text,
       (SELECT setting::int8 FROM pg_catalog.pg_settings WHERE name = 'deadlock_timeout')";

/// How much of the database an inspection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// What counting orphans needs: the tables, the constraint and its
    /// operators. The rest of the inspection is left empty: for the census
    /// (`fkctl orphans`) and "is the constraint gone there" checks only.
    Census,
    /// Everything plans and refusals read.
    Full,
}

/// Reads everything about the playbook's constraint, in one snapshot.
pub fn inspect(
    client: &mut postgres::Client,
    playbook: &Playbook,
    environment: &str,
) -> Result<Inspection> {
    inspect_to(client, playbook, environment, Depth::Full)
}

/// Reads the playbook's constraint to `depth`, in one snapshot.
// Long because it reads each fact of the inspection, one after another, in one snapshot.
pub fn inspect_to(
    client: &mut postgres::Client,
    playbook: &Playbook,
    environment: &str,
    depth: Depth,
) -> Result<Inspection> {
    // A unique playbook's `constraint` only carries the shared fields: the
    // foreign-key paths must never act on it (commands::unique runs those).
    if playbook.unique.is_some() {
        return Err(Error::usage(format!(
            "{} describes a unique constraint (kind: unique), and this command reads foreign keys only",
            playbook.path.display()
        ))
        .next("use a command that takes unique playbooks: inspect, orphans (duplicates), plan, drop, rollback, restore, status, change-request"));
    }
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| Error::from_postgres(&e, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))?;
    // pg_get_constraintdef and ::regclass qualify every name that the
    // search_path would not find; an empty path qualifies them all.
    tx.batch_execute("SET LOCAL search_path = ''")
        .map_err(|e| Error::from_postgres(&e, "SET LOCAL search_path = ''"))?;
    let server = server(&mut tx)?;
    let fk = &playbook.constraint;
    let at = &playbook.positions;
    let child = find_relation(
        &mut tx,
        playbook,
        &fk.table,
        relations::PartitionKeys::Read,
        at.table,
        environment,
    )?;
    let parent = find_relation(
        &mut tx,
        playbook,
        &fk.ref_table,
        relations::PartitionKeys::Skip,
        at.ref_table,
        environment,
    )?;
    let child_columns = find_columns(
        &mut tx,
        playbook,
        &child,
        &fk.columns,
        &at.columns,
        environment,
    )?;
    let parent_columns = find_columns(
        &mut tx,
        playbook,
        &parent,
        &fk.ref_columns,
        &at.ref_columns,
        environment,
    )?;
    let lookup = constraint::lookup(&mut tx, server.version_num, child.oid, &fk.table, &fk.name)?;
    let keys = Keys {
        child: &child,
        parent: &parent,
        child_columns: &child_columns,
        parent_columns: &parent_columns,
    };
    let orphan_query = orphan_query(&mut tx, playbook, environment, &server, &keys, &lookup)?;
    let watched = relation_family(&mut tx, &[&fk.table, &fk.ref_table])?;
    let mut inspection = Inspection {
        server,
        child,
        parent,
        child_columns,
        parent_columns,
        constraint: lookup,
        referencing_child: Vec::new(),
        cascade: Default::default(),
        child_key_updates: Vec::new(),
        child_indexes: Vec::new(),
        child_identity: None,
        child_not_copyable: Vec::new(),
        leaves: Vec::new(),
        sessions: Vec::new(),
        watched,
        orphan_query,
        loose: Default::default(),
        citus_tables: Vec::new(),
        all_tables_publications: Vec::new(),
    };
    if depth == Depth::Full {
        surroundings(&mut tx, playbook, &mut inspection)?;
    }
    tx.commit()
        .map_err(|e| Error::from_postgres(&e, "COMMIT"))?;
    Ok(inspection)
}

/// What plans and refusals read beyond the constraint itself: who
/// references the child and what a purge sets off, indexes, row identity,
/// partitions, sessions, the loose replacement, Citus, publications.
fn surroundings(
    tx: &mut impl GenericClient,
    playbook: &Playbook,
    i: &mut Inspection,
) -> Result<()> {
    let fk = &playbook.constraint;
    let (child, version) = (i.child.oid, i.server.version_num);
    i.referencing_child = dependents::referencing(tx, child)?;
    i.cascade = cascade::tree(tx, version, child, &fk.table)?;
    i.child_key_updates = cascade::update_actions(tx, child, &fk.table, &fk.columns)?;
    let attnums: Vec<i16> = i.child_columns.iter().map(|c| c.attnum).collect();
    i.child_indexes = indexes::on_columns(tx, child, &attnums)?;
    i.child_identity = relations::row_identity(tx, child)?;
    i.child_not_copyable = relations::not_copyable(
        tx,
        child,
        &crate::kinds::foreign_key::repair::typed::RESERVED,
    )?;
    if i.child.partitioned {
        i.leaves = partitions::leaves(tx, version, child, i.parent.oid, fk)?;
    }
    i.sessions = activity::sessions(tx, &i.watched, LONG_TRANSACTION_S)?;
    let loose_objects = crate::kinds::foreign_key::loose::plan::objects(playbook);
    i.loose = loose::read(tx, &loose_objects, i.parent.oid)?;
    i.citus_tables = citus_tables(tx, &i.watched)?;
    i.all_tables_publications = query(tx, ALL_TABLES_PUBLICATIONS_SQL, &[])?
        .iter()
        .map(|r| r.cell::<String>(0, ALL_TABLES_PUBLICATIONS_SQL))
        .collect::<Result<Vec<_>>>()?;
    Ok(())
}

const ALL_TABLES_PUBLICATIONS_SQL: &str =
    "SELECT pubname::text FROM pg_catalog.pg_publication WHERE puballtables ORDER BY 1";
const CITUS_METADATA_SQL: &str = "SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL";
// Only run where Citus's metadata table exists (it would not parse elsewhere).
const CITUS_TABLES_SQL: &str = "SELECT logicalrelid::regclass::text FROM pg_catalog.pg_dist_partition WHERE logicalrelid = ANY($1::oid[]) ORDER BY 1";

/// The tables (and partitions) of this change that Citus distributes or
/// replicates; empty without the extension.
fn citus_tables(tx: &mut impl GenericClient, tables: &[u32]) -> Result<Vec<String>> {
    let has_metadata: bool = crate::pg::query_scalar(tx, CITUS_METADATA_SQL, &[])?;
    if !has_metadata {
        return Ok(Vec::new());
    }
    query(tx, CITUS_TABLES_SQL, &[&tables])?
        .iter()
        .map(|r| r.cell::<String>(0, CITUS_TABLES_SQL))
        .collect()
}

pub(crate) fn server(tx: &mut impl GenericClient) -> Result<Server> {
    let settings = query(tx, SETTINGS_SQL, &[])?;
    let row = settings
        .first()
        .ok_or_else(|| Error::internal("the server returned no settings row"))?;
    Ok(Server {
        version: row.cell(0, SETTINGS_SQL)?,
        version_num: row.cell(1, SETTINGS_SQL)?,
        database: row.cell(2, SETTINGS_SQL)?,
        deadlock_timeout_ms: row.cell(3, SETTINGS_SQL)?,
    })
}

/// The two tables and the key columns the playbook names, as found.
struct Keys<'a> {
    child: &'a Relation,
    parent: &'a Relation,
    child_columns: &'a [Column],
    parent_columns: &'a [Column],
}

/// The exact orphan query: the live constraint's own comparisons, or, when
/// it is not in the catalog, those ADD CONSTRAINT would make PostgreSQL use;
/// a definition PostgreSQL would refuse is refused here.
fn orphan_query(
    tx: &mut impl GenericClient,
    playbook: &Playbook,
    environment: &str,
    server: &Server,
    keys: &Keys<'_>,
    lookup: &Lookup,
) -> Result<OrphanQuery> {
    let fk = &playbook.constraint;
    let mut query = OrphanQuery::from_definition(fk);
    query.child_partitioned = keys.child.partitioned;
    query.parent_partitioned = keys.parent.partitioned;
    query.partition_keys = keys.child.partition_keys.clone();
    if let Lookup::Found(live) = lookup {
        query.match_type = live.definition.match_type;
        query.parent = live.definition.ref_table.clone();
        query.keys = live.keys.clone();
        return Ok(query);
    }
    let facts = implement::facts(
        tx,
        keys.child,
        keys.parent,
        keys.child_columns,
        keys.parent_columns,
    )?;
    let pk_attnums: Vec<i16> = keys.parent_columns.iter().map(|c| c.attnum).collect();
    match implement::verdict(&facts, fk, &pk_attnums, server.version_num) {
        Ok(operators) => {
            let fk_attnums: Vec<i16> = keys.child_columns.iter().map(|c| c.attnum).collect();
            query.keys = constraint::key_comparisons(
                tx,
                keys.child.oid,
                keys.parent.oid,
                &fk_attnums,
                &pk_attnums,
                &operators,
            )?;
        }
        Err(refusal) if matches!(lookup, Lookup::Absent) => {
            return Err(refusal.into_error(playbook, environment));
        }
        // Another kind of constraint holds the name: every command
        // refuses that on its own terms; keep plain equality.
        Err(_) => {}
    }
    Ok(query)
}
