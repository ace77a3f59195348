//! The loose replacement's steps: install (in the drop, before the DROP),
//! the cleanup passes (`fkctl cleanup`, and the rollback's drain), and the
//! removal (in the rollback, after VALIDATE). Pure, like every plan.

use super::cleanup::{self, Duty};
use super::{create_queue_sql, create_triggers_sql, remove_sql, triggers_count_sql, LooseObjects};
use crate::catalog::cascade::tree_unchanged_sql;
use crate::kinds::foreign_key::plan::{lock, short_ddl, step, timeouts};
use crate::model::LooseState;
use crate::plan::{Check, Expect, LockMode, Observed, Operation, Plan, Status, Step, StepKind};
use crate::playbook::{duration, LooseSettings, Playbook};
use crate::sql::ident::QualifiedName;

pub fn objects(playbook: &Playbook) -> LooseObjects {
    LooseObjects::new(&playbook.journal_schema, &playbook.change)
}

/// The parent's tables as observed; the parent alone from the playbook
/// (its partitions are read when the step runs from a live catalog).
fn parent_tables(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Vec<QualifiedName> {
    match observed {
        Some(o) if !o.inspection.loose.parent_tables.is_empty() => {
            o.inspection.loose.parent_tables.clone()
        }
        _ => vec![playbook.constraint.ref_table.clone()],
    }
}

fn loose_state<'a>(observed: Option<&'a Observed<'a>>) -> Option<&'a LooseState> {
    observed.map(|o| &o.inspection.loose)
}

fn triggers_check(objects: &LooseObjects, tables: &[QualifiedName], expect: i64) -> Check {
    Check {
        what: if expect == 0 {
            "no fkctl capture trigger is left on the parent".to_string()
        } else {
            format!(
                "fkctl's capture triggers are on all {} table(s) of the parent, enabled",
                tables.len()
            )
        },
        sql: triggers_count_sql(objects, tables),
        expect: Expect::Equals(expect),
    }
}

/// Installs the queue, the capture function and the triggers, in one
/// transaction; the DROP that follows runs only once the catalog shows
/// every trigger. None when the playbook has no `loose:` section.
pub fn install_step(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Option<Step> {
    playbook.loose.as_ref()?;
    let fk = &playbook.constraint;
    let objects = objects(playbook);
    let tables = parent_tables(playbook, observed);
    let mut install = step(
        StepKind::InstallLoose,
        "Install the loose replacement",
        "While the constraint is gone, a statement trigger on the parent (and on each of its partitions) queues the keys of deleted parent rows, and the old keys of rows whose key changed, in the deleting transaction; fkctl cleanup then does to their child rows what the constraint did, archived. The DROP below runs only once the catalog shows every trigger.",
    );
    // The archive too: cleanups running side by side must not race to create it.
    let mut ddl =
        crate::kinds::foreign_key::repair::create_archive_sql(&playbook.journal_schema, &[]);
    ddl.extend(create_queue_sql(&objects, fk).into_iter().skip(1));
    ddl.push(super::capture_function_sql(&objects, fk));
    let found = loose_state(observed)
        .map(|l| l.triggers.clone())
        .unwrap_or_default();
    for table in &tables {
        // Only the triggers missing: a partition attached since the last
        // install gets its own, the others keep theirs.
        for sql in create_triggers_sql(&objects, table) {
            let trigger = if sql.contains(&objects.delete_trigger().quoted()) {
                objects.delete_trigger()
            } else {
                objects.update_trigger()
            };
            if !found.contains(&format!("{}: {}", table.display(), trigger.as_str())) {
                ddl.push(sql);
            }
        }
    }
    let locks = tables
        .iter()
        .map(|t| lock(&t.display(), LockMode::ShareRowExclusive))
        .collect();
    short_ddl(&mut install, playbook, ddl, locks);
    let expected = i64::try_from(2 * tables.len()).unwrap_or(i64::MAX);
    install.after = Some(triggers_check(&objects, &tables, expected));
    install.status = match loose_state(observed) {
        None => Status::Unknown,
        Some(l) if l.fully_installed() => {
            Status::AlreadyDone("the capture triggers and the queue are in place".into())
        }
        Some(_) => Status::Pending,
    };
    Some(install)
}

/// One pass of the cleanup over one class of queued keys.
#[derive(Debug, Clone)]
pub struct CleanupPass {
    /// 'delete' or 'update': which queued keys.
    pub event: &'static str,
    pub duty: Duty,
    /// The batch statement (after the step's SET LOCALs), binds: run, change, constraint.
    pub step: Step,
    /// The same statement taking one key: after a failed batch, keys are
    /// retried one by one so that one bad key cannot hold the others back.
    pub one_key_sql: String,
    /// Puts a key that failed on its own back with a back-off; binds: change, error.
    pub reschedule_sql: String,
}

fn pass(
    playbook: &Playbook,
    observed: Option<&Observed<'_>>,
    settings: &LooseSettings,
    event: &'static str,
    duty: Duty,
) -> CleanupPass {
    let objects = objects(playbook);
    let query = match observed {
        Some(o) => o.inspection.orphan_query.clone(),
        None => crate::kinds::foreign_key::violations::OrphanQuery::from_definition(
            &playbook.constraint,
        ),
    };
    let identity = observed.and_then(|o| o.inspection.child_identity.as_deref());
    let (kind, title) = if event == "delete" {
        (StepKind::CleanDeleted, "Clean up after deleted parent rows")
    } else {
        (
            StepKind::CleanRekeyed,
            "Clean up after parent rows whose key changed",
        )
    };
    let why = format!(
        "Per batch of at most {} queued keys, in one statement: {}; the keys leave the queue and the counters grow in the same transaction. A run stops after {} or {} child rows.",
        settings.batch_size,
        duty.describe(),
        duration::human(settings.max_runtime),
        settings.max_rows_per_run
    );
    let mut s = step(kind, title, &why);
    s.transaction = true;
    s.statements = timeouts(playbook);
    if duty == Duty::Delete {
        // Deleting children must not set off a cascade below them that the
        // cleanup does not archive (the drop refused one it saw; this
        // catches a key added since, before each batch's delete).
        s.statements.extend(tree_unchanged_sql(&query.child, &[]));
    }
    s.statements.push(cleanup::batch_sql(
        &objects,
        &query,
        event,
        duty,
        settings.batch_size,
        identity,
    ));
    s.binds = cleanup::binds(duty);
    s.repeat =
        Some("per batch until the queue has no ready key, or the run's limits are reached".into());
    s.locks = vec![
        lock(&query.child.display(), LockMode::RowExclusive),
        lock(&objects.queue().display(), LockMode::RowExclusive),
    ];
    s.lock_retries = Some(0);
    s.status = Status::Pending;
    CleanupPass {
        event,
        duty,
        one_key_sql: cleanup::batch_sql(&objects, &query, event, duty, 1, identity),
        reschedule_sql: cleanup::reschedule_sql(&objects, event),
        step: s,
    }
}

/// The cleanup's passes: deleted parent keys under ON DELETE, re-keyed
/// ones under ON UPDATE. The playbook's `loose:` settings, or the defaults
/// when it has none (the rollback drains a replacement installed earlier).
pub fn cleanup_passes(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Vec<CleanupPass> {
    let settings = playbook.loose.clone().unwrap_or_default();
    let fk = &playbook.constraint;
    vec![
        pass(
            playbook,
            observed,
            &settings,
            "delete",
            Duty::on_delete(fk.on_delete),
        ),
        pass(
            playbook,
            observed,
            &settings,
            "update",
            Duty::on_update(fk.on_update),
        ),
    ]
}

/// `fkctl cleanup`'s plan, for showing: its passes as steps.
pub fn cleanup_plan(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Plan {
    let steps: Vec<Step> = cleanup_passes(playbook, observed)
        .into_iter()
        .enumerate()
        .map(|(i, p)| Step {
            number: i + 1,
            ..p.step
        })
        .collect();
    Plan {
        operation: Operation::Cleanup,
        change: playbook.change.clone(),
        constraint: playbook.constraint.name.display(),
        table: playbook.constraint.table.display(),
        environment: observed.map(|o| o.environment.to_string()),
        basis: match observed {
            Some(o) => format!("live catalog of {}", o.environment),
            None => "playbook".to_string(),
        },
        steps,
        notes: Vec::new(),
    }
}

/// Whether a rollback has a replacement to drain and remove.
pub fn in_rollback(playbook: &Playbook, observed: Option<&Observed<'_>>) -> bool {
    playbook.loose.is_some() || loose_state(observed).is_some_and(LooseState::any_installed)
}

/// The rollback's first step: one cleanup run, so that the constraint's
/// own action, not the orphan purge, handles what the replacement queued.
pub fn drain_step(playbook: &Playbook, observed: Option<&Observed<'_>>, status: &Status) -> Step {
    let passes = cleanup_passes(playbook, observed);
    let mut drain = step(
        StepKind::DrainLoose,
        "Drain the loose replacement's queue",
        "One cleanup run (the statements of fkctl cleanup, within loose: limits): queued parent keys get the constraint's own action, archived, before the census; what it leaves is an orphan like any other and the purge below handles it.",
    );
    drain.statements = passes
        .iter()
        .flat_map(|p| p.step.statements.clone())
        .collect();
    drain.repeat = passes[0].step.repeat.clone();
    drain.locks = passes[0].step.locks.clone();
    drain.status = match loose_state(observed) {
        Some(l) if !l.queue_exists => Status::AlreadyDone("no queue is installed".into()),
        _ => status.clone(),
    };
    drain
}

/// The rollback's last step: with the constraint valid again, the triggers,
/// function and queue go (the counters stay as the change's history).
pub fn remove_step(playbook: &Playbook, observed: Option<&Observed<'_>>, status: &Status) -> Step {
    let objects = objects(playbook);
    let tables = parent_tables(playbook, observed);
    let mut remove = step(
        StepKind::RemoveLoose,
        "Remove the loose replacement",
        "The constraint does the job again: the capture triggers leave every table of the parent (DROP TRIGGER takes ACCESS EXCLUSIVE briefly, so it waits at most lock_timeout and retries), then the function and the queue.",
    );
    let locks = tables
        .iter()
        .map(|t| lock(&t.display(), LockMode::AccessExclusive))
        .collect();
    short_ddl(&mut remove, playbook, remove_sql(&objects, &tables), locks);
    remove.after = Some(triggers_check(&objects, &tables, 0));
    remove.status = match loose_state(observed) {
        None => status.clone(),
        Some(l) if !l.any_installed() => {
            Status::AlreadyDone("no fkctl trigger or queue is left".into())
        }
        // Even with the constraint valid already: a rollback interrupted
        // after VALIDATE still has the replacement to remove.
        Some(_) => Status::Pending,
    };
    remove
}

/// The loose replacement's steps, pinned as `fkctl plan` prints them, from
/// in-memory states (no database).
#[cfg(test)]
mod snapshot_tests {
    use crate::model::fixtures::{self, Seen, PG16};
    use crate::plan::{build, Observed, Operation, Status};
    use crate::playbook::Playbook;

    fn loose_seed() -> Playbook {
        let text = fixtures::with_rollback(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
            ))
            .unwrap_or_else(|e| panic!("{e}")),
            "{ orphans: archive-delete }\nloose: { batch_size: 500, max_runtime: 20s, max_rows_per_run: 5000 }",
        );
        fixtures::playbook(&text)
    }

    fn rendered(operation: Operation, playbook: &Playbook, seen: Seen, installed: bool) -> String {
        let mut inspection = fixtures::seed(playbook, seen, PG16);
        if installed {
            let objects = super::objects(playbook);
            let table = inspection.loose.parent_tables[0].display();
            inspection.loose.queue_exists = true;
            inspection.loose.pending = 12;
            inspection.loose.triggers = vec![
                format!("{table}: {}", objects.delete_trigger().as_str()),
                format!("{table}: {}", objects.update_trigger().as_str()),
            ];
        }
        let observed = Observed {
            environment: "staging",
            inspection: &inspection,
        };
        crate::render::plan::text(&build(operation, playbook, Some(&observed)))
    }

    #[test]
    fn snapshot_drop_installs_the_replacement_before_the_drop() {
        let text = rendered(Operation::Drop, &loose_seed(), Seen::Valid, false);
        let install = text.find("Install the loose replacement");
        let drop = text.find("Drop the constraint");
        assert!(install.is_some() && install < drop, "{text}");
        insta::assert_snapshot!("drop_with_loose", text);
    }

    #[test]
    fn snapshot_rollback_drains_first_and_removes_last() {
        let text = rendered(Operation::Rollback, &loose_seed(), Seen::Absent, true);
        insta::assert_snapshot!("rollback_with_loose", text);
    }

    #[test]
    fn snapshot_cleanup_passes() {
        let text = rendered(Operation::Cleanup, &loose_seed(), Seen::Absent, true);
        insta::assert_snapshot!("cleanup_seed", text);
    }

    #[test]
    fn an_installed_replacement_is_not_installed_again() {
        let pb = loose_seed();
        let mut inspection = fixtures::seed(&pb, Seen::Valid, PG16);
        let objects = super::objects(&pb);
        let table = inspection.loose.parent_tables[0].display();
        inspection.loose.queue_exists = true;
        inspection.loose.triggers = vec![
            format!("{table}: {}", objects.delete_trigger().as_str()),
            format!("{table}: {}", objects.update_trigger().as_str()),
        ];
        let observed = Observed {
            environment: "staging",
            inspection: &inspection,
        };
        let step = super::install_step(&pb, Some(&observed)).unwrap_or_else(|| panic!("no step"));
        assert!(matches!(step.status, Status::AlreadyDone(_)));
        assert!(!step
            .statements
            .iter()
            .any(|s| s.starts_with("CREATE TRIGGER")));
    }

    #[test]
    fn no_loose_section_no_step() {
        assert!(super::install_step(&fixtures::seed_playbook(), None).is_none());
    }
}
