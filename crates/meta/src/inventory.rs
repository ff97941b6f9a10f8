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

/// The one implementation of [`Inventory`], expanded for each backend: the queries are the same
/// on SQLite and PostgreSQL (`$N` parameters work on both), only the pool read from differs.
/// The expansion site provides `blob_record` and `manifest_record` for its row type.
macro_rules! impl_inventory {
    ($meta:ty, $pool:ident) => {
        fn after(last: Option<&berth_oci::Digest>) -> String {
            last.map(berth_oci::Digest::to_string).unwrap_or_default()
        }

        #[async_trait]
        impl $crate::inventory::Inventory for $meta {
            async fn all_blobs(&self, last: Option<&Digest>, limit: u32) -> Result<Page<BlobRecord>> {
                let rows = sqlx::query(
                    "SELECT digest, size, storage_key FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
                )
                .bind(after(last))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.$pool)
                .await?;
                let items = rows.iter().map(blob_record).collect::<Result<_>>()?;
                Ok(page_of(items, limit))
            }

            async fn repository_blob_digests(
                &self,
                repository: &Repository,
                last: Option<&Digest>,
                limit: u32,
            ) -> Result<Page<Digest>> {
                let digests: Vec<String> = sqlx::query_scalar(
                    "SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
                     WHERE r.name = $1 AND rb.digest > $2 ORDER BY rb.digest LIMIT $3",
                )
                .bind(repository.as_str())
                .bind(after(last))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.$pool)
                .await?;
                let items = digests.iter().map(|d| parse(d)).collect::<Result<_>>()?;
                Ok(page_of(items, limit))
            }

            async fn repository_manifests(
                &self,
                repository: &Repository,
                last: Option<&Digest>,
                limit: u32,
            ) -> Result<Page<ManifestRecord>> {
                let rows = sqlx::query(
                    "SELECT m.digest, m.media_type, m.content, m.subject FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND m.digest > $2 ORDER BY m.digest LIMIT $3",
                )
                .bind(repository.as_str())
                .bind(after(last))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.$pool)
                .await?;
                let items = rows.iter().map(manifest_record).collect::<Result<_>>()?;
                Ok(page_of(items, limit))
            }

            async fn tag_targets(
                &self,
                repository: &Repository,
                last: Option<&str>,
                limit: u32,
            ) -> Result<Page<(Tag, Digest)>> {
                let rows = sqlx::query(
                    "SELECT t.name, m.digest FROM tags t
                     JOIN repositories r ON r.id = t.repository_id
                     JOIN manifests m ON m.id = t.manifest_id
                     WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3",
                )
                .bind(repository.as_str())
                .bind(last.unwrap_or(""))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.$pool)
                .await?;
                let items = rows
                    .iter()
                    .map(|row| {
                        Ok((
                            parse(row.try_get::<&str, _>("name")?)?,
                            parse(row.try_get::<&str, _>("digest")?)?,
                        ))
                    })
                    .collect::<Result<_>>()?;
                Ok(page_of(items, limit))
            }

            async fn blob_by_storage_key(&self, storage_key: &str) -> Result<Option<BlobRecord>> {
                let row = sqlx::query(
                    "SELECT digest, size, storage_key FROM blobs WHERE storage_key = $1",
                )
                .bind(storage_key)
                .fetch_optional(&self.$pool)
                .await?;
                row.as_ref().map(blob_record).transpose()
            }

            async fn stored_signing_key(&self) -> Result<Option<Vec<u8>>> {
                Ok(
                    sqlx::query_scalar("SELECT pkcs8 FROM signing_keys WHERE id = 1")
                        .fetch_optional(&self.$pool)
                        .await?,
                )
            }
        }
    };
}
pub(crate) use impl_inventory;
