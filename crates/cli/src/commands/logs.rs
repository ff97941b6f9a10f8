use std::process::ExitCode;

use berth_runtime::containers::Containers;
use berth_runtime::control;

/// Show what a container wrote to stdout and stderr.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth logs web\n  berth logs -f web")]
pub struct Args {
    /// NAME|ID
    container: String,
    /// Keep printing what it writes until it stops
    #[arg(short, long)]
    follow: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(Containers::default_root()?)?;
    control::logs(
        &containers,
        &args.container,
        args.follow,
        &mut std::io::stdout().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}
