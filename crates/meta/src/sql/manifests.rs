//! [`ManifestIndex`]: manifests, their tags and referrers. Storing a manifest is the dialect's
//! ([`Dialect::store_manifest`]); the transaction around it, and the rest, are shared.

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value, manifest_record};
use crate::rows::{page, parse, size};
use crate::{ManifestIndex, ManifestRecord, NewManifest, Page, Referrer, Result};

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: Value<'r, D::DB>,
{
    /// Takes the lock that orders the changes to the repository's tag list, if the dialect
    /// has one ([`Dialect::LOCK_TAG_LIST`]): first in every transaction that adds or removes
    /// tags.
    pub(super) async fn lock_tag_list(conn: &mut Conn<D>, repository: &str) -> Result<()> {
        if let Some(lock) = D::LOCK_TAG_LIST {
            sqlx::query(lock).bind(repository).execute(conn).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> ManifestIndex for SqlMeta<D>
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
    /// The audit event goes into the manifest's transaction, so one commit (one WAL sync on
    /// SQLite) does it all. A tag that was not written is an immutable one naming another
    /// manifest: the whole PUT is refused, the transaction dropped, rolled back.
    async fn put_manifest(&self, repository: &Repository, m: &NewManifest) -> Result<()> {
        let mut tx = self.dialect.begin_write().await?;
        let written = D::store_manifest(&mut tx, repository, m, self.now()).await?;
        crate::rows::all_tags_written(m, &written)?;
        if let Some(event) = &m.audit {
            Self::insert_event(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM manifests m
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(self.dialect.read())
        .await?;
        row.as_ref().map(manifest_record).transpose()
    }

    async fn tagged_manifest(
        &self,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.id = t.manifest_id
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(self.dialect.read())
        .await?;
        row.as_ref().map(manifest_record).transpose()
    }

    /// Its tags go with it: the tag list's lock first, as `put_manifest` takes it. Then the
    /// manifest's id (PostgreSQL: locked, so that of two replicas deleting it only one reports
    /// a delete) and the dialect's deletes.
    async fn delete_manifest(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let mut tx = self.dialect.begin_write().await?;
        Self::lock_tag_list(&mut tx, repository.as_str()).await?;
        let id: Option<i64> = sqlx::query_scalar(D::MANIFEST_TO_DELETE)
            .bind(repository.as_str())
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        for statement in D::DELETE_MANIFEST {
            sqlx::query(*statement).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tag(&self, repository: &Repository, tag: &Tag) -> Result<bool> {
        let mut tx = self.dialect.begin_write().await?;
        Self::lock_tag_list(&mut tx, repository.as_str()).await?;
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(tag.as_str())
        .bind(repository.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn tag_list_version(&self, repository: &Repository) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT tag_list_version FROM repositories WHERE name = $1")
                .bind(repository.as_str())
                .fetch_optional(self.dialect.read())
                .await?,
        )
    }

    async fn tags(
        &self,
        repository: &Repository,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page<Tag>>> {
        let repo: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(self.dialect.read())
            .await?;
        let Some(repo) = repo else {
            return Ok(None);
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.dialect.read())
        .await?;
        Ok(Some(page(&names, limit)?))
    }

    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, CAST(length(m.content) AS BIGINT) AS size,
                    m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY m.created_at, m.id",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .bind(artifact_type)
        .fetch_all(self.dialect.read())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse(row.try_get::<&str, _>("digest")?)?,
                    media_type: row.try_get("media_type")?,
                    size: size(row.try_get("size")?)?,
                    artifact_type: row.try_get("artifact_type")?,
                    annotations: row.try_get("annotations")?,
                })
            })
            .collect()
    }
}
