use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = fkctl::cli::args::Cli::parse();
    match fkctl::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.kind.exit_code())
        }
    }
}
