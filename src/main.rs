use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic is a bug in fkctl, never the user's fault: say so plainly and
    // exit with the documented internal-error code instead of Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in fkctl (a bug; please report it): {info}");
        eprintln!("  next: nothing was changed by the statement in progress; its transaction was rolled back by the server");
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
