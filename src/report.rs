//! The shapes of what read commands report: built by `commands`, rendered
//! as text by `render` and as JSON by serde, so both always agree.

use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::kinds::foreign_key::plan::impact;
use crate::model::{Lookup, Relation, Server};
use crate::plan::Drift;
use serde::Serialize;

/// The constraint's state in the catalog, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintState {
    Absent,
    Valid,
    NotValid,
    NotEnforced,
    NotAForeignKey,
}

#[derive(Debug, Serialize)]
pub struct InspectReport<'a> {
    pub environment: &'a str,
    pub connection: &'a str,
    pub server: &'a Server,
    pub state: ConstraintState,
    pub playbook: &'a ForeignKeyDef,
    pub live: Option<&'a crate::model::LiveConstraint>,
    pub drift: Vec<Drift>,
    pub child: &'a Relation,
    pub parent: &'a Relation,
    pub child_indexes: &'a [crate::model::IndexInfo],
    pub referencing_child: &'a [crate::model::DependentKey],
    pub sessions: &'a [crate::model::SessionInfo],
    pub impact: impact::Impact,
}

impl ConstraintState {
    pub fn label(self) -> &'static str {
        match self {
            ConstraintState::Absent => "absent",
            ConstraintState::Valid => "valid",
            ConstraintState::NotValid => "NOT VALID",
            ConstraintState::NotEnforced => "NOT ENFORCED",
            ConstraintState::NotAForeignKey => "not a foreign key",
        }
    }
}

pub fn state_of(lookup: &Lookup) -> ConstraintState {
    match lookup {
        Lookup::Absent => ConstraintState::Absent,
        Lookup::NotAForeignKey { .. } => ConstraintState::NotAForeignKey,
        Lookup::Found(c) if !c.enforced => ConstraintState::NotEnforced,
        Lookup::Found(c) if !c.validated => ConstraintState::NotValid,
        Lookup::Found(_) => ConstraintState::Valid,
    }
}

#[derive(Debug, Serialize)]
pub struct OrphanReport {
    pub environment: String,
    pub constraint: String,
    pub table: String,
    pub references: String,
    pub state: ConstraintState,
    pub orphan_count: i64,
    pub elapsed_ms: u128,
    pub sql: String,
    pub sample: Vec<crate::census::OrphanSample>,
}
