//! Tiny valid images, written straight into a store: for this crate's tests and for other
//! crates' tests that need a local image without a registry.

use berth_oci::{Descriptor, Digest, media_type};

use crate::error::{Result, StoreError};
use crate::layout::Store;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image manifest with its config and layers, all in the store.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
    /// The image's own layer (holding `seed`); `layers` also lists any shared ones.
    pub layer: Descriptor,
    pub layers: Vec<Descriptor>,
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: None,
        urls: None,
        platform: None,
    }
}

/// An uncompressed tar layer holding one file, `seed.txt`, with `content`.
pub fn layer_tar(content: &[u8]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let io = |e| StoreError::Archive(format!("building a test layer: {e}"));
    builder
        .append_data(&mut header, "seed.txt", content)
        .map_err(io)?;
    builder.into_inner().map_err(io)
}

pub fn put_layer(store: &Store, content: &[u8]) -> Result<Descriptor> {
    let tar = layer_tar(content)?;
    store.put_blob(&tar)?;
    Ok(descriptor(OCI_LAYER_TAR, &tar))
}

impl TestImage {
    /// A linux/amd64 image with one layer of its own.
    pub fn build(store: &Store, seed: &[u8]) -> Result<TestImage> {
        Self::build_with_layers(store, seed, [])
    }

    /// Like [`TestImage::build`], with `shared` layers under its own.
    pub fn build_with_layers(
        store: &Store,
        seed: &[u8],
        shared: impl IntoIterator<Item = Descriptor>,
    ) -> Result<TestImage> {
        let layer = put_layer(store, seed)?;
        let mut layers: Vec<Descriptor> = shared.into_iter().collect();
        layers.push(layer.clone());
        // Uncompressed layers: the diff ID is the layer digest.
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": String::from_utf8_lossy(seed)}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = put_json(store, OCI_CONFIG, &config)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        let manifest = put_json(store, media_type::OCI_MANIFEST, &manifest)?;
        Ok(TestImage {
            manifest,
            config,
            layer,
            layers,
        })
    }
}

/// An OCI index of `children`, with a platform on each child.
pub fn put_index(
    store: &Store,
    children: impl IntoIterator<Item = Descriptor>,
) -> Result<Descriptor> {
    let children: Vec<Descriptor> = children
        .into_iter()
        .map(|mut c| {
            c.platform
                .get_or_insert_with(|| serde_json::json!({"architecture": "amd64", "os": "linux"}));
            c
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": children,
    });
    put_json(store, media_type::OCI_INDEX, &index)
}

/// A manifest descriptor whose blob is in no store.
pub fn absent_manifest() -> Descriptor {
    let mut d = descriptor(media_type::OCI_MANIFEST, b"not stored anywhere");
    d.platform = Some(serde_json::json!({"architecture": "arm64", "os": "linux"}));
    d
}

fn put_json(store: &Store, media_type: &str, value: &serde_json::Value) -> Result<Descriptor> {
    let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Json {
        what: "encoding a test document".into(),
        source,
    })?;
    store.put_blob(&bytes)?;
    Ok(descriptor(media_type, &bytes))
}
