use std::process::ExitCode;

use berth_client::credentials::registry_key;

use crate::context::ClientContext;

/// Remove the stored login for a registry.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth logout localhost:5000")]
pub struct Args {
    /// Registry [default: docker.io, or the client config's default registry]
    server: Option<String>,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = ClientContext::load()?;
    let server = args
        .server
        .unwrap_or_else(|| ctx.settings.default_registry.clone());
    let key = registry_key(&server);
    if ctx.credentials()?.erase(&key)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}: no credentials were stored");
    }
    Ok(ExitCode::SUCCESS)
}
