use std::io::Write;
use std::process::ExitCode;

use berth_runtime::containers::Containers;
use berth_runtime::runc::Runc;
use berth_runtime::supervise;

use crate::commands::run::supervise_started;
use crate::context::runtime;

/// Supervise a detached container (started by `berth run -d`; not for direct use).
#[derive(clap::Args)]
pub struct Args {
    /// The container ID
    id: String,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    // Out of the terminal's session: a closed terminal or a Ctrl-C there does not reach it.
    let _ = rustix::process::setsid();
    let containers = Containers::open(Containers::default_root()?)?;
    let runc = Runc::locate(containers.runc_root())?;
    // One line for `berth run -d`, which stops reading after it: nothing else goes to stdout.
    let mut said = false;
    let mut ready = |started: Result<&_, &berth_runtime::RuntimeError>| {
        if said {
            return;
        }
        said = true;
        let mut out = std::io::stdout();
        let _ = match started {
            Ok(_) => writeln!(out, "{}", supervise_started()),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    };
    let code = runtime()?.block_on(supervise::run(
        &containers,
        &runc,
        &args.id,
        false,
        &mut ready,
    ))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
