//! The duplicate census: exactly the rows `CREATE UNIQUE INDEX` would
//! reject, counted the way PostgreSQL judges them.
//!
//! - a row with a NULL in any key column never collides (NULLs are
//!   distinct), unless the constraint is NULLS NOT DISTINCT (PostgreSQL 15+),
//!   when NULLs compare equal and such rows collide like any other;
//! - values are compared with the key columns' default btree equality under
//!   each column's collation: GROUP BY and PARTITION BY use the same
//!   operator class and collation a unique btree index on the column uses
//!   (the index fkctl builds names no other), so two strings equal under a
//!   nondeterministic collation are one key, and `1.0` and `1.00` are one
//!   numeric key;
//! - a partitioned table is read whole (its unique constraint includes the
//!   partition key, so equal keys are in one partition), any other with ONLY:
//!   a unique index does not cover inheritance children.
//!
//! The count is one aggregate pass over the table: what `CREATE UNIQUE INDEX`
//! itself costs, without the sort into an index.

use super::definition::UniqueDef;
use crate::model::{PartitionKey, Relation};
use crate::sql::ident::{Ident, QualifiedName};
use serde::Serialize;

/// Everything needed to find the duplicates of one unique constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateQuery {
    pub table: QualifiedName,
    pub columns: Vec<Ident>,
    pub nulls_not_distinct: bool,
    /// Read including partitions (partitioned) or with ONLY.
    pub partitioned: bool,
    /// A partitioned table's key columns by which a batch finds its rows in
    /// the partitions that hold them alone.
    pub partition_keys: Vec<PartitionKey>,
}

impl DuplicateQuery {
    /// The query for `def` on `table` as the catalog shows it (None: from
    /// the playbook alone, the table treated as unpartitioned).
    pub fn new(def: &UniqueDef, table: Option<&Relation>) -> DuplicateQuery {
        let partitioned = table.is_some_and(|t| t.partitioned);
        DuplicateQuery {
            table: def.table.clone(),
            columns: def.columns.clone(),
            nulls_not_distinct: def.nulls_not_distinct,
            partitioned,
            partition_keys: match table {
                Some(t) if partitioned => t.partition_keys.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The table aliased `alias`, with ONLY unless it is partitioned.
    pub fn from(&self, alias: &str) -> String {
        let only = if self.partitioned { "" } else { "ONLY " };
        format!("{only}{} {alias}", self.table.quoted())
    }

    /// The key columns of the row aliased `alias`, in constraint order.
    pub fn key(&self, alias: &str) -> String {
        self.columns
            .iter()
            .map(|c| format!("{alias}.{}", c.quoted()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Rows that can collide at all: with NULLs distinct, a row with a NULL
    /// in any key column is never a duplicate.
    pub fn candidates(&self, alias: &str) -> String {
        if self.nulls_not_distinct {
            return "true".to_string();
        }
        self.columns
            .iter()
            .map(|c| format!("{alias}.{} IS NOT NULL", c.quoted()))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The rows aliased `a` and `b` have the same key, as the index judges it.
    pub fn same_key(&self, a: &str, b: &str) -> String {
        let op = if self.nulls_not_distinct {
            "IS NOT DISTINCT FROM"
        } else {
            "="
        };
        self.columns
            .iter()
            .map(|c| format!("{a}.{q} {op} {b}.{q}", q = c.quoted()))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The groups of equal keys that hold more than one row, with their sizes.
    fn groups(&self) -> String {
        format!(
            "SELECT count(*) AS n FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1",
            self.from("d"),
            self.candidates("d"),
            self.key("d")
        )
    }

    /// One value: the rows a dedupe would remove (every row of a group but one).
    pub fn surplus_sql(&self) -> String {
        format!(
            "SELECT COALESCE(sum(g.n - 1), 0)::int8 FROM ({}) g",
            self.groups()
        )
    }

    /// The census: surplus rows and groups, in one pass.
    pub fn census_sql(&self) -> String {
        format!(
            "SELECT COALESCE(sum(g.n - 1), 0)::int8, count(*)::int8 FROM ({}) g",
            self.groups()
        )
    }

    /// Up to `limit` groups, each as its key (as text) and its row count.
    pub fn sample_sql(&self, limit: u32) -> String {
        let key_text = self
            .columns
            .iter()
            .map(|c| format!("d.{}::text", c.quoted()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT ARRAY[{key_text}]::text[], count(*)::int8 FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {limit}",
            self.from("d"),
            self.candidates("d"),
            self.key("d")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(nnd: bool) -> DuplicateQuery {
        DuplicateQuery {
            table: QualifiedName::parse("public.users").unwrap_or_else(|e| panic!("{e}")),
            columns: vec![Ident::from_catalog("tenant"), Ident::from_catalog("email")],
            nulls_not_distinct: nnd,
            partitioned: false,
            partition_keys: Vec::new(),
        }
    }

    #[test]
    fn nulls_are_left_out_unless_not_distinct() {
        assert!(query(false)
            .surplus_sql()
            .contains(r#"WHERE d."tenant" IS NOT NULL AND d."email" IS NOT NULL GROUP BY d."tenant", d."email""#));
        assert!(query(true).surplus_sql().contains("WHERE true GROUP BY"));
        assert_eq!(
            query(true).same_key("k", "d"),
            r#"k."tenant" IS NOT DISTINCT FROM d."tenant" AND k."email" IS NOT DISTINCT FROM d."email""#
        );
    }
}
