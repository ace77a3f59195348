//! A foreign-key definition, independent of where it came from (a playbook or
//! the live catalog), and the DDL that drops, adds and validates it.

use crate::sql::ident::{Ident, QualifiedName};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FkAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    Simple,
    Full,
}

impl FkAction {
    /// `pg_constraint.confdeltype` / `confupdtype` codes.
    pub fn from_catalog_code(code: &str) -> Option<FkAction> {
        match code {
            "a" => Some(FkAction::NoAction),
            "r" => Some(FkAction::Restrict),
            "c" => Some(FkAction::Cascade),
            "n" => Some(FkAction::SetNull),
            "d" => Some(FkAction::SetDefault),
            _ => None,
        }
    }

    /// The inverse of `from_catalog_code`.
    pub fn catalog_code(self) -> &'static str {
        match self {
            FkAction::NoAction => "a",
            FkAction::Restrict => "r",
            FkAction::Cascade => "c",
            FkAction::SetNull => "n",
            FkAction::SetDefault => "d",
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }

    pub fn playbook_name(self) -> &'static str {
        match self {
            FkAction::NoAction => "no_action",
            FkAction::Restrict => "restrict",
            FkAction::Cascade => "cascade",
            FkAction::SetNull => "set_null",
            FkAction::SetDefault => "set_default",
        }
    }

    /// Whether the action blocks the parent change (instead of changing child rows).
    pub fn blocks(self) -> bool {
        matches!(self, FkAction::NoAction | FkAction::Restrict)
    }
}

impl MatchType {
    pub fn from_catalog_code(code: &str) -> Option<MatchType> {
        match code {
            "s" => Some(MatchType::Simple),
            "f" => Some(MatchType::Full),
            _ => None,
        }
    }

    pub fn catalog_code(self) -> &'static str {
        match self {
            MatchType::Simple => "s",
            MatchType::Full => "f",
        }
    }

    pub fn sql(self) -> &'static str {
        match self {
            MatchType::Simple => "MATCH SIMPLE",
            MatchType::Full => "MATCH FULL",
        }
    }
}

impl fmt::Display for FkAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// One foreign key: the child (referencing) side, the parent (referenced)
/// side, and its behaviour. Column lists are in constraint order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: Ident,
    pub table: QualifiedName,
    pub columns: Vec<Ident>,
    pub ref_table: QualifiedName,
    pub ref_columns: Vec<Ident>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    pub match_type: MatchType,
    pub deferrable: bool,
    pub initially_deferred: bool,
}

fn column_list(columns: &[Ident]) -> String {
    columns
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ForeignKeyDef {
    /// The constraint clause, as `pg_get_constraintdef` would print it but with
    /// every name quoted: `FOREIGN KEY (..) REFERENCES s.t (..) [MATCH FULL] ON UPDATE .. ON DELETE ..`.
    pub fn constraint_clause(&self) -> String {
        let mut sql = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            column_list(&self.columns),
            self.ref_table.quoted(),
            column_list(&self.ref_columns)
        );
        if self.match_type == MatchType::Full {
            sql.push_str(" MATCH FULL");
        }
        sql.push_str(" ON UPDATE ");
        sql.push_str(self.on_update.sql());
        sql.push_str(" ON DELETE ");
        sql.push_str(self.on_delete.sql());
        if self.deferrable {
            sql.push_str(" DEFERRABLE");
            if self.initially_deferred {
                sql.push_str(" INITIALLY DEFERRED");
            }
        }
        sql
    }

    pub fn drop_sql(&self) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            self.table.quoted(),
            self.name.quoted()
        )
    }

    /// ADD ... NOT VALID: a catalog change only; new and updated rows are
    /// checked from the moment it commits, existing rows are not scanned.
    pub fn add_not_valid_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID",
            self.table.quoted(),
            self.name.quoted(),
            self.constraint_clause()
        )
    }

    /// A validating ADD. fkctl runs it only on a partitioned table whose every
    /// leaf already holds a validated copy: PostgreSQL then attaches those
    /// copies instead of scanning.
    pub fn add_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            self.table.quoted(),
            self.name.quoted(),
            self.constraint_clause()
        )
    }

    /// The same constraint on another table (a leaf partition of the child).
    pub fn on_table(&self, table: &QualifiedName) -> ForeignKeyDef {
        ForeignKeyDef {
            table: table.clone(),
            ..self.clone()
        }
    }

    /// VALIDATE takes SHARE UPDATE EXCLUSIVE on the child and ROW SHARE on the
    /// parent: reads and writes go on while it scans.
    pub fn validate_sql(&self) -> String {
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            self.table.quoted(),
            self.name.quoted()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn seed() -> ForeignKeyDef {
        ForeignKeyDef {
            name: Ident::from_catalog("fk_rails_f300456b63"),
            table: QualifiedName::new(
                Ident::from_catalog("public"),
                Ident::from_catalog("ci_pipeline_chat_data"),
            ),
            columns: vec![Ident::from_catalog("chat_name_id")],
            ref_table: QualifiedName::new(
                Ident::from_catalog("public"),
                Ident::from_catalog("chat_names"),
            ),
            ref_columns: vec![Ident::from_catalog("id")],
            on_delete: FkAction::Cascade,
            on_update: FkAction::NoAction,
            match_type: MatchType::Simple,
            deferrable: false,
            initially_deferred: false,
        }
    }

    #[test]
    fn ddl_quotes_every_name() {
        let fk = seed();
        assert_eq!(
            fk.add_not_valid_sql(),
            r#"ALTER TABLE "public"."ci_pipeline_chat_data" ADD CONSTRAINT "fk_rails_f300456b63" FOREIGN KEY ("chat_name_id") REFERENCES "public"."chat_names" ("id") ON UPDATE NO ACTION ON DELETE CASCADE NOT VALID"#
        );
        assert_eq!(
            fk.drop_sql(),
            r#"ALTER TABLE "public"."ci_pipeline_chat_data" DROP CONSTRAINT "fk_rails_f300456b63""#
        );
    }

    #[test]
    fn match_full_and_deferrable_are_spelled_out() {
        let mut fk = seed();
        fk.match_type = MatchType::Full;
        fk.deferrable = true;
        fk.initially_deferred = true;
        let clause = fk.constraint_clause();
        assert!(clause.contains(" MATCH FULL ON UPDATE"));
        assert!(clause.ends_with("ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED"));
    }
}
