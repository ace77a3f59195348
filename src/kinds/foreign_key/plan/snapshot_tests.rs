//! The planned SQL, pinned: each snapshot is `fkctl plan` text output for a
//! (playbook, observed state) pair built in memory (`model::fixtures`), no
//! database. A change to any statement, check, lock or status shows up as a
//! snapshot diff to review (`cargo insta review`).

use super::{restore_plan, Archived};
use crate::model::fixtures::{self, Seen, PG15, PG16, PG18};
use crate::model::{Inspection, LeafState};
use crate::plan::{build, Observed, Operation, Plan};
use crate::playbook::Playbook;
use crate::render;

const ENV: &str = "staging";

fn plan(operation: Operation, playbook: &Playbook, inspection: Option<&Inspection>) -> Plan {
    match inspection {
        Some(inspection) => {
            let observed = Observed {
                environment: ENV,
                inspection,
            };
            build(operation, playbook, Some(&observed))
        }
        None => build(operation, playbook, None),
    }
}

fn text(plan: &Plan) -> String {
    render::plan::text(plan)
}

/// Pins the rendered plan under `name`, with `description` in the .snap header.
macro_rules! pin {
    ($name:literal, $description:expr, $plan:expr) => {{
        let rendered = text(&$plan);
        insta::with_settings!({ description => $description, omit_expression => true }, {
            insta::assert_snapshot!($name, rendered);
        });
    }};
}

// ------------------------------------------------------------------- drop

#[test]
fn snapshot_drop_seed_live_valid() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::Valid, PG16);
    pin!(
        "drop_seed_live_valid",
        "drop, seed table, constraint present and valid (PG 16)",
        plan(Operation::Drop, &pb, Some(&i))
    );
}

#[test]
fn snapshot_drop_seed_playbook_only() {
    let pb = fixtures::seed_playbook();
    pin!(
        "drop_seed_playbook_only",
        "drop, seed table, planned from the playbook alone (no observed state)",
        plan(Operation::Drop, &pb, None)
    );
}

#[test]
fn snapshot_drop_seed_drift_on_delete() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed_drifted(&pb);
    pin!(
        "drop_seed_drift_on_delete",
        "drop, seed table, live constraint is ON DELETE NO ACTION, playbook says cascade: the 'Once dropped' note describes the live NO ACTION",
        plan(Operation::Drop, &pb, Some(&i))
    );
}

#[test]
fn snapshot_drop_billing_match_full_quoted() {
    let pb = fixtures::billing_playbook();
    let i = fixtures::billing(&pb, Seen::Valid);
    pin!(
        "drop_billing_match_full_quoted",
        "drop, two-column MATCH FULL key, quoted mixed-case names in schema \"Billing\", present and valid",
        plan(Operation::Drop, &pb, Some(&i))
    );
}

#[test]
fn snapshot_drop_payment_pg15_leftover_leaf_copies() {
    let pb = fixtures::payment_playbook();
    let leaves = vec![
        fixtures::payment_leaf(0, LeafState::Valid, false),
        fixtures::payment_leaf(1, LeafState::NotValid, false),
        fixtures::payment_leaf(2, LeafState::Absent, false),
    ];
    let i = fixtures::payment(&pb, PG15, Seen::Absent, leaves);
    pin!(
        "drop_payment_pg15_leftover_leaf_copies",
        "drop, partitioned child on PG 15, constraint absent on the partitioned table, two leaves keep unattached copies of an unfinished per-leaf rollback",
        plan(Operation::Drop, &pb, Some(&i))
    );
}

// --------------------------------------------------- rollback, plain table

#[test]
fn snapshot_rollback_seed_absent_archive_delete() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::Absent, PG16);
    pin!(
        "rollback_seed_absent_archive_delete",
        "rollback, seed table, constraint absent, orphans: archive-delete (the shipped playbook)",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_seed_absent_abort() {
    let pb = fixtures::seed_playbook_with_rollback("{ orphans: abort, max_orphans: 0 }");
    let i = fixtures::seed(&pb, Seen::Absent, PG16);
    pin!(
        "rollback_seed_absent_abort",
        "rollback, seed table, constraint absent, orphans: abort",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_sessions_nullify_varchar_key() {
    let pb = fixtures::sessions_playbook();
    let i = fixtures::sessions_varchar_key(&pb, Seen::Absent);
    pin!(
        "rollback_sessions_nullify_varchar_key",
        "rollback, auth.sessions(user_email varchar) -> auth.users(email text), constraint absent, orphans: nullify; the key compares as text = text, the child side cast",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_seed_resumed_not_valid() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::NotValid, PG16);
    pin!(
        "rollback_seed_resumed_not_valid",
        "rollback resumed, seed table: the constraint is present NOT VALID (ADD is done, the rest is to do)",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_seed_already_valid() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::Valid, PG16);
    pin!(
        "rollback_seed_already_valid",
        "rollback, seed table: the constraint is present and valid, every step already done",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_seed_not_enforced_pg18() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::NotEnforced, PG18);
    pin!(
        "rollback_seed_not_enforced_pg18",
        "rollback, seed table on PG 18, the constraint is present NOT ENFORCED: swapped for an enforced NOT VALID one",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_billing_match_full_quoted() {
    let pb = fixtures::billing_playbook();
    let i = fixtures::billing(&pb, Seen::Absent);
    pin!(
        "rollback_billing_match_full_quoted",
        "rollback, two-column MATCH FULL key, quoted mixed-case names in schema \"Billing\", constraint absent, orphans: abort (the shipped playbook)",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

// ---------------------------------------------- rollback, partitioned child

#[test]
fn snapshot_rollback_payment_pg15_per_leaf_all_absent() {
    let pb = fixtures::payment_playbook();
    let leaves = fixtures::payment_leaves(&LeafState::Absent, false);
    let i = fixtures::payment(&pb, PG15, Seen::Absent, leaves);
    pin!(
        "rollback_payment_pg15_per_leaf_all_absent",
        "rollback, partitioned child with 3 leaves on PG 15 (per-leaf path), constraint absent everywhere",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_payment_pg15_per_leaf_resumed() {
    let pb = fixtures::payment_playbook();
    let leaves = vec![
        fixtures::payment_leaf(0, LeafState::Valid, false),
        fixtures::payment_leaf(1, LeafState::NotValid, false),
        fixtures::payment_leaf(2, LeafState::NotValid, false),
    ];
    let i = fixtures::payment(&pb, PG15, Seen::Absent, leaves);
    pin!(
        "rollback_payment_pg15_per_leaf_resumed",
        "rollback resumed, partitioned child on PG 15 (per-leaf path): leaf 1 validated, leaves 2 and 3 NOT VALID, nothing on the partitioned table yet",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_payment_pg15_different_leaf() {
    let pb = fixtures::payment_playbook();
    let leaves = vec![
        fixtures::payment_leaf(0, LeafState::Absent, false),
        fixtures::payment_leaf(
            1,
            LeafState::Different(
                "FOREIGN KEY (customer_id) REFERENCES public.customer(customer_id) ON DELETE CASCADE"
                    .to_string(),
            ),
            false,
        ),
        fixtures::payment_leaf(2, LeafState::Absent, false),
    ];
    let i = fixtures::payment(&pb, PG15, Seen::Absent, leaves);
    pin!(
        "rollback_payment_pg15_different_leaf",
        "rollback, partitioned child on PG 15: one leaf holds another definition under the constraint's name",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_payment_pg18_direct() {
    let pb = fixtures::payment_playbook();
    let leaves = fixtures::payment_leaves(&LeafState::Absent, false);
    let i = fixtures::payment(&pb, PG18, Seen::Absent, leaves);
    pin!(
        "rollback_payment_pg18_direct",
        "rollback, partitioned child with 3 leaves on PG 18 (direct path), constraint absent",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_seed_cascade_tree() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed_with_cascade(&pb);
    pin!(
        "rollback_seed_cascade_tree",
        "rollback, seed table, constraint absent, a cascade tree below the child: a partitioned CASCADE level with a CASCADE level under it, a SET NULL level and a SET DEFAULT level",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn a_cascade_level_without_row_identity_is_refused_in_the_plan() {
    let pb = fixtures::seed_playbook();
    let mut i = fixtures::seed_with_cascade(&pb);
    i.cascade.levels[1].identity = None;
    let refused = super::cascade::refusals(&i);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]
            .starts_with("public.chat_data_watchers (fk_watchers_chat_data, ON DELETE SET NULL"),
        "{refused:?}"
    );
    let text = text(&plan(Operation::Rollback, &pb, Some(&i)));
    assert!(text.contains("fkctl rollback refuses to purge"), "{text}");
}

// ---------------------------------------------------------------- restore

#[test]
fn snapshot_restore_cascade_levels() {
    use crate::kinds::foreign_key::plan::restore::{ArchivedKey, ColumnPlan};
    use crate::model::TableColumn;
    use crate::sql::ident::Ident;
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed_with_cascade(&pb);
    let observed = Observed {
        environment: ENV,
        inspection: &i,
    };
    let live: Vec<TableColumn> = fixtures::seed_table_columns()
        .into_iter()
        .filter(|c| ["id", "response_url"].contains(&c.name.as_str()))
        .collect();
    let mut live = live;
    live[1].name = Ident::from_catalog("note_id");
    let keys: Vec<ArchivedKey> = ["id", "note_id"]
        .iter()
        .map(|k| ArchivedKey {
            name: Ident::from_catalog(*k),
            rows: 7,
        })
        .collect();
    let columns = ColumnPlan::compare(&live, &keys, 7, &[Ident::from_catalog("note_id")], false);
    let rows = super::cascade::restore_level_plan(&pb, &observed, 3, Archived::Deleted(&columns));
    let keys = super::cascade::restore_level_plan(&pb, &observed, 1, Archived::Nullified);
    let (Some(rows), Some(keys)) = (rows, keys) else {
        panic!("no such levels");
    };
    pin!(
        "restore_cascade_level_rows",
        "restore of 7 rows of the CASCADE level note_reactions (under chat_data_notes)",
        rows
    );
    pin!(
        "restore_cascade_level_keys",
        "restore of the keys the SET NULL level chat_data_watchers lost",
        keys
    );
}

#[test]
fn snapshot_restore_seed_live() {
    use crate::kinds::foreign_key::plan::restore::{ArchivedKey, ColumnPlan};
    use crate::sql::ident::Ident;
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed(&pb, Seen::Valid, PG16);
    let keys: Vec<ArchivedKey> = ["chat_name_id", "id", "pipeline_id", "response_url"]
        .iter()
        .map(|k| ArchivedKey {
            name: Ident::from_catalog(*k),
            rows: 42,
        })
        .collect();
    let columns = ColumnPlan::compare(
        &fixtures::seed_table_columns(),
        &keys,
        42,
        &pb.constraint.columns,
        false,
    );
    assert!(columns.refusals().is_empty(), "{:?}", columns.refusals());
    let observed = Observed {
        environment: ENV,
        inspection: &i,
    };
    pin!(
        "restore_seed_live",
        "restore of 42 archived rows of the seed table after the rollback; a nullable column was added since",
        restore_plan(&pb, Some(&observed), Archived::Deleted(&columns))
    );
}

// ---------------------------------------------------- plain assertions

/// Every SQL text of a plan: statements and checks, step by step.
fn all_sql(plan: &Plan) -> Vec<(&'static str, Vec<String>)> {
    plan.steps
        .iter()
        .map(|s| {
            let mut sql = s.statements.clone();
            sql.extend(s.before.iter().map(|c| c.sql.clone()));
            sql.extend(s.after.iter().map(|c| c.sql.clone()));
            (s.id, sql)
        })
        .collect()
}

#[test]
fn the_same_plan_built_twice_is_byte_identical() {
    let cases: Vec<(Operation, Playbook, Option<Inspection>)> = vec![
        (Operation::Drop, fixtures::seed_playbook(), None),
        (
            Operation::Rollback,
            fixtures::seed_playbook(),
            Some(fixtures::seed(
                &fixtures::seed_playbook(),
                Seen::Absent,
                PG16,
            )),
        ),
        (
            Operation::Rollback,
            fixtures::payment_playbook(),
            Some(fixtures::payment(
                &fixtures::payment_playbook(),
                PG15,
                Seen::Absent,
                fixtures::payment_leaves(&LeafState::NotValid, false),
            )),
        ),
        (
            Operation::Rollback,
            fixtures::billing_playbook(),
            Some(fixtures::billing(
                &fixtures::billing_playbook(),
                Seen::Absent,
            )),
        ),
    ];
    for (operation, pb, inspection) in &cases {
        let first = plan(*operation, pb, inspection.as_ref());
        let second = plan(*operation, pb, inspection.as_ref());
        assert_eq!(text(&first), text(&second));
        let json = |p: &Plan| serde_json::to_string(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json(&first), json(&second));
    }
    // From separately built fixtures too: nothing depends on the instance.
    let a = fixtures::seed(&fixtures::seed_playbook(), Seen::NotValid, PG16);
    let b = fixtures::seed(&fixtures::seed_playbook(), Seen::NotValid, PG16);
    let pb = fixtures::seed_playbook();
    assert_eq!(
        text(&plan(Operation::Rollback, &pb, Some(&a))),
        text(&plan(Operation::Rollback, &pb, Some(&b)))
    );
}

#[test]
fn drop_sql_from_the_playbook_alone_equals_drop_sql_from_the_live_state() {
    let pb = fixtures::seed_playbook();
    let live = fixtures::seed(&pb, Seen::Valid, PG16);
    let offline = plan(Operation::Drop, &pb, None);
    let online = plan(Operation::Drop, &pb, Some(&live));
    assert_eq!(all_sql(&offline), all_sql(&online));
    let drop = |p: &Plan| {
        p.steps
            .iter()
            .find(|s| s.id == "drop-constraint")
            .map(|s| s.statements.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        drop(&offline),
        [
            "SET LOCAL lock_timeout = '500ms'",
            "SET LOCAL statement_timeout = '30s'",
            r#"ALTER TABLE "public"."ci_pipeline_chat_data" DROP CONSTRAINT "fk_rails_f300456b63""#,
        ]
    );
    assert_eq!(drop(&offline), drop(&online));
    // Only what the catalog adds differs: the statuses and the basis.
    assert_eq!(offline.basis, "playbook");
    assert_eq!(online.basis, format!("live catalog of {ENV}"));

    // The same holds for the quoted two-column key.
    let pb = fixtures::billing_playbook();
    let live = fixtures::billing(&pb, Seen::Valid);
    assert_eq!(
        all_sql(&plan(Operation::Drop, &pb, None)),
        all_sql(&plan(Operation::Drop, &pb, Some(&live)))
    );
}

#[test]
fn snapshot_rollback_seed_drifted_is_refused_in_a_note() {
    let pb = fixtures::seed_playbook();
    let i = fixtures::seed_drifted(&pb);
    pin!(
        "rollback_seed_drifted",
        "rollback, a constraint of that name exists with ON DELETE NO ACTION while the playbook restores cascade: the note says the rollback refuses",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_rollback_nullify_on_a_not_null_key_is_refused_in_a_note() {
    let pb = fixtures::seed_playbook_with_rollback("{ orphans: nullify }");
    let i = fixtures::seed(&pb, Seen::Absent, PG15);
    pin!(
        "rollback_seed_nullify_not_null_key",
        "rollback with nullify while chat_name_id is NOT NULL: the note says the rollback refuses",
        plan(Operation::Rollback, &pb, Some(&i))
    );
}

#[test]
fn snapshot_restore_billing_nullified_keys() {
    let pb = fixtures::billing_playbook();
    let i = fixtures::billing(&pb, Seen::Valid);
    let observed = Observed {
        environment: ENV,
        inspection: &i,
    };
    pin!(
        "restore_billing_nullified_keys",
        "restore of a nullify run on the two-column MATCH FULL key with quoted names: rows found by \"Line Id\", keys set back where both are still NULL and the parent exists",
        restore_plan(&pb, Some(&observed), Archived::Nullified)
    );
}

#[test]
fn snapshot_rollback_nullify_without_row_identity_is_refused_in_a_note() {
    let pb = fixtures::sessions_playbook();
    let mut i = fixtures::sessions_varchar_key(&pb, Seen::Absent);
    i.child_identity = None;
    let p = plan(Operation::Rollback, &pb, Some(&i));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("auth.sessions has no primary key") && n.contains("refuses")),
        "{:?}",
        p.notes
    );
}
