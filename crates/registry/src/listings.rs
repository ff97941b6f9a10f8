//! Content discovery: tags, referrers, catalog.

use berth_meta::Page;
use berth_oci::{Digest, Repository, Tag, media_type};
use serde_json::{Map, Value, json};

use crate::{Error, Registry, Result};

/// The most entries one page of a listing holds, whatever `n` asks for.
pub const MAX_PAGE: u32 = 10_000;

impl Registry {
    /// Tags in lexical order after `last`, at most `n` (distribution-spec "Listing Tags").
    pub async fn list_tags(
        &self,
        repository: &Repository,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<Page<Tag>> {
        self.meta
            .tags(repository, last, n.unwrap_or(MAX_PAGE).min(MAX_PAGE))
            .await?
            .ok_or_else(|| Error::NameUnknown(repository.clone()))
    }

    /// Repositories in lexical order after `last`, at most `n`.
    pub async fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Page<Repository>> {
        Ok(self
            .meta
            .repositories(last, n.unwrap_or(MAX_PAGE).min(MAX_PAGE))
            .await?)
    }

    /// The referrers of `digest` as an OCI image index (distribution-spec "Listing
    /// Referrers"): an empty index when there are none, also for an unknown digest.
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>> {
        let referrers = self
            .meta
            .referrers(repository, digest, artifact_type)
            .await?;
        let manifests: Vec<Value> = referrers
            .into_iter()
            .map(|r| {
                let mut d = Map::new();
                d.insert("mediaType".into(), r.media_type.into());
                d.insert("digest".into(), r.digest.to_string().into());
                d.insert("size".into(), r.size.into());
                if let Some(at) = r.artifact_type {
                    d.insert("artifactType".into(), at.into());
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d.insert("annotations".into(), a);
                }
                Value::Object(d)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::to_vec(&index).map_err(|e| Error::ManifestInvalid(e.to_string()))
    }
}
