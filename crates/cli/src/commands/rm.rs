use std::process::ExitCode;

use berth_runtime::containers::Containers;
use berth_runtime::control;
use berth_runtime::runc::Runc;

use crate::commands::each_container;

/// Remove containers (a running one only with -f).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth rm web\n  berth rm -f web")]
pub struct Args {
    /// NAME|ID...
    #[arg(required = true)]
    containers: Vec<String>,
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(Containers::default_root()?)?;
    let runc = Runc::locate(containers.runc_root())?;
    Ok(each_container(&args.containers, |key| {
        control::remove(&containers, &runc, key, args.force).map(|_| ())
    }))
}
