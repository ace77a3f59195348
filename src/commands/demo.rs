//! `fkctl demo`: the whole story on a sandbox, told with the real commands.
//!
//! The sandbox is two databases, staging and production: on the server in
//! `FKCTL_DEMO_DSN`, else on the local one (`host=localhost user=postgres`),
//! else on two clusters of its own started from the local binaries (two
//! ports). It is left for the user to explore; `fkctl demo --clean` removes it.

use crate::cli::args::{Connection, Output, RequestFormat};
use crate::connect::Target;
use crate::error::{Error, Result};
use crate::sql::ident::Ident;
use crate::testkit;
use crate::tui;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SEED_SQL: &str =
    include_str!("../../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql");
const SEED_PLAYBOOK: &str =
    include_str!("../../playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml");

/// What the sandbox is made of, saved so that `--clean` removes exactly that.
#[derive(Debug, Serialize, Deserialize)]
struct Sandbox {
    /// Base connection strings (no dbname) of the staging and production servers.
    staging_base: String,
    production_base: String,
    staging_db: String,
    production_db: String,
    /// Cluster directories fkctl started (empty when an existing server was used).
    clusters: Vec<PathBuf>,
}

/// The sandbox's name: databases `PREFIX_staging` / `PREFIX_production`
/// and the directory under the temp dir. `--prefix` or FKCTL_DEMO_PREFIX;
/// by default per OS user, so that two people on one server never share one.
fn prefix() -> String {
    std::env::var("FKCTL_DEMO_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            let user: String = crate::journal::operator()
                .split('@')
                .next()
                .unwrap_or("")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .take(20)
                .collect();
            format!("fkctl_demo_{user}")
        })
}

/// A prefix fkctl can use in database and directory names as they are.
pub fn valid_prefix(text: &str) -> std::result::Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 40
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(text.to_string())
    } else {
        Err("1 to 40 characters of a-z, 0-9 and '_', starting with a letter".to_string())
    }
}

/// While a demo runs, its sandbox is its own: a second demo with the same
/// prefix is refused instead of dropping the first one's databases. A lock
/// left by a demo that died (its process gone) is taken over.
struct SandboxLock {
    path: PathBuf,
}

impl SandboxLock {
    fn take(dir: &Path) -> Result<SandboxLock> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("demo.lock");
        // Written whole under another name, then linked into place: a
        // second demo never reads a lock file without its holder's pid.
        let mine = dir.join(format!("demo.lock.{}", std::process::id()));
        std::fs::write(&mine, std::process::id().to_string())
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", mine.display())))?;
        let taken = SandboxLock::link(&mine, &path);
        let _ = std::fs::remove_file(&mine);
        taken
    }

    fn link(mine: &Path, path: &Path) -> Result<SandboxLock> {
        for _ in 0..2 {
            if std::fs::hard_link(mine, path).is_ok() {
                return Ok(SandboxLock {
                    path: path.to_path_buf(),
                });
            }
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            let alive = holder
                .trim()
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return Err(Error::precondition(format!(
                    "another fkctl demo (pid {}) is using the sandbox {}",
                    holder.trim(),
                    prefix()
                ))
                .next(
                    "wait for it to finish, or give this one its own: fkctl demo --prefix NAME",
                ));
            }
            // Its demo is gone: the lock is stale.
            let _ = std::fs::remove_file(path);
        }
        Err(Error::internal(format!(
            "cannot take the demo's lock file {}",
            path.display()
        )))
    }
}

impl Drop for SandboxLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sandbox_dir() -> PathBuf {
    std::env::temp_dir().join(prefix().replace('_', "-"))
}

fn admin(base: &str) -> Result<postgres::Client> {
    postgres::Client::connect(
        &format!("{base} dbname=postgres connect_timeout=5"),
        postgres::NoTls,
    )
    .map_err(|e| {
        Error::new(
            crate::error::Kind::Unreachable,
            format!(
                "cannot reach the demo server: {}",
                crate::error::describe_postgres(&e).1
            ),
        )
    })
}

fn answers(base: &str) -> bool {
    admin(base).is_ok()
}

impl Sandbox {
    fn dsn(&self, production: bool) -> String {
        if production {
            format!("{} dbname={}", self.production_base, self.production_db)
        } else {
            format!("{} dbname={}", self.staging_base, self.staging_db)
        }
    }

    fn create() -> Result<Sandbox> {
        let dir = sandbox_dir();
        if dir.join("sandbox.json").exists() {
            clean_sandbox(false)?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        let p = prefix();
        let explicit = std::env::var("FKCTL_DEMO_DSN")
            .ok()
            .filter(|d| !d.trim().is_empty());
        let local = "host=localhost user=postgres".to_string();
        // FKCTL_DEMO_FORCE_CLUSTERS: always start clusters (how the tests reach that path).
        let forced = std::env::var_os("FKCTL_DEMO_FORCE_CLUSTERS").is_some();
        let server = if forced {
            None
        } else {
            explicit.or_else(|| answers(&local).then_some(local))
        };
        let mut sandbox = match server {
            Some(base) => Sandbox {
                staging_base: base.clone(),
                production_base: base,
                staging_db: format!("{p}_staging"),
                production_db: format!("{p}_production"),
                clusters: Vec::new(),
            },
            None => {
                println!("No PostgreSQL answers; starting two clusters of the demo's own (staging and production)...");
                let staging = testkit::Cluster::start_in(dir.join("staging"), None, true)?;
                let production = testkit::Cluster::start_in(dir.join("production"), None, true)?;
                Sandbox {
                    staging_base: format!("{} user=postgres", staging.base_dsn()),
                    production_base: format!("{} user=postgres", production.base_dsn()),
                    staging_db: format!("{p}_staging"),
                    production_db: format!("{p}_production"),
                    clusters: vec![dir.join("staging"), dir.join("production")],
                }
            }
        };
        // Saved first, so that --clean can remove a half-built sandbox too.
        sandbox.save(&dir)?;
        for (base, db) in [
            (&sandbox.staging_base, &sandbox.staging_db),
            (&sandbox.production_base, &sandbox.production_db),
        ] {
            let quoted = Ident::from_catalog(db.clone()).quoted();
            let mut a = admin(base)?;
            let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"));
            a.batch_execute(&format!("CREATE DATABASE {quoted}"))
                .map_err(|e| Error::from_postgres(&e, "CREATE DATABASE"))?;
            let mut c = postgres::Client::connect(&format!("{base} dbname={db}"), postgres::NoTls)
                .map_err(|e| Error::from_postgres(&e, "connect"))?;
            c.batch_execute(SEED_SQL)
                .map_err(|e| Error::from_postgres(&e, "load the seed case"))?;
        }
        sandbox.clusters.shrink_to_fit();
        Ok(sandbox)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(dir.join("sandbox.json"), text)
            .map_err(|e| Error::internal(format!("cannot write the sandbox state: {e}")))
    }
}

/// Removes the sandbox: its databases (or clusters) and its directory.
/// `--clean`: refused while a demo runs in this sandbox.
fn clean() -> Result<()> {
    let dir = sandbox_dir();
    if !dir.exists() {
        println!("No demo sandbox at {}; nothing to remove.", dir.display());
        return Ok(());
    }
    let lock = SandboxLock::take(&dir)?;
    clean_sandbox(true)?;
    // The directory is gone with the lock file in it.
    std::mem::forget(lock);
    Ok(())
}

/// Drops the sandbox's databases (or stops its clusters) and removes its
/// files: the whole directory, or all but the running demo's lock.
fn clean_sandbox(remove_dir: bool) -> Result<()> {
    let dir = sandbox_dir();
    let state = dir.join("sandbox.json");
    let Ok(text) = std::fs::read_to_string(&state) else {
        println!("No demo sandbox at {}; nothing to remove.", dir.display());
        return Ok(());
    };
    let sandbox: Sandbox = serde_json::from_str(&text)
        .map_err(|e| Error::internal(format!("cannot read {}: {e}", state.display())))?;
    if sandbox.clusters.is_empty() {
        for (base, db) in [
            (&sandbox.staging_base, &sandbox.staging_db),
            (&sandbox.production_base, &sandbox.production_db),
        ] {
            let quoted = Ident::from_catalog(db.clone()).quoted();
            admin(base)?
                .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
                .map_err(|e| Error::from_postgres(&e, "DROP DATABASE"))?;
        }
    }
    for cluster in &sandbox.clusters {
        if cluster.exists() {
            testkit::stop_in(cluster)?;
        }
    }
    if remove_dir {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::internal(format!("cannot remove {}: {e}", dir.display())))?;
    } else {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("demo.lock"))
            {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed
                .map_err(|e| Error::internal(format!("cannot remove {}: {e}", path.display())))?;
        }
    }
    println!(
        "Removed the demo sandbox ({} and {}, and {}).",
        sandbox.staging_db,
        sandbox.production_db,
        dir.display()
    );
    Ok(())
}

struct Story {
    yes: bool,
    chapter: usize,
}

const CHAPTERS: usize = 11;

impl Story {
    fn chapter(&mut self, title: &str, text: &str) -> Result<()> {
        self.chapter += 1;
        if !self.yes && self.chapter > 1 {
            eprint!("\n(press Enter to go on) ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::internal(format!("cannot read the terminal: {e}")))?;
        }
        println!(
            "\n\u{2550}\u{2550}\u{2550} {}/{CHAPTERS} {title} \u{2550}\u{2550}\u{2550}\n{text}",
            self.chapter
        );
        Ok(())
    }

    fn command(&self, shown: &str) {
        println!("\n$ {shown}");
    }
}

// Long because it is the demo's narrative: chapters in the order they are told.
pub fn run(yes: bool, clean_only: bool) -> Result<()> {
    if clean_only {
        return clean();
    }
    if !yes && !tui::interactive() {
        return Err(Error::usage(
            "fkctl demo waits for Enter between chapters, but there is no terminal",
        )
        .next("run fkctl demo --yes to go straight through"));
    }
    let dir = sandbox_dir();
    let _lock = SandboxLock::take(&dir)?;
    println!("Setting up the sandbox {} in {} (the seed case: chat_names, ci_pipelines, ci_pipeline_chat_data with fk_rails_f300456b63; --prefix gives another)...", prefix(), dir.display());
    let sandbox = Sandbox::create()?;
    let playbook = dir.join("playbook.yml");
    std::fs::write(&playbook, SEED_PLAYBOOK)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", playbook.display())))?;
    let overrides = vec![
        ("staging".to_string(), sandbox.dsn(false)),
        ("production".to_string(), sandbox.dsn(true)),
    ];
    let describe = |production: bool| {
        Target::from_dsn("demo", &sandbox.dsn(production))
            .map(|t| t.description)
            .unwrap_or_default()
    };
    let conn = |env: &str| Connection {
        env: env.to_string(),
        dsn: overrides.clone(),
    };
    let pb = playbook.display().to_string();
    let mut story = Story { yes, chapter: 0 };

    story.chapter("The change", &format!(
        "Staging: {}\nProduction: {}\nThe playbook {pb} describes one change: remove fk_rails_f300456b63\n(ci_pipeline_chat_data.chat_name_id -> chat_names.id, ON DELETE CASCADE), staging first, then production.\nFirst, what the database has, and what it stops doing without the constraint:",
        describe(false), describe(true)
    ))?;
    story.command(&format!("fkctl inspect {pb} --env staging"));
    super::inspect::run(&playbook, &conn("staging"), Output::Text)?;

    let request = dir.join("change-request.md");
    story.chapter("The change request", "fkctl writes the change-request issue from the same plan it executes: every SQL statement in it is the SQL that runs.")?;
    story.command(&format!(
        "fkctl change-request {pb} --env staging --out {}",
        request.display()
    ));
    super::change_request::run(
        &playbook,
        &["staging".to_string()],
        &overrides,
        None,
        RequestFormat::Markdown,
        Some(&request),
    )?;
    println!(
        "The change request is in {} (paste it into your tracker).",
        request.display()
    );

    story.chapter("Drop on staging", "Pre-checks, a snapshot of the definition (what rollback restores), then DROP under a short lock_timeout with retries; the catalog confirms.")?;
    story.command(&format!("fkctl drop {pb} --env staging --yes"));
    drop_without_questions(&playbook, "staging", &overrides)?;

    story.chapter("Drop on production", "Production is protected: at a terminal fkctl asks you to type its name; a script must name it with --env.")?;
    story.command(&format!("fkctl drop {pb} --env production --yes"));
    drop_without_questions(&playbook, "production", &overrides)?;

    story.chapter("Meanwhile, the application", "Without the constraint, deleting chat_names rows no longer cascades: their ci_pipeline_chat_data rows stay behind as orphans.")?;
    let mut app = postgres::Client::connect(&sandbox.dsn(true), postgres::NoTls)
        .map_err(|e| Error::from_postgres(&e, "connect"))?;
    let deleted = app
        .execute("DELETE FROM chat_names WHERE id % 50 = 0", &[])
        .map_err(|e| Error::from_postgres(&e, "DELETE"))?;
    println!("DELETE FROM chat_names WHERE id % 50 = 0;  -- {deleted} rows");

    story.chapter(
        "Orphan census",
        "Exactly the rows VALIDATE CONSTRAINT would reject, counted in one pass:",
    )?;
    story.command(&format!("fkctl orphans {pb} --env production --sample 3"));
    super::orphans::run(&playbook, &conn("production"), 3, None, Output::Text)?;

    story.chapter("Incident: roll back on production", "ADD ... NOT VALID (new orphans are refused at once), purge the orphans in small batches, each row archived in the same statement, then VALIDATE (reads and writes go on).")?;
    story.command(&format!("fkctl rollback {pb} --env production --yes"));
    super::rollback::run(
        &playbook,
        &conn("production"),
        super::rollback::Options {
            yes: true,
            max_orphans: None,
            use_playbook_definition: false,
            targets: Vec::new(),
            output: Output::Text,
        },
    )?;

    let unique = super::unique::demo::Sandbox {
        dir: &dir,
        staging_dsn: sandbox.dsn(false),
        production_dsn: sandbox.dsn(true),
        overrides: &overrides,
    };
    super::unique::demo::chapters(
        &unique,
        &mut |title, text| story.chapter(title, text),
        &|shown| println!("\n$ {shown}"),
    )?;

    story.chapter(
        "Status",
        "What the catalog and fkctl's journal say now, per environment:",
    )?;
    story.command(&format!("fkctl status {pb}"));
    super::status::run(&playbook, None, &overrides, Output::Text)?;

    story.chapter("Your turn", "")?;
    println!(
        "The sandbox is yours to explore:\n  psql \"{}\"   (production; every archived row shows in the view fkctl.archive)\n  psql \"{}\"   (staging; the constraint is still dropped there)\n  playbook: {pb}\n  change request: {}\nRun the commands yourself, e.g.:\n  fkctl rollback {pb} --env staging --dsn staging='{}'\nRemove everything with: fkctl demo --clean",
        describe(true),
        describe(false),
        request.display(),
        describe(false)
    );
    Ok(())
}

/// `fkctl drop PLAYBOOK --env ENV --yes`, as the demo runs it.
fn drop_without_questions(
    playbook: &Path,
    env: &str,
    overrides: &[(String, String)],
) -> Result<()> {
    let options = super::drop::Options {
        output: crate::cli::args::Output::Text,
        targets: Vec::new(),
        dry_run: false,
        yes: true,
        out_of_order: None,
    };
    super::drop::run(playbook, Some(env), overrides, options)
}
