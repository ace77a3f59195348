//! VACUUM between a large purge and VALIDATE.
//!
//! Deleting rows spread over the child clears the visibility map on every
//! page they were on. VALIDATE's check is an anti-join that PostgreSQL may
//! run as an index-only scan of the child's key index, trusting the map's
//! count from the last VACUUM; each entry on a cleared page then costs a
//! heap visit. Measured on 20,000,000 children with 100,000 orphans on half
//! the pages: VALIDATE 43-53 s, against 3 s after a VACUUM of 6-8 s. A
//! small purge clears too few pages to matter, and VACUUM's passes over
//! every index of the child would cost more than they save, so the step
//! runs only above a threshold.

use super::{lock, step, Planner};
use crate::plan::{LockMode, Status, Step, StepKind};

/// Below this many purged rows the step never runs.
const MIN_ROWS: i64 = 10_000;
/// ... nor below this share of the child's size in 8 kB pages.
const PAGE_SHARE: i64 = 10;
const PAGE_BYTES: i64 = 8192;

/// How many purged rows make the VACUUM worth its cost, for a child of
/// `child_bytes` (tables, indexes and TOAST, all partitions): 10,000, or a
/// tenth of its pages when that is more. Unknown size: 10,000.
pub fn threshold(child_bytes: Option<i64>) -> i64 {
    let pages = child_bytes.unwrap_or(0).max(0) / PAGE_BYTES;
    MIN_ROWS.max(pages / PAGE_SHARE)
}

/// Whether the purge of `purged` rows pays for the VACUUM.
pub fn pays(purged: i64, child_bytes: Option<i64>) -> bool {
    purged >= threshold(child_bytes)
}

/// The step, planned after every purge; the rollback runs it only when
/// [`pays`] says so, and says so either way.
pub(super) fn vacuum_step(cx: &Planner<'_>, status: &Status) -> Step {
    let bytes = cx.observed.map(|o| o.inspection.child.total_bytes);
    let rule = match bytes {
        Some(_) => format!(
            "only when the purge removed at least {} rows (10,000, or a tenth of the child's pages if more)",
            threshold(bytes)
        ),
        None => "only when the purge removed at least 10,000 rows, or a tenth of the child's pages if more".to_string(),
    };
    let mut vacuum = step(
        StepKind::VacuumChild,
        "Vacuum the child after a large purge",
        &format!("Runs {rule}. Rows deleted across the table clear the visibility map on each page they were on, and VALIDATE's check, which may read the child's key index alone, then visits the table for every entry on those pages (43 s instead of 3 s measured on 20M rows). VACUUM sets the map again and removes the dead rows, under SHARE UPDATE EXCLUSIVE like VALIDATE: reads and writes go on. It cannot run in a transaction; the session's lock_timeout bounds its wait."),
    );
    vacuum.statements = vec![format!("VACUUM {}", cx.orphans.child.quoted())];
    vacuum.locks = vec![lock(&cx.child, LockMode::ShareUpdateExclusive)];
    vacuum.lock_retries = Some(cx.playbook.safety.lock_retries);
    vacuum.status = status.clone();
    vacuum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_purges_and_small_tables_do_not_vacuum() {
        assert_eq!(threshold(None), 10_000);
        assert!(!pays(9_999, None));
        assert!(pays(10_000, None));
        // 200,000 rows, about 55 MB: 10,000 rows are enough.
        assert!(pays(20_000, Some(55 << 20)));
        assert!(!pays(1_000, Some(55 << 20)));
    }

    #[test]
    fn large_tables_need_a_tenth_of_their_pages() {
        // 20,000,000 rows, about 5.5 GB: 671,000 pages.
        let bytes = Some(5_500_i64 << 20);
        assert_eq!(threshold(bytes), 70_400);
        assert!(pays(100_000, bytes));
        assert!(!pays(50_000, bytes));
        assert!(!pays(1_000, bytes));
    }
}
