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
