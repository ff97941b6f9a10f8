//! Manifests (distribution-spec "Pushing manifests", "Pulling manifests", "Deleting
//! manifests"): validated on the way in, stored and served byte for byte.

use berth_meta::{ManifestRecord, MetaError, NewManifest};
use berth_oci::{Algorithm, Digest, ManifestRef, ParsedManifest, Repository, Tag, parse_manifest};

use crate::lifecycle::immutable_among;
use crate::{Audit, AuditAction, Error, Registry, Result};

/// A stored manifest, as served.
pub type StoredManifest = ManifestRecord;

/// Who pushes a manifest, for its audit event (written in the manifest's transaction).
#[derive(Clone, Copy, Debug)]
pub struct Pusher<'a> {
    /// As [`crate::audit::actor_name`] gives it.
    pub actor: &'a str,
    pub source: Option<std::net::IpAddr>,
}

/// A manifest accepted by PUT.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: Digest,
    /// Its `subject`, for the `OCI-Subject` response header.
    pub subject: Option<Digest>,
}

/// What the metadata database records of a manifest that `parse_manifest` accepted: its
/// references, subject, artifact type and annotations. Shared by PUT and by copying a registry
/// (`berth migrate`), so that a copied manifest is indexed exactly as a pushed one.
pub fn index_manifest(
    parsed: &ParsedManifest,
    content: Vec<u8>,
    tags: Vec<Tag>,
) -> Result<NewManifest> {
    let annotations = parsed
        .annotations
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
    Ok(NewManifest {
        digest: Digest::sha256_of(&content),
        media_type: parsed.media_type.clone(),
        blobs: parsed.blob_references().map(|d| d.digest.clone()).collect(),
        manifests: parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
        content,
        subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
        artifact_type: parsed.artifact_type.clone(),
        annotations,
        tags,
        immutable_tags: Vec::new(),
        audit: None,
    })
}

impl Registry {
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<StoredManifest> {
        let found = match reference {
            ManifestRef::Tag(tag) => {
                let found = self.meta.tagged_manifest(repository, tag).await?;
                if found.is_some() {
                    self.note_pull(repository, tag);
                }
                found
            }
            ManifestRef::Digest(digest) => self.meta.manifest(repository, digest).await?,
        };
        match found {
            Some(m) => Ok(m),
            None => Err(self.missing_manifest(repository, reference).await?),
        }
    }

    /// Validates and stores a manifest under a tag or its digest, plus any `extra_tags`
    /// (`?tag=` on a digest PUT).
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
        content_type: Option<&str>,
        content: Vec<u8>,
        extra_tags: Vec<Tag>,
        pusher: Pusher<'_>,
    ) -> Result<Manifest> {
        let limit = self.limits.max_manifest_bytes;
        if content.len() > limit {
            return Err(Error::ManifestTooLarge { limit });
        }
        let parsed = parse_manifest(content_type, &content)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let digest = Digest::sha256_of(&content);
        let mut tags = extra_tags.clone();
        match reference {
            ManifestRef::Tag(tag) => tags.push(tag.clone()),
            ManifestRef::Digest(d) if d.algorithm() != Algorithm::Sha256 => {
                return Err(Error::Unsupported(format!(
                    "manifests are addressed by sha256 digests, not {}",
                    d.algorithm().as_str()
                )));
            }
            ManifestRef::Digest(d) if d != &digest => {
                return Err(Error::DigestInvalid(format!(
                    "manifest content has digest {digest}, not {d}"
                )));
            }
            ManifestRef::Digest(_) => {}
        }
        let mut new = index_manifest(&parsed, content, tags)?;
        let settings = self.meta.project_settings(repository.project()).await?;
        new.immutable_tags = immutable_among(&settings.immutable_tags, &new.tags);
        // A manifest the repository holds already costs nothing more.
        if settings.quota_bytes.is_some()
            && self.meta.manifest(repository, &digest).await?.is_none()
        {
            self.check_quota_of(
                repository,
                settings.quota_bytes,
                new.content.len() as u64,
                None,
            )
            .await?;
        }
        let what = match reference {
            ManifestRef::Tag(tag) => format!("{repository}:{tag}@{digest}"),
            ManifestRef::Digest(_) => format!("{repository}@{digest}"),
        };
        let mut event = Audit::on_repository(AuditAction::Push, repository, what);
        if !extra_tags.is_empty() {
            let tags: Vec<String> = extra_tags.iter().map(ToString::to_string).collect();
            event = event.detail(format!("tags={}", tags.join(",")));
        }
        new.audit = Some(event.at(self.now(), pusher.actor, pusher.source));
        let subject = new.subject.clone();
        match self.meta.put_manifest(repository, &new).await {
            Ok(()) => Ok(Manifest { digest, subject }),
            Err(MetaError::TagImmutable(tag)) => Err(Self::immutable_error(repository, &tag)),
            Err(MetaError::BlobUnknown(d)) => Err(Error::ManifestBlobUnknown(d)),
            Err(MetaError::ManifestUnknown(d)) => Err(Error::ManifestChildUnknown(d)),
            Err(e) => Err(e.into()),
        }
    }

    /// By digest: deletes the manifest and every tag pointing at it. By tag: deletes the tag
    /// only.
    pub async fn delete_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<()> {
        let deleted = match reference {
            ManifestRef::Tag(tag) => {
                if let Some(tag) = self
                    .immutable_tags(repository, std::slice::from_ref(tag))
                    .await?
                    .first()
                {
                    return Err(Self::immutable_error(repository, tag));
                }
                self.meta.delete_tag(repository, tag).await?
            }
            ManifestRef::Digest(digest) => {
                // Deleting a manifest deletes its tags: not an immutable one.
                if let Some(tag) = self.immutable_tags_of(repository, digest).await?.first() {
                    return Err(Self::immutable_error(repository, tag));
                }
                self.meta.delete_manifest(repository, digest).await?
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(self.missing_manifest(repository, reference).await?)
        }
    }

    async fn missing_manifest(
        &self,
        repository: &Repository,
        reference: &ManifestRef,
    ) -> Result<Error> {
        Ok(if self.meta.repository_exists(repository).await? {
            Error::ManifestUnknown(format!("manifest {reference} is not in {repository}"))
        } else {
            Error::NameUnknown(repository.clone())
        })
    }
}
