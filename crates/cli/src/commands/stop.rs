use std::process::ExitCode;
use std::time::Duration;

use berth_runtime::containers::Containers;
use berth_runtime::control;
use berth_runtime::runc::Runc;

use crate::commands::each_container;

/// Stop running containers: SIGTERM, then SIGKILL after the grace period.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth stop web\n  berth stop -t 0 web db")]
pub struct Args {
    /// NAME|ID...
    #[arg(required = true)]
    containers: Vec<String>,
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(Containers::default_root()?)?;
    let runc = Runc::locate(containers.runc_root())?;
    Ok(each_container(&args.containers, |key| {
        control::stop(&containers, &runc, key, Duration::from_secs(args.time)).map(|_| ())
    }))
}
