//! Blob uploads (distribution-spec "Pushing blobs"): sessions, streamed and chunked PATCH,
//! the closing PUT with digest verification, monolithic POST and cross-repository mounts.

use std::net::IpAddr;
use std::time::Duration;

use berth_meta::{BlobRecord, Job, UploadCap, UploadRecord};
use berth_oci::{Digest, DigestHasher, Repository};
use berth_storage::{ByteStream, UploadState};
use futures_util::StreamExt;

use crate::audit::actor_name;
use crate::{Error, Principal, Registry, Result};

/// Whose upload sessions a new one counts with, against
/// [`crate::Limits::max_open_uploads_per_account`]: the account that opens it or, for an
/// anonymous caller (a registry without accounts, where anyone may push), its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadOwner {
    /// A user's name, or `robot$name`.
    Account(String),
    /// An anonymous client, by its address (`None`: not known; all such share one count).
    Anonymous(Option<IpAddr>),
}

impl UploadOwner {
    /// The owner of what `who`, calling from `client`, opens.
    pub fn of(who: &Principal, client: Option<IpAddr>) -> Self {
        match who {
            Principal::Anonymous => UploadOwner::Anonymous(client),
            account => UploadOwner::Account(actor_name(account)),
        }
    }

    /// As the session's row records it. Account names have no `@` (they are repository
    /// path components), so an address never reads as an account.
    fn key(&self) -> String {
        match self {
            UploadOwner::Account(name) => name.clone(),
            UploadOwner::Anonymous(Some(address)) => format!("anonymous@{address}"),
            UploadOwner::Anonymous(None) => "anonymous@unknown".into(),
        }
    }

    /// In words, for the refusal.
    fn describe(&self) -> String {
        match self {
            UploadOwner::Account(name) => format!("account {name}"),
            UploadOwner::Anonymous(Some(address)) => format!("anonymous client {address}"),
            UploadOwner::Anonymous(None) => "anonymous clients of unknown address".into(),
        }
    }
}

/// Where an upload session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub repository: Repository,
    pub id: String,
    /// Bytes received and acknowledged.
    pub offset: u64,
}

impl From<&UploadRecord> for UploadStatus {
    fn from(r: &UploadRecord) -> Self {
        Self {
            repository: r.repository.clone(),
            id: r.id.clone(),
            offset: r.offset,
        }
    }
}

pub enum MountOutcome {
    /// The blob is now readable in the target repository.
    Mounted(BlobRecord),
    /// It could not be mounted; a new upload session was opened instead.
    Session(UploadStatus),
}

/// What one run of upload expiry removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Sessions removed with their partial data.
    pub expired: u64,
    /// Bytes those sessions had received.
    pub bytes: u64,
    /// Sessions whose data the storage backend would not remove; kept for the next run.
    pub failed: u64,
}

/// Parses the `Content-Range` of an upload chunk, `<start>-<end>` inclusive
/// (distribution-spec "Pushing a blob in chunks"; a `bytes=` or `bytes ` prefix is tolerated),
/// into (start, length) as [`Registry::append_upload`] takes it. `None` when malformed.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let text = value.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let (a, b) = text.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    if end < start {
        return None;
    }
    // `0-18446744073709551615` is 2^64 bytes, one more than a u64 counts: malformed.
    Some((start, (end - start).checked_add(1)?))
}

/// Idle sessions handled per database query.
const EXPIRY_BATCH: u32 = 200;

/// Holds a session exclusively for one request of this process; released on drop.
struct SessionGuard<'a> {
    registry: &'a Registry,
    id: String,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.registry.busy_uploads.lock() {
            busy.remove(&self.id);
        }
    }
}

/// What one request appended to a session.
struct Received {
    hasher: DigestHasher,
    state: UploadState,
    offset: u64,
}

impl Registry {
    /// Opens an upload session (`POST /v2/<name>/blobs/uploads/`) for `owner`, unless it has
    /// [`crate::Limits::max_open_uploads_per_account`] open already (on any replica): then
    /// [`Error::TooManyOpenUploads`], and nothing is kept.
    pub async fn start_upload(
        &self,
        repository: &Repository,
        owner: &UploadOwner,
    ) -> Result<UploadStatus> {
        // A project at its quota takes no new bytes: refused before any are sent.
        self.check_quota(repository, 0, None).await?;
        let limit = self.limits.max_open_uploads_per_account;
        let key = owner.key();
        // Most refusals cost one indexed count, and no storage work.
        let open = self.meta.count_uploads_of(&key).await?;
        if open >= limit {
            return Err(Self::too_many_uploads(owner, open, limit));
        }
        let id = ulid::Ulid::new().to_string();
        let state = self.blobs.create_upload(&id).await?;
        let now = self.now();
        let record = UploadRecord {
            id,
            repository: repository.clone(),
            offset: 0,
            hash_state: DigestHasher::new().save(),
            backend_state: state.0,
            created_at: now,
            updated_at: now,
            owner: Some(key),
        };
        // The count above was a hint; this one decides, atomically with the insert, so that
        // requests racing on several replicas cannot pass the limit together.
        match self.meta.create_upload_capped(&record, limit).await {
            Ok(UploadCap::Opened) => Ok(UploadStatus::from(&record)),
            Ok(UploadCap::Full { open }) => {
                self.abort_unrecorded(&record).await;
                Err(Self::too_many_uploads(owner, open, limit))
            }
            Err(e) => {
                self.abort_unrecorded(&record).await;
                Err(e.into())
            }
        }
    }

    fn too_many_uploads(owner: &UploadOwner, open: u64, limit: u64) -> Error {
        Error::TooManyOpenUploads {
            owner: owner.describe(),
            open,
            limit,
        }
    }

    /// Removes the storage side of a session whose row was never written (S3: aborts the
    /// multipart upload; it holds no bytes yet). A failure is logged; the answer stands.
    async fn abort_unrecorded(&self, record: &UploadRecord) {
        let state = UploadState(record.backend_state.clone());
        if let Err(e) = self.blobs.abort(&record.id, &state).await {
            tracing::warn!(upload = %record.id, error = %e, "could not remove an unrecorded upload's data");
        }
    }

    /// Where the session stands (`GET` on the upload URL).
    pub async fn upload_status(&self, repository: &Repository, id: &str) -> Result<UploadStatus> {
        Ok(UploadStatus::from(&self.session(repository, id).await?))
    }

    /// Appends a request body (`PATCH`). With `start`, the chunk's `Content-Range` start and
    /// length, it must continue exactly where the session ends.
    pub async fn append_upload(
        &self,
        repository: &Repository,
        id: &str,
        chunk: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let _guard = self.claim(id)?;
        let record = self.session(repository, id).await?;
        let received = self.receive(&record, chunk, body, false).await?;
        self.save_progress(&record, &received).await?;
        Ok(UploadStatus {
            offset: received.offset,
            ..UploadStatus::from(&record)
        })
    }

    /// Closes the session (`PUT ?digest=`), with an optional last chunk: verifies the digest,
    /// then makes the blob visible. On a mismatch the session and its data are dropped and
    /// nothing becomes visible.
    pub async fn finish_upload(
        &self,
        repository: &Repository,
        id: &str,
        digest: &Digest,
        chunk: Option<(u64, u64)>,
        body: Option<ByteStream>,
    ) -> Result<BlobRecord> {
        let _guard = self.claim(id)?;
        let record = self.session(repository, id).await?;
        // The body's bytes are the last: the backend stores them as the blob's end at once
        // (S3: its last part) instead of staging them for the commit to read back. That state
        // is never saved; it goes only to commit, or to abort on a digest mismatch.
        let received = match body {
            Some(body) => self.receive(&record, chunk, body, true).await?,
            None => Received {
                hasher: self.restore_hasher(&record)?,
                state: UploadState(record.backend_state.clone()),
                offset: record.offset,
            },
        };
        let state = received.state.clone();
        let size = received.offset;
        let actual = received.hasher.finish();
        if &actual != digest {
            self.drop_session(&record.id, &state).await?;
            return Err(Error::DigestInvalid(format!(
                "uploaded content has digest {actual}, not {digest}"
            )));
        }
        if let Err(e) = self.check_quota(repository, size, Some(digest)).await {
            self.drop_session(&record.id, &state).await?;
            return Err(e);
        }
        // A blob the registry already has is not stored twice: the new upload is dropped and
        // the existing blob linked (on S3 a commit would complete a second object at a new
        // key, which nothing would ever reference).
        if let Some(existing) = self.meta.blob(digest).await?
            && self.meta.link_blob(repository, digest).await?
        {
            self.meta.delete_upload(&record.id).await?;
            if let Err(e) = self.blobs.abort(&record.id, &state).await {
                // The push succeeded; what is left of the session is for upload expiry.
                tracing::warn!(upload = %record.id, error = %e, "could not abort a duplicate upload");
            }
            return Ok(existing);
        }
        let key = self.blobs.commit(&record.id, &state, digest, size).await?;
        let blob = self
            .meta
            .add_blob(
                repository,
                &BlobRecord {
                    digest: digest.clone(),
                    size,
                    storage_key: key.as_str().to_string(),
                },
            )
            .await?;
        if blob.storage_key != key.as_str() {
            // Another upload of the same bytes was recorded first, at another key (S3 keys are
            // not content addresses): ours is not referenced, remove it.
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(key = key.as_str(), error = %e, "could not remove a duplicate blob");
            }
        }
        self.meta.delete_upload(&record.id).await?;
        Ok(blob)
    }

    /// Uploads a whole blob in one request (`POST ?digest=` with a body). Its session counts
    /// against `owner`'s open sessions while the request runs.
    pub async fn upload_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        body: ByteStream,
        owner: &UploadOwner,
    ) -> Result<BlobRecord> {
        let session = self.start_upload(repository, owner).await?;
        self.finish_upload(repository, &session.id, digest, None, Some(body))
            .await
    }

    /// Cancels a session (`DELETE` on the upload URL).
    pub async fn cancel_upload(&self, repository: &Repository, id: &str) -> Result<()> {
        let _guard = self.claim(id)?;
        let record = self.session(repository, id).await?;
        self.drop_session(&record.id, &UploadState(record.backend_state.clone()))
            .await
    }

    /// Cross-repository mount (`POST ?mount=<digest>[&from=<repo>]`): makes an existing blob
    /// readable in `repository` without moving bytes. Without `from`, any repository holding the
    /// blob will do (distribution-spec "Mounting a blob from another repository": the registry
    /// MAY mount without `from`). Otherwise a session opens for `owner`. Whether the caller may
    /// read the source is the access service's to say first (`Access::may_mount_from`: without
    /// `from` only when accounts are off).
    pub async fn mount_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        from: Option<&Repository>,
        owner: &UploadOwner,
    ) -> Result<MountOutcome> {
        if let Some(blob) = self.meta.repository_blob(repository, digest).await? {
            return Ok(MountOutcome::Mounted(blob));
        }
        let sources = match from {
            Some(from) => vec![from.clone()],
            None => self.meta.blob_repositories(digest, 100).await?,
        };
        for source in sources {
            let Some(blob) = self.meta.repository_blob(&source, digest).await? else {
                continue;
            };
            self.check_quota(repository, blob.size, Some(digest))
                .await?;
            if self.meta.link_blob(repository, digest).await?
                && let Some(blob) = self.meta.repository_blob(repository, digest).await?
            {
                return Ok(MountOutcome::Mounted(blob));
            }
        }
        Ok(MountOutcome::Session(
            self.start_upload(repository, owner).await?,
        ))
    }

    /// Removes the upload sessions that nothing has advanced for `idle`, and their partial
    /// data (S3: the multipart upload aborted, the staged tail deleted). Runs in one process
    /// at a time across every replica and command sharing the metadata: `None` when another
    /// one holds the job.
    ///
    /// The data goes first, then the session: a backend that fails keeps the session, and the
    /// next run tries again. A request that advances a session meanwhile wins: its session
    /// stays (its data may be gone, and its next request then fails; it was idle for `idle`).
    pub async fn expire_uploads(&self, idle: Duration) -> Result<Option<ExpiryReport>> {
        let Some(lock) = self.meta.try_lock_job(Job::UploadExpiry).await? else {
            return Ok(None);
        };
        let expired = self.expire_idle_uploads(idle).await;
        lock.release().await;
        expired.map(Some)
    }

    async fn expire_idle_uploads(&self, idle: Duration) -> Result<ExpiryReport> {
        let before = self
            .now()
            .saturating_sub(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX));
        let mut report = ExpiryReport::default();
        loop {
            let batch = self.meta.idle_uploads(before, EXPIRY_BATCH).await?;
            let full = batch.len() == EXPIRY_BATCH as usize;
            let mut removed_any = false;
            for record in batch {
                // A request of this process is working on it right now.
                let Ok(_guard) = self.claim(&record.id) else {
                    continue;
                };
                let state = UploadState(record.backend_state.clone());
                if let Err(e) = self.blobs.abort(&record.id, &state).await {
                    tracing::warn!(upload = %record.id, error = %e, "could not remove an expired upload's data");
                    report.failed += 1;
                    continue;
                }
                if self
                    .meta
                    .delete_idle_upload(&record.id, record.updated_at)
                    .await?
                {
                    removed_any = true;
                    report.expired += 1;
                    report.bytes += record.offset;
                }
            }
            // A short batch was the last; a full one without progress would come back the same.
            if !full || !removed_any {
                return Ok(report);
            }
        }
    }

    fn claim(&self, id: &str) -> Result<SessionGuard<'_>> {
        let mut busy = self
            .busy_uploads
            .lock()
            .map_err(|_| Error::BlobUploadInvalid("upload lock poisoned".into()))?;
        if !busy.insert(id.to_string()) {
            return Err(Error::BlobUploadInvalid(format!(
                "upload {id} is busy with another request"
            )));
        }
        Ok(SessionGuard {
            registry: self,
            id: id.to_string(),
        })
    }

    async fn session(&self, repository: &Repository, id: &str) -> Result<UploadRecord> {
        let unknown = || Error::BlobUploadUnknown(id.chars().take(64).collect());
        if ulid::Ulid::from_string(id).is_err() {
            return Err(unknown());
        }
        match self.meta.upload(id).await? {
            Some(record) if &record.repository == repository => Ok(record),
            _ => Err(unknown()),
        }
    }

    fn restore_hasher(&self, record: &UploadRecord) -> Result<DigestHasher> {
        DigestHasher::restore(&record.hash_state).ok_or_else(|| {
            Error::BlobUploadInvalid(format!("upload {} has a damaged hash state", record.id))
        })
    }

    /// Streams `body` into the session: hashed and written as it arrives, never held whole.
    /// With `last`, the body ends the upload, and the state returned can only be committed or
    /// aborted ([`berth_storage::UploadWriter::finish_last`]).
    async fn receive(
        &self,
        record: &UploadRecord,
        chunk: Option<(u64, u64)>,
        mut body: ByteStream,
        last: bool,
    ) -> Result<Received> {
        let expected_len = match chunk {
            Some((start, _)) if start != record.offset => {
                return Err(Error::ChunkOutOfOrder {
                    repository: record.repository.clone(),
                    id: record.id.clone(),
                    offset: record.offset,
                    start,
                });
            }
            Some((_, len)) => Some(len),
            None => None,
        };
        let mut hasher = self.restore_hasher(record)?;
        let mut writer = self
            .blobs
            .writer(
                &record.id,
                &UploadState(record.backend_state.clone()),
                record.offset,
            )
            .await?;
        let mut received = 0u64;
        while let Some(data) = body.next().await {
            let data = data.map_err(Error::Body)?;
            received += data.len() as u64;
            if expected_len.is_some_and(|len| received > len) {
                return Err(Error::BlobUploadInvalid(
                    "the chunk is longer than its Content-Range".into(),
                ));
            }
            hasher.update(&data);
            writer.write(data).await?;
        }
        if expected_len.is_some_and(|len| received != len) {
            return Err(Error::BlobUploadInvalid(
                "the chunk is shorter than its Content-Range".into(),
            ));
        }
        let state = if last {
            writer.finish_last().await?
        } else {
            writer.finish().await?
        };
        Ok(Received {
            hasher,
            state,
            offset: record.offset + received,
        })
    }

    async fn save_progress(&self, record: &UploadRecord, received: &Received) -> Result<()> {
        let saved = self
            .meta
            .advance_upload(
                &record.id,
                record.offset,
                received.offset,
                &received.hasher.save(),
                &received.state.0,
            )
            .await?;
        if saved {
            Ok(())
        } else {
            Err(Error::BlobUploadInvalid(format!(
                "upload {} was changed by another request",
                record.id
            )))
        }
    }

    async fn drop_session(&self, id: &str, state: &UploadState) -> Result<()> {
        self.meta.delete_upload(id).await?;
        self.blobs.abort(id, state).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-1023"), Some((0, 1024)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 1)));
        assert_eq!(parse_content_range(" bytes 10 - 19 "), Some((10, 10)));
        assert_eq!(
            parse_content_range("18446744073709551614-18446744073709551615"),
            Some((u64::MAX - 1, 2))
        );
        for bad in [
            "", "5", "-5", "5-", "9-5", "a-b", "1-2-3", "bytes=-1", "0x1-2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    /// Found by reading while exposing it to the fuzzer (fuzz/fuzz_targets/content_range.rs):
    /// the whole u64 range is 2^64 bytes, whose length overflowed (a panic in debug builds, a
    /// zero-length chunk in release).
    #[test]
    fn a_range_longer_than_u64_counts_is_malformed() {
        assert_eq!(parse_content_range("0-18446744073709551615"), None);
        assert_eq!(parse_content_range("bytes=0-18446744073709551615"), None);
        assert_eq!(
            parse_content_range("1-18446744073709551615"),
            Some((1, u64::MAX))
        );
    }
}
