//! Recording runs and steps, and the definition snapshot a rollback restores.
//!
//! Journal rows are written in their own short autocommit statements, outside
//! the step transactions: a step that rolls back still leaves its record, and
//! a run killed mid-step leaves a step with no outcome, which the next run and
//! `fkctl status` report as interrupted.

pub mod archive;

use crate::error::{Error, Result};
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::pg::Cell;
use crate::sql::ident::Ident;
use crate::sql::journal::{self as sql, table};
use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;

/// Who runs fkctl, for the journal: `user@host`. The person behind `sudo`
/// first ($SUDO_USER; sudo sets $USER to the target user), then $USER or
/// $LOGNAME, else the effective uid's name, read from the password database
/// in-process (spawning `id` cost about 20 ms a run).
pub fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(crate::connect::os_user)
        .unwrap_or_else(|| "unknown".to_string());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string());
    format!("{user}@{host}")
}

pub fn new_run_id(environment: &str) -> String {
    let now = Utc::now();
    format!(
        "{}-{environment}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id() & 0xffff
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub definition: String,
    pub definition_json: serde_json::Value,
    pub run_id: String,
    pub taken_at: String,
}

impl Snapshot {
    /// The recorded definition as fkctl's own model.
    pub fn foreign_key(&self) -> Option<ForeignKeyDef> {
        serde_json::from_value(self.definition_json.clone()).ok()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub operation: String,
    pub operator: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// None while running, or when the run was killed.
    pub outcome: Option<String>,
    pub message: Option<String>,
    /// The operator's stated reason for an exception (e.g. --out-of-order).
    pub note: Option<String>,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub retries: i32,
    pub blockers: Option<String>,
    pub detail: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn db_err(sql: &str) -> impl Fn(postgres::Error) -> Error + '_ {
    move |e| Error::from_postgres(&e, sql).with("step", "record the run in fkctl's journal")
}

/// One run being recorded.
pub struct Run {
    pub id: String,
    schema: Ident,
}

pub struct Journal {
    schema: Ident,
}

impl Journal {
    pub fn new(schema: &Ident) -> Journal {
        Journal {
            schema: schema.clone(),
        }
    }

    pub fn exists(&self, client: &mut Client) -> Result<bool> {
        let q = sql::exists_sql();
        client
            .query_one(q, &[&self.schema.as_str()])
            .map_err(db_err(q))?
            .cell(0, q)
    }

    pub fn ensure(&self, client: &mut Client) -> Result<()> {
        // One read instead of five DDL statements (each taking catalog locks)
        // on every run once the journal exists.
        let q = sql::complete_sql();
        let complete: bool = crate::pg::query_scalar(client, q, &[&self.schema.as_str()])?;
        if complete {
            return Ok(());
        }
        for statement in sql::create_sql(&self.schema) {
            client
                .batch_execute(&statement)
                .map_err(|e| {
                    Error::from_postgres(&e, &statement)
                        .with("step", "create fkctl's journal")
                        .next(format!("fkctl needs CREATE on the database (or an existing schema {} it can write to); see Privileges in the README", self.schema))
                })?;
        }
        Ok(())
    }

    pub fn start_run(
        &self,
        client: &mut Client,
        change: &str,
        operation: &str,
        environment: &str,
        fk: &ForeignKeyDef,
    ) -> Result<Run> {
        let id = new_run_id(environment);
        // Callers hold the per-change advisory lock, so no other fkctl is
        // running this change here: a run without an outcome was killed or
        // lost its connection. Say so, rather than "unfinished" forever.
        let abandoned = format!(
            "abandoned: ended without an outcome (killed or disconnected); run {id} took over"
        );
        let q = format!(
            "UPDATE {} SET outcome = 'abandoned', message = $3 WHERE change = $1 AND environment = $2 AND outcome IS NULL",
            table(&self.schema, "runs")
        );
        client
            .execute(q.as_str(), &[&change, &environment, &abandoned])
            .map_err(db_err(&q))?;
        let q = format!(
            "UPDATE {steps} SET outcome = 'abandoned' WHERE outcome IS NULL AND run_id IN (SELECT run_id FROM {runs} WHERE outcome = 'abandoned')",
            steps = table(&self.schema, "steps"),
            runs = table(&self.schema, "runs")
        );
        client.execute(q.as_str(), &[]).map_err(db_err(&q))?;
        let q = format!(
            "INSERT INTO {} (run_id, change, operation, environment, constraint_name, table_name, operator, fkctl_version, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            table(&self.schema, "runs")
        );
        client
            .execute(
                q.as_str(),
                &[
                    &id,
                    &change,
                    &operation,
                    &environment,
                    &fk.name.as_str(),
                    &fk.table.display(),
                    &operator(),
                    &env!("CARGO_PKG_VERSION"),
                    &Utc::now(),
                ],
            )
            .map_err(db_err(&q))?;
        Ok(Run {
            id,
            schema: self.schema.clone(),
        })
    }

    pub fn snapshot(
        &self,
        client: &mut Client,
        change: &str,
        fk: &ForeignKeyDef,
    ) -> Result<Option<Snapshot>> {
        if !self.exists(client)? {
            return Ok(None);
        }
        let q = format!(
            "SELECT definition, definition_json, run_id, taken_at FROM {} WHERE change = $1 AND table_name = $2 AND constraint_name = $3",
            table(&self.schema, "snapshots")
        );
        let rows = client
            .query(
                q.as_str(),
                &[&change, &fk.table.display(), &fk.name.as_str()],
            )
            .map_err(db_err(&q))?;
        rows.first()
            .map(|r| {
                Ok(Snapshot {
                    definition: r.cell(0, &q)?,
                    definition_json: r.cell(1, &q)?,
                    run_id: r.cell(2, &q)?,
                    taken_at: rfc3339(r.cell(3, &q)?),
                })
            })
            .transpose()
    }

    /// The latest runs of this change in this database, newest first, with their steps.
    pub fn recent_runs(
        &self,
        client: &mut Client,
        change: &str,
        limit: i64,
    ) -> Result<Vec<RunRecord>> {
        if !self.exists(client)? {
            return Ok(Vec::new());
        }
        let q = format!(
            // to_jsonb: journals written by an older fkctl have no note column yet.
            "SELECT run_id, operation, operator, started_at, finished_at, outcome, message, to_jsonb(r) ->> 'note' FROM {} r WHERE change = $1 ORDER BY started_at DESC LIMIT $2",
            table(&self.schema, "runs")
        );
        let rows = client
            .query(q.as_str(), &[&change, &limit])
            .map_err(db_err(&q))?;
        let steps_q = format!(
            "SELECT step, started_at, finished_at, outcome, retries, blockers, detail FROM {} WHERE run_id = $1 ORDER BY id",
            table(&self.schema, "steps")
        );
        let mut runs = Vec::new();
        for r in rows {
            let run_id: String = r.cell(0, &q)?;
            let steps = client
                .query(steps_q.as_str(), &[&run_id])
                .map_err(db_err(&steps_q))?
                .iter()
                .map(|s| {
                    let sql = steps_q.as_str();
                    Ok(StepRecord {
                        step: s.cell(0, sql)?,
                        started_at: rfc3339(s.cell(1, sql)?),
                        finished_at: s.cell::<Option<DateTime<Utc>>>(2, sql)?.map(rfc3339),
                        outcome: s.cell(3, sql)?,
                        retries: s.cell(4, sql)?,
                        blockers: s.cell(5, sql)?,
                        detail: s.cell(6, sql)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            runs.push(RunRecord {
                run_id,
                operation: r.cell(1, &q)?,
                operator: r.cell(2, &q)?,
                started_at: rfc3339(r.cell(3, &q)?),
                finished_at: r.cell::<Option<DateTime<Utc>>>(4, &q)?.map(rfc3339),
                outcome: r.cell(5, &q)?,
                message: r.cell(6, &q)?,
                note: r.cell(7, &q)?,
                steps,
            });
        }
        Ok(runs)
    }
}

/// A step being recorded: its row is written when it starts.
pub struct StepEntry {
    id: i64,
}

impl Run {
    pub fn step_started(
        &self,
        client: &mut Client,
        step: &str,
        sql_text: &str,
    ) -> Result<StepEntry> {
        let q = format!(
            "INSERT INTO {} (run_id, step, sql, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
            table(&self.schema, "steps")
        );
        let row = client
            .query_one(q.as_str(), &[&self.id, &step, &sql_text, &Utc::now()])
            .map_err(db_err(&q))?;
        Ok(StepEntry {
            id: row.cell(0, &q)?,
        })
    }

    pub fn step_finished(
        &self,
        client: &mut Client,
        entry: &StepEntry,
        outcome: &str,
        retries: u32,
        blockers: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let q = format!(
            "UPDATE {} SET finished_at = $2, outcome = $3, retries = $4, blockers = $5, detail = $6 WHERE id = $1",
            table(&self.schema, "steps")
        );
        let retries = i32::try_from(retries).unwrap_or(i32::MAX);
        client
            .execute(
                q.as_str(),
                &[
                    &entry.id,
                    &Utc::now(),
                    &outcome,
                    &retries,
                    &blockers,
                    &detail,
                ],
            )
            .map_err(db_err(&q))?;
        Ok(())
    }

    /// Why the operator ran this the way they did (e.g. out of rollout order).
    pub fn note(&self, client: &mut Client, note: &str) -> Result<()> {
        let q = format!(
            "UPDATE {} SET note = $2 WHERE run_id = $1",
            table(&self.schema, "runs")
        );
        client
            .execute(q.as_str(), &[&self.id, &note])
            .map_err(db_err(&q))?;
        Ok(())
    }

    pub fn finish(&self, client: &mut Client, outcome: &str, message: Option<&str>) -> Result<()> {
        let q = format!(
            "UPDATE {} SET finished_at = $2, outcome = $3, message = $4 WHERE run_id = $1",
            table(&self.schema, "runs")
        );
        client
            .execute(q.as_str(), &[&self.id, &Utc::now(), &outcome, &message])
            .map_err(db_err(&q))?;
        Ok(())
    }

    pub fn save_snapshot(
        &self,
        client: &mut Client,
        change: &str,
        fk: &ForeignKeyDef,
        definition: &str,
    ) -> Result<()> {
        let json = serde_json::to_value(fk)
            .map_err(|e| Error::internal(format!("cannot encode the snapshot: {e}")))?;
        self.save_snapshot_json(client, change, &fk.table, &fk.name, definition, &json)
    }

    /// The snapshot of any constraint kind: its live definition and fkctl's JSON form of it.
    pub fn save_snapshot_json(
        &self,
        client: &mut Client,
        change: &str,
        table_name: &crate::sql::ident::QualifiedName,
        constraint: &Ident,
        definition: &str,
        json: &serde_json::Value,
    ) -> Result<()> {
        let q = format!(
            "INSERT INTO {} (change, table_name, constraint_name, definition, definition_json, run_id, taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (change, table_name, constraint_name) DO UPDATE SET definition = EXCLUDED.definition, definition_json = EXCLUDED.definition_json, run_id = EXCLUDED.run_id, taken_at = EXCLUDED.taken_at",
            table(&self.schema, "snapshots")
        );
        client
            .execute(
                q.as_str(),
                &[
                    &change,
                    &table_name.display(),
                    &constraint.as_str(),
                    &definition,
                    json,
                    &self.id,
                    &Utc::now(),
                ],
            )
            .map_err(db_err(&q))?;
        Ok(())
    }
}

/// Records a step's start and end in the journal around `work`.
pub fn record_step<T>(
    client: &mut Client,
    run: Option<&Run>,
    step: &crate::plan::Step,
    work: impl FnOnce(&mut Client) -> Result<(T, u32, Vec<String>, Option<String>)>,
) -> Result<T> {
    let sql = step
        .before
        .iter()
        .map(|c| c.sql.clone())
        .chain(step.statements.iter().cloned())
        .collect::<Vec<_>>()
        .join(";\n");
    let entry = match run {
        Some(r) => Some(r.step_started(client, step.id, &sql)?),
        None => None,
    };
    let result = work(client);
    if let (Some(r), Some(entry)) = (run, &entry) {
        let (outcome, retries, blockers, detail) = match &result {
            Ok((_, retries, blockers, detail)) => (
                "ok".to_string(),
                *retries,
                blockers.join("\n"),
                detail.clone(),
            ),
            Err(e) => {
                let context = |label: &str| {
                    e.context
                        .iter()
                        .filter(|(l, _)| l == label)
                        .map(|(_, t)| t.clone())
                        .collect::<Vec<_>>()
                };
                let retries = context("retries")
                    .first()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (
                    format!("failed: {}", e.message),
                    retries,
                    context("blocked by").join("\n"),
                    Some(e.to_string()),
                )
            }
        };
        let blockers = (!blockers.is_empty()).then_some(blockers);
        // Best effort on failure: the connection may be gone; the next run reads the catalog anyway.
        let written = r.step_finished(
            client,
            entry,
            &outcome,
            retries,
            blockers.as_deref(),
            detail.as_deref(),
        );
        if result.is_ok() {
            written?;
        }
    }
    result.map(|(value, ..)| value)
}
