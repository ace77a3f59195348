//! Read-only catalog queries used as pre- and post-checks. They are plain
//! SQL with quoted literals (not parameters) because the same text goes into
//! the change request, where a person may run it by hand in psql.

use super::definition::ForeignKeyDef;
use crate::sql::ident::quote_literal;

fn regclass(fk: &ForeignKeyDef) -> String {
    format!("{}::regclass", quote_literal(&fk.table.quoted()))
}

/// 1 when the foreign key exists on the child table, 0 when it does not.
pub fn constraint_exists_sql(fk: &ForeignKeyDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'f'",
        regclass(fk),
        quote_literal(fk.name.as_str())
    )
}

/// The constraint on the child or any of its partitions (pg_partition_tree
/// lists nothing for an unpartitioned table, hence the table itself too).
pub fn constraint_anywhere_sql(fk: &ForeignKeyDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_constraint WHERE conname = {} AND contype = 'f' AND (conrelid = {table} OR conrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree({table})))",
        quote_literal(fk.name.as_str()),
        table = regclass(fk)
    )
}

/// true when the constraint exists and is validated.
pub fn constraint_validated_sql(fk: &ForeignKeyDef) -> String {
    format!(
        "SELECT coalesce((SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'f'), false)",
        regclass(fk),
        quote_literal(fk.name.as_str())
    )
}

/// The definition as PostgreSQL prints it; run with `search_path = ''` so every name is qualified.
pub fn constraint_definition_sql(fk: &ForeignKeyDef) -> String {
    format!(
        "SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'f'",
        regclass(fk),
        quote_literal(fk.name.as_str())
    )
}

/// How many leaf partitions of the (partitioned) child lack a validated copy
/// of the constraint referencing the parent; with `attached`, a copy that
/// belongs to the constraint on the partitioned table.
pub fn leaves_without_valid_copy_sql(fk: &ForeignKeyDef, attached: bool) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_partition_tree({table}) t WHERE t.isleaf AND t.relid <> {table} AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint c WHERE c.conrelid = t.relid AND c.conname = {name} AND c.contype = 'f' AND c.confrelid = {parent}::regclass AND c.convalidated{attached})",
        table = regclass(fk),
        name = quote_literal(fk.name.as_str()),
        parent = quote_literal(&fk.ref_table.quoted()),
        attached = if attached { " AND c.conparentid <> 0" } else { "" },
    )
}

/// 1 when the constraint exists and is NOT ENFORCED (PostgreSQL 18+ only).
pub fn constraint_not_enforced_sql(fk: &ForeignKeyDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'f' AND NOT conenforced",
        regclass(fk),
        quote_literal(fk.name.as_str())
    )
}
