//! `camux`: the command-line tool of the camux stream multiplexer.
//!
//! Thin on purpose (as ripgrep's `main`): parse the arguments (clap exits
//! with 2 on a usage error), run the subcommand, print an error with its
//! causes, and exit with the status the command chose: 0 ok, 1 error,
//! 3 verification failed. Everything else lives in `src/cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(status) => status.into(),
        // A closed pipe (`camux tail | head`) is how a reader says "enough".
        Err(err) if cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("camux: {err:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
