//! UNIQUE constraints: the second constraint kind.
//!
//! - `definition` — the constraint, the dedupe policy, and their DDL
//! - `violations` — the duplicate census: exactly the rows `CREATE UNIQUE INDEX` would reject
//! - `repair`     — the list of surplus rows and the archived dedupe batches, and their restore
//! - `catalog`    — reading the live constraint, its index and the foreign keys that depend on it
//! - `plan`       — drop and rollback plans (pure)

pub mod catalog;
pub mod checks;
pub mod definition;
pub mod observed;
pub mod plan;
pub mod repair;
pub mod violations;
