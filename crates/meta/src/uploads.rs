//! Upload sessions: where a chunked blob upload stands, so that its next request may reach any
//! replica (offset, hash state and the storage backend's own state).

use async_trait::async_trait;

use crate::{Result, UploadRecord};

#[async_trait]
pub trait UploadSessions: Send + Sync {
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Advances a session from `expected_offset`: `false` (nothing written) if another request
    /// moved it first.
    async fn advance_upload(
        &self,
        id: &str,
        expected_offset: u64,
        offset: u64,
        hash_state: &[u8],
        backend_state: &[u8],
    ) -> Result<bool>;
    /// `false` if there was no such session.
    async fn delete_upload(&self, id: &str) -> Result<bool>;
    /// Deletes the session only if it was last changed at `updated_at`: an expiry that found it
    /// idle loses to a request that advanced it meanwhile. `false` if nothing was deleted.
    async fn delete_idle_upload(&self, id: &str, updated_at: i64) -> Result<bool>;
    async fn count_uploads(&self) -> Result<u64>;
    /// Sessions last changed before `before` (Unix seconds), oldest first, at most `limit`.
    async fn idle_uploads(&self, before: i64, limit: u32) -> Result<Vec<UploadRecord>>;
}

/// The one implementation of [`UploadSessions`], expanded for each backend: the queries are
/// the same on SQLite and PostgreSQL (`$N` parameters work on both). `$read` is the pool for
/// listings; `$write` the one that sees the backend's own latest writes.
macro_rules! impl_upload_sessions {
    ($meta:ty, read = $read:ident, write = $write:ident) => {
        fn upload_record<R: sqlx::Row>(row: &R) -> $crate::Result<$crate::UploadRecord>
        where
            for<'r> &'r str: sqlx::ColumnIndex<R>,
            for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok($crate::UploadRecord {
                id: row.try_get("id")?,
                repository: $crate::rows::parse(row.try_get::<&str, _>("repository")?)?,
                offset: $crate::rows::size(row.try_get("offset")?)?,
                hash_state: row.try_get("hash_state")?,
                backend_state: row.try_get("backend_state")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::uploads::UploadSessions for $meta {
            async fn create_upload(&self, u: &$crate::UploadRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO uploads (id, repository, \"offset\", hash_state, backend_state, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&u.id)
                .bind(u.repository.as_str())
                .bind(u.offset as i64)
                .bind(&u.hash_state)
                .bind(&u.backend_state)
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(&self.$write)
                .await?;
                Ok(())
            }

            async fn upload(&self, id: &str) -> $crate::Result<Option<$crate::UploadRecord>> {
                sqlx::query("SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at FROM uploads WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.$write)
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
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE uploads SET \"offset\" = $1, hash_state = $2, backend_state = $3,
                     updated_at = $4 WHERE id = $5 AND \"offset\" = $6",
                )
                .bind(offset as i64)
                .bind(hash_state)
                .bind(backend_state)
                .bind($crate::unix_now())
                .bind(id)
                .bind(expected_offset as i64)
                .execute(&self.$write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_upload(&self, id: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
                    .bind(id)
                    .execute(&self.$write)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_idle_upload(&self, id: &str, updated_at: i64) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at = $2")
                    .bind(id)
                    .bind(updated_at)
                    .execute(&self.$write)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn count_uploads(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
                    .fetch_one(&self.$read)
                    .await?;
                $crate::rows::size(n)
            }

            async fn idle_uploads(
                &self,
                before: i64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::UploadRecord>> {
                sqlx::query(
                    "SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at
                     FROM uploads WHERE updated_at < $1 ORDER BY updated_at, id LIMIT $2",
                )
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.$read)
                .await?
                .iter()
                .map(upload_record)
                .collect()
            }
        }
    };
}

pub(crate) use impl_upload_sessions;
