//! What the catalog shows about one unique constraint: plain data, filled by
//! `catalog.rs`, read by the pure plans.

use super::definition::UniqueDef;
use crate::model::{Relation, Server};
use serde::Serialize;

/// The constraint as it is in pg_constraint, with its index.
#[derive(Debug, Clone, Serialize)]
pub struct LiveUnique {
    pub def: UniqueDef,
    /// `pg_get_constraintdef`, names qualified as the search path requires.
    pub definition: String,
    /// The index behind it: `pg_get_indexdef`.
    pub index_definition: String,
    pub index_name: String,
    /// INCLUDE columns of the index: a plain UNIQUE (cols) has none.
    pub include_columns: i16,
    /// Key columns whose operator class is not the type's default, or whose
    /// collation is not the column's: the census and a rebuild would not
    /// judge keys as this index does.
    pub nondefault_keys: Vec<String>,
}

/// An index of the constraint's name in the table's schema, without a constraint.
#[derive(Debug, Clone, Serialize)]
pub struct LiveIndex {
    pub on_table: bool,
    pub valid: bool,
    pub unique: bool,
    pub definition: String,
}

/// A foreign key that references the table through the constraint's index:
/// PostgreSQL refuses to drop the constraint while it exists.
#[derive(Debug, Clone, Serialize)]
pub struct DependentFk {
    pub name: String,
    pub table: String,
    pub definition: String,
}

#[derive(Debug, Clone, Serialize)]
pub enum UniqueLookup {
    Found(Box<LiveUnique>),
    /// A constraint of the name exists but is of another kind (contype).
    OtherKind(String),
    Absent,
}

#[derive(Debug, Clone, Serialize)]
pub struct UniqueInspection {
    pub server: Server,
    pub table: Relation,
    pub constraint: UniqueLookup,
    /// When the constraint is absent: an index of its name (a finished or
    /// failed concurrent build of a rollback).
    pub index: Option<LiveIndex>,
    pub dependents: Vec<DependentFk>,
    /// Enforced foreign keys of other tables (or the table itself) that
    /// reference this table with an ON DELETE action that changes rows
    /// (CASCADE, SET NULL, SET DEFAULT): deleting a duplicate would fire them.
    pub cascading: Vec<DependentFk>,
    /// For a partitioned table: its leaf partitions, each with whether it is
    /// a foreign table (which can have no index).
    pub leaves: Vec<(crate::sql::ident::QualifiedName, bool)>,
    /// Sessions holding or awaiting locks on the table (or its partitions),
    /// or with a transaction open over a minute.
    pub sessions: Vec<crate::model::SessionInfo>,
    /// The table's column names, in order.
    pub columns: Vec<String>,
    /// Relation oids whose lock holders are named while fkctl waits.
    pub watched: Vec<u32>,
}

impl UniqueInspection {
    pub fn live(&self) -> Option<&LiveUnique> {
        match &self.constraint {
            UniqueLookup::Found(c) => Some(c),
            _ => None,
        }
    }
}
