//! fkctl: remove a PostgreSQL foreign key safely and put it back in an incident.
//!
//! Layout (each folder one job):
//! - `playbook`  — the YAML playbook, parsed and checked, with positions for errors
//! - `sql`       — SQL knowledge: identifiers, FK DDL, the orphan predicate, purge, checks
//! - `connect`   — libpq-style connection strings, pgpass, TLS
//! - `catalog`   — reading the live database (introspection), in one snapshot
//! - `census`    — counting and sampling orphaned rows
//! - `plan`      — the pure planning core: playbook + observed state -> steps
//! - `report`    — what read commands report
//! - `render`    — text renderings of plans and reports
//! - `commands`  — one module per command, the thin shells
//! - `cli`       — argument parsing only
//! - `testkit`   — finding or starting a PostgreSQL for tests and the demo

pub mod catalog;
pub mod census;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod error;
pub mod execute;
pub mod journal;
pub mod model;
pub mod pg;
pub mod plan;
pub mod playbook;
pub mod render;
pub mod report;
pub mod sql;
pub mod testkit;
pub mod tui;
