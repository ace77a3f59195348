//! SQL knowledge, free of I/O: every statement fkctl runs is built here.

pub mod checks;
pub mod foreign_key;
pub mod ident;
pub mod journal;
pub mod orphans;
pub mod purge;
pub mod redact;
