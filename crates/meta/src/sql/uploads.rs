//! [`UploadSessions`]: where each chunked upload stands.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value};
use crate::rows::{parse, size};
use crate::{Result, UploadCap, UploadRecord, UploadSessions};

const COUNT_UPLOADS_OF: &str = "SELECT count(*) FROM uploads WHERE owner = $1";

fn upload_record<R: Row>(row: &R) -> Result<UploadRecord>
where
    for<'r> &'r str: ColumnIndex<R> + Value<'r, R::Database>,
    for<'r> i64: Value<'r, R::Database>,
    for<'r> String: Value<'r, R::Database>,
    for<'r> Vec<u8>: Value<'r, R::Database>,
{
    Ok(UploadRecord {
        id: row.try_get("id")?,
        repository: parse(row.try_get::<&str, _>("repository")?)?,
        offset: size(row.try_get("offset")?)?,
        hash_state: row.try_get("hash_state")?,
        backend_state: row.try_get("backend_state")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        owner: row.try_get("owner")?,
    })
}

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
{
    async fn insert_upload<'c, E>(executor: E, u: &UploadRecord) -> Result<()>
    where
        E: Executor<'c, Database = D::DB>,
    {
        sqlx::query(
            "INSERT INTO uploads (id, repository, \"offset\", hash_state, backend_state,
                                  created_at, updated_at, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(u.repository.as_str())
        .bind(u.offset as i64)
        .bind(&u.hash_state)
        .bind(&u.backend_state)
        .bind(u.created_at)
        .bind(u.updated_at)
        .bind(&u.owner)
        .execute(executor)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> UploadSessions for SqlMeta<D>
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
    async fn create_upload(&self, u: &UploadRecord) -> Result<()> {
        Self::insert_upload(self.dialect.write(), u).await
    }

    /// Transactions about one owner wait for each other until commit, also when the owner
    /// has no row yet ([`Dialect::SERIALIZE_UPLOAD_OWNER`]; SQLite: its one writer).
    async fn create_upload_capped(&self, u: &UploadRecord, limit: u64) -> Result<UploadCap> {
        let Some(owner) = u.owner.as_deref() else {
            self.create_upload(u).await?;
            return Ok(UploadCap::Opened);
        };
        let mut tx = self.dialect.begin_write().await?;
        if let Some(serialize) = D::SERIALIZE_UPLOAD_OWNER {
            sqlx::query(serialize).bind(owner).execute(&mut *tx).await?;
        }
        let open: i64 = sqlx::query_scalar(COUNT_UPLOADS_OF)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?;
        let open = size(open)?;
        if open >= limit {
            tx.rollback().await?;
            return Ok(UploadCap::Full { open });
        }
        Self::insert_upload(&mut *tx, u).await?;
        tx.commit().await?;
        Ok(UploadCap::Opened)
    }

    async fn count_uploads_of(&self, owner: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(COUNT_UPLOADS_OF)
            .bind(owner)
            .fetch_one(self.dialect.read())
            .await?;
        size(n)
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        sqlx::query(
            "SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at,
                    owner
             FROM uploads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.dialect.write())
        .await?
        .as_ref()
        .map(upload_record)
        .transpose()
    }

    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        offset: u64,
        hash_state: &[u8],
        backend_state: &[u8],
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET \"offset\" = $1, hash_state = $2, backend_state = $3,
             updated_at = $4 WHERE id = $5 AND \"offset\" = $6",
        )
        .bind(offset as i64)
        .bind(hash_state)
        .bind(backend_state)
        .bind(self.now())
        .bind(id)
        .bind(expected_offset as i64)
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(self.dialect.write())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_idle_upload(&self, id: &str, updated_at: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at = $2")
            .bind(id)
            .bind(updated_at)
            .execute(self.dialect.write())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_uploads(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
            .fetch_one(self.dialect.read())
            .await?;
        size(n)
    }

    async fn idle_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>> {
        sqlx::query(
            "SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at,
                    owner
             FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.dialect.read())
        .await?
        .iter()
        .map(upload_record)
        .collect()
    }
}
