//! Manifest validation: the registry stores manifests byte for byte as pushed, and parses them
//! only to validate them and to index what they reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError(msg.into())
}

/// An OCI content descriptor (image-spec `descriptor.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Layers that registries do not hold (Docker foreign layers, OCI non-distributable layers
    /// with URLs): their existence is not checked at manifest PUT.
    pub fn is_external(&self) -> bool {
        self.media_type == media_type::DOCKER_FOREIGN_LAYER
            || (media_type::OCI_NONDISTRIBUTABLE_LAYERS.contains(&self.media_type.as_str())
                && self.urls.as_ref().is_some_and(|u| !u.is_empty()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema2): config + layers.
    Image,
    /// An index (OCI index or Docker manifest list): child manifests.
    Index,
}

/// What the registry needs to know of a validated manifest.
#[derive(Clone, Debug)]
pub struct ParsedManifest {
    /// The manifest's media type: its `mediaType` field, else the request's `Content-Type`.
    pub media_type: String,
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one the config media type: what the
    /// referrers API reports (distribution-spec "Listing Referrers").
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// Blobs the manifest references, which must be readable in the repository.
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| !d.is_external())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

/// Validates a pushed manifest. `content_type` is the request's `Content-Type`, if any.
pub fn parse_manifest(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<ParsedManifest, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if raw.fs_layers.is_some()
        || matches!(raw.schema_version, Some(serde_json::Value::Number(ref n)) if n.as_u64() == Some(1))
    {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest",
        ));
    }
    match raw.schema_version {
        Some(serde_json::Value::Number(ref n)) if n.as_u64() == Some(2) => {}
        _ => return Err(invalid("schemaVersion must be 2")),
    }

    let header = content_type
        .map(media_type::essence)
        .filter(|t| media_type::MANIFEST_TYPES.contains(&t.as_str()));
    if let Some(ct) = content_type.map(media_type::essence)
        && (ct == media_type::DOCKER_SCHEMA1 || ct == media_type::DOCKER_SCHEMA1_SIGNED)
    {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push a schema 2 or OCI manifest",
        ));
    }
    let media_type = match (&raw.media_type, &header) {
        (Some(body), Some(h)) if body != h => {
            return Err(invalid(format!(
                "mediaType {body:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(body), _) => body.clone(),
        (None, Some(h)) => h.clone(),
        // Neither says: the OCI types are the only ones where mediaType may be absent.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };

    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image,
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}; expected one of {}",
                media_type::MANIFEST_TYPES.join(", ")
            )));
        }
    };
    if let Some(at) = &raw.artifact_type
        && !media_type::is_valid(at)
    {
        return Err(invalid(format!("artifactType {at:?} is not a media type")));
    }

    let (config, layers, manifests) = match kind {
        ManifestKind::Image => {
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest has no manifests field"));
            }
            let config = raw
                .config
                .ok_or_else(|| invalid("image manifest without config"))?;
            let layers = raw
                .layers
                .ok_or_else(|| invalid("image manifest without layers"))?;
            (Some(config), layers, Vec::new())
        }
        ManifestKind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index has no config or layers"));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("index without manifests"))?;
            (None, Vec::new(), manifests)
        }
    };
    for d in config
        .iter()
        .chain(&layers)
        .chain(&manifests)
        .chain(raw.subject.iter())
    {
        if !media_type::is_valid(&d.media_type) {
            return Err(invalid(format!(
                "descriptor {} has an invalid mediaType {:?}",
                d.digest, d.media_type
            )));
        }
    }
    let artifact_type = raw.artifact_type.clone().or_else(|| match kind {
        ManifestKind::Image => config.as_ref().map(|c| c.media_type.clone()),
        ManifestKind::Index => None,
    });
    Ok(ParsedManifest {
        media_type,
        kind,
        config,
        layers,
        manifests,
        subject: raw.subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest() {
        let m = parse_manifest(Some(OCI_MANIFEST), image("").as_bytes()).expect("valid");
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blob_references().count(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn artifact_with_subject() {
        let m = parse_manifest(
            None,
            image(&format!(
                r#","artifactType":"application/vnd.example.sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}"#
            ))
            .as_bytes(),
        )
        .expect("valid");
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert!(m.subject.is_some());
    }

    #[test]
    fn index_and_mismatch() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3}}]}}"#
        );
        let m = parse_manifest(Some(OCI_INDEX), index.as_bytes()).expect("valid");
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert!(parse_manifest(Some(DOCKER_MANIFEST), image("").as_bytes()).is_err());
    }

    #[test]
    fn rejections() {
        for (ct, body) in [
            (None, "not json".to_string()),
            (None, "[]".to_string()),
            (None, r#"{"schemaVersion":1,"fsLayers":[]}"#.to_string()),
            (Some(crate::media_type::DOCKER_SCHEMA1_SIGNED), image("")),
            (
                None,
                r#"{"schemaVersion":2,"mediaType":"application/x-unknown"}"#.to_string(),
            ),
            (
                None,
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#),
            ),
            (None, image("").replace(D, "sha256:nothex")),
        ] {
            assert!(parse_manifest(ct, body.as_bytes()).is_err(), "{body}");
        }
    }
}
