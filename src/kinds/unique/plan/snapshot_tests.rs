//! Snapshot tests of the unique plans, from in-memory catalog states.

use super::*;
use crate::kinds::unique::observed::{LiveIndex, LiveUnique};
use crate::model::{PartitionKey, Relation, Server};
use crate::sql::ident::{Ident, QualifiedName};
use crate::sql::operator::Operator;
use std::path::Path;

const PLAYBOOK: &str = "version: 1\nchange: restore-users-email\nsummary: s\nconstraint:\n  kind: unique\n  name: users_email_key\n  table: public.users\n  columns: [tenant_id, email]\nenvironments:\n  - { name: staging, dsn_env: X }\nrollback: { duplicates: archive-delete, keep: { order_by: [-created_at, id] }, batch_size: 500, max_duplicates: 1000 }\n";

fn playbook() -> Playbook {
    crate::playbook::parse_str(PLAYBOOK, Path::new("users.yml")).unwrap_or_else(|e| panic!("{e}"))
}

fn inspection(constraint: UniqueLookup, index: Option<LiveIndex>) -> UniqueInspection {
    UniqueInspection {
        server: Server {
            version: "15.4".into(),
            version_num: 150_004,
            database: "app".into(),
            deadlock_timeout_ms: 1000,
        },
        table: Relation {
            oid: 1,
            name: QualifiedName::parse("public.users").unwrap_or_else(|e| panic!("{e}")),
            kind: "r".into(),
            partitioned: false,
            row_estimate: Some(10),
            total_bytes: 8192,
            partitions: Vec::new(),
            partition_keys: Vec::new(),
        },
        constraint,
        index,
        dependents: Vec::new(),
        cascading: Vec::new(),
        leaves: Vec::new(),
        columns: Vec::new(),
        sessions: Vec::new(),
        watched: vec![1],
    }
}

fn text(plan: &Plan) -> String {
    crate::render::plan::text(plan)
}

#[test]
fn drop_users_email_live() {
    let p = playbook();
    let spec = p
        .unique
        .clone()
        .unwrap_or_else(|| panic!("not a unique playbook"));
    let live = LiveUnique {
        def: spec.def.clone(),
        definition: "UNIQUE (tenant_id, email)".into(),
        index_definition: String::new(),
        index_name: "users_email_key".into(),
        include_columns: 0,
        nondefault_keys: Vec::new(),
    };
    let i = inspection(UniqueLookup::Found(Box::new(live)), None);
    let o = Observed {
        environment: "staging",
        inspection: &i,
    };
    insta::assert_snapshot!(text(&drop_plan(&p, &spec, Some(&o))));
}

#[test]
fn rollback_users_email_from_the_playbook() {
    let p = playbook();
    let spec = p
        .unique
        .clone()
        .unwrap_or_else(|| panic!("not a unique playbook"));
    insta::assert_snapshot!(text(&rollback_plan(&p, &spec, &spec.def, 1000, None)));
}

#[test]
fn rollback_resumes_after_an_invalid_build() {
    let p = playbook();
    let spec = p
        .unique
        .clone()
        .unwrap_or_else(|| panic!("not a unique playbook"));
    let index = LiveIndex {
        on_table: true,
        valid: false,
        unique: true,
        definition:
            "CREATE UNIQUE INDEX users_email_key ON public.users USING btree (tenant_id, email)"
                .into(),
    };
    let i = inspection(UniqueLookup::Absent, Some(index));
    let o = Observed {
        environment: "staging",
        inspection: &i,
    };
    let plan = rollback_plan(&p, &spec, &spec.def, 1000, Some(&o));
    let pending: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.status == Status::Pending)
        .map(|s| s.id)
        .collect();
    assert!(pending.contains(&"drop-invalid-index") && pending.contains(&"build-index"));
}

#[test]
fn rollback_on_a_partitioned_table_builds_per_leaf_then_attaches() {
    let p = playbook();
    let spec = p
        .unique
        .clone()
        .unwrap_or_else(|| panic!("not a unique playbook"));
    let mut i = inspection(UniqueLookup::Absent, None);
    i.table.partitioned = true;
    i.table.kind = "p".into();
    // Partitioned by tenant, NOT NULL: the batches find rows by it too.
    i.table.partition_keys = vec![PartitionKey {
        column: Ident::from_catalog("tenant_id"),
        equality: Operator::default_equality(),
    }];
    i.leaves = vec![
        (
            QualifiedName::parse("public.users_eu").unwrap_or_else(|e| panic!("{e}")),
            false,
        ),
        (
            QualifiedName::parse("public.users_us").unwrap_or_else(|e| panic!("{e}")),
            false,
        ),
    ];
    let o = Observed {
        environment: "staging",
        inspection: &i,
    };
    insta::assert_snapshot!(text(&rollback_plan(&p, &spec, &spec.def, 1000, Some(&o))));
}
