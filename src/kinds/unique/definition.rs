//! A UNIQUE constraint as fkctl models it (from a playbook or the live
//! catalog), the rollback policy for its duplicates, and its DDL.

use crate::sql::ident::{Ident, QualifiedName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueDef {
    pub name: Ident,
    pub table: QualifiedName,
    pub columns: Vec<Ident>,
    /// PostgreSQL 15+: NULLs compare equal, so two rows with a NULL key collide.
    pub nulls_not_distinct: bool,
    pub deferrable: bool,
    pub initially_deferred: bool,
}

/// One `keep.order_by` entry: among rows with equal keys, the first row in
/// this order stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderColumn {
    pub column: Ident,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Delete every duplicate but the kept one, archiving each in the same statement.
    ArchiveDelete,
    /// Stop and change nothing when duplicates exist.
    Abort,
}

impl DuplicatePolicy {
    pub fn name(self) -> &'static str {
        match self {
            DuplicatePolicy::ArchiveDelete => "archive-delete",
            DuplicatePolicy::Abort => "abort",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DedupeSettings {
    pub duplicates: DuplicatePolicy,
    /// Never empty: the playbook must say which row stays.
    pub keep_order_by: Vec<OrderColumn>,
    pub batch_size: u32,
    pub max_duplicates: u64,
}

/// Everything a `kind: unique` playbook says about its constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UniqueSpec {
    pub def: UniqueDef,
    pub rollback: DedupeSettings,
}

pub(crate) fn column_list(columns: &[Ident]) -> String {
    columns
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ")
}

impl UniqueDef {
    /// The constraint clause as `pg_get_constraintdef` prints it, names quoted.
    pub fn constraint_clause(&self) -> String {
        let mut sql = String::from("UNIQUE ");
        if self.nulls_not_distinct {
            sql.push_str("NULLS NOT DISTINCT ");
        }
        sql.push_str(&format!("({})", column_list(&self.columns)));
        sql.push_str(&self.deferral());
        sql
    }

    /// The clause as a DBA reads it: names quoted only where SQL needs it.
    pub fn display_clause(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(Ident::display).collect();
        format!(
            "UNIQUE {}({}){}",
            if self.nulls_not_distinct {
                "NULLS NOT DISTINCT "
            } else {
                ""
            },
            columns.join(", "),
            self.deferral()
        )
    }

    fn deferral(&self) -> String {
        match (self.deferrable, self.initially_deferred) {
            (false, _) => String::new(),
            (true, false) => " DEFERRABLE".to_string(),
            (true, true) => " DEFERRABLE INITIALLY DEFERRED".to_string(),
        }
    }

    pub fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            self.table.quoted(),
            self.name.quoted()
        )
    }

    /// The index of the same name as the constraint, in the table's schema:
    /// ADD CONSTRAINT ... USING INDEX keeps the names equal, as a plain
    /// ADD CONSTRAINT UNIQUE would have named it.
    pub fn index(&self) -> QualifiedName {
        QualifiedName::new(self.table.schema.clone(), self.name.clone())
    }

    /// Builds the index without blocking writes: must run outside a transaction.
    pub fn create_index_concurrently_sql(&self) -> String {
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({}){}",
            self.name.quoted(),
            self.table.quoted(),
            column_list(&self.columns),
            if self.nulls_not_distinct {
                " NULLS NOT DISTINCT"
            } else {
                ""
            }
        )
    }

    /// Removes an index a failed or killed build left INVALID, without blocking writes.
    pub fn drop_invalid_index_sql(&self) -> String {
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            self.index().quoted()
        )
    }

    /// The constraint (and index) fkctl builds on one leaf of a partitioned
    /// table: named as PostgreSQL names a partition's copy
    /// (`leaf_col1_col2_key`), cut to fit 63 bytes; the parent's ADD
    /// CONSTRAINT then attaches it instead of building an index.
    pub fn on_leaf(&self, leaf: &QualifiedName) -> UniqueDef {
        let columns: Vec<&str> = self.columns.iter().map(Ident::as_str).collect();
        let mut name = format!("{}_{}_key", leaf.name.as_str(), columns.join("_"));
        if name.len() > crate::sql::ident::MAX_IDENT_BYTES {
            let mut cut = crate::sql::ident::MAX_IDENT_BYTES - 4;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = format!("{}_key", &name[..cut]);
        }
        UniqueDef {
            name: Ident::from_catalog(name),
            table: leaf.clone(),
            ..self.clone()
        }
    }

    /// ADD CONSTRAINT UNIQUE on a partitioned table whose leaves all carry a
    /// matching unique constraint: PostgreSQL (11+) attaches their indexes,
    /// building none.
    pub fn add_attaching_sql(&self) -> String {
        let mut sql = format!(
            "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE ",
            self.table.quoted(),
            self.name.quoted()
        );
        if self.nulls_not_distinct {
            sql.push_str("NULLS NOT DISTINCT ");
        }
        sql.push_str(&format!(
            "({}){}",
            column_list(&self.columns),
            self.deferral()
        ));
        sql
    }

    /// Turns the built index into the constraint: a catalog change, no scan.
    pub fn add_using_index_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}{}",
            self.table.quoted(),
            self.name.quoted(),
            self.name.quoted(),
            self.deferral()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> UniqueDef {
        UniqueDef {
            name: Ident::from_catalog("users_email_key"),
            table: QualifiedName::parse("public.users").unwrap_or_else(|e| panic!("{e}")),
            columns: vec![Ident::from_catalog("tenant"), Ident::from_catalog("Email")],
            nulls_not_distinct: true,
            deferrable: true,
            initially_deferred: false,
        }
    }

    #[test]
    fn ddl_quotes_every_name() {
        let d = def();
        assert_eq!(
            d.constraint_clause(),
            r#"UNIQUE NULLS NOT DISTINCT ("tenant", "Email") DEFERRABLE"#
        );
        assert_eq!(
            d.create_index_concurrently_sql(),
            r#"CREATE UNIQUE INDEX CONCURRENTLY "users_email_key" ON "public"."users" ("tenant", "Email") NULLS NOT DISTINCT"#
        );
        assert_eq!(
            d.add_using_index_sql(),
            r#"ALTER TABLE "public"."users" ADD CONSTRAINT "users_email_key" UNIQUE USING INDEX "users_email_key" DEFERRABLE"#
        );
    }
}

#[cfg(test)]
mod playbook_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_unique_playbook_reads_its_columns_and_keep_order() {
        let text = "version: 1\nchange: restore-users-email\nsummary: s\nconstraint:\n  kind: unique\n  name: users_email_key\n  table: users\n  columns: [tenant, email]\n  nulls_not_distinct: true\nenvironments:\n  - { name: staging, dsn_env: X }\nrollback: { duplicates: archive-delete, keep: { order_by: [-created_at, id] }, batch_size: 50, max_duplicates: 9 }\n";
        let playbook =
            crate::playbook::parse_str(text, Path::new("p.yml")).unwrap_or_else(|e| panic!("{e}"));
        let unique = playbook
            .unique
            .unwrap_or_else(|| panic!("not a unique playbook"));
        assert!(unique.def.nulls_not_distinct && !unique.def.deferrable);
        assert_eq!(unique.def.columns.len(), 2);
        assert_eq!(
            unique.rollback.keep_order_by,
            vec![
                OrderColumn {
                    column: Ident::from_catalog("created_at"),
                    descending: true
                },
                OrderColumn {
                    column: Ident::from_catalog("id"),
                    descending: false
                },
            ]
        );
        assert_eq!(
            (unique.rollback.batch_size, unique.rollback.max_duplicates),
            (50, 9)
        );
    }

    #[test]
    fn kind_defaults_to_foreign_key() {
        let text = "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: f\n  table: t\n  columns: [a]\n  references: { table: p, columns: [id] }\nenvironments:\n  - { name: staging, dsn_env: X }\n";
        let playbook =
            crate::playbook::parse_str(text, Path::new("p.yml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(playbook.unique.is_none());
    }
}
