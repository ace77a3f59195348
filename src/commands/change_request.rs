//! `fkctl change-request`: the change-request issue, from the same plans
//! that `drop` and `rollback` execute, with live evidence where asked.

use super::{connect, inspect_live, write_stdout};
use crate::census;
use crate::cli::args::RequestFormat;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::kinds::foreign_key::plan::impact;
use crate::model::Inspection;
use crate::plan::{drop_plan, rollback_plan, Observed, Plan};
use crate::playbook::{self, Playbook};
use crate::render::change_request::{self as cr, Evidence, PastRun};
use crate::report::state_of;
use std::path::Path;

fn millis_between(start: &str, end: &Option<String>) -> Option<i64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end.as_deref()?).ok()?;
    Some((end - start).num_milliseconds())
}

fn evidence(
    client: &mut postgres::Client,
    playbook: &Playbook,
    env: &str,
    inspection: &Inspection,
) -> Result<Evidence> {
    let orphans_now = census::count(client, &inspection.orphan_query)
        .map_err(|e| super::label(e, env, "count orphans"))?;
    let runs = Journal::new(&playbook.journal_schema).recent_runs(client, &playbook.change, 20)?;
    let last_drop = runs
        .into_iter()
        .find(|r| r.operation == "drop")
        .map(|r| PastRun {
            run_id: r.run_id,
            started_at: r.started_at,
            outcome: r.outcome.unwrap_or_else(|| "unfinished".into()),
            operator: r.operator,
            steps: r
                .steps
                .iter()
                .map(|s| {
                    let took = millis_between(&s.started_at, &s.finished_at)
                        .map_or(String::new(), |ms| format!(" in {ms} ms"));
                    let retries = if s.retries > 0 {
                        format!(", {} lock retries", s.retries)
                    } else {
                        String::new()
                    };
                    let blockers = s.blockers.as_deref().map_or(String::new(), |b| {
                        format!(", blocked by {}", b.replace('\n', "; "))
                    });
                    format!(
                        "{}: {}{took}{retries}{blockers}",
                        s.step,
                        s.outcome.as_deref().unwrap_or("unfinished")
                    )
                })
                .collect(),
        });
    Ok(Evidence {
        environment: env.to_string(),
        server_version: inspection.server.version.clone(),
        state: state_of(&inspection.constraint).label().to_string(),
        child_rows: inspection.child.row_estimate,
        parent_rows: inspection.parent.row_estimate,
        orphans_now,
        indexes: inspection
            .child_indexes
            .iter()
            .filter(|i| i.covers_foreign_key)
            .map(|i| i.name.clone())
            .collect(),
        last_drop,
    })
}

/// The template to render: `--template`, else the playbook's, else the built-in one.
fn template_source(
    template: Option<&Path>,
    playbook: &playbook::Playbook,
) -> Result<(String, String)> {
    Ok(
        match template
            .map(Path::to_path_buf)
            .or_else(|| playbook.change_request_template.clone())
        {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    Error::usage(format!("cannot read the template {}: {e}", p.display()))
                })?;
                (p.display().to_string(), text)
            }
            None => (
                cr::DEFAULT_TEMPLATE_NAME.to_string(),
                cr::DEFAULT_TEMPLATE.to_string(),
            ),
        },
    )
}

/// Writes the request to `out`, or to stdout.
fn write_output(text: &str, out: Option<&Path>) -> Result<()> {
    match out {
        None => write_stdout(text),
        Some(file) => {
            std::fs::write(file, text)
                .map_err(|e| Error::internal(format!("cannot write {}: {e}", file.display())))?;
            eprintln!("wrote {}", file.display());
            Ok(())
        }
    }
}

pub fn run(
    path: &Path,
    envs: &[String],
    dsn: &[(String, String)],
    template: Option<&Path>,
    format: RequestFormat,
    out: Option<&Path>,
) -> Result<()> {
    let playbook = playbook::load(path)?;
    for name in envs {
        if playbook.environment(name).is_none() {
            super::select_environments(&playbook, Some(name))?;
        }
    }
    let (template_name, source) = template_source(template, &playbook)?;
    let rollback_env = playbook
        .environments
        .last()
        .map(|e| e.name.clone())
        .unwrap_or_default();
    let mut drop_plans: Vec<Plan> = Vec::new();
    let mut rollback: Option<Plan> = None;
    let mut evidences = Vec::new();
    let mut impact_source: Option<Inspection> = None;
    for environment in &playbook.environments {
        let env = environment.name.as_str();
        if !envs.iter().any(|e| e == env) {
            drop_plans.push(drop_plan(&playbook, None));
            continue;
        }
        let (_, mut client) = connect(&playbook, environment, dsn)?;
        let inspection = inspect_live(&mut client, &playbook, env, "read the live catalog")?;
        let observed = Observed {
            environment: env,
            inspection: &inspection,
        };
        drop_plans.push(drop_plan(&playbook, Some(&observed)));
        if env == rollback_env {
            rollback = Some(rollback_plan(&playbook, Some(&observed)));
        }
        evidences.push(evidence(&mut client, &playbook, env, &inspection)?);
        if impact_source.is_none() || env == rollback_env {
            impact_source = Some(inspection);
        }
    }
    let rollback = rollback.unwrap_or_else(|| rollback_plan(&playbook, None));
    let found = impact::analyse(&playbook, impact_source.as_ref());
    let context = cr::context(
        &playbook,
        &drop_plans,
        &rollback,
        &rollback_env,
        &found,
        &evidences,
    );
    let body = cr::render(&template_name, &source, &context)?;
    let text = match format {
        RequestFormat::Markdown => body,
        RequestFormat::Json => {
            let labels = vec![
                "change-request".to_string(),
                "database".to_string(),
                format!("criticality::{}", context.criticality.level),
                "fkctl".to_string(),
            ];
            let doc = serde_json::json!({ "title": context.title, "body": body, "labels": labels });
            serde_json::to_string_pretty(&super::Versioned::new(&doc))
                .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?
                + "\n"
        }
    };
    write_output(&text, out)
}
