//! From an image in the local store to a container that can start: its layers unpacked (once,
//! shared), its process planned from the image config and the flags, its root filesystem
//! chosen (overlayfs where the kernel takes it, else a copy), its record written.

use std::path::PathBuf;

use berth_oci::{Descriptor, Digest, ManifestKind, parse_manifest};
use berth_store::Store;
use serde::Deserialize;

use crate::containers::{Container, Containers, ProcessPlan, State, new_id};
use crate::error::{Result, RuntimeError};
use crate::forward::PortMap;
use crate::layers::{LayerCache, LayerEvent};
use crate::rootfs::{Rootfs, RootfsMode, wanted_mode};
use crate::spec::{ImageRunConfig, RunOverrides, environment, process_args};
use crate::unpack::UnpackLimit;

/// What `berth run` asks for, apart from the image.
pub struct CreateOptions {
    pub name: Option<String>,
    pub ports: Vec<PortMap>,
    pub overrides: RunOverrides,
    pub auto_remove: bool,
    /// The image as the user wrote it, and normalized.
    pub image: String,
    pub image_reference: String,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ImageRunConfig>,
    rootfs: RootfsSection,
}

#[derive(Deserialize)]
struct RootfsSection {
    diff_ids: Vec<Digest>,
}

/// Creates a container of the image manifest `manifest` (one platform's, not an index).
pub fn create(
    containers: &Containers,
    store: &Store,
    manifest: &Descriptor,
    options: CreateOptions,
    report: &mut dyn FnMut(LayerEvent<'_>),
) -> Result<Container> {
    let bad = |why: String| RuntimeError::BadImage(options.image.clone(), why);
    let limit = UnpackLimit::from_env()?;
    let bytes = store.read_blob(&manifest.digest)?;
    let parsed = parse_manifest(Some(&manifest.media_type), &bytes)
        .map_err(|e| bad(format!("manifest: {e}")))?;
    if parsed.kind != ManifestKind::Image {
        return Err(bad("not an image manifest".into()));
    }
    let config_desc = parsed
        .config
        .ok_or_else(|| bad("the manifest has no config".into()))?;
    let config: ImageConfig = serde_json::from_slice(&store.read_blob(&config_desc.digest)?)
        .map_err(|e| bad(format!("config: {e}")))?;
    let run_config = config.config.unwrap_or_default();

    let cache = LayerCache::new(containers.layers_root());
    let layers = cache.prepare(
        store,
        &parsed.layers,
        &config.rootfs.diff_ids,
        limit,
        report,
    )?;

    let id = new_id()?;
    let hostname = id[..12].to_string();
    let process = ProcessPlan {
        args: process_args(&run_config, &options.overrides)?,
        env: environment(&run_config, &options.overrides, &hostname),
        cwd: options
            .overrides
            .working_dir
            .clone()
            .or(run_config.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_string()),
        user: options
            .overrides
            .user
            .clone()
            .or(run_config.user.clone())
            .unwrap_or_default(),
    };
    if !process.cwd.starts_with('/') {
        return Err(RuntimeError::Other(format!(
            "the working directory must be absolute, not {:?}",
            process.cwd
        )));
    }
    let container = Container {
        id: id.clone(),
        name: String::new(),
        image: options.image.clone(),
        image_reference: options.image_reference.clone(),
        image_id: config_desc.digest.clone(),
        manifest: manifest.digest.clone(),
        process,
        created: unix_now(),
        ports: options.ports.clone(),
        exposed: run_config
            .exposed_ports
            .iter()
            .flat_map(|ports| ports.keys().cloned())
            .collect(),
        rootfs: RootfsMode::Overlay,
        layers: layers.clone(),
        auto_remove: options.auto_remove,
        state: State::default(),
    };
    let mut container = containers.create(container, options.name.as_deref())?;
    let made = root_filesystem(containers, &cache, &container.id, &layers);
    match made {
        Ok(mode) => {
            container.rootfs = mode;
            containers.save(&container)?;
            Ok(container)
        }
        Err(e) => {
            let _ = containers.remove(&container.id);
            Err(e)
        }
    }
}

/// Chooses overlayfs when it works here (a trial mount), else copies the layers.
fn root_filesystem(
    containers: &Containers,
    cache: &LayerCache,
    id: &str,
    layers: &[Digest],
) -> Result<RootfsMode> {
    let dirs: Vec<PathBuf> = layers.iter().map(|c| cache.diff_dir(c)).collect();
    let rootfs = Rootfs::in_bundle(&containers.dir(id));
    let empty = containers.root().join("empty");
    let mode = match wanted_mode()? {
        Some(mode) => mode,
        None => match rootfs.mount_overlay(&dirs, &empty) {
            Ok(()) => {
                rootfs.unmount()?;
                RootfsMode::Overlay
            }
            Err(e) => {
                tracing::info!(error = %e, "overlayfs unavailable; copying the layers");
                let _ = std::fs::remove_dir_all(&rootfs.upper);
                let _ = std::fs::remove_dir_all(&rootfs.work);
                RootfsMode::Copy
            }
        },
    };
    if mode == RootfsMode::Copy {
        rootfs.copy_layers(&dirs)?;
    }
    Ok(mode)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
