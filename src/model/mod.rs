//! Observed state as plain data: what the catalog readers (`catalog`) found
//! in one database, in one snapshot. The planning core (`plan`) reads only
//! these types, so a plan can be built, and tested, from a state written by
//! hand, without a server. Nothing here talks to a database.

pub mod cascade;
pub mod constraint;
pub mod deletes;
#[cfg(test)]
pub mod fixtures;
pub mod loose;
pub mod neighbours;
pub mod partition;
pub mod relation;

pub use cascade::{CascadeLevel, CascadeProblem, CascadeTree, UpdateAction};
pub use constraint::{ConstraintCopy, LiveConstraint, Lookup};
pub use deletes::DeleteRate;
pub use loose::{LooseCounters, LooseState};
pub use neighbours::{DependentKey, IndexInfo, SessionInfo};
pub use partition::{Leaf, LeafState};
pub use relation::{Column, Filling, PartitionKey, Relation, TableColumn};

use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::sql::ident::Ident;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub version: String,
    pub version_num: i32,
    pub database: String,
    pub deadlock_timeout_ms: i64,
}

/// Everything observed about one foreign key in one database.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub server: Server,
    pub child: Relation,
    pub parent: Relation,
    pub child_columns: Vec<Column>,
    pub parent_columns: Vec<Column>,
    #[serde(skip)]
    pub constraint: Lookup,
    /// Foreign keys of other tables that reference the child table.
    pub referencing_child: Vec<DependentKey>,
    /// What deleting child rows sets off below the child, level by level.
    pub cascade: CascadeTree,
    /// Keys with an ON UPDATE action on the child's foreign-key columns:
    /// setting those columns (a nullify purge, a loose SET NULL / SET
    /// DEFAULT cleanup) would set them off.
    pub child_key_updates: Vec<UpdateAction>,
    pub child_indexes: Vec<IndexInfo>,
    /// The columns that find one row of the child again (a later `restore`
    /// of nullified keys): its primary key, else its replica-identity index,
    /// else a unique index on NOT NULL columns only (no partial or expression
    /// index). None when the child has no such key.
    pub child_identity: Option<Vec<Ident>>,
    /// The child's columns that keep its deleted rows out of a table of its
    /// own shape (`repair::typed`), as `name (type)`: types, array element
    /// types or collations outside pg_catalog, or fkctl's column names.
    /// Empty when its rows can be copied as they are.
    pub child_not_copyable: Vec<String>,
    /// The child's leaf partitions and their own copies of the constraint
    /// (empty when the child is not partitioned).
    pub leaves: Vec<Leaf>,
    pub sessions: Vec<SessionInfo>,
    /// Both tables and all their partitions: whose lock holders to report.
    #[serde(skip)]
    pub watched: Vec<u32>,
    /// The exact orphan query: with the constraint's own operators when it
    /// exists; when it does not, with the operators ADD CONSTRAINT would
    /// choose for the playbook's definition (see `catalog::implement`).
    pub orphan_query: OrphanQuery,
    /// fkctl's loose replacement on the parent (empty when none is installed).
    pub loose: LooseState,
    /// The tables of this change that Citus distributes (or replicates as
    /// reference tables): fkctl does not change those.
    pub citus_tables: Vec<String>,
    /// Publications `FOR ALL TABLES`: they replicate fkctl's schema too.
    pub all_tables_publications: Vec<String>,
}

impl Inspection {
    pub fn live(&self) -> Option<&LiveConstraint> {
        match &self.constraint {
            Lookup::Found(c) => Some(c),
            _ => None,
        }
    }
}
