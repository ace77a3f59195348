//! The planning core: (playbook, observed database state) -> ordered steps,
//! each with its exact SQL, the locks it takes, and its checks. No I/O here:
//! `plan` prints a plan, `drop`/`rollback` execute one, `change-request`
//! renders one, and all three see the same bytes of SQL.

pub mod drift;
pub mod impact;
pub mod leaves;
pub mod locks;
pub mod restore;
#[cfg(test)]
mod snapshot_tests;
mod steps;

use crate::model::{Inspection, Lookup};
use crate::playbook::Playbook;
use serde::Serialize;

pub use drift::Drift;
pub use leaves::Path;
pub use locks::{Lock, LockMode};
pub use steps::{drop_plan, restore_plan, rollback_path, rollback_plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Drop,
    Rollback,
    Restore,
}

/// What a check's single result value must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Expect {
    Equals(i64),
    AtMost(i64),
    IsTrue,
    IsFalse,
}

impl Expect {
    pub fn describe(&self) -> String {
        match self {
            Expect::Equals(n) => format!("= {n}"),
            Expect::AtMost(n) => format!("<= {n}"),
            Expect::IsTrue => "true".to_string(),
            Expect::IsFalse => "false".to_string(),
        }
    }
}

/// A read-only query returning one value, and what that value must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub what: String,
    pub sql: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Status {
    /// The step still has to run.
    Pending,
    /// The database already shows this step's outcome.
    AlreadyDone(String),
    /// Planned from the playbook alone: whether it must run is decided live.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub number: usize,
    pub id: &'static str,
    pub title: String,
    pub why: String,
    /// Statements in order. When `transaction` is true they run in one
    /// transaction (BEGIN/COMMIT are not listed).
    pub statements: Vec<String>,
    pub transaction: bool,
    /// Repetition, e.g. "per batch of 1000 rows until the list is empty".
    pub repeat: Option<String>,
    pub locks: Vec<Lock>,
    /// Retries on lock timeout, with backoff.
    pub lock_retries: Option<u32>,
    pub before: Option<Check>,
    pub after: Option<Check>,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub operation: Operation,
    pub change: String,
    pub constraint: String,
    pub table: String,
    pub environment: Option<String>,
    /// "playbook" or "live catalog of <env>".
    pub basis: String,
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

/// The live state the planner needs, taken from an inspection.
pub struct Observed<'a> {
    pub environment: &'a str,
    pub inspection: &'a Inspection,
}

impl Observed<'_> {
    fn present(&self) -> Option<bool> {
        match &self.inspection.constraint {
            Lookup::Found(c) => Some(c.validated && c.enforced),
            _ => None,
        }
    }
}

/// Convenience: the plan for an operation.
pub fn build(operation: Operation, playbook: &Playbook, observed: Option<&Observed<'_>>) -> Plan {
    match operation {
        Operation::Drop => drop_plan(playbook, observed),
        Operation::Rollback => rollback_plan(playbook, observed),
        Operation::Restore => restore_plan(playbook, observed, None),
    }
}
