//! The parts of the change request that make it a living record and a
//! reviewable one: what the journals show done (the ticked boxes), the
//! playbook's definition beside each database's, and time estimates from the
//! measured sizes. Pure: everything comes from what the command read.

use super::change_request::{Evidence, PastRun};
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::sql::ident::Ident;
use serde::Serialize;

/// Sequential read rate assumed for a scan of the child. fkctl's benchmark
/// (README) read 5,000,000 rows three times in about 4 s on a 2-core
/// machine; 100 MiB/s is a deliberately slower figure for busy servers.
const SCAN_BYTES_PER_SECOND: f64 = 100.0 * 1024.0 * 1024.0;
/// Archived purge throughput: the benchmark's cleanup archived about 75,000
/// rows/s; halved for headroom.
const PURGE_ROWS_PER_SECOND: f64 = 35_000.0;

/// Seconds as a person plans a change window with them.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        "under a second".into()
    } else if seconds < 60.0 {
        format!("about {} s", seconds.ceil() as i64)
    } else if seconds < 3600.0 {
        format!("about {} min", (seconds / 60.0).ceil() as i64)
    } else if seconds < 2.0 * 86_400.0 {
        let minutes = (seconds / 60.0).ceil() as i64;
        format!("about {} h {} min", minutes / 60, minutes % 60)
    } else {
        format!("about {} days", (seconds / 86_400.0).round() as i64)
    }
}

/// (drop, rollback) estimated from one database's measured sizes: the drop
/// reads the child once (the orphan count); the rollback reads it three
/// times (the list, the check before VALIDATE, VALIDATE) and purges.
pub fn estimate(evidence: &Evidence) -> (f64, f64) {
    let scan = evidence.child_bytes.max(0) as f64 / SCAN_BYTES_PER_SECOND;
    let purge = evidence.orphans_now.max(0) as f64 / PURGE_ROWS_PER_SECOND;
    (scan + 1.0, 3.0 * scan + purge + 1.0)
}

pub fn estimate_text(evidence: &Evidence) -> String {
    let (_, rollback) = estimate(evidence);
    format!(
        "{}: {} of {} read three times (the orphan list, the check before VALIDATE, VALIDATE) at an assumed 100 MiB/s, and {} orphan(s) purged at an assumed 35,000 rows/s",
        human_duration(rollback),
        super::bytes(evidence.child_bytes),
        evidence.child_table,
        super::count(evidence.orphans_now),
    )
}

/// GitLab's change-management fields.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeManagement {
    pub scheduled: String,
    pub downtime: String,
    pub estimated_duration: String,
    pub rollback_duration: String,
}

pub fn change_management(
    evidence: &[Evidence],
    lock_timeout: &str,
    lock_retries: u32,
) -> ChangeManagement {
    let sum = |pick: fn(&Evidence) -> f64| evidence.iter().map(pick).sum::<f64>();
    let measured = !evidence.is_empty();
    let unmeasured =
        "not measured: run with --env NAME (or --post) to estimate from the tables' sizes";
    ChangeManagement {
        scheduled: "<!-- date and time (UTC) of the change window -->".into(),
        downtime: format!("none planned: every DDL statement waits at most lock_timeout ({lock_timeout}) for its lock, up to {lock_retries} retries, and holds it for milliseconds"),
        estimated_duration: if measured {
            format!(
                "{} of fkctl work over the measured environments (each drop reads the child once), plus the pauses between environments",
                human_duration(sum(|e| estimate(e).0))
            )
        } else {
            unmeasured.into()
        },
        rollback_duration: if measured {
            evidence
                .iter()
                .map(|e| format!("{}: {}", e.environment, human_duration(estimate(e).1)))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            unmeasured.into()
        },
    }
}

/// One field of the drift check: the playbook's value and each database's.
#[derive(Debug, Clone, Serialize)]
pub struct DriftField {
    pub field: &'static str,
    pub playbook: String,
    /// "staging: cascade (matches)", ... for each environment read.
    pub live: Vec<String>,
}

fn list(columns: &[Ident]) -> String {
    columns
        .iter()
        .map(Ident::display)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fields `fkctl drop` compares before it changes anything (see
/// kinds/foreign_key/plan/drift.rs), as (name, value).
fn fields(fk: &ForeignKeyDef) -> Fields {
    vec![
        ("columns", list(&fk.columns)),
        ("references.table", fk.ref_table.display()),
        ("references.columns", list(&fk.ref_columns)),
        ("on_delete", fk.on_delete.playbook_name().into()),
        ("on_update", fk.on_update.playbook_name().into()),
        ("match", format!("{:?}", fk.match_type).to_lowercase()),
        ("deferrable", fk.deferrable.to_string()),
        ("initially_deferred", fk.initially_deferred.to_string()),
    ]
}

/// A definition's fields, as `fields` lists them.
type Fields = Vec<(&'static str, String)>;

pub fn drift_fields(playbook: &ForeignKeyDef, evidence: &[Evidence]) -> Vec<DriftField> {
    let live: Vec<(&str, Option<Fields>)> = evidence
        .iter()
        .map(|e| {
            (
                e.environment.as_str(),
                e.live_definition.as_ref().map(fields),
            )
        })
        .collect();
    fields(playbook)
        .into_iter()
        .enumerate()
        .map(|(i, (field, value))| DriftField {
            field,
            live: live
                .iter()
                .map(|(env, f)| match f.as_ref().and_then(|f| f.get(i)) {
                    Some((_, v)) if *v == value => format!("{env}: {v} (matches)"),
                    Some((_, v)) => format!("{env}: {v} (DIFFERS: fkctl drop stops)"),
                    None => format!("{env}: constraint not in the catalog"),
                })
                .collect(),
            playbook: value,
        })
        .collect()
}

/// What the journal shows of a run, in one line for a ticked box.
pub fn run_line(run: &PastRun) -> String {
    let mut parts = vec![format!(
        "{} at {} by {} (run {})",
        run.outcome, run.started_at, run.operator, run.run_id
    )];
    if let Some(n) = run.orphans {
        parts.push(format!("{n} orphan(s) found"));
    }
    if let Some(ms) = run.main_step_ms {
        parts.push(format!("{} took {ms} ms", run.main_step));
    }
    parts.push(format!("{} lock retries", run.retries));
    if let Some(ms) = run.took_ms {
        parts.push(format!("whole run {ms} ms"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_change_window_is_planned() {
        assert_eq!(human_duration(0.2), "under a second");
        assert_eq!(human_duration(12.1), "about 13 s");
        assert_eq!(human_duration(600.0), "about 10 min");
        assert_eq!(human_duration(3_700.0), "about 1 h 2 min");
        assert_eq!(human_duration(3.0 * 86_400.0), "about 3 days");
    }
}
