//! [`Collector`]: garbage collection's snapshot, and its sweeps, each delete re-checking that
//! the row is still garbage (see `crate::gc` for why that is enough on each database).

use async_trait::async_trait;
use berth_oci::Digest;
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value, blob_record};
use crate::gc::{Collector, GcBlob, GcLink, GcManifest, GcReference, GcSnapshot};
use crate::rows::{parse, size};
use crate::{BlobRecord, Result};

/// Whether the sweep may go on with a row: `lock` (one of [`Dialect::SWEEP_LOCKS`]) found and
/// locked it, or there is no lock to take.
async fn locked<'q, D: Dialect>(
    conn: &mut Conn<D>,
    lock: Option<sqlx::query::Query<'q, D::DB, <D::DB as sqlx::Database>::Arguments>>,
) -> Result<bool>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
{
    Ok(match lock {
        Some(lock) => lock.fetch_optional(conn).await?.is_some(),
        None => true,
    })
}

#[async_trait]
impl<D: Dialect> Collector for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,
    for<'r> Option<i64>: Encode<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
    for<'r> Option<&'r str>: Encode<'r, D::DB>,
{
    async fn gc_snapshot(&self) -> Result<GcSnapshot> {
        let mut tx = self.dialect.begin_snapshot().await?;
        let repositories = sqlx::query("SELECT id, name FROM repositories")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect::<Result<_>>()?;
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
            let subject: Option<&str> = r.try_get("subject")?;
            Ok(GcManifest {
                id: r.try_get("id")?,
                repository_id: r.try_get("repository_id")?,
                digest: parse(r.try_get::<&str, _>("digest")?)?,
                subject: subject.map(parse).transpose()?,
                size: size(r.try_get("size")?)?,
                created_at: r.try_get("created_at")?,
                tags: size(r.try_get("tags")?)?,
            })
        })
        .collect::<Result<_>>()?;
        let references = sqlx::query("SELECT manifest_id, kind, digest FROM manifest_references")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(GcReference {
                    manifest_id: r.try_get("manifest_id")?,
                    manifest: r.try_get::<&str, _>("kind")? == "manifest",
                    digest: parse(r.try_get::<&str, _>("digest")?)?,
                })
            })
            .collect::<Result<_>>()?;
        let links = sqlx::query("SELECT repository_id, digest, created_at FROM repository_blobs")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(GcLink {
                    repository_id: r.try_get("repository_id")?,
                    digest: parse(r.try_get::<&str, _>("digest")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_>>()?;
        let blobs = sqlx::query("SELECT digest, size, storage_key, created_at FROM blobs")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(GcBlob {
                    record: blob_record(r)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_>>()?;
        tx.commit().await?;
        Ok(GcSnapshot {
            repositories,
            manifests,
            references,
            links,
            blobs,
        })
    }

    async fn sweep_manifests(&self, ids: &[i64], cutoff: i64) -> Result<Vec<i64>> {
        let mut tx = self.dialect.begin_write().await?;
        let mut deleted = Vec::new();
        for &id in ids {
            let lock = D::SWEEP_LOCKS.manifest.map(|l| sqlx::query(l).bind(id));
            if !locked::<D>(&mut tx, lock).await? {
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

    async fn sweep_links(&self, links: &[(i64, Digest)], cutoff: i64) -> Result<u64> {
        let mut tx = self.dialect.begin_write().await?;
        let mut deleted = 0;
        for (repository, digest) in links {
            let digest = digest.to_string();
            let lock = D::SWEEP_LOCKS
                .link
                .map(|l| sqlx::query(l).bind(*repository).bind(&digest));
            if !locked::<D>(&mut tx, lock).await? {
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
            .bind(*repository)
            .bind(&digest)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            deleted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn sweep_blobs(&self, digests: &[Digest], cutoff: i64) -> Result<Vec<BlobRecord>> {
        let mut tx = self.dialect.begin_write().await?;
        let mut deleted = Vec::new();
        for digest in digests {
            let digest = digest.to_string();
            let lock = D::SWEEP_LOCKS.blob.map(|l| sqlx::query(l).bind(&digest));
            if !locked::<D>(&mut tx, lock).await? {
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
            if let Some(row) = row {
                deleted.push(blob_record(&row)?);
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
