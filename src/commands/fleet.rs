//! The fleet side of the commands that change or read many databases:
//! confirm once for the whole environment, run each target as its own
//! fkctl process in rollout order (`crate::fleet`), show one table.

use super::drop::Evidence;
use crate::error::{Error, Result};
use crate::fleet::report::{self, field, Column};
use crate::fleet::{self, Rollout, TargetRun};
use crate::playbook::{Environment, Playbook};
use crate::tui;
use std::path::Path;

/// The targets of a fleet environment, or only those named with `--targets`.
pub fn targets(environment: &Environment, only: &[String]) -> Result<Vec<Environment>> {
    let all = environment.databases();
    if only.is_empty() {
        return Ok(all);
    }
    let prefix = format!("{}/", environment.name);
    for name in only {
        if !all
            .iter()
            .any(|t| t.name.strip_prefix(&prefix) == Some(name.as_str()))
        {
            return Err(Error::usage(format!(
                "--targets: {name:?} is not a target of {}; it has: {}",
                environment.name,
                all.iter()
                    .filter_map(|t| t.name.strip_prefix(&prefix))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|t| {
            only.iter()
                .any(|n| t.name.strip_prefix(&prefix) == Some(n.as_str()))
        })
        .collect())
}

fn rollout(environment: &Environment) -> Rollout {
    let fleet = environment.fleet.as_ref();
    Rollout {
        canary: fleet.map_or(0, |f| f.canary),
        concurrency: fleet.map_or(1, |f| f.concurrency),
        stop_on_failure: true,
    }
}

/// `--dsn` overrides, passed on to every target's process.
fn dsn_args(dsn: &[(String, String)]) -> Vec<String> {
    dsn.iter()
        .flat_map(|(name, text)| ["--dsn".to_string(), format!("{name}={text}")])
        .collect()
}

/// One confirmation for the whole environment: its name typed when protected.
pub fn confirm(question: &str, environment: &Environment) -> Result<bool> {
    if environment.protected {
        tui::confirm_by_name(question, &environment.name)
    } else {
        tui::confirm(question)
    }
}

fn plan_line(environment: &Environment, targets: usize) -> String {
    let r = rollout(environment);
    if r.canary > 0 {
        format!(
            "{targets} databases of {}: {} canary first, alone, then at most {} at a time; the first failure starts no other",
            environment.name, r.canary, r.concurrency
        )
    } else {
        format!(
            "{targets} databases of {}, at most {} at a time; the first failure starts no other",
            environment.name, r.concurrency
        )
    }
}

/// `fkctl drop` over a fleet.
pub struct FleetDrop<'a> {
    pub path: &'a Path,
    pub playbook: &'a Playbook,
    pub dsn: &'a [(String, String)],
    pub dry_run: bool,
    pub yes: bool,
    pub out_of_order: Option<&'a str>,
    pub only: &'a [String],
}

impl FleetDrop<'_> {
    pub fn run(&self, environment: &Environment) -> Result<Evidence> {
        let targets = targets(environment, self.only)?;
        crate::say!(
            "\n== {} ({}) ==",
            environment.name,
            plan_line(environment, targets.len())
        );
        if !self.yes && !self.dry_run {
            let question = format!(
                "Drop {} on {}?",
                self.playbook.constraint.name,
                plan_line(environment, targets.len())
            );
            if !confirm(&question, environment)? {
                return Err(Error::declined(format!(
                    "at your request; nothing was changed on {}",
                    environment.name
                )));
            }
        }
        let path = self.path.display().to_string();
        let args = |t: &Environment| {
            let mut a: Vec<String> = [
                "drop",
                path.as_str(),
                "--env",
                t.name.as_str(),
                "--yes",
                "--output",
                "json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if self.dry_run {
                a.push("--dry-run".into());
            }
            if let Some(reason) = self.out_of_order {
                a.extend(["--out-of-order".to_string(), reason.to_string()]);
            }
            a.extend(dsn_args(self.dsn));
            a
        };
        let runs = fleet::run(&targets, &rollout(environment), "drop", &args)?;
        let outcome = |d: &serde_json::Value| field(d, "/environments/0/outcome");
        let orphans = |d: &serde_json::Value| field(d, "/environments/0/orphans");
        let drop_ms = |d: &serde_json::Value| field(d, "/environments/0/drop_ms");
        let retries = |d: &serde_json::Value| field(d, "/environments/0/retries");
        let columns: [Column<'_>; 4] = [
            ("outcome", &outcome),
            ("orphans", &orphans),
            ("drop ms", &drop_ms),
            ("lock retries", &retries),
        ];
        crate::say!(
            "{}",
            report::table(&format!("drop on {}", environment.name), &runs, &columns)
        );
        fleet::outcome("drop", &runs)?;
        let mut evidence = evidence(environment, &runs);
        evidence.targets = Some(report::json("drop", &environment.name, &runs));
        Ok(evidence)
    }
}

/// The fleet's drop as one environment's evidence, for the gate before the next.
fn evidence(environment: &Environment, runs: &[TargetRun]) -> Evidence {
    let count = |outcome: &str| {
        runs.iter()
            .filter(|r| {
                r.document
                    .as_ref()
                    .map(|d| field(d, "/environments/0/outcome"))
                    .as_deref()
                    == Some(outcome)
            })
            .count()
    };
    let orphans: i64 = runs
        .iter()
        .filter_map(|r| r.document.as_ref())
        .filter_map(|d| {
            d.pointer("/environments/0/orphans")
                .and_then(serde_json::Value::as_i64)
        })
        .sum();
    let (dropped, absent, dry) = (count("dropped"), count("already absent"), count("dry run"));
    Evidence {
        environment: environment.name.clone(),
        outcome: if dry > 0 {
            "dry run on every target"
        } else if absent == runs.len() {
            "already absent on every target"
        } else if dropped + absent == runs.len() {
            "dropped on every target"
        } else {
            "done on some targets"
        },
        orphans: Some(orphans),
        ..Evidence::default()
    }
}

fn base_args(command: &str, path: &Path, target: &Environment) -> Vec<String> {
    vec![
        command.to_string(),
        path.display().to_string(),
        "--env".to_string(),
        target.name.clone(),
        "--output".to_string(),
        "json".to_string(),
    ]
}

/// Prints the table (or, with `--output json`, the fleet's document) and
/// turns the worst target outcome into the command's error.
fn finish(
    command: &str,
    environment: &Environment,
    runs: &[TargetRun],
    columns: &[Column<'_>],
    json: bool,
) -> Result<()> {
    if json {
        super::write_json(&report::json(command, &environment.name, runs))?;
    } else {
        crate::say!(
            "{}",
            report::table(&format!("{command} on {}", environment.name), runs, columns)
        );
    }
    fleet::outcome(command, runs)
}

/// `fkctl rollback` over a fleet: one confirmation, then every target's
/// rollback without questions (each still refuses what it always refuses:
/// over max_orphans, policy abort, drift).
pub fn rollback(
    path: &Path,
    playbook: &Playbook,
    environment: &Environment,
    connection: &crate::cli::args::Connection,
    options: &super::rollback::Options,
) -> Result<()> {
    let json = options.output == crate::cli::args::Output::Json;
    if json {
        super::narrate_to_stderr();
    }
    let targets = targets(environment, &options.targets)?;
    crate::say!(
        "\n== rollback on {} ==",
        plan_line(environment, targets.len())
    );
    if !options.yes {
        if !tui::interactive() {
            return Err(Error::usage(
                "fkctl rollback asks before it starts, but there is no terminal to ask on",
            )
            .next(format!(
                "in a script or runbook: fkctl rollback {} --env {} --yes",
                path.display(),
                environment.name
            )));
        }
        let question = format!(
            "Put {} back on {}, purging each target's orphans (archived) without asking again?",
            playbook.constraint.name,
            plan_line(environment, targets.len())
        );
        if !confirm(&question, environment)? {
            return Err(Error::declined(format!(
                "at your request; nothing was changed on {}",
                environment.name
            )));
        }
    }
    crate::execute::interrupt::install();
    let args = |t: &Environment| {
        let mut a = base_args("rollback", path, t);
        a.push("--yes".into());
        if let Some(n) = options.max_orphans {
            a.extend(["--max-orphans".to_string(), n.to_string()]);
        }
        if options.use_playbook_definition {
            a.push("--use-playbook-definition".into());
        }
        a.extend(dsn_args(&connection.dsn));
        a
    };
    let runs = fleet::run(&targets, &rollout(environment), "rollback", &args)?;
    let outcome = |d: &serde_json::Value| field(d, "/outcome");
    let orphans = |d: &serde_json::Value| field(d, "/orphans_found");
    let archived = |d: &serde_json::Value| field(d, "/rows_archived");
    let validated = |d: &serde_json::Value| field(d, "/validated");
    let columns: [Column<'_>; 4] = [
        ("outcome", &outcome),
        ("orphans", &orphans),
        ("archived", &archived),
        ("validated", &validated),
    ];
    finish("rollback", environment, &runs, &columns, json)
}

/// Read-only commands over a fleet (`orphans`, `status`): every target at
/// the fleet's concurrency, no canary (nothing changes).
pub fn read(
    command: &str,
    path: &Path,
    environment: &Environment,
    dsn: &[(String, String)],
    json: bool,
    columns: &[Column<'_>],
) -> Result<()> {
    if json {
        super::narrate_to_stderr();
    }
    let targets = environment.databases();
    let args = |t: &Environment| {
        let mut a = base_args(command, path, t);
        a.extend(dsn_args(dsn));
        a
    };
    let read_all = Rollout {
        canary: 0,
        concurrency: rollout(environment).concurrency.max(4),
        stop_on_failure: false,
    };
    let runs = fleet::run(&targets, &read_all, command, &args)?;
    finish(command, environment, &runs, columns, json)
}

/// `fkctl cleanup --once` over a fleet: every target, the fleet's concurrency.
pub fn cleanup(
    path: &Path,
    environment: &Environment,
    dsn: &[(String, String)],
    json: bool,
) -> Result<()> {
    let handled = |d: &serde_json::Value| field(d, "/keys_done");
    let changed = |d: &serde_json::Value| field(d, "/child_rows_changed");
    let pending = |d: &serde_json::Value| field(d, "/pending_after");
    let columns: [Column<'_>; 3] = [
        ("keys handled", &handled),
        ("rows changed", &changed),
        ("pending", &pending),
    ];
    read("cleanup", path, environment, dsn, json, &columns)
}

/// `fkctl restore --run latest` over a fleet: each database puts back the
/// newest run of its own archive (run ids differ from one database to the
/// next), canary first, then in waves.
pub fn restore(
    path: &Path,
    environment: &Environment,
    connection: &crate::cli::args::Connection,
    run_id: &str,
    options: &super::restore::Options,
) -> Result<()> {
    if run_id != "latest" {
        return Err(Error::usage(format!(
            "--run {run_id}: {} is a fleet, and each of its databases has its own run ids",
            environment.name
        ))
        .next(format!(
            "--run latest puts back each database's newest archived run; or name one database: --env {}/TARGET --run RUN_ID",
            environment.name
        )));
    }
    let json = options.output == crate::cli::args::Output::Json;
    if json {
        super::narrate_to_stderr();
    }
    let targets = environment.databases();
    if !options.yes {
        let question = format!(
            "Put each database's newest archived rows back on {}?",
            plan_line(environment, targets.len())
        );
        if !confirm(&question, environment)? {
            return Err(Error::declined("at your request; nothing was restored"));
        }
    }
    crate::execute::interrupt::install();
    let args = |t: &Environment| {
        let mut a = base_args("restore", path, t);
        a.extend([
            "--run".to_string(),
            "latest".to_string(),
            "--yes".to_string(),
        ]);
        if options.discard_dropped_columns {
            a.push("--discard-dropped-columns".into());
        }
        a.extend(dsn_args(&connection.dsn));
        a
    };
    let runs = fleet::run(&targets, &rollout(environment), "restore", &args)?;
    let outcome = |d: &serde_json::Value| field(d, "/outcome");
    let run = |d: &serde_json::Value| field(d, "/run_id");
    let restored = |d: &serde_json::Value| field(d, "/restored");
    let left = |d: &serde_json::Value| field(d, "/archived_after");
    let columns: [Column<'_>; 4] = [
        ("outcome", &outcome),
        ("run", &run),
        ("restored", &restored),
        ("still archived", &left),
    ];
    finish("restore", environment, &runs, &columns, json)
}
