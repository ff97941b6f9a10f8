use std::process::ExitCode;

use anyhow::bail;

use crate::context::ClientContext;

/// Give a local image another name; no data is copied.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth tag nginx localhost:5000/team/web:0.1")]
pub struct Args {
    /// SOURCE[:TAG|@DIGEST]
    source: String,
    /// TARGET[:TAG]
    target: String,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let source = ctx.reference(&args.source)?.with_default_tag();
    let target = ctx.reference(&args.target)?.with_default_tag();
    if target.digest().is_some() {
        bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    let store = ctx.store()?;
    let Some(desc) = store.resolve(&source.to_string())? else {
        bail!("No such image: {}", source.familiar());
    };
    store.tag(&target.to_string(), desc)?;
    Ok(ExitCode::SUCCESS)
}
