use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::context::ClientContext;
use crate::progress_bars::short_id;

/// Load images from a tar archive: `berth save` and `docker save` output, or an OCI layout tar
/// (`skopeo copy ... oci-archive:FILE`).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth load -i web.tar")]
pub struct Args {
    /// Read from this file instead of standard input
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print only the loaded names
    #[arg(short, long)]
    quiet: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let store = ctx.store()?;
    let loaded = match &args.input {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store.load(std::io::BufReader::new(file))?
        }
        None => store.load(std::io::BufReader::new(std::io::stdin().lock()))?,
    };
    for image in loaded {
        let mut named = false;
        for raw in &image.names {
            // Names in archives are docker's short forms (`nginx:latest`) or full ones.
            let Ok(reference) = ctx.reference(raw) else {
                continue;
            };
            let reference = reference.with_default_tag();
            store.tag(&reference.to_string(), image.descriptor.clone())?;
            println!("Loaded image: {}", reference.familiar());
            named = true;
        }
        if !named && !args.quiet {
            println!(
                "Loaded image ID: {} ({})",
                image.descriptor.digest,
                short_id(&image.descriptor.digest)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
