//! Foreign keys: the first constraint kind.
//!
//! - `definition` — the FK as fkctl models it, and its DDL
//! - `violations` — the orphan predicate: exactly the rows VALIDATE would reject
//! - `repair`     — the archive, the one collecting scan, the archived
//!   delete/nullify batches and the restore that puts rows back; `cascade`
//!   in it: the batch that also archives the cascade below the child
//! - `checks`     — catalog checks on the constraint (before and after steps)
//! - `catalog`    — reading the live constraint and its comparisons
//! - `implement`  — what ADD CONSTRAINT would choose, or refuse, when it is absent
//! - `plan`       — drop, rollback and restore plans (pure)
//! - `loose`      — the replacement that does the FK's duty while it is gone:
//!   capture trigger, queue, cleanup batches (SQL and steps; pure)

pub mod catalog;
pub mod checks;
pub mod definition;
pub mod implement;
pub mod loose;
pub mod plan;
pub mod repair;
pub mod violations;
