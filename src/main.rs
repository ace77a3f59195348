use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug in fkctl, never the user's fault: say so plainly and
    // exit with the documented internal-error code instead of Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in fkctl (a bug; please report it): {info}");
        // fkctl exits without committing the statement in progress (the
        // server rolls its transaction back), but steps that committed before
        // it stay done: only the journal and the catalog can say which.
        eprintln!("  next: the statement in progress was not committed; steps that finished before it are done. `fkctl status PLAYBOOK --env NAME` shows what the journal recorded, and re-running the same command continues from what the catalog shows");
        std::process::exit(1);
    }));
    let cli = fkctl::cli::args::Cli::parse();
    match fkctl::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.kind.exit_code())
        }
    }
}
