//! How often the application deletes rows of a table, from PostgreSQL's
//! cumulative statistics: what decides how fast a dropped ON DELETE action
//! leaves rows behind.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct DeleteRate {
    /// Rows deleted (`n_tup_del`, summed over a partitioned table's tree)
    /// since the statistics were last reset.
    pub deleted: i64,
    /// Seconds since that reset; None when the database never recorded one.
    pub since_seconds: Option<f64>,
}

impl DeleteRate {
    pub fn per_day(&self) -> Option<f64> {
        self.since_seconds
            .filter(|s| *s > 0.0)
            .map(|s| self.deleted as f64 * 86_400.0 / s)
    }
}
