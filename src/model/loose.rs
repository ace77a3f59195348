//! The loose replacement as the catalog shows it: fkctl's capture triggers
//! on the parent, its queue of parent keys, and the cleanup's counters.

use crate::sql::ident::QualifiedName;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct LooseState {
    /// The parent and every partition below it: a statement trigger fires
    /// only for statements naming its own table, so each needs its own.
    pub parent_tables: Vec<QualifiedName>,
    /// fkctl's capture triggers found, as `table: trigger` (enabled ones only).
    pub triggers: Vec<String>,
    pub queue_exists: bool,
    /// Queued parent keys not yet handled (0 without a queue).
    pub pending: i64,
    /// Child rows found still referencing queued keys the cleanup may not
    /// touch (RESTRICT / NO ACTION): what the foreign key would have refused.
    pub violating_child_rows: i64,
    pub counters: Option<LooseCounters>,
}

impl LooseState {
    /// Two triggers (delete, update) on every table of the parent.
    pub fn expected_triggers(&self) -> usize {
        2 * self.parent_tables.len()
    }

    pub fn fully_installed(&self) -> bool {
        self.queue_exists
            && !self.parent_tables.is_empty()
            && self.triggers.len() == self.expected_triggers()
    }

    pub fn any_installed(&self) -> bool {
        self.queue_exists || !self.triggers.is_empty()
    }
}

/// Cumulative totals, kept in the database so that cron-driven runs add up.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LooseCounters {
    pub processed_deletions: i64,
    pub child_rows_deleted: i64,
    pub child_rows_nullified: i64,
    pub rescheduled: i64,
    pub runs: i64,
    /// Seconds since the epoch of the last run that ended without an error.
    pub last_success_epoch_s: Option<f64>,
    pub last_run_seconds: Option<f64>,
}
