use std::process::ExitCode;

use berth_runtime::containers::Containers;
use berth_runtime::layers::LayerCache;

use crate::context::ClientContext;

/// Remove images from the local store.
///
/// A name is untagged; when no name refers to the image any more, its blobs that no other
/// image uses are deleted.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth image rm localhost:5000/team/web:0.1\n  berth rmi nginx redis:7"
)]
pub struct Args {
    /// NAME[:TAG|@DIGEST]...
    #[arg(required = true)]
    names: Vec<String>,
    /// Remove the image even when other names refer to it: every name of it goes
    #[arg(short, long)]
    force: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let store = ctx.store()?;
    let mut code = ExitCode::SUCCESS;
    for raw in &args.names {
        let reference = match ctx.reference(raw) {
            Ok(r) => r.with_default_tag(),
            Err(e) => {
                eprintln!("Error: {e:#}");
                code = ExitCode::FAILURE;
                continue;
            }
        };
        let name = reference.to_string();
        let Some(desc) = store.resolve(&name)? else {
            eprintln!("Error: No such image: {}", reference.familiar());
            code = ExitCode::FAILURE;
            continue;
        };
        // The last name of an image that a container was made from stays, as with docker,
        // unless forced (the container keeps running: its layers are unpacked apart).
        let other_names = store
            .images()?
            .iter()
            .filter(|i| i.descriptor.digest == desc.digest && i.name != name)
            .count();
        if !args.force
            && other_names == 0
            && let Some(user) = container_using(&store, &desc)?
        {
            eprintln!(
                "Error: conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image",
                reference.familiar(),
                user
            );
            code = ExitCode::FAILURE;
            continue;
        }
        // With -f every name of the image goes, as `docker rmi -f <id>` does.
        let mut names = vec![name];
        if args.force {
            for image in store.images()? {
                if image.descriptor.digest == desc.digest && !names.contains(&image.name) {
                    names.push(image.name);
                }
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let report = store.remove(&refs, args.force)?;
        for untagged in &report.untagged {
            let shown = berth_oci::Reference::parse_normalized(untagged)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| untagged.clone());
            println!("Untagged: {shown}");
        }
        for deleted in &report.deleted {
            println!("Deleted: {deleted}");
        }
    }
    prune_unpacked_layers(&store);
    Ok(code)
}

/// Unpacked layers (`berth run`'s cache) of images now gone go too, unless a container has
/// them. A failure here leaves only disk space in use, so it is reported, not fatal.
fn prune_unpacked_layers(store: &berth_store::Store) {
    let Ok(root) = Containers::default_root() else {
        return;
    };
    if !root.join("layers").is_dir() {
        return;
    }
    let pruned = Containers::open(root).and_then(|containers| {
        let cache = LayerCache::new(containers.layers_root());
        cache.prune(store, &containers.list()?)
    });
    if let Err(e) = pruned {
        eprintln!("Warning: unpacked layers were not pruned: {e}");
    }
}

/// The short ID of a container (running or not) made from the image `desc` names, if any.
fn container_using(
    store: &berth_store::Store,
    desc: &berth_oci::Descriptor,
) -> anyhow::Result<Option<String>> {
    let Ok(root) = Containers::default_root() else {
        return Ok(None);
    };
    if !root.is_dir() {
        return Ok(None);
    }
    let containers = Containers::open(root)?;
    // The image itself, and for an index each platform's manifest.
    let mut digests = vec![desc.digest.clone()];
    let bytes = store.read_blob(&desc.digest)?;
    if let Ok(parsed) = berth_oci::parse_manifest(Some(&desc.media_type), &bytes) {
        digests.extend(parsed.manifests.into_iter().map(|m| m.digest));
    }
    Ok(containers
        .list()?
        .into_iter()
        .find(|c| digests.contains(&c.manifest))
        .map(|c| c.short_id().to_string()))
}
