//! How archived rows go back into the table: the table's live columns
//! compared with the keys of the archived rows (`to_jsonb` of each row as it
//! was when the rollback removed it). No I/O: the command reads both, this
//! decides the INSERT's column list and what stops an exact restore.

use crate::kinds::foreign_key::repair::RestoreColumns;
use crate::model::{Filling, TableColumn};
use crate::sql::ident::Ident;
use serde::Serialize;

/// A key of the archived rows of one run, and how many of those rows have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedKey {
    pub name: Ident,
    pub rows: i64,
}

/// What happens to each column when the archived rows of one run go back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnPlan {
    /// The INSERT's column list, and the archived keys it does not read.
    pub columns: RestoreColumns,
    /// Archived rows of the run.
    pub rows: i64,
    /// Generated columns: PostgreSQL computes them again from the restored row.
    pub recomputed: Vec<Ident>,
    /// `GENERATED ALWAYS AS IDENTITY` columns that go back with their archived values.
    pub identity_kept: Vec<Ident>,
    /// Columns added since the rows were archived: each gets its default (NULL if it has none).
    pub added: Vec<TableColumn>,
    /// Columns added since, NOT NULL with no default: nothing could fill them.
    pub unfillable: Vec<TableColumn>,
    /// Archived keys with no live column (dropped or renamed since): their values cannot go back.
    pub dropped: Vec<Ident>,
    /// Live columns that some archived rows have and others lack, with the count that has it.
    pub uneven: Vec<(Ident, i64)>,
    /// The operator accepted losing the values of dropped columns.
    pub discard_dropped: bool,
    /// Row triggers that run before each restored row is inserted
    /// (described as `name on table (BEFORE INSERT)`); set by the caller.
    pub triggers: Vec<String>,
}

fn names<'a>(columns: impl IntoIterator<Item = &'a Ident>) -> String {
    columns
        .into_iter()
        .map(Ident::display)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ColumnPlan {
    /// Compares the table's live columns (in table order) with the keys of
    /// `rows` archived rows. Key columns of the foreign key stay readable even
    /// when generated: the orphan check needs their archived values.
    pub fn compare(
        table: &[TableColumn],
        keys: &[ArchivedKey],
        rows: i64,
        fk_columns: &[Ident],
        discard_dropped: bool,
    ) -> ColumnPlan {
        let mut plan = ColumnPlan {
            columns: RestoreColumns {
                insert: Vec::new(),
                unread: Vec::new(),
                from: None,
            },
            rows,
            recomputed: Vec::new(),
            identity_kept: Vec::new(),
            added: Vec::new(),
            unfillable: Vec::new(),
            dropped: Vec::new(),
            uneven: Vec::new(),
            discard_dropped,
            triggers: Vec::new(),
        };
        for column in table {
            let key = keys.iter().find(|k| k.name == column.name);
            if column.filling == Filling::Generated {
                plan.recomputed.push(column.name.clone());
                if key.is_some() && !fk_columns.contains(&column.name) {
                    plan.columns.unread.push(column.name.clone());
                }
                continue;
            }
            match key {
                Some(k) if k.rows >= rows => {
                    plan.columns.insert.push(column.name.clone());
                    if column.filling == Filling::IdentityAlways {
                        plan.identity_kept.push(column.name.clone());
                    }
                }
                Some(k) => plan.uneven.push((column.name.clone(), k.rows)),
                None if column.not_null && !column.fills_itself() => {
                    plan.unfillable.push(column.clone());
                }
                None => plan.added.push(column.clone()),
            }
        }
        plan.dropped = keys
            .iter()
            .filter(|k| !table.iter().any(|c| c.name == k.name))
            .map(|k| k.name.clone())
            .collect();
        plan
    }

    /// What stops an exact restore, as `(label, explanation)` lines for the
    /// error; empty when the rows can go back.
    pub fn refusals(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.dropped.is_empty() && !self.discard_dropped {
            out.push((
                "dropped columns".to_string(),
                format!(
                    "{} {} in the archived rows but no longer in the table (dropped or renamed since the rollback): restoring would lose their archived values in all {} row(s)",
                    names(&self.dropped),
                    if self.dropped.len() == 1 { "is" } else { "are" },
                    self.rows
                ),
            ));
        }
        for c in &self.unfillable {
            out.push((
                "column added".to_string(),
                format!(
                    "{} ({}) was added since the rollback, NOT NULL with no default: the archived rows have no value for it",
                    c.name, c.type_name
                ),
            ));
        }
        for (name, rows) in &self.uneven {
            out.push((
                "uneven column".to_string(),
                format!(
                    "{name} is in {rows} of the {} archived row(s) only (the table changed while the rollback ran): the other rows would get NULL, not their value",
                    self.rows
                ),
            ));
        }
        if self.columns.insert.is_empty() {
            out.push((
                "no columns".to_string(),
                "no column of the archived rows can be inserted into the table as it is now"
                    .to_string(),
            ));
        }
        out
    }

    /// What happens to the columns, in words: shown before the restore, kept
    /// in the plan's notes and the journal.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.recomputed.is_empty() {
            out.push(format!(
                "Generated column(s) {}: PostgreSQL computes them again from the restored row; the archived values are not inserted.",
                names(&self.recomputed)
            ));
        }
        if !self.identity_kept.is_empty() {
            out.push(format!(
                "Identity column(s) {} (GENERATED ALWAYS): the archived values go back unchanged (OVERRIDING SYSTEM VALUE); the sequence is not touched.",
                names(&self.identity_kept)
            ));
        }
        for c in &self.added {
            out.push(format!(
                "Column {} ({}) was added since the rollback: restored rows get {}.",
                c.name,
                c.type_name,
                match c.filling {
                    Filling::IdentityAlways | Filling::IdentityByDefault => "a new identity value",
                    _ if c.has_default => "its default",
                    _ => "NULL (it has no default)",
                }
            ));
        }
        if !self.dropped.is_empty() && self.discard_dropped {
            out.push(format!(
                "Column(s) {} are in the archived rows but no longer in the table: their archived values are discarded as each row goes back (--discard-dropped-columns).",
                names(&self.dropped)
            ));
        }
        if !self.triggers.is_empty() {
            out.push(format!(
                "Trigger(s) {} run on every restored row and may change its values; a batch in which they skip rows fails and rolls back.",
                self.triggers.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, not_null: bool, has_default: bool, filling: Filling) -> TableColumn {
        TableColumn {
            name: Ident::from_catalog(name),
            type_name: "bigint".to_string(),
            not_null,
            has_default,
            filling,
        }
    }

    fn key(name: &str, rows: i64) -> ArchivedKey {
        ArchivedKey {
            name: Ident::from_catalog(name),
            rows,
        }
    }

    fn idents(plan: &[Ident]) -> Vec<&str> {
        plan.iter().map(Ident::as_str).collect()
    }

    #[test]
    fn generated_columns_are_left_to_postgres_and_identity_values_kept() {
        let table = [
            column("id", true, false, Filling::IdentityAlways),
            column("k", true, false, Filling::Plain),
            column("g", false, true, Filling::Generated),
        ];
        let keys = [key("g", 3), key("id", 3), key("k", 3)];
        let plan = ColumnPlan::compare(&table, &keys, 3, &[Ident::from_catalog("k")], false);
        assert_eq!(idents(&plan.columns.insert), ["id", "k"]);
        assert_eq!(idents(&plan.columns.unread), ["g"]);
        assert_eq!(idents(&plan.recomputed), ["g"]);
        assert_eq!(idents(&plan.identity_kept), ["id"]);
        assert!(plan.refusals().is_empty());
    }

    #[test]
    fn a_generated_key_column_stays_readable_for_the_orphan_check() {
        let table = [column("k", false, true, Filling::Generated)];
        let plan = ColumnPlan::compare(
            &table,
            &[key("k", 1)],
            1,
            &[Ident::from_catalog("k")],
            false,
        );
        assert!(plan.columns.unread.is_empty());
        assert_eq!(idents(&plan.recomputed), ["k"]);
    }

    #[test]
    fn added_columns_get_their_default_unless_nothing_can_fill_them() {
        let table = [
            column("k", true, false, Filling::Plain),
            column("with_default", true, true, Filling::Plain),
            column("nullable", false, false, Filling::Plain),
            column("required", true, false, Filling::Plain),
        ];
        let plan = ColumnPlan::compare(&table, &[key("k", 2)], 2, &[], false);
        assert_eq!(idents(&plan.columns.insert), ["k"]);
        assert_eq!(plan.added.len(), 2);
        assert_eq!(plan.unfillable.len(), 1);
        let refusals = plan.refusals();
        assert_eq!(refusals.len(), 1);
        assert!(refusals[0].1.contains("required"), "{refusals:?}");
        assert!(plan
            .notes()
            .iter()
            .any(|n| n.contains("NULL (it has no default)")));
    }

    #[test]
    fn dropped_columns_are_refused_unless_their_loss_is_accepted() {
        let table = [column("k", true, false, Filling::Plain)];
        let keys = [key("gone", 4), key("k", 4)];
        let refused = ColumnPlan::compare(&table, &keys, 4, &[], false);
        assert_eq!(idents(&refused.dropped), ["gone"]);
        assert!(refused.refusals()[0]
            .1
            .contains("lose their archived values"));
        let accepted = ColumnPlan::compare(&table, &keys, 4, &[], true);
        assert!(accepted.refusals().is_empty());
        assert!(accepted.notes().iter().any(|n| n.contains("discarded")));
    }

    #[test]
    fn the_restore_statement_lists_its_columns_and_skips_generated_keys() {
        let text = "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: fk\n  table: child\n  columns: [k]\n  references: { table: parent, columns: [id] }\nenvironments: [{ name: staging, dsn_env: X }]\nrollback: { batch_size: 10 }\n";
        let playbook = match crate::playbook::parse_str(text, std::path::Path::new("t.yml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let table = [
            column("id", true, false, Filling::IdentityAlways),
            column("k", true, false, Filling::Plain),
            column("g", false, true, Filling::Generated),
            column("Added", false, true, Filling::Plain),
        ];
        let keys = [key("g", 3), key("id", 3), key("k", 3)];
        let columns = ColumnPlan::compare(&table, &keys, 3, &[Ident::from_catalog("k")], false);
        let plan =
            crate::plan::restore_plan(&playbook, None, crate::plan::Archived::Deleted(&columns));
        let (list, batch) = (&plan.steps[0], &plan.steps[1]);
        assert!(
            list.statements.iter().any(|s| s.contains("/ 10,")),
            "batches of the playbook's size: {:?}",
            list.statements
        );
        assert_eq!(batch.statements[0], "SET LOCAL jit = off");
        let sql = &batch.statements[1];
        assert!(
            sql.contains(r#"INSERT INTO "public"."child" ("id", "k") OVERRIDING SYSTEM VALUE SELECT fk."id", fk."k" FROM moved"#),
            "{sql}"
        );
        assert!(sql.contains("a.row_data - ARRAY['g']::text[]"), "{sql}");
        assert!(sql.contains("moved.row_data - ARRAY['g']::text[]"), "{sql}");
        assert!(
            plan.notes.iter().any(|n| n.contains("Column \"Added\"")),
            "{:?}",
            plan.notes
        );
        let unplanned = crate::plan::restore_plan(&playbook, None, crate::plan::Archived::Unknown);
        assert_eq!(unplanned.steps.len(), 1, "no list without statements");
        assert!(unplanned.steps[0].statements.is_empty());
    }

    #[test]
    fn a_column_only_some_rows_have_is_refused() {
        let table = [
            column("k", true, false, Filling::Plain),
            column("late", false, false, Filling::Plain),
        ];
        let plan = ColumnPlan::compare(&table, &[key("k", 5), key("late", 2)], 5, &[], true);
        assert_eq!(plan.uneven, [(Ident::from_catalog("late"), 2)]);
        assert_eq!(plan.refusals().len(), 1);
    }
}
