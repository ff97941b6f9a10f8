use std::io::Write;
use std::process::ExitCode;

use berth_client::platform::Platform;
use berth_client::pull::{PullOptions, pull};
use berth_oci::Reference;

use crate::context::{ClientContext, TransferFlags, runtime};

/// Download an image from a registry into the local store.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth pull nginx            (docker.io/library/nginx:latest)\n  berth pull localhost:5000/team/web:0.1 --platform linux/arm64"
)]
pub struct Args {
    /// NAME[:TAG|@DIGEST]
    name: String,
    /// Platform to take from a multi-platform image, os/arch[/variant] [default: the host's]
    #[arg(long)]
    platform: Option<String>,
    /// Keep a multi-platform image whole, with every platform
    #[arg(short = 'a', long)]
    all_platforms: bool,
    #[command(flatten)]
    transfer: TransferFlags,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let reference = ctx.reference(&args.name)?.with_default_tag();
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    pull_and_report(
        &mut ctx,
        &reference,
        platform,
        args.all_platforms,
        &args.transfer,
        false,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Pulls `reference` into the local store, telling what happens as `berth pull` does, on
/// stdout or (`berth run`, whose stdout is the container ID's or the container's) stderr.
pub fn pull_and_report(
    ctx: &mut ClientContext,
    reference: &Reference,
    platform: Option<Platform>,
    all_platforms: bool,
    transfer: &TransferFlags,
    on_stderr: bool,
) -> anyhow::Result<()> {
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let out: &mut dyn Write = if on_stderr { &mut stderr } else { &mut stdout };
    let store = ctx.store()?;
    let options = PullOptions {
        platform,
        all_platforms,
        max_concurrent: transfer
            .max_concurrent
            .unwrap_or(ctx.settings.max_concurrent_downloads),
    };
    let (bars, progress) = transfer.progress_on(on_stderr);
    if !transfer.quiet {
        match reference.tag() {
            Some(tag) if reference.digest().is_none() => {
                writeln!(out, "{}: Pulling from {}", tag, reference.repository())?
            }
            _ => writeln!(out, "Pulling {}", reference.familiar())?,
        }
    }
    let outcome = runtime()?.block_on(async {
        let client = ctx.connect(reference.domain(), transfer.insecure).await?;
        anyhow::Ok(pull(&client, &store, reference, &options, progress).await?)
    });
    bars.finish();
    let outcome = outcome?;
    if transfer.quiet {
        writeln!(out, "{reference}")?;
        return Ok(());
    }
    writeln!(out, "Digest: {}", outcome.repo_digest)?;
    if outcome.up_to_date {
        writeln!(
            out,
            "Status: Image is up to date for {}",
            reference.familiar()
        )?;
    } else {
        writeln!(
            out,
            "Status: Downloaded newer image for {}",
            reference.familiar()
        )?;
    }
    writeln!(out, "{reference}")?;
    Ok(())
}
