//! Field-by-field comparison of the playbook's constraint with the live one.

use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::sql::ident::Ident;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub field: &'static str,
    pub playbook: String,
    pub database: String,
}

fn list(columns: &[Ident]) -> String {
    format!(
        "[{}]",
        columns
            .iter()
            .map(Ident::display)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Every field where the database disagrees with the playbook (empty: they match).
pub fn compare(playbook: &ForeignKeyDef, live: &ForeignKeyDef) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, p: String, d: String| {
        if p != d {
            out.push(Drift {
                field: name,
                playbook: p,
                database: d,
            });
        }
    };
    field("columns", list(&playbook.columns), list(&live.columns));
    field(
        "references.table",
        playbook.ref_table.display(),
        live.ref_table.display(),
    );
    field(
        "references.columns",
        list(&playbook.ref_columns),
        list(&live.ref_columns),
    );
    field(
        "on_delete",
        playbook.on_delete.playbook_name().into(),
        live.on_delete.playbook_name().into(),
    );
    field(
        "on_update",
        playbook.on_update.playbook_name().into(),
        live.on_update.playbook_name().into(),
    );
    let m = |d: &ForeignKeyDef| format!("{:?}", d.match_type).to_lowercase();
    field("match", m(playbook), m(live));
    field(
        "deferrable",
        playbook.deferrable.to_string(),
        live.deferrable.to_string(),
    );
    field(
        "initially_deferred",
        playbook.initially_deferred.to_string(),
        live.initially_deferred.to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::foreign_key::definition::FkAction;
    use crate::sql::ident::QualifiedName;

    fn fk() -> ForeignKeyDef {
        ForeignKeyDef {
            name: Ident::from_catalog("fk"),
            table: QualifiedName::parse("child").unwrap_or_else(|_| unreachable!()),
            columns: vec![Ident::from_catalog("parent_id")],
            ref_table: QualifiedName::parse("parent").unwrap_or_else(|_| unreachable!()),
            ref_columns: vec![Ident::from_catalog("id")],
            on_delete: FkAction::Cascade,
            on_update: FkAction::NoAction,
            match_type: crate::kinds::foreign_key::definition::MatchType::Simple,
            deferrable: false,
            initially_deferred: false,
        }
    }

    #[test]
    fn identical_definitions_have_no_drift() {
        assert!(compare(&fk(), &fk()).is_empty());
    }

    #[test]
    fn each_differing_field_is_named() {
        let mut live = fk();
        live.on_delete = FkAction::SetNull;
        live.ref_columns = vec![Ident::from_catalog("Id")];
        let drift = compare(&fk(), &live);
        assert_eq!(drift.len(), 2);
        assert_eq!(drift[0].field, "references.columns");
        assert_eq!(drift[0].database, "[\"Id\"]");
        assert_eq!(drift[1].field, "on_delete");
        assert_eq!(drift[1].playbook, "cascade");
        assert_eq!(drift[1].database, "set_null");
    }
}
