//! What the local store knows of an image, read from its manifest and config: what `images`
//! and `inspect` show.

use berth_oci::{Descriptor, Digest, ManifestKind, media_type, parse_manifest};
use berth_store::Store;
use serde::Serialize;

use crate::error::Result;

/// One image of the local store, summarized.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// docker's image ID: the config digest (the index digest for a multi-platform image).
    pub id: Digest,
    /// What the name points to: a manifest or an index.
    pub manifest_digest: Digest,
    pub media_type: String,
    /// `created` from the image config, as written there (RFC 3339).
    pub created: Option<String>,
    /// Config plus layers, as stored (compressed).
    pub size: u64,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    /// For an index: the platforms present locally.
    pub platforms: Vec<String>,
}

/// The full local view of an image: what `berth inspect` prints.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDetails {
    #[serde(flatten)]
    pub summary: ImageSummary,
    pub descriptor: Descriptor,
    pub manifest: serde_json::Value,
    pub config: Option<serde_json::Value>,
    pub layers: Vec<Descriptor>,
}

/// Reads the manifest (and config) behind `desc` from the store.
pub fn details(store: &Store, desc: &Descriptor) -> Result<ImageDetails> {
    let bytes = store.read_blob(&desc.digest)?;
    let parsed = parse_manifest(Some(&desc.media_type), &bytes)?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| crate::ClientError::Protocol(format!("manifest {}: {e}", desc.digest)))?;
    match parsed.kind {
        ManifestKind::Image => {
            let config_desc = parsed.config.clone();
            let config = match &config_desc {
                Some(c) if store.has_blob(&c.digest) => {
                    serde_json::from_slice::<serde_json::Value>(&store.read_blob(&c.digest)?).ok()
                }
                _ => None,
            };
            let text = |key: &str| {
                config
                    .as_ref()
                    .and_then(|c| c.get(key))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let size = config_desc.as_ref().map_or(0, |c| c.size)
                + parsed.layers.iter().map(|l| l.size).sum::<u64>();
            let summary = ImageSummary {
                id: config_desc
                    .as_ref()
                    .map_or_else(|| desc.digest.clone(), |c| c.digest.clone()),
                manifest_digest: desc.digest.clone(),
                media_type: parsed.media_type.clone(),
                created: text("created"),
                size,
                os: text("os"),
                architecture: text("architecture"),
                variant: text("variant"),
                platforms: Vec::new(),
            };
            Ok(ImageDetails {
                summary,
                descriptor: desc.clone(),
                manifest,
                config,
                layers: parsed.layers,
            })
        }
        ManifestKind::Index => {
            let mut size = 0;
            let mut created = None;
            let mut platforms = Vec::new();
            for child in &parsed.manifests {
                if !store.has_blob(&child.digest) {
                    continue;
                }
                let is_manifest = child.media_type == media_type::OCI_MANIFEST
                    || child.media_type == media_type::DOCKER_MANIFEST;
                if !is_manifest {
                    continue;
                }
                let d = details(store, child)?;
                size += d.summary.size;
                created = created.max(d.summary.created.clone());
                if let Some(p) = &child.platform
                    && let Ok(p) = serde_json::from_value::<crate::platform::Platform>(p.clone())
                {
                    platforms.push(p.to_string());
                }
            }
            let summary = ImageSummary {
                id: desc.digest.clone(),
                manifest_digest: desc.digest.clone(),
                media_type: parsed.media_type.clone(),
                created,
                size,
                os: None,
                architecture: None,
                variant: None,
                platforms,
            };
            Ok(ImageDetails {
                summary,
                descriptor: desc.clone(),
                manifest,
                config: None,
                layers: Vec::new(),
            })
        }
    }
}
