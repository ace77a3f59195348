//! Running one command over the databases of a fleet: the canaries alone,
//! one after another, then waves of at most `concurrency` at a time; the
//! first failure starts no new target (those running finish); the worst
//! outcome is the exit code.
//!
//! Each target runs as its own fkctl process (`fkctl drop --env
//! production/shard-01 --yes --output json`): the same engine, plan and
//! journal as a one-database run, one session each (never more than
//! `concurrency` open), its output captured whole, and a crash or a hang in
//! one target cannot corrupt another's run. Re-running continues: each
//! process reads its own catalog and journal, so a target already done
//! reports so.

pub mod report;

use crate::error::{Error, Kind, Result};
use crate::playbook::Environment;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

/// How one target's run went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetRun {
    /// `ENVIRONMENT/TARGET`.
    pub target: String,
    /// Whether it was started (false: an earlier failure stopped the rollout).
    pub started: bool,
    /// fkctl's exit code for it (see the README's table); None if not started.
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// Its `--output json` document, when it printed one.
    pub document: Option<serde_json::Value>,
    /// The last lines it wrote to stderr (its error, when it failed).
    pub last_words: Vec<String>,
}

impl TargetRun {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// The order of the rollout: canaries, then the rest.
pub struct Rollout {
    pub canary: usize,
    pub concurrency: usize,
    /// A change stops at the first failure; a read of every database goes on.
    pub stop_on_failure: bool,
}

/// The worst of the outcomes, by how much attention it needs.
fn severity(code: i32) -> u8 {
    match code {
        0 => 0,
        7 => 1,
        2 => 2,
        4 => 3,
        5 => 4,
        3 => 5,
        1 => 6,
        6 => 7,
        _ => 8,
    }
}

fn kind_of(code: i32) -> Kind {
    match code {
        2 => Kind::Usage,
        3 => Kind::Unreachable,
        4 => Kind::Precondition,
        5 => Kind::LockNotAcquired,
        6 => Kind::FailedMidway,
        7 => Kind::Declined,
        130 => Kind::Interrupted,
        _ => Kind::Internal,
    }
}

/// Ok when every target succeeded; else the worst exit code's error, naming
/// the failed targets and those not started.
pub fn outcome(command: &str, runs: &[TargetRun]) -> Result<()> {
    let failed: Vec<&TargetRun> = runs.iter().filter(|r| r.started && !r.ok()).collect();
    let Some(worst) = failed
        .iter()
        .filter_map(|r| r.exit_code)
        .max_by_key(|c| severity(*c))
    else {
        return Ok(());
    };
    let not_started: Vec<&str> = runs
        .iter()
        .filter(|r| !r.started)
        .map(|r| r.target.as_str())
        .collect();
    let mut e = Error::precondition(format!(
        "{command} failed on {} of {} target(s): {}",
        failed.len(),
        runs.len(),
        failed
            .iter()
            .map(|r| format!(
                "{} (exit {})",
                r.target,
                r.exit_code.map_or("?".into(), |c| c.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    e.kind = kind_of(worst);
    if !not_started.is_empty() {
        e = e.with("not started", not_started.join(", "));
    }
    Err(e.next(format!(
        "fix the cause shown for each failed target, then run the same fkctl {command} again: targets already done report so and are left as they are"
    )))
}

/// Runs `args_for(target)` as an fkctl process for every target, in rollout
/// order. Stops starting targets after the first failure.
pub fn run(
    targets: &[Environment],
    rollout: &Rollout,
    label: &str,
    args_for: &dyn Fn(&Environment) -> Vec<String>,
) -> Result<Vec<TargetRun>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find fkctl's own executable: {e}")))?;
    let progress = Progress::new(label, targets.len());
    let mut runs: Vec<TargetRun> = targets
        .iter()
        .map(|t| TargetRun {
            target: t.name.clone(),
            started: false,
            exit_code: None,
            seconds: 0.0,
            document: None,
            last_words: Vec::new(),
        })
        .collect();
    let canaries = rollout.canary.min(targets.len());
    // The canaries, one at a time: a failure there touches nothing else.
    for i in 0..canaries {
        let run = wave(&exe, &targets[i..=i], 1, true, args_for, &progress)?;
        runs[i] = run.into_iter().next().unwrap_or_else(|| runs[i].clone());
        if !runs[i].ok() {
            return Ok(runs);
        }
    }
    let rest = wave(
        &exe,
        &targets[canaries..],
        rollout.concurrency.max(1),
        rollout.stop_on_failure,
        args_for,
        &progress,
    )?;
    for (slot, run) in runs[canaries..].iter_mut().zip(rest) {
        *slot = run;
    }
    progress.finish();
    Ok(runs)
}

/// Runs the targets at most `concurrency` at a time; after a failure (when
/// `stop_on_failure`), starts no new one and waits for those running.
fn wave(
    exe: &std::path::Path,
    targets: &[Environment],
    concurrency: usize,
    stop_on_failure: bool,
    args_for: &dyn Fn(&Environment) -> Vec<String>,
    progress: &Progress,
) -> Result<Vec<TargetRun>> {
    let mut runs: Vec<Option<TargetRun>> = vec![None; targets.len()];
    let (done_tx, done_rx) = mpsc::channel::<(usize, TargetRun)>();
    let mut next = 0;
    let mut running = 0;
    let mut stopped = false;
    loop {
        while !stopped && running < concurrency && next < targets.len() {
            let target = &targets[next];
            let mut command = Command::new(exe);
            command
                .args(args_for(target))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let bar = progress.start(&target.name);
            spawn_one(next, target.name.clone(), command, bar, done_tx.clone())?;
            next += 1;
            running += 1;
        }
        if running == 0 {
            break;
        }
        let (i, run) = done_rx
            .recv()
            .map_err(|_| Error::internal("a target's watcher thread vanished"))?;
        running -= 1;
        progress.done(&run);
        if (stop_on_failure && !run.ok()) || crate::execute::interrupt::interrupted() {
            stopped = true;
        }
        runs[i] = Some(run);
    }
    Ok(runs
        .into_iter()
        .zip(targets)
        .map(|(r, t)| {
            r.unwrap_or(TargetRun {
                target: t.name.clone(),
                started: false,
                exit_code: None,
                seconds: 0.0,
                document: None,
                last_words: Vec::new(),
            })
        })
        .collect())
}

/// Starts one target's process; a thread streams its stderr to its progress
/// line, collects its stdout (the JSON document) and reports when it ends.
fn spawn_one(
    index: usize,
    target: String,
    mut command: Command,
    bar: ProgressBar,
    done: mpsc::Sender<(usize, TargetRun)>,
) -> Result<()> {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| Error::internal(format!("cannot start fkctl for {target}: {e}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut out) = stdout {
                let _ = out.read_to_string(&mut text);
            }
            text
        });
        let mut last_words: Vec<String> = Vec::new();
        if let Some(err) = stderr {
            for line in BufReader::new(err)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let line = line.trim_end().to_string();
                if line.trim().is_empty() {
                    continue;
                }
                bar.set_message(line.trim().chars().take(100).collect::<String>());
                last_words.push(line);
                if last_words.len() > 12 {
                    last_words.remove(0);
                }
            }
        }
        let exit_code = child.wait().ok().map(|s| s.code().unwrap_or(130));
        let text = reader.join().unwrap_or_default();
        bar.finish_and_clear();
        let run = TargetRun {
            target,
            started: true,
            exit_code,
            seconds: started.elapsed().as_secs_f64(),
            document: serde_json::from_str(&text).ok(),
            last_words,
        };
        let _ = done.send((index, run));
    });
    Ok(())
}

/// One line per running target on a terminal; a line per finished target otherwise.
struct Progress {
    multi: MultiProgress,
    terminal: bool,
    label: String,
    total: usize,
    finished: std::sync::atomic::AtomicUsize,
}

impl Progress {
    fn new(label: &str, total: usize) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            terminal,
            label: label.to_string(),
            total,
            finished: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn start(&self, target: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) =
            ProgressStyle::with_template(&format!("{{spinner}} {target}: {{msg}} ({{elapsed}})"))
        {
            bar.set_style(style);
        }
        if self.terminal {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar.set_message(format!("{} starting", self.label));
        bar
    }

    fn done(&self, run: &TargetRun) {
        let n = self
            .finished
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let line = format!(
            "[{n}/{}] {}: {} in {:.1} s",
            self.total,
            run.target,
            match run.exit_code {
                Some(0) => "ok".to_string(),
                Some(c) => format!("FAILED (exit {c})"),
                None => "no exit code".to_string(),
            },
            run.seconds
        );
        let _ = self.multi.println(&line);
        if !self.terminal {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        let _ = self.multi.clear();
    }
}
