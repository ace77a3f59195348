//! The cascade tree below the child: the foreign keys whose ON DELETE
//! action (CASCADE, SET NULL, SET DEFAULT) a purge of child rows sets off,
//! followed down through every CASCADE level, partitioned tables included.

use super::{query, relations};
use crate::error::{Error, Result};
use crate::kinds::foreign_key::catalog::{delete_set_columns, key_comparisons};
use crate::kinds::foreign_key::definition::{FkAction, MatchType};
use crate::model::{CascadeLevel, CascadeProblem, CascadeTree, UpdateAction};
use crate::pg::Cell;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};
use postgres::GenericClient;
use std::collections::VecDeque;

/// Deeper than this, fkctl stops following the tree and refuses.
pub const MAX_DEPTH: usize = 16;

/// The foreign keys of `pg_constraint c` whose ON DELETE action a delete of
/// the rows they reference sets off: CASCADE, SET NULL, SET DEFAULT, of
/// enforced keys (a NOT ENFORCED key has no triggers). Only the top
/// constraint of a partitioned table (conparentid = 0): its copies on the
/// partitions fire for it. The tree walk and each purge batch's check that
/// the tree is still the one planned read the same keys.
pub fn fires_on_delete() -> String {
    fires("confdeltype")
}

/// The keys of `pg_constraint c` whose action in `action_column`
/// (confdeltype or confupdtype) changes rows: CASCADE, SET NULL, SET
/// DEFAULT, of enforced top constraints. `conenforced` (PostgreSQL 18) is
/// read through `to_jsonb` so that one text serves every version (before
/// 18 the column does not exist and every key is enforced): the check a
/// plan renders is the same bytes whatever the server.
fn fires(action_column: &str) -> String {
    format!(
        "c.contype = 'f' AND c.conparentid = 0 AND c.{action_column} IN ('c', 'n', 'd') AND coalesce((pg_catalog.to_jsonb(c) ->> 'conenforced')::boolean, true)"
    )
}

// The keys with an ON UPDATE action that changes rows (CASCADE, SET NULL,
// SET DEFAULT) on a referenced column among $2 (names) of table $1 or of one
// of its partitions: writing those columns sets them off. Top constraints
// only, as for ON DELETE.
fn update_actions_sql() -> String {
    format!(
        "\
SELECT c.conname::text, n.nspname::text, r.relname::text, c.confupdtype::text
  FROM pg_catalog.pg_constraint c
  JOIN pg_catalog.pg_class r ON r.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
 WHERE {}
   AND c.confrelid IN (SELECT $1::oid UNION SELECT t.relid FROM pg_catalog.pg_partition_tree($1::oid::regclass) t)
   AND EXISTS (SELECT FROM unnest(c.confkey) k(attnum)
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                WHERE a.attname = ANY ($2::text[]))
 ORDER BY 2, 3, 1",
        fires("confupdtype")
    )
}

/// The keys whose ON UPDATE action writing `columns` of `table` sets off.
pub fn update_actions(
    client: &mut impl GenericClient,
    table_oid: u32,
    table: &QualifiedName,
    columns: &[Ident],
) -> Result<Vec<UpdateAction>> {
    let sql = update_actions_sql();
    let names: Vec<&str> = columns.iter().map(Ident::as_str).collect();
    query(client, &sql, &[&table_oid, &names])?
        .iter()
        .map(|row| {
            let code: String = row.cell(3, &sql)?;
            Ok(UpdateAction {
                constraint: Ident::from_catalog(row.cell::<String>(0, &sql)?),
                table: name(row.cell(1, &sql)?, row.cell(2, &sql)?),
                references: table.clone(),
                on_update: FkAction::from_catalog_code(&code).ok_or_else(|| {
                    Error::internal(format!(
                        "unexpected confupdtype code {code:?} in pg_constraint"
                    ))
                })?,
            })
        })
        .collect()
}

// A key that references one partition of the table is found too (confrelid
// in the table's partition tree).
fn referencing_sql(server_version: i32) -> String {
    let fires = fires_on_delete();
    let set_cols = delete_set_columns(server_version);
    format!(
        "\
SELECT c.conname::text, n.nspname::text, r.relname::text, c.conrelid, r.relkind = 'p',
       c.confdeltype::text, c.confmatchtype::text, c.conkey, c.confkey, c.conpfeqop,
       {set_cols}, c.confrelid = $1, fn.nspname::text, f.relname::text
  FROM pg_constraint c
  JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
  JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
 WHERE {fires}
   AND c.confrelid IN (SELECT $1::oid UNION SELECT t.relid FROM pg_partition_tree($1::oid::regclass) t)
 ORDER BY 2, 3, 1"
    )
}

fn name(schema: String, table: String) -> QualifiedName {
    QualifiedName::new(Ident::from_catalog(schema), Ident::from_catalog(table))
}

/// A table of the tree still to be looked under: its oid and name, its
/// level (None for the child) and the tables on its path from the child.
struct Pending {
    oid: u32,
    table: QualifiedName,
    level: Option<usize>,
    path: Vec<u32>,
}

/// The cascade tree below `child` (oid and name), breadth first.
// Long because it walks the tree and sorts each key found into a level or a
// problem in one loop; the rules read best together.
pub fn tree(
    client: &mut impl GenericClient,
    server_version: i32,
    child_oid: u32,
    child: &QualifiedName,
) -> Result<CascadeTree> {
    let sql = referencing_sql(server_version);
    let mut found = CascadeTree {
        track_counts: crate::pg::query_scalar::<String>(
            client,
            "SELECT current_setting('track_counts')",
            &[],
        )? == "on",
        ..CascadeTree::default()
    };
    let mut seen = vec![child_oid];
    let mut queue = VecDeque::from([Pending {
        oid: child_oid,
        table: child.clone(),
        level: None,
        path: vec![child_oid],
    }]);
    while let Some(at) = queue.pop_front() {
        for row in &query(client, &sql, &[&at.oid])? {
            let constraint = Ident::from_catalog(row.cell::<String>(0, &sql)?);
            let table = name(row.cell(1, &sql)?, row.cell(2, &sql)?);
            let oid: u32 = row.cell(3, &sql)?;
            if !row.cell::<bool>(11, &sql)? {
                let partition = name(row.cell(12, &sql)?, row.cell(13, &sql)?);
                found.problems.push(CascadeProblem::ReferencesPartition {
                    constraint,
                    table,
                    partition,
                });
                continue;
            }
            if at.path.contains(&oid) {
                found.problems.push(CascadeProblem::Cycle {
                    constraint,
                    table,
                    references: at.table.clone(),
                });
                continue;
            }
            if seen.contains(&oid) {
                found.problems.push(CascadeProblem::ReachedTwice {
                    constraint,
                    table,
                    references: at.table.clone(),
                });
                continue;
            }
            let depth = at.path.len();
            if depth > MAX_DEPTH {
                found
                    .problems
                    .push(CascadeProblem::TooDeep { table, depth });
                continue;
            }
            seen.push(oid);
            let code: String = row.cell(5, &sql)?;
            let matching: String = row.cell(6, &sql)?;
            let bad = |what: &str, code: &str| {
                Error::internal(format!("unexpected {what} code {code:?} in pg_constraint"))
            };
            let on_delete =
                FkAction::from_catalog_code(&code).ok_or_else(|| bad("confdeltype", &code))?;
            let keys = key_comparisons(
                client,
                oid,
                at.oid,
                &row.cell::<Vec<i16>>(7, &sql)?,
                &row.cell::<Vec<i16>>(8, &sql)?,
                &row.cell::<Vec<u32>>(9, &sql)?,
            )?;
            let level = CascadeLevel {
                oid,
                constraint,
                table: table.clone(),
                partitioned: row.cell(4, &sql)?,
                references: at.table.clone(),
                above: at.level,
                depth,
                on_delete,
                match_type: MatchType::from_catalog_code(&matching)
                    .ok_or_else(|| bad("confmatchtype", &matching))?,
                keys,
                set_columns: row
                    .cell::<Vec<String>>(10, &sql)?
                    .into_iter()
                    .map(Ident::from_catalog)
                    .collect(),
                identity: relations::row_identity(client, oid)?,
                copyable: relations::not_copyable(
                    client,
                    oid,
                    &crate::kinds::foreign_key::repair::typed::RESERVED,
                )?
                .is_empty(),
            };
            if on_delete != FkAction::Cascade {
                let written = level.written_columns();
                for action in update_actions(client, oid, &level.table, &written)? {
                    found.problems.push(CascadeProblem::SetsOffUpdate(action));
                }
            }
            found.levels.push(level);
            if on_delete == FkAction::Cascade {
                let mut path = at.path.clone();
                path.push(oid);
                queue.push_back(Pending {
                    oid,
                    table,
                    level: Some(found.levels.len() - 1),
                    path,
                });
            }
        }
    }
    Ok(found)
}

/// Before a batch's delete, in its transaction: the keys whose ON DELETE
/// action a delete of the child, or of a CASCADE level below it, sets off
/// (see [`fires_on_delete`]) must be the `levels`
/// the batch archives. A key added since the inspection would delete or
/// change rows that no statement archives; the check then fails, naming
/// it, and the batch rolls back before any delete. Two statements: the
/// tables the delete reaches are locked first (ROW EXCLUSIVE, the lock the
/// delete and its cascade take anyway, which no ADD FOREIGN KEY on them can
/// pass until the batch commits), then the check reads the catalog with a
/// snapshot taken after the locks, which sees every key already there.
/// The check returns no row.
pub fn tree_unchanged_sql(child: &QualifiedName, levels: &[CascadeLevel]) -> Vec<String> {
    let fires = fires_on_delete();
    let reached: Vec<&QualifiedName> = std::iter::once(child)
        .chain(
            levels
                .iter()
                .filter(|l| l.on_delete == FkAction::Cascade)
                .map(|l| &l.table),
        )
        .collect();
    let lock = format!(
        "LOCK TABLE {} IN ROW EXCLUSIVE MODE",
        reached
            .iter()
            .map(|t| t.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let reached = reached
        .iter()
        .map(|t| quote_literal(&t.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    let planned = if levels.is_empty() {
        "SELECT NULL::text, NULL::text, NULL::text WHERE false".to_string()
    } else {
        let rows = levels
            .iter()
            .map(|l| {
                format!(
                    "({}, {}, {})",
                    quote_literal(l.table.schema.as_str()),
                    quote_literal(l.table.name.as_str()),
                    quote_literal(l.constraint.as_str())
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("VALUES {rows}")
    };
    let check = format!(
        "WITH reached AS (SELECT u.rel FROM unnest(ARRAY[{reached}]::regclass[]) u(rel)), \
live (s, t, k) AS (SELECT n.nspname::text, r.relname::text, c.conname::text FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_class r ON r.oid = c.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
WHERE {fires} AND c.confrelid IN (SELECT rel::oid FROM reached UNION SELECT p.relid::oid FROM reached, pg_catalog.pg_partition_tree(reached.rel) p)), \
planned (s, t, k) AS ({planned}), \
differ AS (SELECT string_agg(what, '; ' ORDER BY what) AS what FROM (\
SELECT format('%I on %I.%I is new', a.k, a.s, a.t) AS what FROM (TABLE live EXCEPT TABLE planned) a \
UNION ALL SELECT format('%I on %I.%I is gone', g.k, g.s, g.t) FROM (TABLE planned EXCEPT TABLE live) g) d) \
SELECT what FROM differ WHERE ('fkctl: the ON DELETE actions below ' || {} || ' changed since fkctl read them (' || what || '): a delete would reach rows the batch does not archive; the batch is rolled back before its delete: run the same command again, which reads the keys again and archives or refuses what they set off')::int IS NULL AND what IS NOT NULL",
        quote_literal(&child.display())
    );
    vec![lock, check]
}
