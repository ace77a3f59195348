//! SQL knowledge shared by every constraint kind, free of I/O: quoting
//! identifiers, the journal's DDL, redacting other sessions' queries. A kind's
//! own SQL lives with the kind (`kinds/`).

pub mod ident;
pub mod journal;
pub mod operator;
pub mod redact;
