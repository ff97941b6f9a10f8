mod serve;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the registry server (OCI Distribution v1.1).
    Serve(serve::Args),
}

pub fn exec(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::exec(args),
    }
}
