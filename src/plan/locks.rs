//! PostgreSQL's table lock modes, and what each one means for traffic.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    ShareRowExclusive,
    AccessExclusive,
}

impl LockMode {
    pub fn sql_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What other sessions cannot do while the lock is held (or awaited).
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare => "only ACCESS EXCLUSIVE DDL; reads and writes go on",
            LockMode::RowShare => "only exclusive DDL; reads and writes go on",
            LockMode::RowExclusive => {
                "other DDL; reads and writes go on (touched rows are row-locked until commit)"
            }
            LockMode::ShareUpdateExclusive => "VACUUM and other DDL; reads and writes go on",
            LockMode::ShareRowExclusive => "INSERT, UPDATE, DELETE and DDL; reads go on",
            LockMode::AccessExclusive => "everything, reads included",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    pub relation: String,
    pub mode: LockMode,
}
