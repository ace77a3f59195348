//! The change-request issue: a context built from the same plans fkctl
//! executes (so the SQL is the same bytes), rendered with minijinja from the
//! shipped template or the team's own. Building the context does no I/O.

use crate::error::{Error, Result};
use crate::kinds::foreign_key::plan::impact::Impact;
use crate::plan::{Plan, Step};
use crate::playbook::{duration, Playbook};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The default template, compiled in so the binary works anywhere.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/change-request.md.j2");
pub const DEFAULT_TEMPLATE_NAME: &str = "templates/change-request.md.j2";

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub number: usize,
    pub title: String,
    pub why: String,
    /// The check run before the step, exactly as fkctl runs it, and what it must return.
    pub before: Option<(String, String)>,
    /// The step's statements, in one transaction when `transaction`.
    pub sql: Vec<String>,
    /// The check run after the step.
    pub after: Option<(String, String)>,
    pub transaction: bool,
    pub repeat: Option<String>,
    pub locks: Vec<String>,
    pub checks: Vec<String>,
    pub lock_retries: Option<u32>,
}

fn step_view(step: &Step) -> StepView {
    let mut checks = Vec::new();
    if let Some(c) = &step.before {
        checks.push(format!(
            "before: {} (expect {})",
            c.what,
            c.expect.describe()
        ));
    }
    if let Some(c) = &step.after {
        checks.push(format!(
            "after: {} (expect {})",
            c.what,
            c.expect.describe()
        ));
    }
    let check = |c: &crate::plan::Check| {
        (
            c.sql.clone(),
            format!("{}, expect {}", c.what, c.expect.describe()),
        )
    };
    StepView {
        number: step.number,
        title: step.title.clone(),
        why: step.why.clone(),
        before: step.before.as_ref().map(check),
        sql: step.statements.clone(),
        after: step.after.as_ref().map(check),
        transaction: step.transaction,
        repeat: step.repeat.clone(),
        locks: step
            .locks
            .iter()
            .map(|l| {
                format!(
                    "{} on {} (blocks {})",
                    l.mode.sql_name(),
                    l.relation,
                    l.mode.blocks()
                )
            })
            .collect(),
        checks,
        lock_retries: step.lock_retries,
    }
}

/// What one database showed when the request was written.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub environment: String,
    pub server_version: String,
    pub state: String,
    pub child_rows: Option<i64>,
    pub parent_rows: Option<i64>,
    pub orphans_now: i64,
    pub indexes: Vec<String>,
    pub last_drop: Option<PastRun>,
}

/// A drop already run there, from the journal.
#[derive(Debug, Clone, Serialize)]
pub struct PastRun {
    pub run_id: String,
    pub started_at: String,
    pub outcome: String,
    pub operator: String,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    pub protected: bool,
    pub drop_command: String,
    pub rollback_command: String,
    pub steps: Vec<StepView>,
    pub evidence: Option<Evidence>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CascadeLine {
    pub indent: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Criticality {
    pub level: &'static str,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub title: String,
    pub change: String,
    pub summary: String,
    pub links: Vec<String>,
    pub playbook: String,
    pub constraint_name: String,
    pub table: String,
    pub references: String,
    pub definition: String,
    pub environments: Vec<EnvironmentView>,
    pub stops_enforcing: Vec<String>,
    pub purge_sets_off: Vec<String>,
    /// The ON DELETE actions below the child a rollback purge sets off, one
    /// line per level (`indent` nests it under the level it references).
    pub cascade_tree: Vec<CascadeLine>,
    /// Why the rollback purge would be refused (empty when it can archive all).
    pub cascade_refusals: Vec<String>,
    pub warnings: Vec<String>,
    pub criticality: Criticality,
    pub precheck_commands: Vec<String>,
    pub rollback_env: String,
    pub rollback_command: String,
    pub rollback_steps: Vec<StepView>,
    /// Which way the rollback puts the constraint back and why, when the
    /// live catalog makes it matter (a partitioned child).
    pub rollback_path: Option<String>,
    pub rollback_policy: String,
    pub lock_timeout: String,
    pub statement_timeout: String,
    pub lock_retries: u32,
    /// (what to watch, how, when to roll back).
    pub monitoring: Vec<(String, String, String)>,
    /// The loose replacement's cleanup and metrics, when the playbook has `loose:`.
    pub loose: Option<LooseView>,
    /// A code fence longer than any run of backticks in the SQL.
    pub fence: String,
}

fn criticality(playbook: &Playbook, evidence: &[Evidence]) -> Criticality {
    let mut reasons = vec!["DROP CONSTRAINT takes ACCESS EXCLUSIVE on both tables (bounded by lock_timeout and retries)".to_string()];
    let protected: Vec<&str> = playbook
        .environments
        .iter()
        .filter(|e| e.protected)
        .map(|e| e.name.as_str())
        .collect();
    let big = evidence
        .iter()
        .filter_map(|e| e.child_rows)
        .max()
        .unwrap_or(0)
        >= 10_000_000;
    let orphans = evidence.iter().map(|e| e.orphans_now).sum::<i64>() > 0;
    if !protected.is_empty() {
        reasons.push(format!(
            "protected environment(s): {}",
            protected.join(", ")
        ));
    }
    if big {
        reasons.push(
            "the child table has 10 million rows or more: a rollback's VALIDATE scan takes a while"
                .into(),
        );
    }
    if orphans {
        reasons.push("orphaned rows exist now: a rollback must purge (and archive) rows".into());
    }
    let level = match (!protected.is_empty(), big || orphans) {
        (true, true) => "C1",
        (true, false) => "C2",
        (false, true) => "C3",
        (false, false) => "C4",
    };
    Criticality { level, reasons }
}

fn fence_for(sql: impl Iterator<Item = String>) -> String {
    let longest = sql
        .map(|s| {
            let mut best = 0;
            let mut run = 0;
            for c in s.chars() {
                run = if c == '`' { run + 1 } else { 0 };
                best = best.max(run);
            }
            best
        })
        .max()
        .unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// Everything the template sees. `drop_plans` are per environment in playbook
/// order; `rollback_plan` is for `rollback_env`.
// Long because it fills the template's context field by field, in the template's order.
pub fn context(
    playbook: &Playbook,
    drop_plans: &[Plan],
    rollback_plan: &Plan,
    rollback_env: &str,
    impact: &Impact,
    evidence: &[Evidence],
) -> Context {
    let fk = &playbook.constraint;
    let path = playbook.path.display().to_string();
    let environments: Vec<EnvironmentView> = playbook
        .environments
        .iter()
        .zip(drop_plans)
        .map(|(env, plan)| EnvironmentView {
            name: env.name.clone(),
            protected: env.protected,
            drop_command: format!("fkctl drop {path} --env {}", env.name),
            rollback_command: format!("fkctl rollback {path} --env {} --yes", env.name),
            steps: plan.steps.iter().map(step_view).collect(),
            evidence: evidence.iter().find(|e| e.environment == env.name).cloned(),
        })
        .collect();
    let rollback_steps: Vec<StepView> = rollback_plan.steps.iter().map(step_view).collect();
    let fence = fence_for(
        environments
            .iter()
            .flat_map(|e| e.steps.iter())
            .chain(rollback_steps.iter())
            .flat_map(|s| {
                s.sql
                    .iter()
                    .chain(s.before.iter().map(|b| &b.0))
                    .chain(s.after.iter().map(|a| &a.0))
                    .cloned()
            }),
    );
    let first = playbook
        .environments
        .first()
        .map_or("staging", |e| e.name.as_str());
    Context {
        title: format!(
            "Change request: {} ({} on {})",
            playbook.summary, fk.name, fk.table
        ),
        change: playbook.change.clone(),
        summary: playbook.summary.clone(),
        links: playbook.links.clone(),
        playbook: path.clone(),
        constraint_name: fk.name.display(),
        table: fk.table.display(),
        references: fk.ref_table.display(),
        definition: fk.constraint_clause(),
        environments,
        stops_enforcing: impact.stops_enforcing.clone(),
        purge_sets_off: impact.purge_sets_off.clone(),
        cascade_tree: impact
            .cascade_tree
            .iter()
            .map(|l| CascadeLine {
                indent: "  ".repeat(l.depth.saturating_sub(1)),
                text: l.text.clone(),
            })
            .collect(),
        cascade_refusals: impact.cascade_refusals.clone(),
        warnings: impact.warnings.clone(),
        criticality: criticality(playbook, evidence),
        precheck_commands: playbook
            .environments
            .iter()
            .flat_map(|e| {
                [
                    format!("fkctl inspect {path} --env {}", e.name),
                    format!("fkctl orphans {path} --env {} --sample 20", e.name),
                    format!("fkctl plan {path} --env {}", e.name),
                ]
            })
            .collect(),
        rollback_env: rollback_env.to_string(),
        rollback_command: format!("fkctl rollback {path} --env {rollback_env} --yes"),
        rollback_steps,
        rollback_path: rollback_plan
            .notes
            .iter()
            .find_map(|n| n.strip_prefix("Path: "))
            .map(str::to_string),
        rollback_policy: playbook.rollback.orphans.name().to_string(),
        lock_timeout: duration::human(playbook.safety.lock_timeout),
        statement_timeout: duration::human(playbook.safety.statement_timeout),
        lock_retries: playbook.safety.lock_retries,
        monitoring: vec![
            (
                "orphaned rows (should stay 0 unless the application deletes parents)".into(),
                format!("fkctl orphans {path} --env {first}"),
                "orphans grow and the application cannot tolerate them".into(),
            ),
            (
                "the constraint's state and fkctl's journal".into(),
                format!("fkctl status {path}"),
                "the constraint is not in the expected state".into(),
            ),
            (
                format!(
                    "application errors when a {} row is gone (the association must read as empty)",
                    fk.ref_table.display()
                ),
                "your error tracker / logs".into(),
                "errors referencing the missing rows appear".into(),
            ),
        ],
        loose: playbook
            .loose
            .as_ref()
            .map(|_| loose_view(playbook, &path, first)),
        fence,
    }
}

/// Escapes text for inline markdown: nothing in a value can start formatting,
/// a link, an HTML tag or a table cell.
fn markdown(value: String) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\`*_[]<>|~#!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Inline code that survives backticks in the value.
fn code(value: String) -> String {
    if value.contains('`') {
        format!("`` {value} ``")
    } else {
        format!("`{value}`")
    }
}

/// Renders `source` (named `name` in errors) with strict undefined variables.
pub fn render(name: &str, source: &str, context: &Context) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.add_filter("md", markdown);
    env.add_filter("code", code);
    let template_error = |e: minijinja::Error| {
        let at = match e.line() {
            Some(line) => format!("{name}:{line}"),
            None => name.to_string(),
        };
        Error::usage(format!(
            "{at}: template error: {}",
            e.detail().unwrap_or(&e.to_string())
        ))
        .with("template", name)
        .next("fix the template (see templates/change-request.md.j2 for the variables it can use)")
    };
    env.add_template_owned(name.to_string(), source.to_string())
        .map_err(template_error)?;
    let template = env.get_template(name).map_err(template_error)?;
    template.render(context).map_err(template_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_values_cannot_start_formatting() {
        assert_eq!(
            markdown("a_b*c [x](y) <b> |".into()),
            r"a\_b\*c \[x\](y) \<b\> \|"
        );
        assert_eq!(code("a`b".into()), "`` a`b ``");
    }

    #[test]
    fn the_fence_is_longer_than_any_backtick_run() {
        assert_eq!(fence_for(["SELECT 1".to_string()].into_iter()), "```");
        assert_eq!(
            fence_for(["SELECT \"a````b\"".to_string()].into_iter()),
            "`````"
        );
    }
}

/// The loose replacement in the change request: how it runs, what it
/// exposes, and an alert on a queue that only grows.
#[derive(Debug, Clone, Serialize)]
pub struct LooseView {
    pub cleanup_command: String,
    pub duty: String,
    pub metrics: Vec<(String, String)>,
    pub alert: String,
}

fn loose_view(playbook: &Playbook, path: &str, first: &str) -> LooseView {
    use crate::kinds::foreign_key::loose::cleanup::Duty;
    let change = &playbook.change;
    // A state with every optional value set, so that every family is listed.
    let every_metric = crate::model::LooseState {
        counters: Some(crate::model::LooseCounters {
            last_success_epoch_s: Some(0.0),
            last_run_seconds: Some(0.0),
            ..crate::model::LooseCounters::default()
        }),
        ..crate::model::LooseState::default()
    };
    LooseView {
        cleanup_command: format!(
            "fkctl cleanup {path} --env {first} --once --metrics-file /var/lib/node_exporter/textfile/fkctl-{change}.prom"
        ),
        duty: Duty::on_delete(playbook.constraint.on_delete).describe().to_string(),
        metrics: crate::metrics::loose_families(change, first, &every_metric)
            .into_iter()
            .map(|f| (f.name.to_string(), f.help.to_string()))
            .collect(),
        alert: format!(
            "(delta(fkctl_loose_pending_deletions{{change=\"{change}\"}}[30m]) > 0 and fkctl_loose_pending_deletions{{change=\"{change}\"}} > 1000) or (time() - fkctl_loose_last_success_timestamp_seconds{{change=\"{change}\"}} > 3600)"
        ),
    }
}
