//! The read commands for a unique constraint: inspect, the duplicate census
//! (`fkctl orphans`, alias `duplicates`), plan, status and the change request.

use super::Session;
use crate::cli::args::Output;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::kinds::unique::observed::{UniqueInspection, UniqueLookup};
use crate::kinds::unique::plan::{self as uplan, Observed};
use crate::kinds::unique::violations::DuplicateQuery;
use crate::pg::Cell;
use crate::playbook;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct InspectReport<'a> {
    environment: &'a str,
    kind: &'static str,
    /// valid (present; a unique constraint is always validated), absent, or other-kind.
    state: &'static str,
    inspection: &'a UniqueInspection,
    drift: Vec<crate::plan::Drift>,
    what_stops: String,
}

pub fn inspect(path: &Path, env: &str, dsn: &[(String, String)], output: Output) -> Result<()> {
    let mut session = Session::open(path, env, dsn)?;
    let inspection = session.inspect("inspect")?;
    let def = &session.spec.def;
    let drift = inspection
        .live()
        .map(|l| uplan::drift(def, &l.def))
        .unwrap_or_default();
    let report = InspectReport {
        environment: session.env(),
        kind: "unique",
        state: match inspection.constraint {
            UniqueLookup::Found(_) => "valid",
            UniqueLookup::Absent => "absent",
            UniqueLookup::OtherKind(_) => "other-kind",
        },
        inspection: &inspection,
        drift,
        what_stops: uplan::what_stops(def),
    };
    match output {
        Output::Json => super::super::write_json(&report)?,
        Output::Text => super::super::write_stdout(&inspect_text(&session, &report))?,
    }
    if !report.drift.is_empty() {
        return Err(super::super::drift_refusal(
            format!("the live constraint {} differs from the playbook", def.name),
            session.env(),
            "playbook",
            &report.drift,
        ));
    }
    Ok(())
}

fn inspect_text(session: &Session, report: &InspectReport<'_>) -> String {
    let def = &session.spec.def;
    let i = report.inspection;
    let mut out = format!(
        "== {} ==\nserver: PostgreSQL {}\ntable: {} ({}, ~{} rows)\n",
        report.environment,
        i.server.version,
        i.table.name,
        if i.table.partitioned {
            "partitioned"
        } else {
            "table"
        },
        i.table
            .row_estimate
            .map_or("?".to_string(), |n| n.to_string())
    );
    match &i.constraint {
        UniqueLookup::Found(live) => {
            out.push_str(&format!(
                "constraint: {} {}\nindex: {}\n",
                def.name, live.definition, live.index_definition
            ));
            for d in &report.drift {
                out.push_str(&format!(
                    "  drift: {}: playbook {}, database {}\n",
                    d.field, d.playbook, d.database
                ));
            }
        }
        UniqueLookup::OtherKind(t) => out.push_str(&format!(
            "constraint: {} exists but is not unique (contype {t})\n",
            def.name
        )),
        UniqueLookup::Absent => out.push_str(&format!(
            "constraint: {} is absent (playbook: {})\n",
            def.name,
            def.display_clause()
        )),
    }
    if let Some(index) = &i.index {
        out.push_str(&format!(
            "index of the same name: {} ({})\n",
            index.definition,
            if index.valid {
                "valid"
            } else {
                "INVALID: a failed or killed build; rollback drops it"
            }
        ));
    }
    for fk in &i.dependents {
        out.push_str(&format!(
            "depends on it: foreign key {} on {} ({}): PostgreSQL refuses the DROP while it exists\n",
            fk.name, fk.table, fk.definition
        ));
    }
    out.push_str(&format!("once dropped: {}\n", report.what_stops));
    out.push_str(&sessions_text(&i.sessions));
    out
}

/// Sessions with locks on the table or long transactions, for people.
pub(super) fn sessions_text(sessions: &[crate::model::SessionInfo]) -> String {
    let mut out = String::from("sessions with locks on the table or long transactions:");
    if sessions.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
    }
    for s in sessions {
        let age = s
            .transaction_age_s
            .map_or("no transaction".to_string(), |a| {
                format!("transaction open {a:.0}s")
            });
        out.push_str(&format!(
            "  pid {} {} ({}) {}, {age}; {}; {}\n",
            s.pid,
            s.user,
            s.application,
            s.state,
            s.locks.join(", "),
            s.query
        ));
    }
    out
}

#[derive(Serialize)]
struct Census {
    environment: String,
    duplicate_rows: i64,
    duplicate_keys: i64,
    sample: Vec<SampleKey>,
}

#[derive(Serialize)]
struct SampleKey {
    key: Vec<Option<String>>,
    rows: i64,
}

pub struct CensusOptions {
    /// Up to this many keys, with their row counts.
    pub sample: u32,
    /// Also write the count as the gauge `fkctl_duplicate_rows` (atomically).
    pub metrics_file: Option<std::path::PathBuf>,
    pub output: Output,
}

/// The duplicate census: rows a dedupe would remove, and the keys they share.
pub fn duplicates(
    path: &Path,
    env: &str,
    dsn: &[(String, String)],
    options: CensusOptions,
) -> Result<()> {
    let CensusOptions {
        sample,
        metrics_file,
        output,
    } = options;
    let mut session = Session::open(path, env, dsn)?;
    let inspection = session.inspect("count duplicates")?;
    let query = DuplicateQuery::new(&session.spec.def, Some(&inspection.table));
    let sql = query.census_sql();
    let row = session
        .client
        .query_one(sql.as_str(), &[])
        .map_err(|e| Error::from_postgres(&e, &sql).with("environment", session.env()))?;
    let mut census = Census {
        environment: session.env().to_string(),
        duplicate_rows: row.cell(0, &sql)?,
        duplicate_keys: row.cell(1, &sql)?,
        sample: Vec::new(),
    };
    if sample > 0 {
        let sql = query.sample_sql(sample);
        let rows = session
            .client
            .query(sql.as_str(), &[])
            .map_err(|e| Error::from_postgres(&e, &sql))?;
        for r in rows {
            census.sample.push(SampleKey {
                key: r.cell(0, &sql)?,
                rows: r.cell(1, &sql)?,
            });
        }
    }
    if let Some(file) = metrics_file {
        use crate::metrics::{encode, write_file, Family, MetricType};
        let family = Family {
            name: "fkctl_duplicate_rows",
            help: "Rows CREATE UNIQUE INDEX would reject beyond the first of each key, as last counted.",
            kind: MetricType::Gauge,
            samples: vec![(
                vec![
                    ("change", session.playbook.change.clone()),
                    ("env", census.environment.clone()),
                    ("constraint", session.spec.def.name.as_str().to_string()),
                ],
                census.duplicate_rows as f64,
            )],
        };
        write_file(&file, &encode(&[family]))?;
    }
    match output {
        Output::Json => super::super::write_json(&census),
        Output::Text => {
            let mut text = format!(
                "{}: {} duplicate row(s) in {} key(s) of {} ({})\n",
                census.environment,
                census.duplicate_rows,
                census.duplicate_keys,
                session.spec.def.table,
                session.spec.def.display_clause()
            );
            for s in &census.sample {
                let key: Vec<String> = s
                    .key
                    .iter()
                    .map(|k| k.clone().unwrap_or_else(|| "NULL".into()))
                    .collect();
                text.push_str(&format!("  ({}): {} rows\n", key.join(", "), s.rows));
            }
            super::super::write_stdout(&text)
        }
    }
}

pub fn plan(
    path: &Path,
    env: Option<&str>,
    dsn: &[(String, String)],
    rollback: bool,
    output: Output,
) -> Result<()> {
    let loaded = playbook::load(path)?;
    let spec = loaded
        .unique
        .clone()
        .ok_or_else(|| Error::internal("a unique command got a foreign-key playbook"))?;
    let plan = match env {
        None if rollback => uplan::rollback_plan(
            &loaded,
            &spec,
            &spec.def,
            spec.rollback.max_duplicates,
            None,
        ),
        None => uplan::drop_plan(&loaded, &spec, None),
        Some(name) => {
            let mut session = Session::open(path, name, dsn)?;
            let inspection = session.inspect("plan")?;
            let observed = Observed {
                environment: session.env(),
                inspection: &inspection,
            };
            if rollback {
                uplan::rollback_plan(
                    &loaded,
                    &spec,
                    &spec.def,
                    spec.rollback.max_duplicates,
                    Some(&observed),
                )
            } else {
                uplan::drop_plan(&loaded, &spec, Some(&observed))
            }
        }
    };
    match output {
        Output::Json => super::super::write_json(&plan),
        Output::Text => super::super::write_stdout(&crate::render::plan::text(&plan)),
    }
}

/// Per environment: the constraint's state, an invalid index, the last runs
/// of the change and the rows archived by each.
pub fn status(
    path: &Path,
    env: Option<&str>,
    dsn: &[(String, String)],
    output: Output,
) -> Result<()> {
    let loaded = playbook::load(path)?;
    let mut report = Vec::new();
    for environment in super::environments(&loaded, env)? {
        let mut session = Session::connect(loaded.clone(), environment, dsn)?;
        let inspection = session.inspect("status")?;
        let journal = Journal::new(&loaded.journal_schema);
        let runs = journal.recent_runs(&mut session.client, &loaded.change, 10)?;
        let state = match (&inspection.constraint, &inspection.index) {
            (UniqueLookup::Found(l), _) => format!("present: {}", l.definition),
            (_, Some(i)) if !i.valid => "absent; an INVALID index of its name is left (fkctl rollback drops it and continues)".to_string(),
            (_, Some(_)) => "absent; its unique index is built (fkctl rollback adds the constraint)".to_string(),
            _ => "absent".to_string(),
        };
        report.push(serde_json::json!({
            "environment": session.env(),
            "constraint": state,
            "runs": runs,
        }));
    }
    match output {
        Output::Json => super::super::write_json(&serde_json::json!({ "environments": report })),
        Output::Text => {
            let mut text = String::new();
            for e in &report {
                text.push_str(&format!(
                    "== {} ==\n  {}: {}\n",
                    e["environment"].as_str().unwrap_or("?"),
                    loaded.constraint.name,
                    e["constraint"].as_str().unwrap_or("?")
                ));
                for r in e["runs"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "  {} {} {} {}: {}\n",
                        r["started_at"].as_str().unwrap_or(""),
                        r["run_id"].as_str().unwrap_or(""),
                        r["operation"].as_str().unwrap_or(""),
                        r["outcome"].as_str().unwrap_or("unfinished"),
                        r["message"].as_str().unwrap_or("")
                    ));
                }
            }
            super::super::write_stdout(&text)
        }
    }
}

/// A change request for a unique constraint: the summary, what the database
/// stops guaranteeing, and the drop and rollback plans from the playbook
/// (the SQL fkctl runs), in markdown.
pub fn change_request(path: &Path, out: Option<&Path>) -> Result<()> {
    let loaded = playbook::load(path)?;
    let spec = loaded
        .unique
        .clone()
        .ok_or_else(|| Error::internal("a unique command got a foreign-key playbook"))?;
    let drop = uplan::drop_plan(&loaded, &spec, None);
    let rollback = uplan::rollback_plan(
        &loaded,
        &spec,
        &spec.def,
        spec.rollback.max_duplicates,
        None,
    );
    let text = format!(
        "# {}\n\n{}\n\nConstraint: `{}` on `{}`: `{}`\n\n{}\n\n## Drop\n\n```text\n{}```\n\n## Rollback\n\n```text\n{}```\n",
        loaded.change,
        loaded.summary,
        spec.def.name,
        spec.def.table,
        spec.def.display_clause(),
        uplan::what_stops(&spec.def),
        crate::render::plan::text(&drop),
        crate::render::plan::text(&rollback)
    );
    match out {
        None => super::super::write_stdout(&text),
        Some(file) => std::fs::write(file, text)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", file.display()))),
    }
}
