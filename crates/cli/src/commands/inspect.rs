use std::process::ExitCode;

use anyhow::bail;
use berth_client::local;
use berth_oci::{ManifestKind, Reference, parse_manifest};

use crate::context::{ClientContext, runtime};

/// Show an image's manifest, config and layers as JSON.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth inspect nginx\n  berth inspect --remote localhost:5000/team/web:0.1"
)]
pub struct Args {
    /// NAME[:TAG|@DIGEST]
    name: String,
    /// Ask the registry instead of the local store (nothing is pulled)
    #[arg(long)]
    remote: bool,
    /// Allow plain HTTP and unverified TLS to this registry (with --remote)
    #[arg(long)]
    insecure: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let reference = ctx.reference(&args.name)?.with_default_tag();
    if args.remote {
        let value = runtime()?.block_on(remote(&ctx, &reference, args.insecure))?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let store = ctx.store()?;
    let Some(desc) = store.resolve(&reference.to_string())? else {
        bail!("No such image: {}", reference.familiar());
    };
    let details = local::details(&store, &desc)?;
    let mut names = Vec::new();
    for image in store.images()? {
        if image.descriptor.digest == desc.digest
            && let Ok(r) = Reference::parse_normalized(&image.name)
        {
            names.push(r.familiar());
        }
    }
    let mut value = serde_json::to_value(&details)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("Name".into(), reference.to_string().into());
        obj.insert("RepoTags".into(), names.into());
    }
    println!("{}", serde_json::to_string_pretty(&[value])?);
    Ok(ExitCode::SUCCESS)
}

async fn remote(
    ctx: &ClientContext,
    reference: &Reference,
    insecure: bool,
) -> anyhow::Result<serde_json::Value> {
    let client = ctx.connect(reference.domain(), insecure).await?;
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let fetched = client.get_manifest(reference.repository(), &wanted).await?;
    let manifest: serde_json::Value = serde_json::from_slice(&fetched.bytes)?;
    let parsed = parse_manifest(Some(&fetched.media_type), &fetched.bytes)?;
    let config = match (&parsed.kind, &parsed.config) {
        (ManifestKind::Image, Some(c)) => {
            Some(client.get_small_blob(reference.repository(), c).await?)
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "Name": reference.to_string(),
        "Digest": fetched.digest.to_string(),
        "MediaType": fetched.media_type,
        "Manifest": manifest,
        "Config": config,
    }))
}
