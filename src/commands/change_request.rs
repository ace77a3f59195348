//! `fkctl change-request`: the change-request issue, from the same plans
//! that `drop` and `rollback` execute, with live evidence where asked.

use super::{connect, inspect_live, write_stdout};
use crate::census;
use crate::cli::args::{PostTo, RequestFormat};
use crate::error::{Error, Kind, Result};
use crate::journal::Journal;
use crate::kinds::foreign_key::plan::impact;
use crate::model::Inspection;
use crate::plan::{drop_plan, rollback_plan, Observed, Plan};
use crate::playbook::{self, Playbook};
use crate::publish::{self, Issue, Tracker};
use crate::render::change_request::{self as cr, Evidence, PastRun};
use crate::report::state_of;
use std::path::Path;

fn millis_between(start: &str, end: &Option<String>) -> Option<i64> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    let end = chrono::DateTime::parse_from_rfc3339(end.as_deref()?).ok()?;
    Some((end - start).num_milliseconds())
}

fn past_run(r: crate::journal::RunRecord, main_step: &str) -> PastRun {
    let orphans = r
        .steps
        .iter()
        .find(|s| s.step == "count-orphans")
        .and_then(|s| s.detail.as_deref())
        .and_then(|d| d.trim().parse().ok());
    let main_step_ms = r
        .steps
        .iter()
        .rev()
        .find(|s| s.step == main_step)
        .and_then(|s| millis_between(&s.started_at, &s.finished_at));
    PastRun {
        took_ms: millis_between(&r.started_at, &r.finished_at),
        retries: r.steps.iter().map(|s| i64::from(s.retries)).sum(),
        orphans,
        main_step: main_step.to_string(),
        main_step_ms,
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
        run_id: r.run_id,
        started_at: r.started_at,
        outcome: r.outcome.unwrap_or_else(|| "unfinished".into()),
        operator: r.operator,
    }
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
        .iter()
        .find(|r| r.operation == "drop")
        .cloned()
        .map(|r| past_run(r, "drop-constraint"));
    let last_rollback = runs
        .iter()
        .find(|r| r.operation == "rollback")
        .cloned()
        .map(|r| past_run(r, "validate-constraint"));
    let parent_deletes = crate::catalog::deletes::delete_rate(client, inspection.parent.oid)
        .map_err(|e| super::label(e, env, "read the parent's delete rate"))?;
    Ok(Evidence {
        parent_deletes_text: cr::delete_rate_text(&parent_deletes),
        parent_deletes,
        environment: env.to_string(),
        server_version: inspection.server.version.clone(),
        state: state_of(&inspection.constraint).label().to_string(),
        child_table: inspection.child.name.display(),
        child_rows: inspection.child.row_estimate,
        parent_rows: inspection.parent.row_estimate,
        child_bytes: inspection.child.total_bytes,
        orphans_now,
        indexes: inspection
            .child_indexes
            .iter()
            .filter(|i| i.covers_foreign_key)
            .map(|i| i.name.clone())
            .collect(),
        live_definition: inspection.live().map(|c| c.definition.clone()),
        last_drop,
        last_rollback,
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

/// Plans and evidence per environment, in playbook order.
struct Gathered {
    drop_plans: Vec<Plan>,
    rollback_plans: Vec<Plan>,
    evidence: Vec<Evidence>,
    /// Per fleet environment read, a row per database.
    fleet_rows: Vec<(String, Vec<cr::TargetRow>)>,
    /// The inspection the impact and the diagram come from: the last
    /// environment read (production, in a usual playbook).
    impact_source: Option<Inspection>,
}

/// Reads the environments in `read` (all of them when `tolerate`, where one
/// that cannot be read is planned from the playbook alone, with a warning).
fn gather(
    playbook: &Playbook,
    read: &[String],
    dsn: &[(String, String)],
    tolerate: bool,
) -> Result<Gathered> {
    let mut g = Gathered {
        drop_plans: Vec::new(),
        rollback_plans: Vec::new(),
        evidence: Vec::new(),
        fleet_rows: Vec::new(),
        impact_source: None,
    };
    for environment in &playbook.environments {
        let env = environment.name.as_str();
        let live = if read.iter().any(|e| e == env) && environment.fleet.is_some() {
            let (first, rows) = read_fleet(playbook, environment, dsn)?;
            g.fleet_rows.push((env.to_string(), rows));
            first
        } else if read.iter().any(|e| e == env) {
            match read_environment(playbook, environment, dsn) {
                Ok(found) => Some(found),
                // Ctrl-C and a bad command line stop everything; a database
                // that cannot be read leaves its sections to the playbook.
                Err(e) if tolerate && !matches!(e.kind, Kind::Interrupted | Kind::Usage) => {
                    eprintln!("warning: {env}: cannot read it ({}); its sections are planned from the playbook alone", e.message);
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        match live {
            Some((inspection, evidence)) => {
                let observed = Observed {
                    environment: env,
                    inspection: &inspection,
                };
                g.drop_plans.push(drop_plan(playbook, Some(&observed)));
                g.rollback_plans
                    .push(rollback_plan(playbook, Some(&observed)));
                g.evidence.push(evidence);
                g.impact_source = Some(inspection);
            }
            None => {
                g.drop_plans.push(drop_plan(playbook, None));
                let mut rollback = rollback_plan(playbook, None);
                rollback.environment = Some(env.to_string());
                g.rollback_plans.push(rollback);
            }
        }
    }
    Ok(g)
}

/// One database read: its inspection and the request's evidence from it.
type Read = (Inspection, Evidence);

/// A fleet read database by database (one session at a time): the first
/// one read stands for the environment's plans and evidence; every one gets
/// a row, saying where its plans differ from the first's.
fn read_fleet(
    playbook: &Playbook,
    environment: &crate::playbook::Environment,
    dsn: &[(String, String)],
) -> Result<(Option<Read>, Vec<cr::TargetRow>)> {
    let mut first: Option<(Inspection, Evidence, Vec<Vec<String>>)> = None;
    let mut rows = Vec::new();
    let prefix = format!("{}/", environment.name);
    for target in environment.databases() {
        let name = target
            .name
            .strip_prefix(&prefix)
            .unwrap_or(&target.name)
            .to_string();
        match read_environment(playbook, &target, dsn) {
            Ok((inspection, evidence)) => {
                let observed = Observed {
                    environment: &target.name,
                    inspection: &inspection,
                };
                let sql: Vec<Vec<String>> = [
                    drop_plan(playbook, Some(&observed)),
                    rollback_plan(playbook, Some(&observed)),
                ]
                .iter()
                .flat_map(|p| p.steps.iter().map(|s| s.statements.clone()))
                .collect();
                let differs = match &first {
                    Some((_, _, first_sql)) if *first_sql != sql => format!(
                        "its plans differ from {}'s ({})",
                        environment
                            .databases()
                            .first()
                            .map_or("the first", |d| d.name.as_str()),
                        if inspection.leaves.is_empty() {
                            "see fkctl plan --env"
                        } else {
                            "partitioned: see fkctl plan --rollback --env"
                        }
                    ),
                    _ => String::new(),
                };
                rows.push(cr::TargetRow {
                    target: name,
                    state: evidence.state.clone(),
                    orphans_now: Some(evidence.orphans_now),
                    last_drop: evidence
                        .last_drop
                        .as_ref()
                        .map(|r| format!("{} at {}", r.outcome, r.started_at)),
                    differs,
                    error: None,
                });
                if first.is_none() {
                    let mut evidence = evidence;
                    evidence.environment = environment.name.clone();
                    first = Some((inspection, evidence, sql));
                }
            }
            Err(e) if matches!(e.kind, Kind::Interrupted | Kind::Usage) => return Err(e),
            Err(e) => rows.push(cr::TargetRow {
                target: name,
                state: "unreadable".to_string(),
                orphans_now: None,
                last_drop: None,
                differs: String::new(),
                error: Some(e.message.clone()),
            }),
        }
    }
    Ok((first.map(|(i, e, _)| (i, e)), rows))
}

fn read_environment(
    playbook: &Playbook,
    environment: &crate::playbook::Environment,
    dsn: &[(String, String)],
) -> Result<(Inspection, Evidence)> {
    let env = environment.name.as_str();
    let (_, mut client) = connect(playbook, environment, dsn)?;
    let inspection = inspect_live(&mut client, playbook, env, "read the live catalog")?;
    let evidence = evidence(&mut client, playbook, env, &inspection)?;
    Ok((inspection, evidence))
}

/// The rendered request: (context, markdown body).
fn render_request(
    playbook: &Playbook,
    template: Option<&Path>,
    gathered: &Gathered,
    compact: bool,
) -> Result<(cr::Context, String)> {
    let (template_name, source) = template_source(template, playbook)?;
    let found = impact::analyse(playbook, gathered.impact_source.as_ref());
    let context = cr::context(&cr::Inputs {
        playbook,
        drop_plans: &gathered.drop_plans,
        rollback_plans: &gathered.rollback_plans,
        impact: &found,
        evidence: &gathered.evidence,
        dependents: gathered
            .impact_source
            .as_ref()
            .map(|i| i.referencing_child.as_slice()),
        partitions: gathered
            .impact_source
            .as_ref()
            .map_or(0, |i| i.leaves.len()),
        fleet_rows: &gathered.fleet_rows,
    });
    let context = cr::Context { compact, ..context };
    let body = cr::render(&template_name, &source, &context)?;
    Ok((context, body))
}

fn check_environments(playbook: &Playbook, envs: &[String]) -> Result<()> {
    for name in envs {
        if playbook.environment(name).is_none() {
            super::select_environments(playbook, Some(name))?;
        }
    }
    Ok(())
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
    check_environments(&playbook, envs)?;
    let gathered = gather(&playbook, envs, dsn, false)?;
    let (context, body) = render_request(&playbook, template, &gathered, false)?;
    let issue = Issue {
        title: context.title.clone(),
        body,
        labels: context.labels.clone(),
    };
    if format == RequestFormat::Markdown {
        return write_output(&issue.body, out);
    }
    // For an issue created from this JSON to be found again by --post.
    let issue = Issue {
        body: publish::with_marker(&issue.body, &playbook.change),
        ..issue
    };
    let doc = match format {
        RequestFormat::Markdown => return write_output(&issue.body, out),
        RequestFormat::Json => {
            serde_json::json!({ "title": issue.title, "body": issue.body, "labels": issue.labels })
        }
        RequestFormat::GitlabJson => publish::payload(Tracker::Gitlab, &issue),
        RequestFormat::GithubJson => publish::payload(Tracker::Github, &issue),
    };
    let text = serde_json::to_string_pretty(&super::Versioned::new(&doc))
        .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?
        + "\n";
    write_output(&text, out)
}

/// `--post`: reads every environment it can reach, renders, and creates or
/// updates the change's issue; prints its URL.
pub fn post(
    path: &Path,
    dsn: &[(String, String)],
    template: Option<&Path>,
    to: PostTo,
    project: &str,
    api_url: Option<&str>,
) -> Result<()> {
    let playbook = playbook::load(path)?;
    let tracker = match to {
        PostTo::Gitlab => Tracker::Gitlab,
        PostTo::Github => Tracker::Github,
    };
    // Before any database is read: a missing token or a malformed project
    // should not cost a census.
    let target = publish::Target::new(tracker, project, api_url)?;
    let every: Vec<String> = playbook
        .environments
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let gathered = gather(&playbook, &every, dsn, true)?;
    let (mut context, mut body) = render_request(&playbook, template, &gathered, false)?;
    let limit = tracker.body_limit();
    // The marker goes at the end; keep room for it.
    let room = limit.saturating_sub(publish::marker(&playbook.change).len() + 4);
    if body.chars().count() > room {
        (context, body) = render_request(&playbook, template, &gathered, true)?;
        eprintln!(
            "note: the full request exceeds {}'s {} characters: each environment's rollback SQL is left to its psql script and `fkctl plan --rollback`",
            tracker.name(),
            limit
        );
    }
    let size = body.chars().count();
    if size > room {
        return Err(Error::usage(format!(
            "the change request is {size} characters, and {} takes at most {limit} in an issue",
            tracker.name()
        ))
        .next("use --template with a shorter template (the full text: fkctl change-request PLAYBOOK --out FILE)"));
    }
    let issue = Issue {
        title: context.title.clone(),
        body,
        labels: context.labels.clone(),
    };
    let posted = publish::post(&target, &playbook.change, &issue)?;
    eprintln!(
        "{} {} issue #{} ({} environment(s) read)",
        if posted.created { "created" } else { "updated" },
        tracker.name(),
        posted.number,
        gathered.evidence.len()
    );
    write_stdout(&format!("{}\n", posted.url))
}
