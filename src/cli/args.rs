//! The command line, and nothing else: parsing and help text live here,
//! the work lives in `commands`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "fkctl",
    version,
    about = "Remove a PostgreSQL foreign key safely, staging then production, and put it back in an incident",
    long_about = "fkctl runs one foreign-key change, described by a YAML playbook, step by step: \
it checks the live constraint and its orphaned rows, plans every statement with the locks it takes, \
drops the constraint on staging then production, and in an incident puts it back (ADD NOT VALID, \
archived orphan purge, VALIDATE) without losing a row.\n\n\
Exit codes: 0 ok, 1 internal error, 2 usage or playbook error (nothing touched), 3 database unreachable, \
4 refused: a precondition failed (nothing changed), 5 lock not acquired (the step that waited changed nothing), \
6 failed part-way (consistent; the same command continues), 7 stopped at a prompt at your request, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout; messages and progress go to stderr.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LintOutput {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
    /// A GitLab Code Quality report: merge requests show each problem inline.
    Gitlab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RequestFormat {
    /// GitLab-flavoured markdown (renders on GitHub too).
    #[default]
    Markdown,
    /// `{ "title", "body", "labels" }`, ready for an issue tracker's API.
    Json,
    /// GitLab's issue API fields: `{ "title", "description", "labels" }` (labels comma-separated).
    GitlabJson,
    /// GitHub's issue API fields: `{ "title", "body", "labels" }`.
    GithubJson,
}

/// The issue tracker `change-request --post` writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PostTo {
    /// GitLab (REST API v4; token from GITLAB_TOKEN).
    Gitlab,
    /// GitHub (REST API; token from GITHUB_TOKEN).
    Github,
}

#[derive(Debug, Args)]
pub struct Connection {
    /// Environment to connect to (a name from the playbook's `environments`).
    #[arg(long = "env", value_name = "NAME")]
    pub env: String,
    /// Use this connection string for environment NAME instead of the variable the playbook names.
    #[arg(long = "dsn", value_name = "NAME=CONNSTRING", value_parser = crate::connect::parse_override)]
    pub dsn: Vec<(String, String)>,
}

/// Which environments a command acts on, and connection overrides.
#[derive(Debug, Args)]
pub struct Environments {
    /// An environment of the playbook: drop and status act on this one only (else on all, in
    /// playbook order); plan plans from its live catalog (else from the playbook alone).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,
    /// Use this connection string for environment NAME instead of the variable the playbook names.
    #[arg(long = "dsn", value_name = "NAME=CONNSTRING", value_parser = crate::connect::parse_override)]
    pub dsn: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks offline; exit 2 with file:line:column on the first problem of each.
    Lint {
        /// One or more playbooks (YAML) to check; each problem is reported as file:line:column.
        #[arg(required = true, value_name = "PLAYBOOK")]
        playbooks: Vec<PathBuf>,
        /// text for people; json: one document with each problem's rule id, severity and
        /// position; gitlab: a GitLab Code Quality report (artifacts:reports:codequality).
        #[arg(long, value_enum, default_value_t)]
        output: LintOutput,
    },
    /// Show the live constraint beside the playbook's, drift field by field, and what dropping it changes.
    Inspect {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// text for people, or json: one JSON document on stdout (messages and progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Count (and sample) orphaned rows: exactly the rows VALIDATE CONSTRAINT would reject
    /// (for a unique playbook: duplicate rows, exactly as CREATE UNIQUE INDEX judges them).
    #[command(visible_alias = "duplicates")]
    Orphans {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// Also show up to N orphaned rows.
        #[arg(long, value_name = "N", default_value_t = 0)]
        sample: u32,
        /// Also write the count as the Prometheus gauge fkctl_orphan_rows to PATH (atomically).
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// text for people, or json: one JSON document on stdout (messages and progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Do the dropped foreign key's duty: apply its action to the children of parent rows deleted
    /// since the drop (queued by the loose replacement `drop` installs), archived, within loose: limits.
    Cleanup {
        /// The playbook (YAML) describing the change; it needs a `loose:` section.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// One run, then exit (for cron). The default when --watch is not given.
        #[arg(long, conflicts_with = "watch")]
        once: bool,
        /// Run again every INTERVAL (e.g. 30s, 5min) until Ctrl-C.
        #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
        watch: Option<std::time::Duration>,
        /// After each run, write the metrics here in Prometheus text format (atomically: a
        /// temporary file, then a rename), e.g. for node_exporter's textfile collector.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// Serve the metrics at http://ADDR/metrics while --watch runs (e.g. 127.0.0.1:9187).
        #[arg(long, value_name = "ADDR", requires = "watch")]
        listen: Option<String>,
        /// text for people, or json: one JSON document per run on stdout.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print the ordered steps of the drop (or rollback) with their SQL, locks and checks.
    Plan {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        environments: Environments,
        /// Plan the rollback (ADD ... NOT VALID, archived purge, VALIDATE) instead of the drop.
        #[arg(long)]
        rollback: bool,
        /// text for people, or json: one JSON document on stdout (messages and progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Drop the constraint, environment by environment in playbook order, asking before each change.
    Drop {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        environments: Environments,
        /// Connect, check and plan, but change nothing (no DDL, no journal).
        #[arg(long)]
        dry_run: bool,
        /// Do not ask. A protected environment must also be named with --env.
        #[arg(long)]
        yes: bool,
        /// Drop on --env NAME although an earlier environment of the playbook
        /// still has the constraint; REASON is recorded in the journal.
        #[arg(long, value_name = "REASON", requires = "env", value_parser = non_empty_reason)]
        out_of_order: Option<String>,
        /// For a fleet environment: only these of its targets (comma-separated names).
        #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
        targets: Vec<String>,
        /// text for people, or json: one JSON document on stdout (messages and progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Put the constraint back: ADD ... NOT VALID, archived orphan purge, VALIDATE. Resumable.
    Rollback {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// Do not ask. A protected environment is always named with --env.
        #[arg(long)]
        yes: bool,
        /// Allow up to N orphans this time (overrides rollback.max_orphans).
        #[arg(long, value_name = "N")]
        max_orphans: Option<u64>,
        /// Restore the playbook's definition even where the drop-time snapshot differs.
        #[arg(long)]
        use_playbook_definition: bool,
        /// For a fleet environment: only these of its targets (comma-separated names).
        #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
        targets: Vec<String>,
        /// A final machine-readable summary on stdout (progress stays on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Put the rows a rollback archived back into the table (once their parents exist again).
    Restore {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// The rollback run whose archived rows go back (fkctl status lists runs), or `latest`:
        /// the newest run with rows still archived (for a fleet, each database's own).
        #[arg(long = "run", value_name = "RUN_ID")]
        run: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Go on although columns of the archived rows were dropped from the table since the
        /// rollback. Their archived values are LOST: each row leaves the archive as it goes back,
        /// without them. The discarded columns are recorded in the journal's step detail.
        #[arg(long)]
        discard_dropped_columns: bool,
        /// text for people, or json: one JSON document on stdout (progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Retention: remove this change's journal runs older than an age from the database
    /// (never the snapshot's run; never a run whose archived rows restore may need, unless --force).
    Prune {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        connection: Connection,
        /// Remove runs that ended longer ago than this, e.g. 30d, 12h.
        #[arg(long, value_name = "AGE", value_parser = parse_interval)]
        older_than: std::time::Duration,
        /// Also remove those runs' archived rows: a restore can no longer bring them back.
        #[arg(long)]
        force: bool,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
        /// Count what would go, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// text for people, or json: one JSON document on stdout (messages on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Per environment: the constraint's state, the last runs of this change and the stored snapshot.
    Status {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        #[command(flatten)]
        environments: Environments,
        /// text for people, or json: one JSON document on stdout (messages and progress on stderr).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Write the change-request issue for this change, with the exact SQL of every step.
    ChangeRequest {
        /// The playbook (YAML) describing the change.
        playbook: PathBuf,
        /// Add live evidence from this environment (repeatable): row estimates, orphans now,
        /// indexes, and its last drop run from the journal.
        #[arg(long = "env", value_name = "NAME")]
        env: Vec<String>,
        /// Use this connection string for environment NAME instead of the variable the playbook names (repeatable).
        #[arg(long = "dsn", value_name = "NAME=CONNSTRING", value_parser = crate::connect::parse_override)]
        dsn: Vec<(String, String)>,
        /// A minijinja template of your own (default: the playbook's change_request.template, else the shipped one).
        #[arg(long, value_name = "PATH")]
        template: Option<PathBuf>,
        /// markdown (the text) or json (`{ title, body, labels }` for an issue tracker's API).
        /// `--format` is the old name, still accepted.
        #[arg(long = "output", alias = "format", value_enum, default_value_t)]
        format: RequestFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Create the issue on this tracker, or update the one posted before for this change
        /// (found by a hidden marker in its body); reads every reachable environment's
        /// journal first. Prints the URL. Token from GITLAB_TOKEN / GITHUB_TOKEN.
        #[arg(long, value_enum, requires = "project", conflicts_with_all = ["out", "format"])]
        post: Option<PostTo>,
        /// The project to post to: GROUP/NAME on GitLab, OWNER/REPO on GitHub.
        #[arg(long, value_name = "PATH", requires = "post")]
        project: Option<String>,
        /// The tracker's API base URL (default https://gitlab.com/api/v4 or https://api.github.com),
        /// e.g. https://gitlab.example.com/api/v4 for a self-managed GitLab.
        #[arg(long, value_name = "URL", requires = "post")]
        api_url: Option<String>,
    },
    /// Show fkctl's whole job on a sandbox: inspect, change request, drop on staging then
    /// production, orphans appear, rollback with archived purge, status.
    Demo {
        /// Run straight through without waiting for Enter.
        #[arg(long)]
        yes: bool,
        /// Remove the sandbox (databases or clusters, and files) and stop.
        #[arg(long)]
        clean: bool,
        /// Name the sandbox (databases PREFIX_staging and PREFIX_production, and its directory);
        /// default fkctl_demo_USER. Two demos at once need two prefixes.
        #[arg(long, value_name = "PREFIX", env = "FKCTL_DEMO_PREFIX", value_parser = crate::commands::valid_demo_prefix)]
        prefix: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for, e.g. `fkctl completions bash > /etc/bash_completion.d/fkctl`.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    Man {
        /// Write fkctl.1 and fkctl-COMMAND.1 for every command into DIR (e.g. /usr/local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// A reason must say something: it is what the journal keeps.
fn non_empty_reason(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        Err("give the reason in words, e.g. --out-of-order \"staging is down, CHG-123 approved production first\"".to_string())
    } else {
        Ok(trimmed.to_string())
    }
}

/// `--watch 30s`: a duration with a unit, as in playbooks.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = crate::playbook::duration::parse(text)?;
    if d.is_zero() {
        return Err("the interval must be longer than 0".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn no_argument_without_help() {
        let root = Cli::command();
        for command in root.get_subcommands() {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let has_help = arg.get_help().is_some() || arg.get_long_help().is_some();
                assert!(
                    has_help,
                    "fkctl {} {id} has no help text",
                    command.get_name()
                );
            }
        }
    }
}
