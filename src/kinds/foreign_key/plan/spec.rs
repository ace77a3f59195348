//! A run's resolved specification: the playbook as loaded, the command
//! line's overrides and the drop-time snapshot, resolved once into one
//! immutable value that says what this run does (as ripgrep resolves its
//! flags once). Nothing after this changes the playbook a command loaded.

use super::drift::{self, Drift};
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::playbook::Playbook;

/// The definition recorded by the drop, as the journal holds it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub definition: ForeignKeyDef,
    /// `pg_get_constraintdef` at drop time.
    pub text: String,
    pub run_id: String,
    pub taken_at: String,
}

/// What the command line may change for one rollback.
#[derive(Debug, Clone, Default)]
pub struct RollbackOverrides {
    pub max_orphans: Option<u64>,
    pub use_playbook_definition: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionSource {
    Snapshot,
    Playbook,
}

impl DefinitionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionSource::Snapshot => "snapshot",
            DefinitionSource::Playbook => "playbook",
        }
    }
}

/// What one rollback run does.
#[derive(Debug, Clone)]
pub struct RollbackSpec {
    /// The playbook with the definition to restore and this run's limits.
    pub playbook: Playbook,
    pub source: DefinitionSource,
    /// How the snapshot differs from the playbook's definition (empty if it does not, or there is none).
    pub snapshot_drift: Vec<Drift>,
    /// One line for people: which definition is restored, and why.
    pub explanation: String,
}

/// The drop-time snapshot wins unless told otherwise; the playbook's
/// definition is used when there is none (the FK was dropped outside fkctl).
pub fn resolve_rollback(
    loaded: &Playbook,
    recorded: Option<&Recorded>,
    overrides: &RollbackOverrides,
) -> RollbackSpec {
    let mut playbook = loaded.clone();
    if let Some(n) = overrides.max_orphans {
        playbook.rollback.max_orphans = n;
    }
    let Some(recorded) = recorded else {
        return RollbackSpec {
            playbook,
            source: DefinitionSource::Playbook,
            snapshot_drift: Vec::new(),
            explanation: "no drop-time snapshot on record: restoring the playbook's definition"
                .to_string(),
        };
    };
    let snapshot_drift = drift::compare(&loaded.constraint, &recorded.definition);
    if overrides.use_playbook_definition {
        return RollbackSpec {
            playbook,
            source: DefinitionSource::Playbook,
            snapshot_drift,
            explanation: "restoring the playbook's definition (--use-playbook-definition)"
                .to_string(),
        };
    }
    playbook.constraint = recorded.definition.clone();
    RollbackSpec {
        playbook,
        source: DefinitionSource::Snapshot,
        snapshot_drift,
        explanation: format!(
            "restoring the definition recorded at drop time (run {}, {}): {}",
            recorded.run_id, recorded.taken_at, recorded.text
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::foreign_key::definition::FkAction;
    use std::path::Path;

    fn loaded() -> Playbook {
        let text = "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: fk\n  table: child\n  columns: [parent_id]\n  references: { table: parent, columns: [id] }\n  on_delete: cascade\nenvironments: [{ name: staging, dsn_env: X }]\nrollback: { max_orphans: 10 }\n";
        match crate::playbook::parse_str(text, Path::new("t.yml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn recorded(on_delete: FkAction) -> Recorded {
        let mut definition = loaded().constraint;
        definition.on_delete = on_delete;
        Recorded {
            definition,
            text: "FOREIGN KEY ...".into(),
            run_id: "r1".into(),
            taken_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_snapshot_wins_and_the_loaded_playbook_is_left_as_it_was() {
        let loaded = loaded();
        let snapshot = recorded(FkAction::SetNull);
        let spec = resolve_rollback(&loaded, Some(&snapshot), &RollbackOverrides::default());
        assert_eq!(spec.source, DefinitionSource::Snapshot);
        assert_eq!(spec.playbook.constraint.on_delete, FkAction::SetNull);
        assert_eq!(loaded.constraint.on_delete, FkAction::Cascade);
        assert_eq!(spec.snapshot_drift.len(), 1);
    }

    #[test]
    fn overrides_apply_to_this_run_only() {
        let loaded = loaded();
        let snapshot = recorded(FkAction::SetNull);
        let spec = resolve_rollback(
            &loaded,
            Some(&snapshot),
            &RollbackOverrides {
                max_orphans: Some(500),
                use_playbook_definition: true,
            },
        );
        assert_eq!(spec.source, DefinitionSource::Playbook);
        assert_eq!(spec.playbook.constraint.on_delete, FkAction::Cascade);
        assert_eq!(spec.playbook.rollback.max_orphans, 500);
        assert_eq!(loaded.rollback.max_orphans, 10);
    }

    #[test]
    fn without_a_snapshot_the_playbook_is_restored() {
        let spec = resolve_rollback(&loaded(), None, &RollbackOverrides::default());
        assert_eq!(spec.source, DefinitionSource::Playbook);
        assert!(spec.snapshot_drift.is_empty());
    }
}
