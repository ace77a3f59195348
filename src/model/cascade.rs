//! What deleting child rows sets off below the child: every foreign key with
//! ON DELETE CASCADE / SET NULL / SET DEFAULT that references the child, and,
//! under each CASCADE, the keys that reference the rows it deletes, level by
//! level. A purge archives the rows each level deletes or changes.

use crate::kinds::foreign_key::definition::{FkAction, MatchType};
use crate::kinds::foreign_key::violations::KeyComparison;
use crate::sql::ident::{Ident, QualifiedName};
use serde::Serialize;

/// One foreign key of the tree: its table's rows reference the rows of the
/// level above (or of the child itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CascadeLevel {
    #[serde(skip)]
    pub oid: u32,
    pub constraint: Ident,
    /// The referencing table (the partitioned table itself when partitioned).
    pub table: QualifiedName,
    pub partitioned: bool,
    /// The table it references: the child, or the table of level `above`.
    pub references: QualifiedName,
    /// Index in [`CascadeTree::levels`] of the level whose rows it
    /// references; None when it references the child.
    pub above: Option<usize>,
    /// 1 for keys that reference the child, 2 below those, ...
    pub depth: usize,
    pub on_delete: FkAction,
    pub match_type: MatchType,
    /// `fk_column` in this table, `pk_column` in the referenced one, compared
    /// with the constraint's own operators.
    pub keys: Vec<KeyComparison>,
    /// `ON DELETE SET NULL (columns)` (PostgreSQL 15+): only these are set;
    /// empty when the action sets every key column.
    pub set_columns: Vec<Ident>,
    /// The columns that find one of its rows again (see
    /// `Inspection::child_identity`); None when it has none.
    pub identity: Option<Vec<Ident>>,
    /// Its rows can be copied into a table of its own columns (every column
    /// of PostgreSQL's own types, no name of fkctl's): a purge then archives
    /// the rows its CASCADE deletes there, value for value, not as jsonb.
    #[serde(skip)]
    pub copyable: bool,
}

impl CascadeLevel {
    /// The columns its SET NULL / SET DEFAULT writes: `set_columns`, or
    /// every key column.
    pub fn written_columns(&self) -> Vec<Ident> {
        if self.set_columns.is_empty() {
            self.keys.iter().map(|k| k.fk_column.clone()).collect()
        } else {
            self.set_columns.clone()
        }
    }
}

/// A foreign key with an ON UPDATE action (CASCADE, SET NULL, SET DEFAULT)
/// on columns that fkctl's change writes (a nullified key, or the key a SET
/// NULL / SET DEFAULT level below the child sets): writing them would change
/// that key's rows too, which nothing archives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateAction {
    pub constraint: Ident,
    /// The table whose rows the ON UPDATE action changes.
    pub table: QualifiedName,
    /// The table whose columns are written.
    pub references: QualifiedName,
    pub on_update: FkAction,
}

impl UpdateAction {
    /// For people: which key, on which table, does what.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, ON UPDATE {} referencing {})",
            self.table,
            self.constraint,
            self.on_update.sql(),
            self.references
        )
    }
}

/// A foreign key below the child whose effect fkctl does not archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CascadeProblem {
    /// Its table is the child or a table above it on the same path: a
    /// delete there cascades back up (a self-reference when it is the
    /// referenced table itself).
    Cycle {
        constraint: Ident,
        table: QualifiedName,
        references: QualifiedName,
    },
    /// Its table is already in the tree by another foreign key, so one row
    /// could be deleted or changed by two paths.
    ReachedTwice {
        constraint: Ident,
        table: QualifiedName,
        references: QualifiedName,
    },
    /// It references one partition of a table in the tree, not the table.
    ReferencesPartition {
        constraint: Ident,
        table: QualifiedName,
        partition: QualifiedName,
    },
    /// The tree goes deeper than fkctl follows.
    TooDeep { table: QualifiedName, depth: usize },
    /// The key a SET NULL / SET DEFAULT level sets is referenced with an
    /// ON UPDATE action.
    SetsOffUpdate(UpdateAction),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CascadeTree {
    /// Breadth first: every level comes after the level it references.
    pub levels: Vec<CascadeLevel>,
    pub problems: Vec<CascadeProblem>,
    /// `track_counts` is on: the purge counts each level's deleted or
    /// changed rows from the transaction's own statistics.
    pub track_counts: bool,
}

impl CascadeTree {
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty() && self.problems.is_empty()
    }
}
