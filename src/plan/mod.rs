//! The planning core: (playbook, observed database state) -> ordered steps,
//! each with its exact SQL, the locks it takes, and its checks. No I/O here:
//! `plan` prints a plan, `drop`/`rollback` execute one, `change-request`
//! renders one, and all three see the same bytes of SQL.

pub mod locks;

use crate::model::{Inspection, Lookup};
use crate::playbook::Playbook;
use serde::Serialize;

pub use crate::kinds::foreign_key::plan::drift::Drift;
pub use crate::kinds::foreign_key::plan::leaves::RollbackPath;
pub use locks::{Lock, LockMode};
// Foreign keys are the one kind so far: their plans are the core's entry points.
pub use crate::kinds::foreign_key::plan::{
    drop_plan, restore_plan, rollback_path, rollback_plan, Archived,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Drop,
    Rollback,
    Restore,
    Cleanup,
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

/// What a step does. The engine dispatches on this; `id` is its stable
/// name in the journal, JSON output and change requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Check the live constraint is the playbook's (drop).
    VerifyDefinition,
    /// Count orphans against a limit: the census.
    CountOrphans,
    /// Record the live definition as the snapshot a rollback restores.
    SnapshotDefinition,
    DropConstraint,
    /// List orphan addresses in one scan (rollback).
    CollectOrphans,
    /// Stop if any orphan exists (policy abort).
    RefuseOrphans,
    AddNotValid,
    AddNotValidPartition,
    ReplaceNotEnforced,
    PrepareArchive,
    /// Delete listed orphans batch by batch, archiving each.
    PurgeOrphans,
    /// Set listed orphans' keys to NULL batch by batch, archiving each old row.
    NullifyOrphans,
    /// VACUUM the child after a large purge, before VALIDATE (no transaction).
    VacuumChild,
    VerifyNoOrphans,
    ValidateConstraint,
    ValidatePartition,
    /// ADD on the partitioned table that attaches the leaves' validated copies.
    AttachConstraint,
    /// List, in one scan, the archived rows a restore works through.
    ListArchived,
    /// Move archived rows back batch by batch.
    RestoreRows,
    /// Put nullified keys back batch by batch, each row found by its identity.
    RestoreKeys,
    /// Queue, capture function and triggers of the loose replacement (drop).
    InstallLoose,
    /// The cleanup of children of deleted parent rows, batch by batch.
    CleanDeleted,
    /// The cleanup of children of parent rows whose key changed.
    CleanRekeyed,
    /// One cleanup run at the start of a rollback.
    DrainLoose,
    /// Triggers, function and queue removed once the constraint is valid.
    RemoveLoose,
    /// Unique: count duplicate rows (CREATE UNIQUE INDEX's judgement) against a limit.
    CountDuplicates,
    /// Unique: stop if any duplicate exists (policy abort).
    RefuseDuplicates,
    /// Unique: list every surplus row's address, with its group's kept row, in one scan.
    CollectDuplicates,
    /// Unique: delete listed surplus rows batch by batch, archiving each.
    DedupeRows,
    /// Unique: no duplicate is left (new ones are listed and removed in another round).
    VerifyNoDuplicates,
    /// Unique: drop an INVALID index a failed or killed concurrent build left.
    DropInvalidIndex,
    /// Unique: CREATE UNIQUE INDEX CONCURRENTLY (no transaction; writes go on).
    BuildIndex,
    /// Unique: ADD CONSTRAINT ... UNIQUE USING INDEX (a catalog change).
    AddUsingIndex,
}

impl StepKind {
    pub fn id(self) -> &'static str {
        match self {
            StepKind::VerifyDefinition => "verify-definition",
            StepKind::CountOrphans => "count-orphans",
            StepKind::SnapshotDefinition => "snapshot-definition",
            StepKind::DropConstraint => "drop-constraint",
            StepKind::CollectOrphans => "collect-orphans",
            StepKind::RefuseOrphans => "refuse-orphans",
            StepKind::AddNotValid => "add-not-valid",
            StepKind::AddNotValidPartition => "add-not-valid-partition",
            StepKind::ReplaceNotEnforced => "replace-not-enforced",
            StepKind::PrepareArchive => "prepare-archive",
            StepKind::PurgeOrphans => "purge-orphans",
            StepKind::NullifyOrphans => "nullify-orphans",
            StepKind::VacuumChild => "vacuum-child",
            StepKind::VerifyNoOrphans => "verify-no-orphans",
            StepKind::ValidateConstraint => "validate-constraint",
            StepKind::ValidatePartition => "validate-partition",
            StepKind::AttachConstraint => "attach-constraint",
            StepKind::ListArchived => "list-archived",
            StepKind::RestoreRows => "restore-rows",
            StepKind::RestoreKeys => "restore-keys",
            StepKind::InstallLoose => "install-loose",
            StepKind::CleanDeleted => "clean-deleted",
            StepKind::CleanRekeyed => "clean-rekeyed",
            StepKind::DrainLoose => "drain-loose",
            StepKind::RemoveLoose => "remove-loose",
            StepKind::CountDuplicates => "count-duplicates",
            StepKind::RefuseDuplicates => "refuse-duplicates",
            StepKind::CollectDuplicates => "collect-duplicates",
            StepKind::DedupeRows => "dedupe-rows",
            StepKind::VerifyNoDuplicates => "verify-no-duplicates",
            StepKind::DropInvalidIndex => "drop-invalid-index",
            StepKind::BuildIndex => "build-index",
            StepKind::AddUsingIndex => "add-using-index",
        }
    }

    /// Puts the constraint (back) in place, NOT VALID: a catalog change.
    pub fn adds(self) -> bool {
        matches!(
            self,
            StepKind::AddNotValid | StepKind::AddNotValidPartition | StepKind::ReplaceNotEnforced
        )
    }

    /// Validates (or attaches validated copies): the end of a rollback.
    pub fn validates(self) -> bool {
        matches!(
            self,
            StepKind::ValidateConstraint | StepKind::ValidatePartition | StepKind::AttachConstraint
        )
    }
}

/// A value bound to a step's statement as a parameter ($1, $2, ... in order),
/// filled in by the engine for the run at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bind {
    RunId,
    Change,
    ConstraintName,
    /// The run whose archived rows a restore moves back.
    RestoreRunId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub number: usize,
    /// `kind.id()`: the step's stable name.
    pub id: &'static str,
    pub kind: StepKind,
    pub title: String,
    pub why: String,
    /// Statements in order. When `transaction` is true they run in one
    /// transaction (BEGIN/COMMIT are not listed).
    pub statements: Vec<String>,
    /// Parameters of the step's statements, in order; a statement that uses
    /// none (a transaction setting, a check) runs without them.
    pub binds: Vec<Bind>,
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

impl Step {
    /// A batch statement (a restore's: a thousand rows) runs without JIT.
    /// PostgreSQL decides JIT from the estimated cost, and an archive table
    /// never analyzed is estimated at hundreds of thousands: every batch
    /// then spent about 270 ms compiling for 20 ms of work (100,000
    /// restored rows took 31 s instead of 3 s).
    pub fn without_jit(&mut self) {
        if !self.statements.is_empty() {
            self.statements.insert(0, "SET LOCAL jit = off".to_string());
            self.why.push_str(" Each batch runs without JIT (jit = off, for that transaction only): compiling would cost more than the batch's work, and the planner's estimates for fkctl's archive tables are often far off.");
        }
    }
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
    pub fn present(&self) -> Option<bool> {
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
        Operation::Restore => restore_plan(playbook, observed, Archived::Unknown),
        Operation::Cleanup => {
            crate::kinds::foreign_key::loose::plan::cleanup_plan(playbook, observed)
        }
    }
}
