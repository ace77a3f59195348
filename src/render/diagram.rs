//! A mermaid diagram of what a foreign key does and what hangs off its
//! child table, as cascade documentation draws them. GitLab and GitHub
//! render mermaid in issues.

use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef};
use crate::model::DependentKey;
use std::fmt::Write;

/// Text for a quoted mermaid label: the characters mermaid (or the markdown
/// fence around it) would read as syntax become entity codes.
fn label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '`' => out.push_str("#96;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn on_delete_effect(action: FkAction) -> &'static str {
    match action {
        FkAction::Cascade => "deleting a parent row deletes its children",
        FkAction::SetNull => "deleting a parent row sets its children's key to NULL",
        FkAction::SetDefault => "deleting a parent row sets its children's key to its default",
        FkAction::NoAction | FkAction::Restrict => {
            "deleting a parent row that has children is refused"
        }
    }
}

fn after_drop(action: FkAction) -> &'static str {
    match action {
        FkAction::Cascade | FkAction::SetNull | FkAction::SetDefault => {
            "children of deleted parents stay behind as orphans"
        }
        FkAction::NoAction | FkAction::Restrict => {
            "parents with children can be deleted, leaving orphans"
        }
    }
}

/// The diagram's source (without the fence). `dependents` are the foreign
/// keys of other tables that reference the child; None when no database was
/// read (planned from the playbook alone), which the diagram says.
/// `partitions`: the child's leaf partitions, when read (each holds a copy
/// of the constraint, and the drop removes them all).
pub fn mermaid(
    fk: &ForeignKeyDef,
    dependents: Option<&[DependentKey]>,
    partitions: usize,
    loose: bool,
) -> String {
    let columns = |c: &[crate::sql::ident::Ident]| {
        c.iter().map(|i| i.display()).collect::<Vec<_>>().join(", ")
    };
    let mut out = String::from("flowchart LR\n");
    let _ = writeln!(
        out,
        "  parent[\"{}<br/>parent\"]",
        label(&fk.ref_table.display())
    );
    let partitioned = if partitions > 0 {
        format!("<br/>partitioned: {partitions} leaf partitions, each with its copy of the key")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  child[\"{}<br/>child{partitioned}\"]",
        label(&fk.table.display())
    );
    let _ = writeln!(
        out,
        "  parent -- \"{} ({} → {})<br/>ON DELETE {}: {}<br/>ON UPDATE {}\" --> child",
        label(&fk.name.display()),
        label(&columns(&fk.columns)),
        label(&columns(&fk.ref_columns)),
        fk.on_delete.sql(),
        on_delete_effect(fk.on_delete),
        fk.on_update.sql(),
    );
    let replacement = if loose {
        "; fkctl's loose replacement (capture trigger + fkctl cleanup) applies the action instead"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  gone[\"once dropped: {}; inserts with an unknown key are accepted{}\"]",
        after_drop(fk.on_delete),
        label(replacement)
    );
    out.push_str("  child -.- gone\n");
    match dependents {
        None => out.push_str(
            "  others[\"other tables' foreign keys on the child: not read (planned from the playbook alone)\"]\n  others -.-> child\n",
        ),
        Some([]) => out.push_str("  none[\"no other table references the child\"]\n  child -.- none\n"),
        Some(keys) => {
            for (i, key) in keys.iter().enumerate() {
                let _ = writeln!(out, "  dep{i}[\"{}\"]", label(&key.table));
                let _ = writeln!(
                    out,
                    "  child -- \"{} ({})<br/>ON DELETE {}{}\" --> dep{i}",
                    label(&key.name),
                    label(&key.columns.join(", ")),
                    key.on_delete.sql(),
                    if key.validated { "" } else { " (NOT VALID)" },
                );
            }
        }
    }
    out.push_str("  style gone stroke-dasharray: 5 5\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_s_own_dependents_hang_off_it() {
        let playbook = crate::model::fixtures::seed_playbook();
        let dependents = [DependentKey {
            name: "fk_steps".into(),
            table: "public.ci_pipeline_chat_steps".into(),
            columns: vec!["chat_data_id".into()],
            on_delete: FkAction::Cascade,
            on_update: FkAction::NoAction,
            validated: true,
        }];
        let text = mermaid(&playbook.constraint, Some(&dependents), 0, false);
        assert!(text.contains("parent -- \"fk_rails_f300456b63 (chat_name_id → id)<br/>ON DELETE CASCADE: deleting a parent row deletes its children"), "{text}");
        assert!(text.contains("  dep0[\"public.ci_pipeline_chat_steps\"]\n  child -- \"fk_steps (chat_data_id)<br/>ON DELETE CASCADE\" --> dep0\n"), "{text}");
        let offline = mermaid(&playbook.constraint, None, 0, true);
        assert!(
            offline.contains("not read (planned from the playbook alone)"),
            "{offline}"
        );
        assert!(offline.contains("loose replacement"), "{offline}");
    }

    #[test]
    fn labels_cannot_break_out_of_their_quotes_or_the_fence() {
        assert_eq!(label(r#"a"b<c>#```"#), "a#quot;b#lt;c#gt;#35;#96;#96;#96;");
    }
}
