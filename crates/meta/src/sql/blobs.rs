//! [`BlobIndex`] and [`Catalog`]: blobs, which repository may read them, and the repositories.

use async_trait::async_trait;
use berth_oci::{Digest, Repository};
use sqlx::{ColumnIndex, Encode, Executor, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value, blob_record};
use crate::rows::{page, parse};
use crate::{BlobIndex, BlobRecord, Catalog, Page, Result};

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
{
    /// Lets repository `repo` read blob `digest`. A link that exists is dated again: its blob
    /// was just pushed or mounted, and garbage collection's grace counts from then.
    /// PostgreSQL: the foreign key check locks the blob row (FOR KEY SHARE) until the
    /// transaction ends, so the blob cannot vanish under the link.
    async fn grant(conn: &mut Conn<D>, repo: i64, digest: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(repo)
        .bind(digest)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> BlobIndex for SqlMeta<D>
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
    async fn repository_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(self.dialect.read())
        .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(self.dialect.read())
            .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn add_blob(&self, repository: &Repository, blob: &BlobRecord) -> Result<BlobRecord> {
        let digest = blob.digest.to_string();
        let mut tx = self.dialect.begin_write().await?;
        let repo = D::repository_id(&mut tx, repository, self.now()).await?;
        // Replicas adding the same digest at once (PostgreSQL): the unique key makes the later
        // ones wait for the first insert and then take the conflict branch, which returns the
        // winner's row, so every caller returns the one record in force. The no-op update
        // locks that row until the link below is in: garbage collection, which deletes a blob
        // row only when no link names it, skips a locked row, and one it deleted first is
        // simply inserted again here. (SQLite: its one writer allows no concurrent insert.)
        let row = sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO UPDATE SET size = blobs.size
             RETURNING digest, size, storage_key",
        )
        .bind(&digest)
        .bind(blob.size as i64)
        .bind(&blob.storage_key)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        Self::grant(&mut tx, repo, &digest, self.now()).await?;
        let record = blob_record(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn link_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        let mut tx = self.dialect.begin_write().await?;
        let exists = sqlx::query(D::BLOB_TO_LINK)
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let repo = D::repository_id(&mut tx, repository, self.now()).await?;
        Self::grant(&mut tx, repo, &digest, self.now()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unlink_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        // One statement: of two concurrent unlinks, the second finds the row gone.
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str())
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn blob_repositories(&self, digest: &Digest, limit: u32) -> Result<Vec<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.to_string())
        .bind(i64::from(limit))
        .fetch_all(self.dialect.read())
        .await?;
        names.iter().map(|n| parse(n)).collect()
    }
}

#[async_trait]
impl<D: Dialect> Catalog for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
{
    async fn repositories(&self, last: Option<&str>, limit: u32) -> Result<Page<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.dialect.read())
        .await?;
        page(&names, limit)
    }

    async fn repository_exists(&self, repository: &Repository) -> Result<bool> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(self.dialect.read())
            .await?;
        Ok(id.is_some())
    }
}
