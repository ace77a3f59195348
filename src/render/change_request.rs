//! The change-request issue: a context built from the same plans fkctl
//! executes (so the SQL is the same bytes), rendered with minijinja from the
//! shipped template or the team's own. Building the context does no I/O.

use super::change_record::{self, ChangeManagement, DriftField};
use super::{diagram, psql};
use crate::error::{Error, Result};
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::kinds::foreign_key::plan::impact::Impact;
use crate::model::{DeleteRate, DependentKey};
use crate::plan::{Plan, Step};
use crate::playbook::{duration, Environment as PlaybookEnv, Playbook};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The default template, compiled in so the binary works anywhere.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/change-request.md.j2");
pub const DEFAULT_TEMPLATE_NAME: &str = "templates/change-request.md.j2";

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub number: usize,
    /// The step's stable name (`drop-constraint`, ...).
    pub id: &'static str,
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
        id: step.id,
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
    pub child_table: String,
    pub child_rows: Option<i64>,
    pub parent_rows: Option<i64>,
    pub child_bytes: i64,
    pub orphans_now: i64,
    pub indexes: Vec<String>,
    /// How much the application deletes from the parent there.
    pub parent_deletes: DeleteRate,
    /// `parent_deletes` in words, for the template.
    pub parent_deletes_text: String,
    /// The constraint as that catalog defines it (None: not there).
    pub live_definition: Option<ForeignKeyDef>,
    pub last_drop: Option<PastRun>,
    pub last_rollback: Option<PastRun>,
}

/// A run found in the journal.
#[derive(Debug, Clone, Serialize)]
pub struct PastRun {
    pub run_id: String,
    pub started_at: String,
    pub outcome: String,
    pub operator: String,
    pub steps: Vec<String>,
    /// Orphans its census counted.
    pub orphans: Option<i64>,
    /// The step that does the change (drop-constraint, validate-constraint).
    pub main_step: String,
    pub main_step_ms: Option<i64>,
    pub retries: i64,
    pub took_ms: Option<i64>,
}

impl PastRun {
    pub fn succeeded(&self) -> bool {
        // The outcomes drop and rollback record when the constraint ended
        // up as they meant it to.
        matches!(
            self.outcome.as_str(),
            "dropped" | "already absent" | "restored" | "already valid"
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    pub protected: bool,
    pub drop_command: String,
    pub rollback_command: String,
    pub steps: Vec<StepView>,
    pub evidence: Option<Evidence>,
    /// An earlier environment whose drop runs exactly these statements
    /// (a compact request shows them once).
    pub same_steps_as: Option<String>,
    /// The journal's last drop there, when it finished: the box is ticked.
    pub dropped: Option<String>,
    /// The journal's last rollback there, when later than the drop.
    pub rolled_back: Option<String>,
    /// Many databases: the order fkctl takes them in, and what was read there.
    pub fleet: Option<FleetView>,
}

/// A fleet environment in the request: its rollout and, when read, one row
/// per database.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    pub targets: usize,
    /// The canaries, alone and in order, before any other.
    pub canaries: Vec<String>,
    /// Then the rest, at most `concurrency` at a time.
    pub concurrency: usize,
    pub rest: Vec<String>,
    /// One row per database read (empty offline).
    pub read: Vec<TargetRow>,
}

/// One database of a fleet as read: its state, orphans, last drop, and
/// whether its plans differ from the first one's (shown in full above).
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub target: String,
    pub state: String,
    pub orphans_now: Option<i64>,
    pub last_drop: Option<String>,
    /// Why its SQL differs from the first database's ("" when the same).
    pub differs: String,
    pub error: Option<String>,
}

/// The rollback of one environment: its commands, the plan fkctl would run
/// there, and the same plan as a psql script.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackView {
    pub environment: String,
    pub protected: bool,
    pub interactive_command: String,
    pub yes_command: String,
    pub plan_command: String,
    pub basis: String,
    pub path: Option<String>,
    pub steps: Vec<StepView>,
    pub script: String,
    pub estimate: Option<String>,
    pub restore_command: String,
    pub vacuum: String,
    /// An earlier environment whose rollback runs exactly these statements.
    pub same_as: Option<String>,
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
    pub change_management: ChangeManagement,
    /// The drift check fkctl drop runs first, field by field.
    pub drift: Vec<DriftField>,
    /// Mermaid source of what the constraint does and what hangs off the child.
    pub diagram: String,
    pub labels: Vec<String>,
    pub precheck_commands: Vec<String>,
    /// The last environment's rollback (kept for templates written before
    /// `rollbacks`; the default template shows every environment's).
    pub rollback_env: String,
    pub rollback_command: String,
    pub rollback_steps: Vec<StepView>,
    /// Which way the rollback puts the constraint back and why, when the
    /// live catalog makes it matter (a partitioned child).
    pub rollback_path: Option<String>,
    /// Every environment's rollback, in playbook order.
    pub rollbacks: Vec<RollbackView>,
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
    /// Leave out what is shown twice (the rollback SQL beside its psql
    /// script), for a tracker's size limit.
    pub compact: bool,
}

/// A delete rate in words: "~1,234 a day (45,678 since the statistics were reset 37 days ago)".
pub fn delete_rate_text(rate: &DeleteRate) -> String {
    match (rate.per_day(), rate.since_seconds) {
        (Some(per_day), Some(since)) => format!(
            "~{} a day ({} since the statistics were reset {} ago)",
            super::count(per_day.round() as i64),
            super::count(rate.deleted),
            change_record::human_duration(since).trim_start_matches("about ")
        ),
        _ => format!(
            "{} since the statistics began (no reset recorded, so no rate)",
            super::count(rate.deleted)
        ),
    }
}

/// What dropping the constraint turns off: a reason, when it is more than
/// a check (the parent's deletes change child rows today), with the delete
/// rate each database measured.
fn turned_off(playbook: &Playbook, evidence: &[Evidence]) -> Option<String> {
    let fk = &playbook.constraint;
    if fk.on_delete.blocks() {
        return None;
    }
    let measured = evidence
        .iter()
        .map(|e| format!("{}: {}", e.environment, e.parent_deletes_text))
        .collect::<Vec<_>>();
    let rate = if measured.is_empty() {
        format!(
            "at production's delete rate (pg_stat_user_tables.n_tup_del of {}; --env or --post measures it)",
            fk.ref_table.display()
        )
    } else {
        format!(
            "at the measured delete rate of {}: {}",
            fk.ref_table.display(),
            measured.join("; ")
        )
    };
    Some(match &playbook.loose {
        Some(_) => format!(
            "the drop turns off ON DELETE {} of {}; fkctl's loose replacement carries it (its cleanup must run, see Monitoring), {rate}",
            fk.on_delete.sql(),
            fk.ref_table.display()
        ),
        None => format!(
            "the drop turns off ON DELETE {}: until a rollback, every {} row deleted leaves its {} rows behind, {rate}",
            fk.on_delete.sql(),
            fk.ref_table.display(),
            fk.table.display(),
        ),
    })
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
    let off = turned_off(playbook, evidence);
    // A cascade with nothing carrying it changes data from the first delete on.
    let unattended = off.is_some() && playbook.loose.is_none();
    reasons.extend(off);
    let level = match (!protected.is_empty(), big || orphans || unattended) {
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

/// What the request is built from: the playbook, and per environment (in
/// playbook order) its drop plan, its rollback plan and what was read there.
pub struct Inputs<'a> {
    pub playbook: &'a Playbook,
    pub drop_plans: &'a [Plan],
    pub rollback_plans: &'a [Plan],
    pub impact: &'a Impact,
    pub evidence: &'a [Evidence],
    /// Foreign keys of other tables on the child, when a database was read.
    pub dependents: Option<&'a [DependentKey]>,
    /// The child's leaf partitions (0: not partitioned, or not read).
    pub partitions: usize,
    /// Per fleet environment, the rows of its databases as read.
    pub fleet_rows: &'a [(String, Vec<TargetRow>)],
}

fn fleet_view(env: &PlaybookEnv, rows: &[(String, Vec<TargetRow>)]) -> Option<FleetView> {
    let fleet = env.fleet.as_ref()?;
    let names: Vec<String> = fleet.targets.iter().map(|t| t.name.clone()).collect();
    let (canaries, rest) = names.split_at(fleet.canary.min(names.len()));
    Some(FleetView {
        targets: names.len(),
        canaries: canaries.to_vec(),
        concurrency: fleet.concurrency,
        rest: rest.to_vec(),
        read: rows
            .iter()
            .find(|(name, _)| *name == env.name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default(),
    })
}

fn environment_view(
    path: &str,
    env: &PlaybookEnv,
    plan: &Plan,
    inputs: &Inputs<'_>,
) -> EnvironmentView {
    let evidence = inputs.evidence;
    let evidence = evidence.iter().find(|e| e.environment == env.name).cloned();
    let last_drop = evidence.as_ref().and_then(|e| e.last_drop.as_ref());
    let dropped = last_drop
        .filter(|r| r.succeeded())
        .map(change_record::run_line);
    let rolled_back = evidence
        .as_ref()
        .and_then(|e| e.last_rollback.as_ref())
        .filter(|r| last_drop.is_none_or(|d| r.started_at > d.started_at))
        .map(change_record::run_line);
    EnvironmentView {
        name: env.name.clone(),
        protected: env.protected,
        drop_command: format!("fkctl drop {path} --env {}", env.name),
        rollback_command: format!("fkctl rollback {path} --env {} --yes", env.name),
        steps: plan.steps.iter().map(step_view).collect(),
        evidence,
        same_steps_as: None,
        dropped,
        rolled_back,
        fleet: fleet_view(env, inputs.fleet_rows),
    }
}

fn rollback_view(
    playbook: &Playbook,
    path: &str,
    env: &PlaybookEnv,
    plan: &Plan,
    evidence: &[Evidence],
) -> RollbackView {
    let name = &env.name;
    RollbackView {
        environment: name.clone(),
        protected: env.protected,
        interactive_command: format!("fkctl rollback {path} --env {name}"),
        yes_command: format!("fkctl rollback {path} --env {name} --yes"),
        plan_command: format!("fkctl plan {path} --rollback --env {name}"),
        basis: plan.basis.clone(),
        path: plan
            .notes
            .iter()
            .find_map(|n| n.strip_prefix("Path: "))
            .map(str::to_string),
        steps: plan.steps.iter().map(step_view).collect(),
        script: psql::rollback_script(plan, playbook, path),
        estimate: evidence
            .iter()
            .find(|e| &e.environment == name)
            .map(change_record::estimate_text),
        restore_command: format!("fkctl restore {path} --env {name} --run RUN_ID"),
        vacuum: format!("VACUUM (ANALYZE) {};", playbook.constraint.table.quoted()),
        same_as: None,
    }
}

/// Every statement and check of `steps`, in order: what makes two
/// environments' plans the same SQL.
fn statements(steps: &[StepView]) -> Vec<&str> {
    steps
        .iter()
        .flat_map(|s| {
            s.before
                .iter()
                .map(|b| b.0.as_str())
                .chain(s.sql.iter().map(String::as_str))
                .chain(s.after.iter().map(|a| a.0.as_str()))
        })
        .collect()
}

/// For each plan, the first earlier one with the same statements.
fn same_as<'a>(plans: impl Iterator<Item = (&'a str, &'a [StepView])>) -> Vec<Option<String>> {
    let seen: Vec<(&str, Vec<&str>)> = plans.map(|(env, steps)| (env, statements(steps))).collect();
    seen.iter()
        .enumerate()
        .map(|(i, (_, sql))| {
            seen[..i]
                .iter()
                .find(|(_, earlier)| earlier == sql)
                .map(|(env, _)| env.to_string())
        })
        .collect()
}

fn monitoring(playbook: &Playbook, path: &str) -> Vec<(String, String, String)> {
    let fk = &playbook.constraint;
    let mut rows = Vec::new();
    for env in &playbook.environments {
        let name = &env.name;
        rows.push((
            format!("{name}: orphaned rows (should stay 0 unless the application deletes parents)"),
            format!("fkctl orphans {path} --env {name} --metrics-file /var/lib/node_exporter/textfile/fkctl-orphans-{name}.prom"),
            "orphans grow and the application cannot tolerate them".into(),
        ));
        rows.push((
            format!("{name}: the constraint's state and fkctl's journal"),
            format!("fkctl status {path} --env {name}"),
            "the constraint is not in the expected state".into(),
        ));
    }
    rows.push((
        format!(
            "application errors when a {} row is gone (the association must read as empty)",
            fk.ref_table.display()
        ),
        "your error tracker / logs".into(),
        "errors referencing the missing rows appear".into(),
    ));
    rows
}

/// Everything the template sees.
// Long because it fills the template's context field by field, in the template's order.
pub fn context(inputs: &Inputs<'_>) -> Context {
    let playbook = inputs.playbook;
    let fk = &playbook.constraint;
    let path = playbook.path.display().to_string();
    let evidence = inputs.evidence;
    let mut environments: Vec<EnvironmentView> = playbook
        .environments
        .iter()
        .zip(inputs.drop_plans)
        .map(|(env, plan)| environment_view(&path, env, plan, inputs))
        .collect();
    let mut rollbacks: Vec<RollbackView> = playbook
        .environments
        .iter()
        .zip(inputs.rollback_plans)
        .map(|(env, plan)| rollback_view(playbook, &path, env, plan, evidence))
        .collect();
    let same_drop = same_as(
        environments
            .iter()
            .map(|e| (e.name.as_str(), e.steps.as_slice())),
    );
    for (env, same) in environments.iter_mut().zip(same_drop) {
        env.same_steps_as = same;
    }
    let same_rollback = same_as(
        rollbacks
            .iter()
            .map(|r| (r.environment.as_str(), r.steps.as_slice())),
    );
    for (rb, same) in rollbacks.iter_mut().zip(same_rollback) {
        rb.same_as = same;
    }
    let fence = fence_for(
        environments
            .iter()
            .flat_map(|e| e.steps.iter())
            .chain(rollbacks.iter().flat_map(|r| r.steps.iter()))
            .flat_map(|s| {
                s.sql
                    .iter()
                    .chain(s.before.iter().map(|b| &b.0))
                    .chain(s.after.iter().map(|a| &a.0))
                    .cloned()
            })
            .chain(rollbacks.iter().map(|r| r.script.clone())),
    );
    let last = rollbacks.last();
    let rollback_env = last.map(|r| r.environment.clone()).unwrap_or_default();
    let mut labels = vec!["change-request".to_string(), "database".to_string()];
    let criticality = criticality(playbook, evidence);
    labels.push(format!("criticality::{}", criticality.level));
    labels.push("fkctl".to_string());
    for l in &playbook.change_request_labels {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
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
        stops_enforcing: inputs.impact.stops_enforcing.clone(),
        purge_sets_off: inputs.impact.purge_sets_off.clone(),
        cascade_tree: inputs
            .impact
            .cascade_tree
            .iter()
            .map(|l| CascadeLine {
                indent: "  ".repeat(l.depth.saturating_sub(1)),
                text: l.text.clone(),
            })
            .collect(),
        cascade_refusals: inputs.impact.cascade_refusals.clone(),
        warnings: inputs.impact.warnings.clone(),
        criticality,
        change_management: change_record::change_management(
            evidence,
            &duration::human(playbook.safety.lock_timeout),
            playbook.safety.lock_retries,
        ),
        drift: change_record::drift_fields(fk, evidence),
        diagram: diagram::mermaid(
            fk,
            inputs.dependents,
            inputs.partitions,
            playbook.loose.is_some(),
        ),
        labels,
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
        rollback_command: format!("fkctl rollback {path} --env {rollback_env} --yes"),
        rollback_env,
        rollback_steps: last.map(|r| r.steps.clone()).unwrap_or_default(),
        rollback_path: last.and_then(|r| r.path.clone()),
        rollbacks,
        rollback_policy: playbook.rollback.orphans.name().to_string(),
        lock_timeout: duration::human(playbook.safety.lock_timeout),
        statement_timeout: duration::human(playbook.safety.statement_timeout),
        lock_retries: playbook.safety.lock_retries,
        monitoring: monitoring(playbook, &path),
        loose: playbook.loose.as_ref().map(|_| loose_view(playbook, &path)),
        fence,
        compact: false,
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
    fn a_delete_rate_in_words() {
        let rate = DeleteRate {
            deleted: 3_000,
            since_seconds: Some(3.0 * 86_400.0),
        };
        assert_eq!(
            delete_rate_text(&rate),
            "~1,000 a day (3,000 since the statistics were reset 3 days ago)"
        );
        let unknown = DeleteRate {
            deleted: 7,
            since_seconds: None,
        };
        assert_eq!(
            delete_rate_text(&unknown),
            "7 since the statistics began (no reset recorded, so no rate)"
        );
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
    /// The cleanup of the first environment (kept for older templates).
    pub cleanup_command: String,
    /// The cleanup of every environment, in playbook order.
    pub cleanup_commands: Vec<String>,
    pub duty: String,
    pub metrics: Vec<(String, String)>,
    pub alert: String,
}

fn loose_view(playbook: &Playbook, path: &str) -> LooseView {
    use crate::kinds::foreign_key::loose::cleanup::Duty;
    let change = &playbook.change;
    let first = playbook
        .environments
        .first()
        .map_or("staging", |e| e.name.as_str());
    let cleanup = |env: &str| {
        format!("fkctl cleanup {path} --env {env} --once --metrics-file /var/lib/node_exporter/textfile/fkctl-{change}-{env}.prom")
    };
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
        cleanup_command: cleanup(first),
        cleanup_commands: playbook
            .environments
            .iter()
            .map(|e| cleanup(&e.name))
            .collect(),
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
