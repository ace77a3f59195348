//! Observed states written by hand, for tests that plan without a server.
//!
//! Each builder fills an [`Inspection`] the way `catalog::inspect` would for
//! the shipped example schemas (`examples/schemas/`): relation names as
//! `regclass::text` prints them under `search_path = ''`, `format_type`
//! column types, and an [`OrphanQuery`] assembled exactly as `inspect`
//! assembles it: from the live constraint's keys when it exists, otherwise
//! from the comparisons ADD CONSTRAINT would choose (`catalog::implement`).
//!
//! Key comparisons follow the catalog (`catalog::constraint::KEYS_SQL`): the
//! operand casts appear only where the equality operator's input type differs
//! from the column's. Two int4 columns, two int8 columns or two text columns
//! with the same collation compare with no cast; an int4 child against an int8
//! parent also needs none (the integer family's cross-type `int8 = int4` is
//! chosen); a varchar child against a text parent is compared with `text = text`,
//! so the child operand is cast to `pg_catalog.text`.

use super::{
    Column, ConstraintCopy, DependentKey, IndexInfo, Inspection, Leaf, LeafState, LiveConstraint,
    Lookup, PartitionKey, Relation, Server, TableColumn,
};
use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef};
use crate::kinds::foreign_key::violations::{KeyComparison, Operator, OrphanQuery};
use crate::model::Filling;
use crate::playbook::Playbook;
use crate::sql::ident::{Ident, QualifiedName};
use std::path::Path;

/// The seed case: `public.ci_pipeline_chat_data(chat_name_id)` -> `public.chat_names(id)`.
pub const SEED_PLAYBOOK: &str =
    include_str!("../../playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml");
/// A two-column MATCH FULL key with quoted mixed-case names in schema "Billing".
pub const BILLING_PLAYBOOK: &str = include_str!("../../playbooks/billing-invoice-lines.yml");
/// A range-partitioned child, `public.payment` -> `public.customer`.
pub const PAYMENT_PLAYBOOK: &str = include_str!("../../playbooks/payment-customer-partitioned.yml");
/// ON DELETE SET NULL to a unique column, deferrable, rollback by nullify.
pub const SESSIONS_PLAYBOOK: &str = include_str!("../../playbooks/sessions-users-set-null.yml");

/// PostgreSQL 15, the last majors that cannot add NOT VALID to a partitioned table.
pub const PG15: i32 = 150000;
/// PostgreSQL 16.
pub const PG16: i32 = 160000;
/// PostgreSQL 18: NOT VALID on partitioned tables, NOT ENFORCED constraints.
pub const PG18: i32 = 180000;

/// Parses playbook text as `fkctl` would read it from `x.yml`.
pub fn playbook(text: &str) -> Playbook {
    match crate::playbook::parse_str(text, Path::new("x.yml")) {
        Ok(p) => p,
        Err(e) => panic!("fixture playbook does not parse: {e}\n{text}"),
    }
}

/// `text` with its top-level `rollback:` line replaced by `rollback: <settings>`.
pub fn with_rollback(text: &str, settings: &str) -> String {
    let mut replaced = false;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("rollback:") {
                replaced = true;
                format!("rollback: {settings}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(replaced, "the playbook has no top-level rollback: line");
    out.join("\n") + "\n"
}

fn name(text: &str) -> QualifiedName {
    match QualifiedName::parse(text) {
        Ok(n) => n,
        Err(e) => panic!("bad fixture name {text:?}: {e}"),
    }
}

fn ident(text: &str) -> Ident {
    Ident::from_catalog(text)
}

pub fn server(version_num: i32) -> Server {
    Server {
        version: format!("{}.{}", version_num / 10000, version_num % 10000),
        version_num,
        database: "app".to_string(),
        deadlock_timeout_ms: 1000,
    }
}

/// An ordinary table (`relkind` r).
pub fn table(oid: u32, qualified: &str, rows: i64) -> Relation {
    Relation {
        oid,
        name: name(qualified),
        kind: "r".to_string(),
        partitioned: false,
        row_estimate: Some(rows),
        total_bytes: rows * 128,
        partitions: Vec::new(),
        partition_keys: Vec::new(),
    }
}

/// A partitioned table (`relkind` p) with its leaf partitions, as `regclass::text`.
pub fn partitioned_table(oid: u32, qualified: &str, rows: i64, leaves: &[&str]) -> Relation {
    Relation {
        kind: "p".to_string(),
        partitioned: true,
        partitions: leaves.iter().map(|l| l.to_string()).collect(),
        ..table(oid, qualified, rows)
    }
}

/// A column of a type without collation (integers, ...).
pub fn column(attnum: i16, column: &str, type_name: &str, not_null: bool) -> Column {
    Column {
        attnum,
        name: ident(column),
        type_name: type_name.to_string(),
        not_null,
        collation: None,
    }
}

/// A column of a collatable type, with the database's default collation.
pub fn text_column(attnum: i16, column: &str, type_name: &str, not_null: bool) -> Column {
    Column {
        collation: Some(QualifiedName::new(ident("pg_catalog"), ident("default"))),
        ..self::column(attnum, column, type_name, not_null)
    }
}

/// `pk.<pk> OPERATOR("pg_catalog".=) fk.<fk>`: same types (or a cross-type
/// operator of the index's family), same collation.
pub fn key(fk_column: &str, pk_column: &str) -> KeyComparison {
    KeyComparison {
        fk_column: ident(fk_column),
        pk_column: ident(pk_column),
        operator: Operator::default_equality(),
        collation: None,
    }
}

/// As [`key`], with the child operand cast to `schema.type` (the operator's right input).
pub fn key_fk_cast(
    fk_column: &str,
    pk_column: &str,
    schema: &str,
    type_name: &str,
) -> KeyComparison {
    let mut k = key(fk_column, pk_column);
    k.operator.fk_cast = Some(QualifiedName::new(ident(schema), ident(type_name)));
    k
}

/// What the catalog holds under the playbook's constraint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Present and validated.
    Valid,
    /// Present, `convalidated` false (added NOT VALID, not validated yet).
    NotValid,
    /// Present, `conenforced` false (PostgreSQL 18; such a constraint is also not validated).
    NotEnforced,
    /// Not in the catalog.
    Absent,
}

/// The live constraint as `catalog::constraint::lookup` reads it back.
/// `definition` is what `pg_get_constraintdef` prints for a valid, enforced one.
pub fn live(
    fk: &ForeignKeyDef,
    seen: Seen,
    keys: &[KeyComparison],
    definition: &str,
    parent_index: &str,
    copies: Vec<ConstraintCopy>,
) -> Lookup {
    let (validated, enforced, suffix) = match seen {
        Seen::Valid => (true, true, ""),
        Seen::NotValid => (false, true, " NOT VALID"),
        Seen::NotEnforced => (false, false, " NOT ENFORCED"),
        Seen::Absent => return Lookup::Absent,
    };
    Lookup::Found(Box::new(LiveConstraint {
        oid: 90001,
        definition: fk.clone(),
        validated,
        enforced,
        pg_definition: format!("{definition}{suffix}"),
        parent_index: Some(parent_index.to_string()),
        on_delete_set_columns: Vec::new(),
        keys: keys.to_vec(),
        copies,
    }))
}

/// The tables around the foreign key and how its keys compare.
pub struct Tables {
    pub child: Relation,
    pub parent: Relation,
    pub child_columns: Vec<Column>,
    pub parent_columns: Vec<Column>,
    /// How each key column is compared: the live constraint's `conpfeqop`, or
    /// what ADD CONSTRAINT would choose (the same for these schemas).
    pub keys: Vec<KeyComparison>,
    pub child_indexes: Vec<IndexInfo>,
    pub child_identity: Option<Vec<Ident>>,
    pub referencing_child: Vec<DependentKey>,
}

/// The orphan query exactly as `catalog::inspect` assembles it.
pub fn orphan_query(
    fk: &ForeignKeyDef,
    child: &Relation,
    parent: &Relation,
    lookup: &Lookup,
    would_add: &[KeyComparison],
) -> OrphanQuery {
    let mut q = OrphanQuery::from_definition(fk);
    q.child_partitioned = child.partitioned;
    q.parent_partitioned = parent.partitioned;
    q.partition_keys = child.partition_keys.clone();
    match lookup {
        Lookup::Found(live) => {
            q.match_type = live.definition.match_type;
            q.parent = live.definition.ref_table.clone();
            q.keys = live.keys.clone();
        }
        Lookup::Absent | Lookup::NotAForeignKey { .. } => q.keys = would_add.to_vec(),
    }
    q
}

/// Assembles an inspection (no sessions: nobody else is on the tables).
pub fn inspection(
    fk: &ForeignKeyDef,
    version_num: i32,
    tables: Tables,
    constraint: Lookup,
    leaves: Vec<Leaf>,
) -> Inspection {
    let orphan_query = orphan_query(fk, &tables.child, &tables.parent, &constraint, &tables.keys);
    let mut watched = vec![tables.child.oid, tables.parent.oid];
    watched.extend((1..=tables.child.partitions.len() as u32).map(|i| tables.child.oid + i));
    watched.sort_unstable();
    let loose = crate::model::LooseState {
        parent_tables: vec![tables.parent.name.clone()],
        ..crate::model::LooseState::default()
    };
    Inspection {
        server: server(version_num),
        child: tables.child,
        parent: tables.parent,
        child_columns: tables.child_columns,
        parent_columns: tables.parent_columns,
        constraint,
        referencing_child: tables.referencing_child,
        child_key_updates: Vec::new(),
        cascade: crate::model::CascadeTree {
            track_counts: true,
            ..Default::default()
        },
        child_indexes: tables.child_indexes,
        child_identity: tables.child_identity,
        child_not_copyable: Vec::new(),
        leaves,
        sessions: Vec::new(),
        watched,
        orphan_query,
        loose,
        citus_tables: Vec::new(),
        all_tables_publications: Vec::new(),
    }
}

fn index(name: &str, definition: &str) -> IndexInfo {
    IndexInfo {
        name: name.to_string(),
        definition: definition.to_string(),
        valid: true,
        covers_foreign_key: true,
    }
}

// ---------------------------------------------------------------- seed case

pub fn seed_playbook() -> Playbook {
    playbook(SEED_PLAYBOOK)
}

/// The seed playbook with other rollback settings (e.g. `{ orphans: abort }`).
pub fn seed_playbook_with_rollback(settings: &str) -> Playbook {
    playbook(&with_rollback(SEED_PLAYBOOK, settings))
}

fn seed_tables() -> Tables {
    Tables {
        child: table(16420, "public.ci_pipeline_chat_data", 20000),
        parent: table(16390, "public.chat_names", 2000),
        child_columns: vec![column(3, "chat_name_id", "bigint", true)],
        parent_columns: vec![column(1, "id", "bigint", true)],
        keys: vec![key("chat_name_id", "id")],
        child_indexes: vec![index(
            "public.index_ci_pipeline_chat_data_on_chat_name_id",
            "CREATE INDEX index_ci_pipeline_chat_data_on_chat_name_id ON public.ci_pipeline_chat_data USING btree (chat_name_id)",
        )],
        child_identity: Some(vec![ident("id")]),
        referencing_child: Vec::new(),
    }
}

/// `examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql`, with
/// the constraint as `seen` (the live definition is the playbook's).
pub fn seed(playbook: &Playbook, seen: Seen, version_num: i32) -> Inspection {
    assert!(
        seen != Seen::NotEnforced || version_num >= PG18,
        "NOT ENFORCED needs PostgreSQL 18"
    );
    seed_with_live(playbook, &playbook.constraint, seen, version_num)
}

/// The seed schema with a live constraint that differs from the playbook:
/// `ON DELETE NO ACTION` where the playbook says cascade.
pub fn seed_drifted(playbook: &Playbook) -> Inspection {
    let mut live = playbook.constraint.clone();
    live.on_delete = FkAction::NoAction;
    seed_with_live(playbook, &live, Seen::Valid, PG16)
}

fn seed_with_live(
    playbook: &Playbook,
    live_fk: &ForeignKeyDef,
    seen: Seen,
    version_num: i32,
) -> Inspection {
    let tables = seed_tables();
    let on_delete = match live_fk.on_delete {
        FkAction::NoAction => String::new(),
        other => format!(" ON DELETE {}", other.sql()),
    };
    let constraint = live(
        live_fk,
        seen,
        &tables.keys,
        &format!("FOREIGN KEY (chat_name_id) REFERENCES public.chat_names(id){on_delete}"),
        "public.chat_names_pkey",
        Vec::new(),
    );
    inspection(
        &playbook.constraint,
        version_num,
        tables,
        constraint,
        Vec::new(),
    )
}

/// The seed table's live columns, as `catalog::relations::table_columns`
/// reads them, with one column added since the rollback archived its rows.
pub fn seed_table_columns() -> Vec<TableColumn> {
    let c = |name: &str, type_name: &str, not_null: bool, has_default: bool| TableColumn {
        name: ident(name),
        type_name: type_name.to_string(),
        not_null,
        has_default,
        filling: Filling::Plain,
    };
    vec![
        c("id", "bigint", true, true),
        c("pipeline_id", "bigint", true, false),
        c("chat_name_id", "bigint", true, false),
        c("response_url", "text", true, false),
        c("delivered_at", "timestamp with time zone", false, false),
    ]
}

// ---------------------------------------------------------- billing (MATCH FULL)

pub fn billing_playbook() -> Playbook {
    playbook(BILLING_PLAYBOOK)
}

/// `examples/schemas/billing-invoice-lines.sql`: int4 and text key columns,
/// each compared with its own type's equality, no casts, same collation.
pub fn billing(playbook: &Playbook, seen: Seen) -> Inspection {
    let fk = &playbook.constraint;
    let tables = Tables {
        child: table(17010, r#""Billing"."Invoice Lines""#, 30000),
        parent: table(17000, r#""Billing"."Invoices""#, 4000),
        child_columns: vec![
            column(2, "tenant_id", "integer", false),
            text_column(3, "Invoice No", "text", false),
        ],
        parent_columns: vec![
            column(1, "tenant_id", "integer", true),
            text_column(2, "No", "text", true),
        ],
        keys: vec![key("tenant_id", "tenant_id"), key("Invoice No", "No")],
        child_indexes: vec![index(
            r#""Billing"."Invoice Lines by invoice""#,
            r#"CREATE INDEX "Invoice Lines by invoice" ON "Billing"."Invoice Lines" USING btree (tenant_id, "Invoice No")"#,
        )],
        child_identity: Some(vec![ident("Line Id")]),
        referencing_child: Vec::new(),
    };
    let constraint = live(
        fk,
        seen,
        &tables.keys,
        r#"FOREIGN KEY (tenant_id, "Invoice No") REFERENCES "Billing"."Invoices"(tenant_id, "No") MATCH FULL ON UPDATE CASCADE ON DELETE RESTRICT"#,
        r#""Billing"."Invoices_pkey""#,
        Vec::new(),
    );
    inspection(fk, PG16, tables, constraint, Vec::new())
}

// ------------------------------------------------ sessions (SET NULL, nullify)

pub fn sessions_playbook() -> Playbook {
    playbook(SESSIONS_PLAYBOOK)
}

/// `examples/schemas/sessions-users-set-null.sql`, except that
/// `auth.sessions.user_email` is `varchar(320)` while `auth.users.email` is
/// text: the key is compared with `text = text`, the child side cast.
pub fn sessions_varchar_key(playbook: &Playbook, seen: Seen) -> Inspection {
    let fk = &playbook.constraint;
    let tables = Tables {
        child: table(18020, "auth.sessions", 20000),
        parent: table(18010, "auth.users", 3000),
        child_columns: vec![text_column(
            2,
            "user_email",
            "character varying(320)",
            false,
        )],
        parent_columns: vec![text_column(2, "email", "text", true)],
        keys: vec![key_fk_cast("user_email", "email", "pg_catalog", "text")],
        child_indexes: Vec::new(),
        child_identity: Some(vec![ident("id")]),
        referencing_child: Vec::new(),
    };
    let constraint = live(
        fk,
        seen,
        &tables.keys,
        "FOREIGN KEY (user_email) REFERENCES auth.users(email) ON UPDATE CASCADE ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED",
        "auth.users_email_key",
        Vec::new(),
    );
    inspection(fk, PG16, tables, constraint, Vec::new())
}

// ------------------------------------------------------ partitioned (payment)

pub const PAYMENT_LEAVES: [&str; 3] = [
    "public.payment_2026_09",
    "public.payment_2026_10",
    "public.payment_2026_11",
];

pub fn payment_playbook() -> Playbook {
    playbook(PAYMENT_PLAYBOOK)
}

/// One leaf of `public.payment` as `catalog::partitions::leaves` reads it.
pub fn payment_leaf(i: usize, state: LeafState, attached: bool) -> Leaf {
    Leaf {
        table: name(PAYMENT_LEAVES[i]),
        state,
        attached,
    }
}

/// `examples/schemas/payment-customer-partitioned.sql`: `public.payment`
/// partitioned by month into three leaves, int4 keys on both sides. `seen` is
/// the constraint on the partitioned table, `leaves` each leaf's copy.
pub fn payment(playbook: &Playbook, version_num: i32, seen: Seen, leaves: Vec<Leaf>) -> Inspection {
    assert_eq!(leaves.len(), PAYMENT_LEAVES.len(), "one state per leaf");
    assert!(
        seen != Seen::NotValid || version_num >= PG18,
        "PostgreSQL < 18 cannot hold a NOT VALID foreign key on a partitioned table"
    );
    let fk = &playbook.constraint;
    let tables = Tables {
        child: Relation {
            partition_keys: vec![PartitionKey {
                column: ident("paid_at"),
                equality: Operator::default_equality(),
            }],
            ..partitioned_table(17200, "public.payment", 60000, &PAYMENT_LEAVES)
        },
        parent: table(17100, "public.customer", 5000),
        child_columns: vec![column(2, "customer_id", "integer", true)],
        parent_columns: vec![column(1, "customer_id", "integer", true)],
        keys: vec![key("customer_id", "customer_id")],
        child_indexes: vec![index(
            "public.payment_customer_id_idx",
            "CREATE INDEX payment_customer_id_idx ON ONLY public.payment USING btree (customer_id)",
        )],
        child_identity: Some(vec![ident("payment_id"), ident("paid_at")]),
        referencing_child: Vec::new(),
    };
    let copies = leaves
        .iter()
        .filter(|l| l.attached)
        .map(|l| ConstraintCopy {
            table: l.table.display(),
            references: "public.customer".to_string(),
            validated: l.state == LeafState::Valid,
        })
        .collect();
    let constraint = live(
        fk,
        seen,
        &tables.keys,
        "FOREIGN KEY (customer_id) REFERENCES public.customer(customer_id)",
        "public.customer_pkey",
        copies,
    );
    inspection(fk, version_num, tables, constraint, leaves)
}

/// Every leaf in `state`, attached or not.
pub fn payment_leaves(state: &LeafState, attached: bool) -> Vec<Leaf> {
    (0..PAYMENT_LEAVES.len())
        .map(|i| payment_leaf(i, state.clone(), attached))
        .collect()
}

// ------------------------------------------- seed with a cascade tree below

/// The seed schema (constraint absent) with a tree below the child:
/// `chat_data_notes` (ON DELETE CASCADE, partitioned), under it
/// `note_reactions` (ON DELETE CASCADE), `chat_data_watchers` (ON DELETE
/// SET NULL) and `chat_data_subscriptions` (ON DELETE SET DEFAULT), each
/// with primary key `id`.
pub fn seed_with_cascade(playbook: &Playbook) -> Inspection {
    use crate::kinds::foreign_key::definition::MatchType;
    use crate::model::{CascadeLevel, CascadeTree};
    let level = |table: &str, constraint: &str, references: &str, column: &str| CascadeLevel {
        oid: 0,
        constraint: ident(constraint),
        table: name(table),
        partitioned: false,
        references: name(references),
        above: None,
        depth: 1,
        on_delete: FkAction::Cascade,
        match_type: MatchType::Simple,
        keys: vec![key(column, "id")],
        set_columns: Vec::new(),
        identity: Some(vec![ident("id")]),
        copyable: true,
    };
    let mut i = seed(playbook, Seen::Absent, PG16);
    i.cascade = CascadeTree {
        levels: vec![
            CascadeLevel {
                partitioned: true,
                ..level(
                    "public.chat_data_notes",
                    "fk_notes_chat_data",
                    "public.ci_pipeline_chat_data",
                    "chat_data_id",
                )
            },
            CascadeLevel {
                on_delete: FkAction::SetNull,
                ..level(
                    "public.chat_data_watchers",
                    "fk_watchers_chat_data",
                    "public.ci_pipeline_chat_data",
                    "chat_data_id",
                )
            },
            CascadeLevel {
                on_delete: FkAction::SetDefault,
                ..level(
                    "public.chat_data_subscriptions",
                    "fk_subscriptions_chat_data",
                    "public.ci_pipeline_chat_data",
                    "chat_data_id",
                )
            },
            CascadeLevel {
                above: Some(0),
                depth: 2,
                ..level(
                    "public.note_reactions",
                    "fk_reactions_notes",
                    "public.chat_data_notes",
                    "note_id",
                )
            },
        ],
        problems: Vec::new(),
        track_counts: true,
    };
    i
}
