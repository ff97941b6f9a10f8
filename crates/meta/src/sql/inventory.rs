//! [`Inventory`]: everything, page by page, for `berth migrate` and `berth fsck`.

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, SqlMeta, Value, blob_record, manifest_record};
use crate::inventory::page_of;
use crate::rows::parse;
use crate::{BlobRecord, Inventory, ManifestRecord, Page, Result};

/// The cursor of a listing by digest: after `last`, or from the start.
fn after(last: Option<&Digest>) -> String {
    last.map(Digest::to_string).unwrap_or_default()
}

#[async_trait]
impl<D: Dialect> Inventory for SqlMeta<D>
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
    async fn all_blobs(&self, last: Option<&Digest>, limit: u32) -> Result<Page<BlobRecord>> {
        let rows = sqlx::query(
            "SELECT digest, size, storage_key FROM blobs WHERE digest > $1
             ORDER BY digest LIMIT $2",
        )
        .bind(after(last))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.dialect.read())
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
        .fetch_all(self.dialect.read())
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
        .fetch_all(self.dialect.read())
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
        .fetch_all(self.dialect.read())
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
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE storage_key = $1")
            .bind(storage_key)
            .fetch_optional(self.dialect.read())
            .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn stored_signing_key(&self) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT pkcs8 FROM signing_keys WHERE id = 1")
                .fetch_optional(self.dialect.read())
                .await?,
        )
    }
}
