use std::process::ExitCode;

use berth_client::ClientError;
use berth_client::push::{PushOptions, push};

use crate::context::{ClientContext, TransferFlags, runtime};

/// Upload a local image to its registry.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth tag nginx localhost:5000/team/web:0.1\n  berth login localhost:5000\n  berth push localhost:5000/team/web:0.1"
)]
pub struct Args {
    /// NAME[:TAG]
    name: String,
    #[command(flatten)]
    transfer: TransferFlags,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let reference = ctx.reference(&args.name)?.with_default_tag();
    let store = ctx.store()?;
    let options = PushOptions {
        max_concurrent: args
            .transfer
            .max_concurrent
            .unwrap_or(ctx.settings.max_concurrent_uploads),
    };
    let (bars, progress) = args.transfer.progress();
    if !args.transfer.quiet {
        println!(
            "The push refers to repository [{}]",
            reference.name().trim_start_matches("docker.io/")
        );
    }
    let outcome = runtime()?.block_on(async {
        let client = ctx
            .connect(reference.domain(), args.transfer.insecure)
            .await?;
        anyhow::Ok(push(&client, &store, &reference, &options, progress).await?)
    });
    bars.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ClientError>() {
                if ce.needs_login() {
                    eprintln!("unauthorized: authentication required");
                    eprintln!("hint: run 'berth login {}' first", reference.domain());
                    return Ok(ExitCode::FAILURE);
                }
                if let ClientError::Denied { .. } = ce {
                    eprintln!("{ce}");
                    eprintln!(
                        "You are logged in to {} but may not push to {}.",
                        reference.domain(),
                        reference.repository()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            return Err(e);
        }
    };
    if args.transfer.quiet {
        println!("{}", outcome.digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            outcome.reference, outcome.digest, outcome.size
        );
    }
    Ok(ExitCode::SUCCESS)
}
