//! What garbage collection reads and deletes. The registry decides what is garbage from a
//! [`GcSnapshot`] (marking from the tags); each deletion here then re-checks, in the database
//! and against concurrent writers, that the row is still unreferenced and older than the
//! cutoff, so a push that lands between the snapshot and the sweep keeps what it uses.
//!
//! - SQLite: each batch is one `BEGIN IMMEDIATE` transaction; no other write can interleave.
//! - PostgreSQL: each row is first locked `FOR UPDATE SKIP LOCKED`. A writer that depends on
//!   the row holds it `FOR KEY SHARE` (a manifest PUT its blob links and child manifests, a
//!   link its blob) until it commits, so GC skips it; a writer that comes after waits for GC's
//!   commit and then finds the row gone (`MANIFEST_BLOB_UNKNOWN`, or a new upload). The delete
//!   that follows is a new statement, so at READ COMMITTED its `NOT EXISTS` checks see every
//!   reference committed before it.

use async_trait::async_trait;
use berth_oci::Digest;

use crate::{BlobRecord, Result};

/// A manifest as garbage collection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcManifest {
    pub id: i64,
    pub repository_id: i64,
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Bytes of the manifest itself.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Tags naming it.
    pub tags: u64,
}

/// What a manifest references: a blob (config, layer) or a child manifest (index entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcReference {
    pub manifest_id: i64,
    pub manifest: bool,
    pub digest: Digest,
}

/// A repository's right to read a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcLink {
    pub repository_id: i64,
    pub digest: Digest,
    pub created_at: i64,
}

/// A stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcBlob {
    pub record: BlobRecord,
    pub created_at: i64,
}

/// Everything garbage collection marks from, read in one transaction (one consistent view).
#[derive(Clone, Debug, Default)]
pub struct GcSnapshot {
    /// Repository ids and names.
    pub repositories: Vec<(i64, String)>,
    pub manifests: Vec<GcManifest>,
    pub references: Vec<GcReference>,
    pub links: Vec<GcLink>,
    pub blobs: Vec<GcBlob>,
}

#[async_trait]
pub trait Collector: Send + Sync {
    async fn gc_snapshot(&self) -> Result<GcSnapshot>;
    /// Deletes those of the manifests `ids` that are still untagged, created before `cutoff`,
    /// listed by no index of their repository, the subject of no manifest there, and (for a
    /// referrer) whose subject is not there. Returns
    /// the ids deleted. Their references go with them; their tags had to be gone already.
    async fn sweep_manifests(&self, ids: &[i64], cutoff: i64) -> Result<Vec<i64>>;
    /// Deletes those of the links (repository id, digest) that are still created before
    /// `cutoff` and referenced by no manifest of their repository. Returns how many.
    async fn sweep_links(&self, links: &[(i64, Digest)], cutoff: i64) -> Result<u64>;
    /// Deletes the rows of those of the blobs that are still created before `cutoff` and
    /// readable by no repository. Returns the records deleted: their objects are the caller's
    /// to remove from storage, after this (a crash in between leaves an orphan object, which
    /// `berth fsck --repair` removes, never a row without its object).
    async fn sweep_blobs(&self, digests: &[Digest], cutoff: i64) -> Result<Vec<BlobRecord>>;
}
