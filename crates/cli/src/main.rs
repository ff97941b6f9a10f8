//! `berth`: the registry server (`berth serve`) and the client commands (`pull`, `push`,
//! `login`, ...).

mod commands;
mod context;
mod progress_bars;
mod time_text;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container image registry and client"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::exec(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
