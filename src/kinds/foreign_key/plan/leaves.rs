//! The per-partition rollback, for a partitioned child on PostgreSQL < 18,
//! which refuses `ADD FOREIGN KEY ... NOT VALID` on a partitioned table (and
//! a validating ADD there blocks writes on every partition for the whole
//! scan). Instead: NOT VALID on each leaf, the usual purge, VALIDATE on each
//! leaf (writes go on), then one ADD on the partitioned table, for which
//! PostgreSQL attaches the leaves' validated copies instead of scanning.

use super::{add_not_valid, lock, short_ddl, step, validate_constraint};
use crate::kinds::foreign_key::checks;
use crate::model::{Leaf, LeafState};
use crate::plan::{Check, Expect, LockMode, Status, Step, StepKind};
use crate::playbook::Playbook;

/// Which way the constraint goes back on, and why (shown by `plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackPath {
    /// ADD NOT VALID and VALIDATE on the child table itself.
    Direct,
    /// NOT VALID and VALIDATE leaf by leaf, then attach on the partitioned table.
    PerLeaf,
}

/// First major version that can add a NOT VALID foreign key to a partitioned table.
pub const PARTITIONED_NOT_VALID_VERSION: i32 = 180000;

fn leaf_status(leaf: &Leaf, done_when_valid_only: bool) -> Status {
    match (&leaf.state, done_when_valid_only) {
        (LeafState::Valid, _) => Status::AlreadyDone("this partition's copy is validated".into()),
        (LeafState::NotValid, false) => {
            Status::AlreadyDone("this partition has its copy, NOT VALID".into())
        }
        _ => Status::Pending,
    }
}

/// ADD ... NOT VALID on each leaf partition, each in its own short transaction.
pub fn add_steps(playbook: &Playbook, leaves: &[Leaf], parent: &str) -> Vec<Step> {
    let fk = &playbook.constraint;
    leaves
        .iter()
        .map(|leaf| {
            let on_leaf = fk.on_table(&leaf.table);
            let mut add = step(
        StepKind::AddNotValidPartition,
                &format!("Add the constraint NOT VALID on partition {}", leaf.table),
                "A catalog change only, no scan; from its commit on, PostgreSQL checks new and updated rows of this partition. One partition per transaction, so each lock is brief.",
            );
            add_not_valid(&mut add, playbook, &on_leaf, &leaf.table.display(), parent);
            add.before = Some(exists(&on_leaf, 0));
            add.after = Some(exists(&on_leaf, 1));
            add.status = leaf_status(leaf, false);
            add
        })
        .collect()
}

fn exists(fk: &crate::kinds::foreign_key::definition::ForeignKeyDef, expect: i64) -> Check {
    Check {
        what: if expect == 1 {
            "the constraint exists on this partition".into()
        } else {
            "the constraint is not on this partition yet".into()
        },
        sql: checks::constraint_exists_sql(fk),
        expect: Expect::Equals(expect),
    }
}

/// VALIDATE on each leaf: SHARE UPDATE EXCLUSIVE on that leaf only.
pub fn validate_steps(playbook: &Playbook, leaves: &[Leaf], parent: &str) -> Vec<Step> {
    let fk = &playbook.constraint;
    leaves
        .iter()
        .map(|leaf| {
            let on_leaf = fk.on_table(&leaf.table);
            let mut validate = step(
        StepKind::ValidatePartition,
                &format!("Validate the constraint on partition {}", leaf.table),
                "Scans this partition under SHARE UPDATE EXCLUSIVE: reads and writes go on. No statement timeout, a short lock timeout.",
            );
            validate_constraint(
                &mut validate,
                playbook,
                &on_leaf,
                &leaf.table.display(),
                parent,
                "the constraint is validated on this partition",
            );
            validate.status = leaf_status(leaf, true);
            validate
        })
        .collect()
}

/// The ADD on the partitioned table that adopts the leaves' validated copies.
pub fn attach_step(playbook: &Playbook, child: &str, parent: &str, status: Status) -> Step {
    let fk = &playbook.constraint;
    let mut attach = step(
        StepKind::AttachConstraint,
        "Add the constraint on the partitioned table, adopting the partitions' copies",
        "Every leaf already holds a validated copy, so PostgreSQL attaches them instead of scanning: catalog work only. It takes SHARE ROW EXCLUSIVE on the table and every partition and ACCESS EXCLUSIVE on the referenced table (it replaces the copies' own triggers there), for milliseconds, under the short lock and statement timeouts. The check before it makes sure no leaf would need a scan.",
    );
    short_ddl(
        &mut attach,
        playbook,
        vec![fk.add_sql()],
        vec![
            lock(child, LockMode::ShareRowExclusive),
            lock(parent, LockMode::AccessExclusive),
        ],
    );
    attach.before = Some(Check {
        what: "partitions without a validated copy (each would be scanned under a write-blocking lock)".into(),
        sql: checks::leaves_without_valid_copy_sql(fk, false),
        expect: Expect::Equals(0),
    });
    attach.after = Some(Check {
        what: "partitions whose validated copy is not attached to the restored constraint".into(),
        sql: checks::leaves_without_valid_copy_sql(fk, true),
        expect: Expect::Equals(0),
    });
    attach.status = status;
    attach
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ident::{Ident, QualifiedName};
    use std::path::Path;

    fn playbook() -> Playbook {
        let text = "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: payment_customer_fk\n  table: shop.payment\n  columns: [customer_id]\n  references: { table: shop.customer, columns: [id] }\nenvironments: [{ name: staging, dsn_env: X }]\nsafety: { lock_timeout: 250ms, statement_timeout: 15s, lock_retries: 3 }\n";
        match crate::playbook::parse_str(text, Path::new("t.yml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn leaf(name: &str, state: LeafState) -> Leaf {
        Leaf {
            table: QualifiedName::new(Ident::from_catalog("shop"), Ident::from_catalog(name)),
            state,
            attached: false,
        }
    }

    #[test]
    fn each_leaf_gets_its_own_short_transaction_and_done_leaves_are_skipped() {
        let leaves = [
            leaf("p1", LeafState::Absent),
            leaf("P 2", LeafState::NotValid),
            leaf("p3", LeafState::Valid),
        ];
        let adds = add_steps(&playbook(), &leaves, "shop.customer");
        assert_eq!(adds.len(), 3);
        assert_eq!(
            adds[1].statements[2],
            r#"ALTER TABLE "shop"."P 2" ADD CONSTRAINT "payment_customer_fk" FOREIGN KEY ("customer_id") REFERENCES "shop"."customer" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION NOT VALID"#
        );
        assert_eq!(adds[0].status, Status::Pending);
        assert!(matches!(adds[1].status, Status::AlreadyDone(_)));
        assert!(matches!(adds[2].status, Status::AlreadyDone(_)));
        assert!(adds
            .iter()
            .all(|s| s.transaction && s.lock_retries == Some(3)));
        let validates = validate_steps(&playbook(), &leaves, "shop.customer");
        assert_eq!(validates[0].status, Status::Pending);
        assert_eq!(
            validates[1].status,
            Status::Pending,
            "NOT VALID still needs VALIDATE"
        );
        assert!(matches!(validates[2].status, Status::AlreadyDone(_)));
        assert_eq!(validates[0].locks[0].mode, LockMode::ShareUpdateExclusive);
        assert_eq!(
            validates[0].statements[1],
            "SET LOCAL statement_timeout = 0"
        );
    }

    #[test]
    fn the_attach_is_a_validating_add_guarded_by_the_copies_check() {
        let attach = attach_step(
            &playbook(),
            "shop.payment",
            "shop.customer",
            Status::Pending,
        );
        assert!(attach.statements[2].starts_with(r#"ALTER TABLE "shop"."payment" ADD CONSTRAINT"#));
        assert!(!attach.statements[2].contains("NOT VALID"));
        assert_eq!(attach.statements[1], "SET LOCAL statement_timeout = '15s'");
        let before = attach.before.as_ref().map(|c| c.sql.as_str()).unwrap_or("");
        assert!(before.contains("c.convalidated") && !before.contains("conparentid"));
        let after = attach.after.as_ref().map(|c| c.sql.as_str()).unwrap_or("");
        assert!(after.contains("c.conparentid <> 0"));
        assert_eq!(attach.locks[1].mode, LockMode::AccessExclusive);
    }
}
