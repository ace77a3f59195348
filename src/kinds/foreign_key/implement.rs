//! What `ALTER TABLE .. ADD CONSTRAINT .. FOREIGN KEY` would decide for a
//! definition that is not in the catalog (the constraint was dropped): the
//! equality operators PostgreSQL would store in `conpfeqop`, or why it would
//! refuse the definition altogether.
//!
//! It follows `ATAddForeignKeyConstraint` and `transformFkeyCheckAttrs` in
//! src/backend/commands/tablecmds.c, and was checked against PostgreSQL 15
//! and 18 (tests/orphans_differential.rs):
//!
//! - the referenced table must be a table, with a compatible persistence;
//! - the referenced columns, each named once, must be exactly the key columns
//!   (in any order) of a valid, unique, non-partial, expression-free index of
//!   the referenced table; the first such index in OID order that is not
//!   deferrable is used. An invalid index (a failed `CREATE UNIQUE INDEX
//!   CONCURRENTLY`) does not count;
//! - per column, with the index's operator family and input type
//!   (`opcintype`) at that column: the family's equality operator for
//!   (opcintype, child type) if the family also has one for (child type,
//!   child type), domains looked through; otherwise, if both column types can
//!   be coerced implicitly to opcintype, the family's (opcintype, opcintype)
//!   equality; otherwise the types are incompatible;
//! - PostgreSQL 18 also refuses a pair of columns with different collations
//!   when either collation is nondeterministic, and a pair where only one
//!   column is collatable;
//! - generated columns cannot take SET NULL / SET DEFAULT (or ON UPDATE
//!   CASCADE) actions, and PostgreSQL 18 refuses virtual generated columns.
//!
//! All the catalog facts come from one query; [`verdict`] then decides
//! without I/O, so the rules can be tested without a server.

use crate::catalog::query;
use crate::error::{Error, Result};
use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef};
use crate::model::{Column, Relation};
use crate::pg::Cell;
use crate::playbook::{Playbook, Position};
use postgres::GenericClient;

// Type OIDs fixed by PostgreSQL (pg_type.dat), used by the coercion rules.
//   22 int2vector, 30 oidvector: never targets of an array coercion;
//   2249 record: a composite input coerces to it;
//   2276 any: anything coerces to it;
//   2283 anyelement, 2776 anynonarray, 3500 anyenum, 2277 anyarray,
//   3831 anyrange, 4537 anymultirange: polymorphic, both actual types must agree;
//   5077 anycompatible, 5078 anycompatiblearray, 5079 anycompatiblenonarray,
//   5080 anycompatiblerange, 4538 anycompatiblemultirange: no B-tree operator
//   class uses them; treated as incompatible.
//
// `$1` child oid, `$2` parent oid, `$3`/`$4` child/parent attnums, pairwise.
// One row per key column, in order.
const FACTS_SQL: &str = "\
WITH RECURSIVE
dom(t, b) AS (
    SELECT oid, typbasetype FROM pg_type WHERE typtype = 'd'
    UNION ALL
    SELECT dom.t, d.typbasetype FROM dom JOIN pg_type d ON d.oid = dom.b AND d.typtype = 'd'),
base(t, b) AS (
    SELECT dom.t, dom.b FROM dom JOIN pg_type x ON x.oid = dom.b AND x.typtype <> 'd'),
keys AS (
    SELECT k.ord, k.pk_att, fa.atttypid AS fktype, pa.atttypid AS pktype,
           coalesce(fb.b, fa.atttypid) AS fkbase, coalesce(pb.b, pa.atttypid) AS pkbase,
           fa.attcollation AS fkcoll, pa.attcollation AS pkcoll, fa.attgenerated::text AS generated
      FROM unnest($3::int2[], $4::int2[]) WITH ORDINALITY AS k(fk_att, pk_att, ord)
      JOIN pg_attribute fa ON fa.attrelid = $1 AND fa.attnum = k.fk_att
      JOIN pg_attribute pa ON pa.attrelid = $2 AND pa.attnum = k.pk_att
      LEFT JOIN base fb ON fb.t = fa.atttypid
      LEFT JOIN base pb ON pb.t = pa.atttypid),
matching AS (
    SELECT i.indexrelid, i.indimmediate, i.indisexclusion, i.indkey, i.indclass, i.indnkeyatts
      FROM pg_index i
     WHERE i.indrelid = $2 AND i.indislive AND i.indisvalid AND i.indisunique
       AND i.indpred IS NULL AND i.indexprs IS NULL
       AND i.indnkeyatts = cardinality($4::int2[])
       AND NOT EXISTS (SELECT FROM unnest($4::int2[]) r(att)
                        WHERE NOT EXISTS (SELECT FROM generate_series(0, i.indnkeyatts - 1) s(j)
                                           WHERE i.indkey[s.j] = r.att))),
chosen AS (
    SELECT * FROM matching WHERE indimmediate ORDER BY indexrelid LIMIT 1),
cols AS (
    SELECT k.*, oc.opcfamily, oc.opcintype, coalesce(ob.b, oc.opcintype) AS opcbase
      FROM keys k
      LEFT JOIN chosen ch ON true
      LEFT JOIN pg_opclass oc ON oc.oid = (
            SELECT ch.indclass[s.j] FROM generate_series(0, ch.indnkeyatts - 1) s(j)
             WHERE ch.indkey[s.j] = k.pk_att)
      LEFT JOIN base ob ON ob.t = oc.opcintype),
ops AS (
    SELECT c.*,
           (SELECT amopopr FROM pg_amop WHERE amopfamily = c.opcfamily AND amopstrategy = 3
               AND amoplefttype = c.opcintype AND amoprighttype = c.opcintype) AS ppeqop,
           (SELECT amopopr FROM pg_amop WHERE amopfamily = c.opcfamily AND amopstrategy = 3
               AND amoplefttype = c.opcintype AND amoprighttype = c.fkbase) AS pfeqop,
           (SELECT amopopr FROM pg_amop WHERE amopfamily = c.opcfamily AND amopstrategy = 3
               AND amoplefttype = c.fkbase AND amoprighttype = c.fkbase) AS ffeqop,
           CASE
             WHEN c.opcintype IN (2283, 2776, 3500) THEN
                  c.pktype = c.fktype
              AND (c.opcintype <> 2776 OR NOT EXISTS (
                     SELECT FROM pg_type WHERE oid = c.pkbase AND typlen = -1 AND typelem <> 0))
              AND (c.opcintype <> 3500 OR EXISTS (
                     SELECT FROM pg_type WHERE oid = c.pktype AND typtype = 'e'))
             WHEN c.opcintype = 2277 THEN
                  c.pkbase = c.fkbase AND EXISTS (
                     SELECT FROM pg_type WHERE oid = c.pkbase AND typlen = -1 AND typelem <> 0)
             WHEN c.opcintype = 3831 THEN
                  c.pkbase = c.fkbase AND EXISTS (SELECT FROM pg_type WHERE oid = c.pkbase AND typtype = 'r')
             WHEN c.opcintype = 4537 THEN
                  c.pkbase = c.fkbase AND EXISTS (SELECT FROM pg_type WHERE oid = c.pkbase AND typtype = 'm')
             WHEN c.opcintype IN (5077, 5078, 5079, 5080, 4538) THEN false
             ELSE (SELECT bool_and(
                      inp.t = c.opcintype
                   OR c.opcintype = 2276
                   OR inp.b = c.opcbase
                   OR EXISTS (SELECT FROM pg_cast WHERE castsource = inp.b AND casttarget = c.opcbase
                                 AND castcontext = 'i')
                   OR (c.opcbase NOT IN (22, 30) AND EXISTS (
                         SELECT FROM pg_type it
                           JOIN pg_type tt ON tt.oid = c.opcbase AND tt.typlen = -1 AND tt.typelem <> 0
                           LEFT JOIN base ieb ON ieb.t = it.typelem
                           LEFT JOIN base teb ON teb.t = tt.typelem
                          WHERE it.oid = inp.b AND it.typlen = -1 AND it.typelem <> 0
                            AND (coalesce(ieb.b, it.typelem) = coalesce(teb.b, tt.typelem)
                                 OR EXISTS (SELECT FROM pg_cast
                                             WHERE castsource = coalesce(ieb.b, it.typelem)
                                               AND casttarget = coalesce(teb.b, tt.typelem)
                                               AND castcontext = 'i'))))
                   OR (c.opcbase = 2249 AND EXISTS (SELECT FROM pg_type WHERE oid = inp.t AND typrelid <> 0)))
                   FROM (VALUES (c.pktype, c.pkbase), (c.fktype, c.fkbase)) AS inp(t, b))
           END AS coercible
      FROM cols c)
SELECT o.ord::int4,
       CASE WHEN o.pfeqop IS NOT NULL AND o.ffeqop IS NOT NULL THEN o.pfeqop
            WHEN o.coercible THEN o.ppeqop END,
       format_type(o.fktype, NULL), format_type(o.pktype, NULL), format_type(o.opcintype, NULL),
       o.generated,
       o.fkcoll <> 0, o.pkcoll <> 0, o.fkcoll = o.pkcoll,
       coalesce(fc.collisdeterministic, true), coalesce(pc.collisdeterministic, true),
       fc.collname::text, pc.collname::text,
       (SELECT relkind::text FROM pg_class WHERE oid = $1), (SELECT relpersistence::text FROM pg_class WHERE oid = $1),
       (SELECT relkind::text FROM pg_class WHERE oid = $2), (SELECT relpersistence::text FROM pg_class WHERE oid = $2),
       (SELECT indexrelid::regclass::text FROM chosen),
       (SELECT am.amname::text FROM chosen JOIN pg_class ic ON ic.oid = chosen.indexrelid
          JOIN pg_am am ON am.oid = ic.relam),
       coalesce((SELECT indisexclusion FROM chosen), false),
       EXISTS (SELECT FROM matching WHERE NOT indimmediate)
  FROM ops o
  LEFT JOIN pg_collation fc ON fc.oid = o.fkcoll
  LEFT JOIN pg_collation pc ON pc.oid = o.pkcoll
 ORDER BY o.ord";

/// One key column pair as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The equality operator ADD CONSTRAINT would choose; None when the
    /// types are incompatible (or no usable index was found).
    pub operator: Option<u32>,
    pub fk_type: String,
    pub pk_type: String,
    /// The index operator class's input type at this column.
    pub index_type: Option<String>,
    /// `attgenerated` of the child column: empty, `s` (stored) or `v` (virtual).
    pub generated: String,
    pub fk_collatable: bool,
    pub pk_collatable: bool,
    pub same_collation: bool,
    pub fk_deterministic: bool,
    pub pk_deterministic: bool,
    pub fk_collation: Option<String>,
    pub pk_collation: Option<String>,
}

/// The catalog facts ADD CONSTRAINT decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub child_kind: String,
    pub child_persistence: String,
    pub parent_kind: String,
    pub parent_persistence: String,
    /// The unique index the constraint would depend on.
    pub index: Option<String>,
    pub index_method: Option<String>,
    /// The index backs a `WITHOUT OVERLAPS` key (PostgreSQL 18).
    pub index_without_overlaps: bool,
    /// Only a deferrable unique index matches the referenced columns.
    pub deferrable_match: bool,
    pub keys: Vec<KeyFacts>,
}

/// Where in the playbook the refused part of the definition is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Table,
    RefTable,
    Column(usize),
    RefColumn(usize),
}

/// Why PostgreSQL would refuse `ADD CONSTRAINT` for this definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// In plain words.
    pub reason: String,
    /// PostgreSQL's own error, as it would word it.
    pub postgres: String,
    pub next: String,
    pub at: Part,
}

/// Reads the facts (one query).
pub fn facts(
    client: &mut impl GenericClient,
    child: &Relation,
    parent: &Relation,
    child_columns: &[Column],
    parent_columns: &[Column],
) -> Result<Facts> {
    let fk_attnums: Vec<i16> = child_columns.iter().map(|c| c.attnum).collect();
    let pk_attnums: Vec<i16> = parent_columns.iter().map(|c| c.attnum).collect();
    let rows = query(
        client,
        FACTS_SQL,
        &[&child.oid, &parent.oid, &fk_attnums, &pk_attnums],
    )?;
    let first = rows.first().ok_or_else(|| {
        Error::internal("the catalog returned no key columns for the foreign key's definition")
    })?;
    if rows.len() != fk_attnums.len() {
        return Err(Error::internal(format!(
            "the catalog described {} of {} key column(s) of the foreign key's definition",
            rows.len(),
            fk_attnums.len()
        )));
    }
    Ok(Facts {
        child_kind: first
            .cell::<Option<String>>(13, FACTS_SQL)?
            .unwrap_or_default(),
        child_persistence: first
            .cell::<Option<String>>(14, FACTS_SQL)?
            .unwrap_or_default(),
        parent_kind: first
            .cell::<Option<String>>(15, FACTS_SQL)?
            .unwrap_or_default(),
        parent_persistence: first
            .cell::<Option<String>>(16, FACTS_SQL)?
            .unwrap_or_default(),
        index: first.cell(17, FACTS_SQL)?,
        index_method: first.cell(18, FACTS_SQL)?,
        index_without_overlaps: first.cell(19, FACTS_SQL)?,
        deferrable_match: first.cell(20, FACTS_SQL)?,
        keys: rows
            .iter()
            .map(|r| {
                Ok(KeyFacts {
                    operator: r.cell(1, FACTS_SQL)?,
                    fk_type: r.cell(2, FACTS_SQL)?,
                    pk_type: r.cell(3, FACTS_SQL)?,
                    index_type: r.cell(4, FACTS_SQL)?,
                    generated: r.cell(5, FACTS_SQL)?,
                    fk_collatable: r.cell(6, FACTS_SQL)?,
                    pk_collatable: r.cell(7, FACTS_SQL)?,
                    same_collation: r.cell(8, FACTS_SQL)?,
                    fk_deterministic: r.cell(9, FACTS_SQL)?,
                    pk_deterministic: r.cell(10, FACTS_SQL)?,
                    fk_collation: r.cell(11, FACTS_SQL)?,
                    pk_collation: r.cell(12, FACTS_SQL)?,
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn refuse(at: Part, reason: String, postgres: String, next: &str) -> Refusal {
    Refusal {
        reason,
        postgres,
        next: next.to_string(),
        at,
    }
}

/// The equality operators (`conpfeqop`) ADD CONSTRAINT would store for `fk`,
/// or why it would refuse it. `pk_attnums` are the referenced columns' attnums.
// Long because it follows ATAddForeignKeyConstraint's checks in PostgreSQL's own order, one rule after another; split up, the order that makes it checkable against tablecmds.c would be lost.
pub fn verdict(
    facts: &Facts,
    fk: &ForeignKeyDef,
    pk_attnums: &[i16],
    server_version: i32,
) -> std::result::Result<Vec<u32>, Refusal> {
    let parent = fk.ref_table.display();
    let child = fk.table.display();
    if facts.child_kind == "f" {
        return Err(refuse(
            Part::Table,
            format!("{child} is a foreign table, and foreign tables cannot have foreign keys"),
            "foreign key constraints are not supported on foreign tables".into(),
            "check the table the playbook names",
        ));
    }
    if facts.child_kind != "r" && facts.child_kind != "p" {
        return Err(refuse(
            Part::Table,
            format!(
                "{child} is not a table (relkind {:?}), and only tables can have foreign keys",
                facts.child_kind
            ),
            format!(
                "ALTER action ADD CONSTRAINT cannot be performed on relation \"{}\"",
                fk.table.name.as_str()
            ),
            "check the table the playbook names",
        ));
    }
    if facts.parent_kind != "r" && facts.parent_kind != "p" {
        return Err(refuse(
            Part::RefTable,
            format!(
                "the referenced {parent} is not a table (relkind {:?})",
                facts.parent_kind
            ),
            format!(
                "referenced relation \"{}\" is not a table",
                fk.ref_table.name.as_str()
            ),
            "check the referenced table the playbook names",
        ));
    }
    let persistence = match (
        facts.child_persistence.as_str(),
        facts.parent_persistence.as_str(),
    ) {
        ("p", "p") | ("u", "p") | ("u", "u") => None,
        ("p", _) => Some("constraints on permanent tables may reference only permanent tables"),
        ("u", _) => {
            Some("constraints on unlogged tables may reference only permanent or unlogged tables")
        }
        _ => Some("constraints on temporary tables must involve temporary tables of this session"),
    };
    if let Some(said) = persistence {
        return Err(refuse(
            Part::RefTable,
            format!("{child} cannot reference {parent}: a table can reference only a table that is as durable (permanent, unlogged or temporary)"),
            said.into(),
            "make both tables permanent (ALTER TABLE .. SET LOGGED), or check the tables the playbook names",
        ));
    }
    for (j, att) in pk_attnums.iter().enumerate() {
        if pk_attnums[..j].contains(att) {
            return Err(refuse(
                Part::RefColumn(j),
                format!(
                    "the referenced columns name {} more than once",
                    fk.ref_columns.get(j).map_or(String::new(), |c| c.display())
                ),
                "foreign key referenced-columns list must not contain duplicates".into(),
                "name each referenced column once in the playbook",
            ));
        }
    }
    let columns = fk
        .ref_columns
        .iter()
        .map(|c| c.display())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(index) = &facts.index else {
        return Err(if facts.deferrable_match {
            refuse(
                Part::RefColumn(0),
                format!("the only unique constraint or index on exactly ({columns}) of {parent} is deferrable, and a foreign key cannot rely on a deferrable one"),
                format!("cannot use a deferrable unique constraint for referenced table \"{}\"", fk.ref_table.name.as_str()),
                "add a non-deferrable unique constraint (or unique index) on exactly those columns, or check the columns the playbook names",
            )
        } else {
            refuse(
                Part::RefColumn(0),
                format!("{parent} has no valid unique constraint or unique index on exactly ({columns}) (no partial or expression index, no deferrable constraint), so the foreign key cannot be restored there"),
                format!("there is no unique constraint matching given keys for referenced table \"{}\"", fk.ref_table.name.as_str()),
                "add a unique constraint (or unique index) on exactly those columns, or rebuild an invalid one, or check the columns the playbook names",
            )
        });
    };
    if facts.index_without_overlaps {
        return Err(refuse(
            Part::RefColumn(0),
            format!("the unique key {index} of {parent} uses WITHOUT OVERLAPS, which needs a PERIOD foreign key that playbooks cannot describe"),
            "foreign key must use PERIOD when referencing a primary key using WITHOUT OVERLAPS".into(),
            "check the columns the playbook names",
        ));
    }
    if facts.index_method.as_deref() != Some("btree") {
        return Err(refuse(
            Part::RefColumn(0),
            format!("the unique index {index} of {parent} is not a B-tree index"),
            "only b-tree indexes are supported for foreign keys".into(),
            "reference columns with a B-tree unique index",
        ));
    }
    for (i, key) in facts.keys.iter().enumerate() {
        if key.generated.is_empty() {
            continue;
        }
        let name = fk.columns.get(i).map_or(String::new(), |c| c.display());
        if key.generated == "v" {
            return Err(refuse(
                Part::Column(i),
                format!("{name} is a virtual generated column, and foreign keys on virtual generated columns are not supported"),
                "foreign key constraints on virtual generated columns are not supported".into(),
                "check the columns the playbook names",
            ));
        }
        let bad_update = matches!(
            fk.on_update,
            FkAction::SetNull | FkAction::SetDefault | FkAction::Cascade
        );
        let bad_delete = matches!(fk.on_delete, FkAction::SetNull | FkAction::SetDefault);
        if bad_update || bad_delete {
            let clause = if bad_update { "ON UPDATE" } else { "ON DELETE" };
            return Err(refuse(
                Part::Column(i),
                format!("{name} is a generated column, and a foreign key on it cannot have this {clause} action (PostgreSQL cannot set a generated column)"),
                format!("invalid {clause} action for foreign key constraint containing generated column"),
                "change the action in the playbook, or check the columns it names",
            ));
        }
    }
    let mut operators = Vec::with_capacity(facts.keys.len());
    for (i, key) in facts.keys.iter().enumerate() {
        let fk_name = fk.columns.get(i).map_or(String::new(), |c| c.display());
        let pk_name = fk.ref_columns.get(i).map_or(String::new(), |c| c.display());
        let Some(operator) = key.operator else {
            let via = key.index_type.as_deref().map_or(String::new(), |t| {
                format!(", and PostgreSQL cannot cast both implicitly to {t}")
            });
            return Err(refuse(
                Part::Column(i),
                format!("column {fk_name} ({}) cannot reference {parent}.{pk_name} ({}): the operator family of its unique index {index} has no equality operator between the two types{via}", key.fk_type, key.pk_type),
                format!("foreign key constraint \"{}\" cannot be implemented: Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}", fk.name.as_str(), fk.columns.get(i).map_or("", |c| c.as_str()), fk.ref_columns.get(i).map_or("", |c| c.as_str()), key.fk_type, key.pk_type),
                "make the two column types comparable (usually: the same type), or check the columns the playbook names",
            ));
        };
        if server_version >= 180000 {
            if key.fk_collatable != key.pk_collatable {
                return Err(refuse(
                    Part::Column(i),
                    format!("column {fk_name} ({}) and {parent}.{pk_name} ({}): one has a collation and the other does not, which PostgreSQL 18 refuses", key.fk_type, key.pk_type),
                    "key columns are not both collatable".into(),
                    "give the two columns the same type, or check the columns the playbook names",
                ));
            }
            if key.fk_collatable
                && !key.same_collation
                && (!key.fk_deterministic || !key.pk_deterministic)
            {
                let show = |c: &Option<String>| c.clone().unwrap_or_default();
                return Err(refuse(
                    Part::Column(i),
                    format!("column {fk_name} (collation \"{}\") and {parent}.{pk_name} (collation \"{}\") have different collations and one of them is nondeterministic; PostgreSQL 18 requires the same collation then", show(&key.fk_collation), show(&key.pk_collation)),
                    format!("foreign key constraint \"{}\" cannot be implemented: Key columns have incompatible collations: \"{}\" and \"{}\"", fk.name.as_str(), show(&key.fk_collation), show(&key.pk_collation)),
                    "give the two columns the same collation, or check the columns the playbook names",
                ));
            }
        }
        operators.push(operator);
    }
    Ok(operators)
}

impl Refusal {
    /// The precondition error (exit 4) for this refusal in `environment`.
    pub fn into_error(self, playbook: &Playbook, environment: &str) -> Error {
        let at = &playbook.positions;
        let position: Position = match self.at {
            Part::Table => at.table,
            Part::RefTable => at.ref_table,
            Part::Column(i) => at.columns.get(i).copied().unwrap_or(at.table),
            Part::RefColumn(i) => at.ref_columns.get(i).copied().unwrap_or(at.ref_table),
        };
        Error::precondition(format!(
            "PostgreSQL would refuse to add {} as the playbook defines it: {}",
            playbook.constraint.name, self.reason
        ))
        .with("environment", environment)
        .with("playbook", playbook.locate(position))
        .with("postgres would say", format!("ERROR: {}", self.postgres))
        .next(format!(
            "{}. Until ADD CONSTRAINT can succeed the constraint cannot be restored (a rollback would fail the same way), and no row can be called its orphan",
            self.next
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn playbook() -> Playbook {
        let text = "version: 1
change: t
summary: t
constraint:
  name: child_fk
  table: app.child
  columns: [code, n]
  references: { table: app.parent, columns: [code, n] }
  on_delete: set_null
environments:
  - { name: staging, dsn_env: X }
";
        match crate::playbook::parse_str(text, std::path::Path::new("change.yml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn key(operator: Option<u32>) -> KeyFacts {
        KeyFacts {
            operator,
            fk_type: "text".into(),
            pk_type: "text".into(),
            index_type: Some("text".into()),
            generated: String::new(),
            fk_collatable: true,
            pk_collatable: true,
            same_collation: true,
            fk_deterministic: true,
            pk_deterministic: true,
            fk_collation: Some("default".into()),
            pk_collation: Some("default".into()),
        }
    }

    fn facts() -> Facts {
        Facts {
            child_kind: "r".into(),
            child_persistence: "p".into(),
            parent_kind: "r".into(),
            parent_persistence: "p".into(),
            index: Some("app.parent_pkey".into()),
            index_method: Some("btree".into()),
            index_without_overlaps: false,
            deferrable_match: false,
            keys: vec![key(Some(98)), key(Some(96))],
        }
    }

    #[test]
    fn operators_come_from_the_facts_in_key_order() {
        let p = playbook();
        assert_eq!(
            verdict(&facts(), &p.constraint, &[1, 2], 150000),
            Ok(vec![98, 96])
        );
    }

    #[test]
    fn a_nondeterministic_collation_mismatch_is_refused_from_postgresql_18_only() {
        let p = playbook();
        let mut f = facts();
        f.keys[0].same_collation = false;
        f.keys[0].pk_deterministic = false;
        f.keys[0].pk_collation = Some("ci".into());
        assert_eq!(
            verdict(&f, &p.constraint, &[1, 2], 150020),
            Ok(vec![98, 96])
        );
        let refused = verdict(&f, &p.constraint, &[1, 2], 180000).err();
        assert_eq!(refused.map(|r| r.at), Some(Part::Column(0)));
        // Two different deterministic collations are fine on every version.
        f.keys[0].pk_deterministic = true;
        assert!(verdict(&f, &p.constraint, &[1, 2], 180000).is_ok());
        // Only one side collatable: PostgreSQL 18 refuses.
        f.keys[1].fk_collatable = false;
        let refused = verdict(&f, &p.constraint, &[1, 2], 180000).err();
        assert_eq!(
            refused.map(|r| r.postgres),
            Some("key columns are not both collatable".to_string())
        );
        assert!(verdict(&f, &p.constraint, &[1, 2], 170000).is_ok());
    }

    #[test]
    fn refusals_name_the_part_of_the_playbook_at_fault() {
        let p = playbook();
        let mut f = facts();
        f.keys[1].operator = None;
        let r = verdict(&f, &p.constraint, &[1, 2], 150000).err();
        assert_eq!(r.as_ref().map(|r| r.at), Some(Part::Column(1)));
        assert!(r.is_some_and(|r| r.postgres.contains("cannot be implemented")));

        let mut f = facts();
        f.index = None;
        f.deferrable_match = true;
        let r = verdict(&f, &p.constraint, &[1, 2], 150000).err();
        assert!(r.is_some_and(|r| r.at == Part::RefColumn(0)
            && r.postgres
                .starts_with("cannot use a deferrable unique constraint")));

        let mut f = facts();
        f.parent_persistence = "u".into();
        assert_eq!(
            verdict(&f, &p.constraint, &[1, 2], 150000)
                .err()
                .map(|r| r.at),
            Some(Part::RefTable)
        );
        assert_eq!(
            verdict(&facts(), &p.constraint, &[2, 2], 150000)
                .err()
                .map(|r| r.at),
            Some(Part::RefColumn(1))
        );

        // ON DELETE SET NULL cannot set a generated column.
        let mut f = facts();
        f.keys[1].generated = "s".into();
        assert!(verdict(&f, &p.constraint, &[1, 2], 150000)
            .is_err_and(|r| r.postgres.contains("ON DELETE action")));
    }

    #[test]
    fn a_refusal_is_a_precondition_error_pointing_at_the_playbook_line() {
        let p = playbook();
        let mut f = facts();
        f.index = None;
        let Err(refusal) = verdict(&f, &p.constraint, &[1, 2], 150000) else {
            panic!("expected a refusal")
        };
        let e = refusal.into_error(&p, "staging");
        assert_eq!(e.kind, Kind::Precondition);
        assert!(
            e.message
                .starts_with("PostgreSQL would refuse to add child_fk"),
            "{}",
            e.message
        );
        let context: Vec<(&str, &str)> = e
            .context
            .iter()
            .map(|(l, t)| (l.as_str(), t.as_str()))
            .collect();
        assert!(context.contains(&("environment", "staging")), "{context:?}");
        assert!(
            context.contains(&("playbook", "change.yml:8:46")),
            "{context:?}"
        );
        assert!(e
            .next
            .is_some_and(|n| n.contains("add a unique constraint")));
    }
}
