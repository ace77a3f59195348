//! fkctl: remove a PostgreSQL foreign key safely and put it back in an incident.
//!
//! Layout (each folder one job; README "How fkctl is built" has the data path):
//! - `cli`       — argument parsing only (clap)
//! - `commands`  — one thin shell per command: load, connect, ask the core, run, render
//! - `playbook`  — the YAML playbook, parsed and checked, with positions for errors
//! - `model`     — observed database state as plain data (no I/O)
//! - `catalog`   — reading the live database (introspection) into `model`, in one snapshot
//! - `plan`      — the planning core's shared types: plans, steps, kinds of step (no I/O)
//! - `kinds`     — one folder per constraint kind (foreign_key, unique): definition, violation
//!   census, repair, catalog reads, and its pure plans
//! - `sql`       — SQL knowledge every kind shares (no I/O): quoting, journal DDL, redaction
//! - `execute`   — running steps: lock-timeout retries, blockers, advisory locks, Ctrl-C
//! - `journal`   — runs, steps, snapshots and notes recorded in the target database
//! - `connect`   — libpq-style connection strings, pgpass, TLS, session settings
//! - `pg`        — reading rows without panicking
//! - `census`    — counting and sampling orphaned rows
//! - `report`, `render` — what read commands report, and its text renderings
//! - `publish`   — posting the change request to GitLab or GitHub (blocking HTTP)
//! - `tui`       — prompts and the spinner
//! - `testkit`   — finding or starting a PostgreSQL for tests and the demo

pub mod catalog;
pub mod census;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod error;
pub mod execute;
pub mod fleet;
pub mod journal;
pub mod kinds;
pub mod metrics;
pub mod model;
pub mod pg;
pub mod plan;
pub mod playbook;
pub mod publish;
pub mod render;
pub mod report;
pub mod sql;
pub mod testkit;
pub mod tui;
