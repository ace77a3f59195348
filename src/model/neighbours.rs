//! What surrounds the foreign key: indexes on its columns, foreign keys of
//! other tables that reference the child, and other sessions.

use crate::kinds::foreign_key::definition::FkAction;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    pub name: String,
    pub definition: String,
    pub valid: bool,
    /// Its leading columns are exactly the FK columns (in any order), so
    /// PostgreSQL can use it to find the children of a parent row.
    pub covers_foreign_key: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DependentKey {
    pub name: String,
    /// The table whose rows reference the child table.
    pub table: String,
    pub columns: Vec<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    pub validated: bool,
}

impl DependentKey {
    /// What deleting a referenced child row does to this table.
    pub fn effect_of_delete(&self) -> String {
        match self.on_delete {
            FkAction::Cascade => format!("deletes the referencing rows of {}", self.table),
            FkAction::SetNull => {
                format!("sets {}.({}) to NULL", self.table, self.columns.join(", "))
            }
            FkAction::SetDefault => format!(
                "sets {}.({}) to their defaults",
                self.table,
                self.columns.join(", ")
            ),
            FkAction::NoAction | FkAction::Restrict => {
                format!("is refused while {} still references the row", self.table)
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub pid: i32,
    pub user: String,
    pub application: String,
    pub state: String,
    /// Seconds since the session's transaction began, if one is open.
    pub transaction_age_s: Option<f64>,
    /// Relation locks it holds or waits for on the tables, e.g. `RowExclusiveLock on public.t`.
    pub locks: Vec<String>,
    /// Its current or last query, shortened, literals replaced by `?`.
    pub query: String,
}
