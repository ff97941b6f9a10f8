use std::process::ExitCode;

use berth_client::platform::Platform;
use berth_client::pull::{PullOptions, pull};

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
    let store = ctx.store()?;
    let options = PullOptions {
        platform,
        all_platforms: args.all_platforms,
        max_concurrent: args
            .transfer
            .max_concurrent
            .unwrap_or(ctx.settings.max_concurrent_downloads),
    };
    let (bars, progress) = args.transfer.progress();
    if !args.transfer.quiet {
        match reference.tag() {
            Some(tag) if reference.digest().is_none() => {
                println!("{}: Pulling from {}", tag, reference.repository())
            }
            _ => println!("Pulling {}", reference.familiar()),
        }
    }
    let outcome = runtime()?.block_on(async {
        let client = ctx
            .connect(reference.domain(), args.transfer.insecure)
            .await?;
        anyhow::Ok(pull(&client, &store, &reference, &options, progress).await?)
    });
    bars.finish();
    let outcome = outcome?;
    if args.transfer.quiet {
        println!("{}", reference);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Digest: {}", outcome.repo_digest);
    if outcome.up_to_date {
        println!("Status: Image is up to date for {}", reference.familiar());
    } else {
        println!(
            "Status: Downloaded newer image for {}",
            reference.familiar()
        );
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}
