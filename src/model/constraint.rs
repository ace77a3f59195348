//! The live foreign key as `pg_constraint` describes it.

use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::kinds::foreign_key::violations::KeyComparison;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LiveConstraint {
    #[serde(skip)]
    pub oid: u32,
    pub definition: ForeignKeyDef,
    /// `convalidated`: false for a constraint added NOT VALID and not yet validated.
    pub validated: bool,
    /// `conenforced` (PostgreSQL 18+); always true before 18.
    pub enforced: bool,
    /// `pg_get_constraintdef`, with every name schema-qualified.
    pub pg_definition: String,
    /// The unique index on the parent that the constraint depends on.
    pub parent_index: Option<String>,
    /// `ON DELETE SET NULL (cols)` column lists (PostgreSQL 15+), which playbooks cannot express yet.
    pub on_delete_set_columns: Vec<String>,
    #[serde(skip)]
    pub keys: Vec<KeyComparison>,
    /// Copies PostgreSQL made on partitions (child side or parent side).
    pub copies: Vec<ConstraintCopy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConstraintCopy {
    pub table: String,
    pub references: String,
    pub validated: bool,
}

/// What the catalog holds under the playbook's constraint name on the child table.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Box<LiveConstraint>),
    Absent,
    /// A constraint with that name exists but is not a foreign key.
    NotAForeignKey {
        contype: String,
    },
}
