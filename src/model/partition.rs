//! The leaf partitions of a partitioned child table and what each one holds
//! under the constraint's name.

use crate::sql::ident::QualifiedName;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "definition")]
pub enum LeafState {
    /// No constraint of that name on the leaf.
    Absent,
    /// The intended foreign key, NOT VALID.
    NotValid,
    /// The intended foreign key, validated.
    Valid,
    /// Something else under that name (another definition, or not a foreign key).
    Different(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Leaf {
    pub table: QualifiedName,
    pub state: LeafState,
    /// Attached to a constraint on the partitioned table (`conparentid` set).
    pub attached: bool,
}
