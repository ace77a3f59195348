//! Constraint kinds. Each folder holds everything fkctl knows about one kind
//! of constraint: its definition (and DDL), the census of rows that violate
//! it, the repair that removes them without losing them (archived purge for
//! foreign keys), its catalog reads, and its plans. The plans belong to the
//! pure planning core: they read only `model` and `crate::plan`'s step types,
//! never a module that talks to a database. `unique/` is the second kind.

pub mod foreign_key;
pub mod unique;
