//! VACUUM between a large purge and VALIDATE (`rollback.vacuum`).
//!
//! Deleting rows spread over the child clears the visibility map on every
//! page they were on. On a large table VALIDATE's check is an anti-join
//! that PostgreSQL may run as an index-only scan of the child's key index,
//! trusting the map's count from the last VACUUM; each entry on a cleared
//! page then costs a visit to the table. Measured on 20,000,000 children
//! with 100,000 orphans on half the pages: VALIDATE 43-53 s, against 3 s
//! after a VACUUM of 6-8 s. On a small table VALIDATE reads the table
//! itself and gains nothing, and a small purge clears too few pages to
//! matter, so `auto` vacuums only a large purge on a large table. The step
//! is only an optimisation: when it fails, the rollback goes on to VALIDATE.

use super::{lock, step, Planner};
use crate::plan::{LockMode, Status, Step, StepKind};
use crate::playbook::{duration, VacuumPolicy};
use crate::sql::ident::{quote_literal, QualifiedName};

/// `auto`: tables smaller than this (tables, indexes, TOAST) never.
const MIN_BYTES: i64 = 1 << 30;
/// `auto`: below this many purged rows never ...
const MIN_ROWS: i64 = 10_000;
/// ... nor below this share of the child's size in 8 kB pages.
const PAGE_SHARE: i64 = 10;
const PAGE_BYTES: i64 = 8192;

/// How many purged rows make the VACUUM worth its cost under `auto`, for a
/// child of `child_bytes` (all partitions): 10,000, or a tenth of its pages
/// when that is more; None for a table too small to gain (or of unknown size).
pub fn auto_threshold(child_bytes: Option<i64>) -> Option<i64> {
    let bytes = child_bytes.filter(|b| *b >= MIN_BYTES)?;
    Some(MIN_ROWS.max(bytes / PAGE_BYTES / PAGE_SHARE))
}

/// Whether the rollback vacuums after purging `purged` rows.
pub fn runs(policy: VacuumPolicy, purged: i64, child_bytes: Option<i64>) -> bool {
    match policy {
        VacuumPolicy::Never => false,
        VacuumPolicy::Always => purged > 0,
        VacuumPolicy::Auto => auto_threshold(child_bytes).is_some_and(|t| purged >= t),
    }
}

/// Dead rows the server counts in the child (all its leaves): what an
/// earlier run's purge left when it was stopped before VALIDATE (its batches
/// committed), with the application's own. Read only by a resumed run.
/// (`pg_partition_tree` lists nothing for a table that is not partitioned,
/// and a leaf partition itself: the union counts each table once.)
pub fn dead_rows_sql(child: &QualifiedName) -> String {
    let child = format!("{}::regclass", quote_literal(&child.quoted()));
    format!(
        "SELECT coalesce(sum(pg_stat_get_dead_tuples(t)), 0)::int8 FROM (SELECT relid FROM pg_partition_tree({child}) WHERE isleaf UNION SELECT {child}) s(t)"
    )
}

/// `auto`'s rule in words, for the plan, the messages and the docs.
pub fn auto_rule() -> String {
    format!(
        "a purge of at least {} rows, or of a tenth of the child's size in 8 kB pages (indexes included) if that is more, on a child of {} GB or more",
        crate::render::count(MIN_ROWS),
        MIN_BYTES >> 30
    )
}

/// The step, planned after the purge unless `rollback.vacuum` is `never`;
/// the rollback runs it when [`runs`] says so, and says so either way.
pub(super) fn vacuum_step(cx: &Planner<'_>, status: &Status) -> Option<Step> {
    let policy = cx.playbook.rollback.vacuum;
    let bytes = cx.observed.map(|o| o.inspection.child.total_bytes);
    let rule = match (policy, cx.observed.is_some(), auto_threshold(bytes)) {
        (VacuumPolicy::Never, ..) => return None,
        (VacuumPolicy::Always, ..) => "after any purge, and on a resumed rollback when the child holds dead rows (an earlier run's purge among them) (rollback.vacuum: always)".to_string(),
        (VacuumPolicy::Auto, true, None) => format!(
            "only after {} (rollback.vacuum: auto); this child is smaller, so it will not run",
            auto_rule()
        ),
        (VacuumPolicy::Auto, true, Some(t)) => format!(
            "only when the purge removed at least {} rows here, or, on a resumed rollback, the child holds that many dead rows (an earlier run's purge among them) (rollback.vacuum: auto: {})",
            crate::render::count(t),
            auto_rule()
        ),
        (VacuumPolicy::Auto, false, _) => {
            format!("only after {} (rollback.vacuum: auto)", auto_rule())
        }
    };
    let mut vacuum = step(
        StepKind::VacuumChild,
        "Vacuum the child after a large purge",
        &format!("Runs {rule}. Rows deleted across a large table clear the visibility map on each page they were on, and VALIDATE's check, which may read the child's key index alone, then visits the table for every entry on those pages; VACUUM sets the map again and removes the dead rows. It takes SHARE UPDATE EXCLUSIVE, like VALIDATE: reads and writes go on (TRUNCATE false: it never takes the brief ACCESS EXCLUSIVE lock that shrinking the file would). It cannot run in a transaction, so its timeouts are set for the session and reset after. If it fails, fkctl says so and goes on to VALIDATE."),
    );
    vacuum.statements = vec![
        format!(
            "SET lock_timeout = '{}'",
            duration::human(cx.playbook.safety.lock_timeout)
        ),
        "SET statement_timeout = 0".to_string(),
        format!("VACUUM (TRUNCATE false) {}", cx.orphans.child.quoted()),
        "RESET statement_timeout".to_string(),
    ];
    vacuum.locks = vec![lock(&cx.child, LockMode::ShareUpdateExclusive)];
    vacuum.lock_retries = Some(cx.playbook.safety.lock_retries);
    vacuum.status = status.clone();
    Some(vacuum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: i64 = 1 << 30;

    #[test]
    fn auto_never_vacuums_a_small_table_or_after_a_small_purge() {
        assert_eq!(auto_threshold(None), None);
        // 200,000 rows, about 55 MB: however many rows went.
        assert!(!runs(VacuumPolicy::Auto, 100_000, Some(55 << 20)));
        // 2 GB: 10,000 rows at least.
        assert_eq!(auto_threshold(Some(2 * GB)), Some(26_214));
        assert!(!runs(VacuumPolicy::Auto, 9_999, Some(GB)));
        assert!(runs(VacuumPolicy::Auto, 13_108, Some(GB)));
    }

    #[test]
    fn auto_needs_a_tenth_of_a_large_tables_pages() {
        // 20,000,000 rows, about 5.5 GB: 704,000 pages.
        let bytes = Some(5_500_i64 << 20);
        assert_eq!(auto_threshold(bytes), Some(70_400));
        assert!(runs(VacuumPolicy::Auto, 100_000, bytes));
        assert!(!runs(VacuumPolicy::Auto, 1_000, bytes));
    }

    #[test]
    fn always_and_never_say_what_they_mean() {
        assert!(runs(VacuumPolicy::Always, 1, Some(1)));
        assert!(!runs(VacuumPolicy::Always, 0, Some(GB)));
        assert!(!runs(VacuumPolicy::Never, 1_000_000, Some(100 * GB)));
    }
}
