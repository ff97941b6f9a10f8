//! Upload sessions: where a chunked blob upload stands, so that its next request may reach any
//! replica (offset, hash state and the storage backend's own state).

use async_trait::async_trait;

use crate::{Result, UploadRecord};

/// What [`UploadSessions::create_upload_capped`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadCap {
    /// The session is recorded.
    Opened,
    /// Nothing was written: the owner has `open` sessions already, at least the limit.
    Full { open: u64 },
}

#[async_trait]
pub trait UploadSessions: Send + Sync {
    /// Records a session, whatever its owner holds already (`berth migrate`'s own sessions).
    async fn create_upload(&self, upload: &UploadRecord) -> Result<()>;
    /// Records a session unless its owner has `limit` sessions or more: counted and inserted
    /// as one step, so that requests racing on any number of replicas never take an owner
    /// past `limit` (PostgreSQL: a transaction advisory lock on the owner; SQLite: its one
    /// writer). A session without an owner is always recorded.
    async fn create_upload_capped(&self, upload: &UploadRecord, limit: u64) -> Result<UploadCap>;
    /// Sessions of `owner` that exist: finished, cancelled and expired ones are deleted rows
    /// and no longer count.
    async fn count_uploads_of(&self, owner: &str) -> Result<u64>;
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
/// listings; `$write` the one that sees the backend's own latest writes; `$begin` opens a
/// write transaction; `$serialize` makes transactions about one owner wait for each other
/// until commit, also when the owner has no row yet (PostgreSQL: a transaction advisory lock
/// on the owner's hash, in a key space of its own, class "upld"; empty on SQLite, whose write
/// transactions take its one writer).
macro_rules! impl_upload_sessions {
    (
        $meta:ty,
        db = $db:ty,
        read = $read:ident,
        write = $write:ident,
        begin = $begin:ident,
        serialize = $serialize:literal
    ) => {
        fn upload_record<R: sqlx::Row>(row: &R) -> $crate::Result<$crate::UploadRecord>
        where
            for<'r> &'r str: sqlx::ColumnIndex<R>,
            for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok($crate::UploadRecord {
                id: row.try_get("id")?,
                repository: $crate::rows::parse(row.try_get::<&str, _>("repository")?)?,
                offset: $crate::rows::size(row.try_get("offset")?)?,
                hash_state: row.try_get("hash_state")?,
                backend_state: row.try_get("backend_state")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                owner: row.try_get("owner")?,
            })
        }

        fn insert_upload(
            u: &$crate::UploadRecord,
        ) -> sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(
                "INSERT INTO uploads (id, repository, \"offset\", hash_state, backend_state, created_at, updated_at, owner)
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
        }

        const COUNT_UPLOADS_OF: &str = "SELECT count(*) FROM uploads WHERE owner = $1";

        #[async_trait::async_trait]
        impl $crate::uploads::UploadSessions for $meta {
            async fn create_upload(&self, u: &$crate::UploadRecord) -> $crate::Result<()> {
                insert_upload(u).execute(&self.$write).await?;
                Ok(())
            }

            async fn create_upload_capped(
                &self,
                u: &$crate::UploadRecord,
                limit: u64,
            ) -> $crate::Result<$crate::uploads::UploadCap> {
                let Some(owner) = u.owner.as_deref() else {
                    self.create_upload(u).await?;
                    return Ok($crate::uploads::UploadCap::Opened);
                };
                let mut tx = self.$begin().await?;
                if !$serialize.is_empty() {
                    sqlx::query($serialize).bind(owner).execute(&mut *tx).await?;
                }
                let open: i64 = sqlx::query_scalar(COUNT_UPLOADS_OF)
                    .bind(owner)
                    .fetch_one(&mut *tx)
                    .await?;
                let open = $crate::rows::size(open)?;
                if open >= limit {
                    tx.rollback().await?;
                    return Ok($crate::uploads::UploadCap::Full { open });
                }
                insert_upload(u).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok($crate::uploads::UploadCap::Opened)
            }

            async fn count_uploads_of(&self, owner: &str) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar(COUNT_UPLOADS_OF)
                    .bind(owner)
                    .fetch_one(&self.$read)
                    .await?;
                $crate::rows::size(n)
            }

            async fn upload(&self, id: &str) -> $crate::Result<Option<$crate::UploadRecord>> {
                sqlx::query("SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at, owner FROM uploads WHERE id = $1")
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
                .bind(self.now())
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
                    "SELECT id, repository, \"offset\", hash_state, backend_state, created_at, updated_at, owner
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
