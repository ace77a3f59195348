//! One fkctl run per constraint: two playbooks for the same foreign key
//! cannot run at once, and a run whose client was killed does not lock the
//! next one out while its backend finishes the statement it was running.
//!
//! The child table gets an application trigger that makes each deleted row
//! take half a second while `slow.on_` is true, so a purge batch is a long
//! statement that a test can catch in flight.

mod common;

use common::staged::{present, Setup};
use common::*;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const SLOW_DELETES: &str = "
CREATE TABLE public.slow (on_ boolean NOT NULL);
INSERT INTO public.slow VALUES (true);
CREATE FUNCTION public.slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT on_ FROM public.slow) THEN PERFORM pg_sleep(0.5); END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER slow BEFORE DELETE ON ci_pipeline_chat_data FOR EACH ROW EXECUTE FUNCTION public.slow_delete();";

/// Drops the FK with fkctl, orphans some rows, slows their deletion down.
/// Returns the number of rows in the child before the rollback.
fn prepare(s: &Setup) -> i64 {
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    exec(&s.staging, "DELETE FROM chat_names WHERE id % 100 = 0");
    exec(&s.staging, SLOW_DELETES);
    scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data")
}

fn spawn_rollback(s: &Setup, playbook: &str) -> Child {
    s.command(&["rollback", playbook, "--env", "staging", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The pid of fkctl's backend once it is deleting a batch.
fn purging_backend(s: &Setup) -> i32 {
    let started = Instant::now();
    loop {
        let pid = scalar_i64(
            &s.staging,
            "SELECT coalesce(max(pid), 0)::int8 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fkctl' AND state = 'active' AND query LIKE '%fkctl_orphan_next%DELETE FROM%'",
        );
        if pid > 0 {
            return pid as i32;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fkctl never started purging"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn archived(s: &Setup) -> i64 {
    scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive")
}

#[test]
fn two_playbooks_for_the_same_constraint_cannot_run_at_once() {
    let s = Setup::with_rollback("guard_two", "{ lock_timeout: 200ms }", "{ batch_size: 20 }");
    let before = prepare(&s);
    let first_path = s.playbook.display().to_string();
    let other = TempDir::new("guard_two");
    let text = std::fs::read_to_string(&s.playbook).unwrap_or_else(|e| panic!("{e}"));
    let second = other.write(
        "other.yml",
        &text.replace(
            "change: remove-fk-guard_two",
            "change: another-name-same-fk",
        ),
    );
    let first = spawn_rollback(&s, &first_path);
    let pid = purging_backend(&s);
    let second_path = second.display().to_string();
    let out = s.run(&["rollback", &second_path, "--env", "staging", "--yes"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("another fkctl run"), "{err}");
    assert!(
        err.contains(&format!("pid {pid} ")),
        "the holder is named: {err}"
    );
    exec(&s.staging, "UPDATE public.slow SET on_ = false");
    let out = finish(first);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(present(&s.staging));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data") + archived(&s),
        before
    );
}

#[test]
fn a_killed_clients_backend_does_not_lock_out_the_next_run() {
    let s = Setup::with_rollback(
        "guard_kill",
        "{ lock_timeout: 200ms }",
        "{ batch_size: 20 }",
    );
    let before = prepare(&s);
    let path = s.playbook.display().to_string();
    let mut first = spawn_rollback(&s, &path);
    let orphaned = purging_backend(&s);
    // kill -9: the client is gone mid-batch; its batch would take 10 s more.
    first.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = first.wait();
    let started = Instant::now();
    let second = spawn_rollback(&s, &path);
    // Once the second run has its own run row it holds the locks: speed up.
    while scalar_i64(
        &s.staging,
        "SELECT count(*) FROM fkctl.runs WHERE operation = 'rollback'",
    ) < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the second run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the next run waited {:?} for the killed client's backend",
        started.elapsed()
    );
    exec(&s.staging, "UPDATE public.slow SET on_ = false");
    let out = finish(second);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        scalar_i64(
            &s.staging,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {orphaned}")
        ),
        0,
        "the server ended the killed client's backend"
    );
    assert!(present(&s.staging));
    assert_eq!(
        scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data") + archived(&s),
        before,
        "no row lost"
    );
}
