//! `fkctl man`: the man pages, from the same clap definitions as `--help`,
//! with the sections clap does not know: EXIT STATUS and ENVIRONMENT.

use super::write_stdout;
use crate::cli::args::Cli;
use crate::error::{Error, Result};
use clap::CommandFactory;
use std::path::Path;

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
0
success
.TP
1
internal error (a bug in fkctl, or a local I/O failure)
.TP
2
usage or playbook error; nothing was touched
.TP
3
database unreachable (connection refused, login failed, database missing, connection lost)
.TP
4
refused: a precondition failed (drift, missing object, a definition PostgreSQL could not create, orphans over the limit, policy abort, an earlier environment not done, another run holding the change or constraint); the application's schema and data were not changed
.TP
5
a lock was not acquired within lock_timeout after every retry; the blocking sessions are named; the step that waited changed nothing
.TP
6
failed part-way through a change; every step is its own transaction, so the database is consistent, and the same command continues
.TP
7
stopped at a prompt at the operator's request; the step asked about was not run
.TP
130
interrupted (Ctrl-C); the running statement was cancelled and rolled back
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fIdsn_env\fR of each playbook environment
the connection string of that environment (libpq keyword/value or postgresql:// URI); \fB\-\-dsn NAME=CONNSTRING\fR overrides it for one run
.TP
PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGAPPNAME, PGCONNECT_TIMEOUT, PGSERVICE, PGSERVICEFILE, PGSYSCONFDIR
what the connection string leaves out, as with libpq (no user at all: the operating-system user)
.TP
PGPASSFILE
the password file (default ~/.pgpass; ignored when readable by group or others)
.TP
FKCTL_DEMO_DSN
the server \fBfkctl demo\fR builds its sandbox on
.TP
FKCTL_DEMO_PREFIX
the name of the demo's sandbox (as \fB\-\-prefix\fR)
.TP
GITLAB_TOKEN, GITHUB_TOKEN
the tokens \fBfkctl change\-request \-\-post\fR sends to the issue tracker (never printed)
"#;

/// One page: clap's sections, then EXIT STATUS and ENVIRONMENT.
fn page(command: clap::Command) -> Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut buf)
        .map_err(|e| Error::internal(format!("cannot render the man page: {e}")))?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push_str(EXIT_STATUS);
    text.push_str(ENVIRONMENT);
    Ok(text)
}

pub fn run(dir: Option<&Path>) -> Result<()> {
    let mut root = Cli::command();
    // Built, the command has clap's own `help` subcommand too, which the top
    // page lists: it gets its page like the others.
    root.build();
    let Some(dir) = dir else {
        return write_stdout(&page(root)?);
    };
    let write = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::usage(format!("cannot create {}: {e}", dir.display())))?;
    write("fkctl.1", page(root.clone())?)?;
    let mut written = vec!["fkctl.1".to_string()];
    for sub in root.get_subcommands() {
        // clap_mangen names the page after the command: give it the full name.
        let name = format!("fkctl-{}", sub.get_name());
        let invoked = format!("fkctl {}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .display_name(name.clone())
            .bin_name(invoked);
        write(&format!("{name}.1"), page(sub)?)?;
        written.push(format!("{name}.1"));
    }
    eprintln!("wrote {} pages into {}", written.len(), dir.display());
    Ok(())
}
