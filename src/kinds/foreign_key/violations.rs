//! The orphan predicate: exactly the rows that would make
//! `ALTER TABLE .. VALIDATE CONSTRAINT` fail.
//!
//! This mirrors PostgreSQL's own check, `RI_Initial_Check` in
//! src/backend/utils/adt/ri_triggers.c:
//! - MATCH SIMPLE skips a row when any key column is NULL;
//!   MATCH FULL skips only all-NULL keys, so a partly-NULL key is an orphan;
//! - each key column is compared with the constraint's own equality operator
//!   (`pg_constraint.conpfeqop`), casting an operand when its type is not the
//!   operator's input type, and with the parent column's collation when the
//!   two columns' collations differ;
//! - a partitioned table is read whole, any other table with ONLY (FKs are not
//!   inherited by plain inheritance children).
//!
//! It is written as `NOT EXISTS`, which the planner turns into the same
//! anti-join as PostgreSQL's `LEFT JOIN .. IS NULL`, so the count costs what a
//! hand-written anti-join costs: one pass over the child table.

use super::definition::{ForeignKeyDef, MatchType};
use crate::model::PartitionKey;
use crate::sql::ident::{Ident, QualifiedName};
pub use crate::sql::operator::Operator;
use serde::Serialize;

/// How one child key column is compared with its parent column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyComparison {
    pub fk_column: Ident,
    pub pk_column: Ident,
    pub operator: Operator,
    /// Set when the two columns' collations differ: the parent's collation.
    pub collation: Option<QualifiedName>,
}

impl KeyComparison {
    /// `pk OPERATOR(op) alias.fk_column`: the parent value `pk` equals this
    /// key column of the row aliased `alias`, compared as PostgreSQL's RI
    /// triggers compare them (operator, casts, collation).
    pub fn equal(&self, pk: &str, alias: &str) -> String {
        let pk = cast(pk.to_string(), &self.operator.pk_cast);
        let fk = cast(
            format!("{alias}.{}", self.fk_column.quoted()),
            &self.operator.fk_cast,
        );
        let mut qual = format!("{pk} {} {fk}", self.operator.qualified());
        if let Some(coll) = &self.collation {
            qual.push_str(" COLLATE ");
            qual.push_str(&coll.quoted());
        }
        qual
    }
}

/// Everything needed to find orphans of one foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanQuery {
    pub child: QualifiedName,
    pub parent: QualifiedName,
    /// Read the child including partitions (it is partitioned) or with ONLY.
    pub child_partitioned: bool,
    pub parent_partitioned: bool,
    pub match_type: MatchType,
    pub keys: Vec<KeyComparison>,
    /// A partitioned child's key columns by which a batch of its rows is
    /// looked up in the partitions that hold them alone.
    pub partition_keys: Vec<PartitionKey>,
}

fn only(partitioned: bool) -> &'static str {
    if partitioned {
        ""
    } else {
        "ONLY "
    }
}

fn cast(expr: String, to: &Option<QualifiedName>) -> String {
    match to {
        Some(ty) => format!("({expr})::{}", ty.quoted()),
        None => expr,
    }
}

impl OrphanQuery {
    /// The query for a foreign key known only from its definition: plain
    /// equality, both tables treated as unpartitioned. The live catalog refines it.
    pub fn from_definition(fk: &ForeignKeyDef) -> OrphanQuery {
        OrphanQuery {
            child: fk.table.clone(),
            parent: fk.ref_table.clone(),
            child_partitioned: false,
            parent_partitioned: false,
            match_type: fk.match_type,
            keys: fk
                .columns
                .iter()
                .zip(&fk.ref_columns)
                .map(|(fk_column, pk_column)| KeyComparison {
                    fk_column: fk_column.clone(),
                    pk_column: pk_column.clone(),
                    operator: Operator::default_equality(),
                    collation: None,
                })
                .collect(),
            partition_keys: Vec::new(),
        }
    }

    /// `FROM [ONLY] child fk`
    pub fn child_from(&self) -> String {
        self.child_as("fk")
    }

    /// `[ONLY] child alias`: the child under another alias.
    pub fn child_as(&self, alias: &str) -> String {
        format!(
            "{}{} {alias}",
            only(self.child_partitioned),
            self.child.quoted()
        )
    }

    /// The WHERE condition on a child row aliased `fk` that makes it an orphan.
    pub fn predicate(&self) -> String {
        let joiner = match self.match_type {
            MatchType::Simple => " AND ",
            MatchType::Full => " OR ",
        };
        let not_null = self
            .keys
            .iter()
            .map(|k| format!("fk.{} IS NOT NULL", k.fk_column.quoted()))
            .collect::<Vec<_>>()
            .join(joiner);
        let matches = self.key_matches();
        format!(
            "({not_null}) AND NOT EXISTS (SELECT 1 FROM {}{} pk WHERE {matches})",
            only(self.parent_partitioned),
            self.parent.quoted()
        )
    }

    /// The child row `fk` has the key of the row `pk`, which holds the
    /// parent's key columns (the parent itself, or a queue of its keys),
    /// compared with the constraint's own operators.
    pub fn key_matches(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.equal(&format!("pk.{}", k.pk_column.quoted()), "fk"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// One pass over the child: the number of orphaned rows.
    pub fn count_sql(&self) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {}",
            self.child_from(),
            self.predicate()
        )
    }

    /// Is there any orphan at all? Stops at the first one (the check a change request runs before VALIDATE).
    pub fn exists_sql(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {})",
            self.child_from(),
            self.predicate()
        )
    }

    /// Up to `$1` orphaned rows, each as the relation it lives in and the whole row as JSON.
    pub fn sample_sql(&self) -> String {
        format!(
            "SELECT fk.tableoid::regclass::text, to_jsonb(fk) FROM {} WHERE {} LIMIT $1",
            self.child_from(),
            self.predicate()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::foreign_key::definition::FkAction;

    fn two_column_fk(match_type: MatchType) -> ForeignKeyDef {
        ForeignKeyDef {
            name: Ident::from_catalog("lines_invoice"),
            table: QualifiedName::new(
                Ident::from_catalog("Billing"),
                Ident::from_catalog("Invoice Lines"),
            ),
            columns: vec![
                Ident::from_catalog("tenant_id"),
                Ident::from_catalog("Invoice No"),
            ],
            ref_table: QualifiedName::new(
                Ident::from_catalog("Billing"),
                Ident::from_catalog("Invoices"),
            ),
            ref_columns: vec![Ident::from_catalog("tenant_id"), Ident::from_catalog("no")],
            on_delete: FkAction::NoAction,
            on_update: FkAction::NoAction,
            match_type,
            deferrable: false,
            initially_deferred: false,
        }
    }

    #[test]
    fn match_simple_requires_every_key_column() {
        let q = OrphanQuery::from_definition(&two_column_fk(MatchType::Simple));
        assert_eq!(
            q.count_sql(),
            r#"SELECT count(*) FROM ONLY "Billing"."Invoice Lines" fk WHERE (fk."tenant_id" IS NOT NULL AND fk."Invoice No" IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM ONLY "Billing"."Invoices" pk WHERE pk."tenant_id" OPERATOR("pg_catalog".=) fk."tenant_id" AND pk."no" OPERATOR("pg_catalog".=) fk."Invoice No")"#
        );
    }

    #[test]
    fn match_full_counts_partly_null_keys() {
        let q = OrphanQuery::from_definition(&two_column_fk(MatchType::Full));
        assert!(q
            .predicate()
            .starts_with(r#"(fk."tenant_id" IS NOT NULL OR fk."Invoice No" IS NOT NULL)"#));
    }

    #[test]
    fn casts_and_collations_follow_the_catalog() {
        let mut q = OrphanQuery::from_definition(&two_column_fk(MatchType::Simple));
        q.child_partitioned = true;
        q.keys[1].operator.fk_cast = Some(QualifiedName::new(
            Ident::from_catalog("pg_catalog"),
            Ident::from_catalog("numeric"),
        ));
        q.keys[1].collation = Some(QualifiedName::new(
            Ident::from_catalog("pg_catalog"),
            Ident::from_catalog("C"),
        ));
        let sql = q.count_sql();
        assert!(
            sql.contains(r#"FROM "Billing"."Invoice Lines" fk"#),
            "{sql}"
        );
        assert!(sql.contains(r#"pk."no" OPERATOR("pg_catalog".=) (fk."Invoice No")::"pg_catalog"."numeric" COLLATE "pg_catalog"."C")"#), "{sql}");
    }

    #[test]
    fn operator_symbols_are_checked() {
        assert!(Operator::is_valid_symbol("="));
        assert!(Operator::is_valid_symbol("~=~"));
        assert!(!Operator::is_valid_symbol("=); drop table x; --"));
        assert!(!Operator::is_valid_symbol(""));
    }
}
