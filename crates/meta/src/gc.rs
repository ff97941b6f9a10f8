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

/// The one implementation of [`Collector`], expanded for each backend: the statements are
/// the same on SQLite and PostgreSQL. `snapshot` and `write` name methods that begin a
/// read-only consistent transaction and a write transaction; `lock_*` are the PostgreSQL row
/// locks taken before each delete (empty on SQLite, whose write transaction excludes every
/// other writer).
macro_rules! impl_collector {
    (
        $meta:ty,
        snapshot = $snapshot:ident,
        write = $write:ident,
        lock_manifest = $lock_manifest:expr,
        lock_link = $lock_link:expr,
        lock_blob = $lock_blob:expr $(,)?
    ) => {
        #[async_trait::async_trait]
        impl $crate::gc::Collector for $meta {
            async fn gc_snapshot(&self) -> $crate::Result<$crate::gc::GcSnapshot> {
                use sqlx::Row;
                use $crate::rows::{parse, size};
                let mut tx = self.$snapshot().await?;
                let repositories = sqlx::query("SELECT id, name FROM repositories")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
                    .collect::<$crate::Result<_>>()?;
                let manifests = sqlx::query(
                    "SELECT m.id, m.repository_id, m.digest, m.subject, m.created_at,
                            CAST(length(m.content) AS BIGINT) AS size,
                            (SELECT count(*) FROM tags t WHERE t.manifest_id = m.id) AS tags
                     FROM manifests m",
                )
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    let subject: Option<String> = r.try_get("subject")?;
                    Ok($crate::gc::GcManifest {
                        id: r.try_get("id")?,
                        repository_id: r.try_get("repository_id")?,
                        digest: parse(r.try_get::<&str, _>("digest")?)?,
                        subject: subject.as_deref().map(parse).transpose()?,
                        size: size(r.try_get("size")?)?,
                        created_at: r.try_get("created_at")?,
                        tags: size(r.try_get("tags")?)?,
                    })
                })
                .collect::<$crate::Result<_>>()?;
                let references =
                    sqlx::query("SELECT manifest_id, kind, digest FROM manifest_references")
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| {
                            Ok($crate::gc::GcReference {
                                manifest_id: r.try_get("manifest_id")?,
                                manifest: r.try_get::<&str, _>("kind")? == "manifest",
                                digest: parse(r.try_get::<&str, _>("digest")?)?,
                            })
                        })
                        .collect::<$crate::Result<_>>()?;
                let links =
                    sqlx::query("SELECT repository_id, digest, created_at FROM repository_blobs")
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| {
                            Ok($crate::gc::GcLink {
                                repository_id: r.try_get("repository_id")?,
                                digest: parse(r.try_get::<&str, _>("digest")?)?,
                                created_at: r.try_get("created_at")?,
                            })
                        })
                        .collect::<$crate::Result<_>>()?;
                let blobs =
                    sqlx::query("SELECT digest, size, storage_key, created_at FROM blobs")
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| {
                            Ok($crate::gc::GcBlob {
                                record: $crate::BlobRecord {
                                    digest: parse(r.try_get::<&str, _>("digest")?)?,
                                    size: size(r.try_get("size")?)?,
                                    storage_key: r.try_get("storage_key")?,
                                },
                                created_at: r.try_get("created_at")?,
                            })
                        })
                        .collect::<$crate::Result<_>>()?;
                tx.commit().await?;
                Ok($crate::gc::GcSnapshot {
                    repositories,
                    manifests,
                    references,
                    links,
                    blobs,
                })
            }

            async fn sweep_manifests(&self, ids: &[i64], cutoff: i64) -> $crate::Result<Vec<i64>> {
                let mut tx = self.$write().await?;
                let mut deleted = Vec::new();
                for &id in ids {
                    if !$lock_manifest.is_empty()
                        && sqlx::query($lock_manifest)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .is_none()
                    {
                        continue;
                    }
                    let done = sqlx::query(
                        "DELETE FROM manifests WHERE id = $1 AND created_at < $2
                         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = manifests.id)
                         AND NOT EXISTS (
                             SELECT 1 FROM manifest_references mr
                             JOIN manifests p ON p.id = mr.manifest_id
                             WHERE mr.kind = 'manifest' AND mr.digest = manifests.digest
                               AND p.repository_id = manifests.repository_id)
                         AND NOT EXISTS (
                             SELECT 1 FROM manifests r
                             WHERE r.repository_id = manifests.repository_id
                               AND r.subject = manifests.digest)
                         AND (manifests.subject IS NULL OR NOT EXISTS (
                             SELECT 1 FROM manifests s
                             WHERE s.repository_id = manifests.repository_id
                               AND s.digest = manifests.subject))",
                    )
                    .bind(id)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() > 0 {
                        deleted.push(id);
                    }
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn sweep_links(
                &self,
                links: &[(i64, berth_oci::Digest)],
                cutoff: i64,
            ) -> $crate::Result<u64> {
                let mut tx = self.$write().await?;
                let mut deleted = 0;
                for (repository, digest) in links {
                    let digest = digest.to_string();
                    if !$lock_link.is_empty()
                        && sqlx::query($lock_link)
                            .bind(repository)
                            .bind(&digest)
                            .fetch_optional(&mut *tx)
                            .await?
                            .is_none()
                    {
                        continue;
                    }
                    let done = sqlx::query(
                        "DELETE FROM repository_blobs
                         WHERE repository_id = $1 AND digest = $2 AND created_at < $3
                         AND NOT EXISTS (
                             SELECT 1 FROM manifest_references mr
                             JOIN manifests m ON m.id = mr.manifest_id
                             WHERE mr.kind = 'blob' AND mr.digest = $2 AND m.repository_id = $1)",
                    )
                    .bind(repository)
                    .bind(&digest)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?;
                    deleted += done.rows_affected();
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn sweep_blobs(
                &self,
                digests: &[berth_oci::Digest],
                cutoff: i64,
            ) -> $crate::Result<Vec<$crate::BlobRecord>> {
                use sqlx::Row;
                use $crate::rows::{parse, size};
                let mut tx = self.$write().await?;
                let mut deleted = Vec::new();
                for digest in digests {
                    let digest = digest.to_string();
                    if !$lock_blob.is_empty()
                        && sqlx::query($lock_blob)
                            .bind(&digest)
                            .fetch_optional(&mut *tx)
                            .await?
                            .is_none()
                    {
                        continue;
                    }
                    let row = sqlx::query(
                        "DELETE FROM blobs WHERE digest = $1 AND created_at < $2
                         AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1)
                         RETURNING digest, size, storage_key",
                    )
                    .bind(&digest)
                    .bind(cutoff)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(r) = row {
                        deleted.push($crate::BlobRecord {
                            digest: parse(r.try_get::<&str, _>("digest")?)?,
                            size: size(r.try_get("size")?)?,
                            storage_key: r.try_get("storage_key")?,
                        });
                    }
                }
                tx.commit().await?;
                Ok(deleted)
            }
        }
    };
}
pub(crate) use impl_collector;
