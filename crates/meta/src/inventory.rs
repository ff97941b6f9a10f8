//! Walking everything the database holds, page by page: what copying a registry to other
//! backends (`berth migrate`) reads. The serving path never needs these listings.

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};

use crate::{BlobRecord, ManifestRecord, Page, Result};

#[async_trait]
pub trait Inventory: Send + Sync {
    /// Every blob, readable by some repository or not, in digest order, after `last`, at most
    /// `limit`.
    async fn all_blobs(&self, last: Option<&Digest>, limit: u32) -> Result<Page<BlobRecord>>;
    /// The blobs `repository` may read, in digest order, after `last`, at most `limit`.
    async fn repository_blob_digests(
        &self,
        repository: &Repository,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Page<Digest>>;
    /// The repository's manifests as stored, in digest order, after `last`, at most `limit`.
    async fn repository_manifests(
        &self,
        repository: &Repository,
        last: Option<&Digest>,
        limit: u32,
    ) -> Result<Page<ManifestRecord>>;
    /// The repository's tags with the manifest each names, in tag order, after `last`, at most
    /// `limit`.
    async fn tag_targets(
        &self,
        repository: &Repository,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page<(Tag, Digest)>>;
    /// The blob recorded at `storage_key`, if any (what `berth fsck --repair` asks before
    /// removing an object).
    async fn blob_by_storage_key(&self, storage_key: &str) -> Result<Option<BlobRecord>>;
    /// The token signing key, if one was stored; unlike [`crate::Accounts::signing_key`] it
    /// stores nothing.
    async fn stored_signing_key(&self) -> Result<Option<Vec<u8>>>;
}

/// `rows` (fetched with `limit + 1`) as a page of at most `limit`.
pub(crate) fn page_of<T>(mut rows: Vec<T>, limit: u32) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Page { items: rows, more }
}
