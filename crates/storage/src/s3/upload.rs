//! Uploads: a multipart upload at the blob's final key, full parts sent as they fill, the rest
//! staged as a tail object (see the module documentation of `s3`).

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{BlobKey, Result, StorageError, UploadState, UploadStore, UploadWriter};

use super::progress::{Progress, STATE_VERSION};
use super::{S3Store, backend, check_name};

/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;

impl S3Store {
    /// Reads the first `len` bytes of the session's staged tail; with `len` 0 only checks that
    /// the tail, and so the session, exists.
    async fn read_tail(&self, id: &str, progress: &Progress, len: u64) -> Result<Bytes> {
        let path = tail_path(id, &progress.tail);
        let gone = |e: object_store::Error| upload_error(id, e);
        if len == 0 {
            self.s3.head(&path).await.map_err(gone)?;
            return Ok(Bytes::new());
        }
        let bytes = self.s3.get_range(&path, 0..len).await.map_err(gone)?;
        if bytes.len() as u64 != len {
            // The session acknowledged bytes that are not in storage: never build on them.
            return Err(StorageError::UploadCorrupt {
                id: id.to_string(),
                expected: progress.parts_len + len,
                actual: progress.parts_len + bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Uploads the first `size - parts_len` bytes of the tail as the last part and completes the
    /// multipart upload.
    async fn complete(&self, id: &str, progress: &Progress, size: u64) -> Result<()> {
        let path = Path::from(progress.key.as_str());
        let mut parts: Vec<PartId> = progress
            .parts
            .iter()
            .map(|etag| PartId {
                content_id: etag.clone(),
            })
            .collect();
        let last = size - progress.parts_len;
        // S3 needs at least one part; an empty part is allowed when it is the only one. A closed
        // upload has its last part already (`size == parts_len`, at least one part).
        if last > 0 || parts.is_empty() {
            let tail = self.read_tail(id, progress, last).await?;
            let part = self
                .s3
                .put_part(&path, &progress.upload, parts.len(), PutPayload::from(tail))
                .await
                .map_err(|e| upload_error(id, e))?;
            parts.push(part);
        }
        self.s3
            .complete_multipart(&path, &progress.upload, parts)
            .await
            .map_err(|e| upload_error(id, e))?;
        Ok(())
    }

    /// Deletes every staged object of the session, including tails of requests that died.
    async fn remove_staged(&self, id: &str) -> Result<()> {
        let prefix = staging_prefix(id)?;
        let locations = self.s3.list(Some(&prefix)).map_ok(|meta| meta.location);
        let mut deleted = self.s3.delete_stream(locations.boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }
}

/// Session ids come from the registry (ULIDs); anything else could name another session's
/// objects.
fn staging_prefix(id: &str) -> Result<Path> {
    check_name(id)?;
    Ok(Path::from(format!("uploads/{id}")))
}

fn tail_path(id: &str, tail: &str) -> Path {
    Path::from(format!("uploads/{id}/{tail}"))
}

fn new_name() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// A missing object or multipart upload during an upload means the session is gone (committed,
/// aborted or expired).
fn upload_error(id: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::UploadNotFound(id.to_string()),
        e => backend(e),
    }
}

/// Appends one request's bytes: full parts go to S3 as they fill, the rest is staged at finish.
struct S3UploadWriter {
    s3: Arc<AmazonS3>,
    id: String,
    part_size: u64,
    /// The state the request started from, as saved with the session.
    saved: Progress,
    /// `saved` plus the parts this request uploaded.
    progress: Progress,
    /// Bytes after the last part: the saved tail, then what this request wrote. Below
    /// `part_size` between writes, so one part buffer per upload at most.
    pending: VecDeque<Bytes>,
    pending_len: u64,
    /// Whether the state will differ from `saved`.
    changed: bool,
}

impl S3UploadWriter {
    /// Uploads a full part from `pending`.
    async fn upload_part(&mut self) -> Result<()> {
        // Keep a part number free for the last part, which may be short.
        if self.progress.parts.len() + 1 >= MAX_PARTS {
            return Err(StorageError::Backend(
                format!(
                    "upload {} would exceed S3's {MAX_PARTS} parts of {} bytes: \
                     configure a larger part size",
                    self.id, self.part_size
                )
                .into(),
            ));
        }
        self.upload_next_part(self.part_size).await
    }

    /// Uploads the first `len` bytes of `pending` as the part after the last one.
    async fn upload_next_part(&mut self, len: u64) -> Result<()> {
        let index = self.progress.parts.len();
        let payload = self.take(len);
        let path = Path::from(self.progress.key.as_str());
        // Part `index + 1` may exist from a request that died before its state was saved: this
        // upload replaces it.
        let part = self
            .s3
            .put_part(&path, &self.progress.upload, index, payload)
            .await
            .map_err(|e| upload_error(&self.id, e))?;
        self.progress.parts.push(part.content_id);
        self.progress.parts_len += len;
        Ok(())
    }

    /// Takes the first `len` bytes of `pending`, without copying.
    fn take(&mut self, len: u64) -> PutPayload {
        let mut need = len as usize;
        let mut out = Vec::new();
        while need > 0 {
            let Some(mut chunk) = self.pending.pop_front() else {
                break;
            };
            if chunk.len() > need {
                self.pending.push_front(chunk.split_off(need));
            }
            need -= chunk.len();
            out.push(chunk);
        }
        self.pending_len -= len;
        out.into_iter().collect()
    }
}

#[async_trait]
impl UploadWriter for S3UploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.changed = true;
        self.pending_len += chunk.len() as u64;
        self.pending.push_back(chunk);
        while self.pending_len >= self.part_size {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<UploadState> {
        if !self.changed {
            return Ok(self.saved.encode());
        }
        // A new object, not an overwrite: the saved state's tail stays intact in case this
        // state is never saved.
        let tail = new_name();
        let payload: PutPayload = self.pending.drain(..).collect();
        self.s3
            .put(&tail_path(&self.id, &tail), payload)
            .await
            .map_err(backend)?;
        let previous = std::mem::replace(&mut self.progress.tail, tail);
        self.progress.tail_len = self.pending_len;
        self.progress.replaced = Some(previous);
        // The saved state is in the database (this request started from it), so the tail that
        // it replaced is named by no state any more.
        if let Some(stale) = &self.saved.replaced
            && let Err(e) = self.s3.delete(&tail_path(&self.id, stale)).await
        {
            tracing::warn!(upload = %self.id, error = %e, "cannot delete a replaced tail");
        }
        Ok(self.progress.encode())
    }

    /// Uploads what is pending (the saved tail and this request's bytes past the last full
    /// part) as the last part, instead of staging it for the commit to read back and upload.
    /// Tails stay where they are: the commit or the abort removes the session's staged objects.
    async fn finish_last(mut self: Box<Self>) -> Result<UploadState> {
        // S3 needs at least one part; an empty part is allowed when it is the only one.
        if self.pending_len > 0 || self.progress.parts.is_empty() {
            self.upload_next_part(self.pending_len).await?;
        }
        self.progress.tail_len = 0;
        self.progress.closed = true;
        Ok(self.progress.encode())
    }
}

#[async_trait]
impl UploadStore for S3Store {
    async fn create_upload(&self, id: &str) -> Result<UploadState> {
        check_name(id)?;
        // The session's own name: no other session commits here (see `session_of`).
        let key = format!("blobs/{}", id.to_ascii_lowercase());
        let path = Path::from(key.as_str());
        let upload = self.s3.create_multipart(&path).await.map_err(backend)?;
        let progress = Progress {
            v: STATE_VERSION,
            key,
            upload,
            parts: Vec::new(),
            parts_len: 0,
            tail: new_name(),
            tail_len: 0,
            replaced: None,
            closed: false,
        };
        if let Err(e) = self
            .s3
            .put(&tail_path(id, &progress.tail), PutPayload::new())
            .await
        {
            let _ = self.s3.abort_multipart(&path, &progress.upload).await;
            return Err(backend(e));
        }
        Ok(progress.encode())
    }

    async fn writer(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>> {
        check_name(id)?;
        let saved = Progress::decode(id, state)?;
        if saved.closed {
            return Err(StorageError::UploadStateInvalid {
                id: id.to_string(),
                reason: "its last part is uploaded: it can only be committed or aborted".into(),
            });
        }
        let acknowledged = saved.acknowledged();
        // Bytes in parts cannot be taken back; bytes past the saved state were never stored.
        if offset > acknowledged || offset < saved.parts_len {
            return Err(StorageError::UploadCorrupt {
                id: id.to_string(),
                expected: offset,
                actual: acknowledged,
            });
        }
        let keep = offset - saved.parts_len;
        let tail = self.read_tail(id, &saved, keep).await?;
        let mut pending = VecDeque::new();
        if !tail.is_empty() {
            pending.push_back(tail);
        }
        Ok(Box::new(S3UploadWriter {
            s3: Arc::clone(&self.s3),
            id: id.to_string(),
            part_size: self.part_size,
            progress: saved.clone(),
            changed: keep < saved.tail_len,
            saved,
            pending,
            pending_len: keep,
        }))
    }

    async fn commit(
        &self,
        id: &str,
        state: &UploadState,
        _digest: &Digest,
        size: u64,
    ) -> Result<BlobKey> {
        check_name(id)?;
        let progress = Progress::decode(id, state)?;
        if size > progress.acknowledged() || size < progress.parts_len {
            return Err(StorageError::UploadCorrupt {
                id: id.to_string(),
                expected: size,
                actual: progress.acknowledged(),
            });
        }
        let key = BlobKey::parse(&progress.key)?;
        if let Err(e) = self.complete(id, &progress, size).await {
            // A commit retried after its completion went through (its answer lost, the
            // database write after it failed, the process killed): the blob is there. S3
            // answers the repeated UploadPart with NoSuchUpload; other stores with other
            // errors (moto: 500), so any failure asks whether the blob exists.
            match self.s3.head(&Path::from(key.as_str())).await {
                Ok(meta) if meta.size == size => {}
                _ => return Err(e),
            }
        }
        // The blob is complete whatever happens here; leftovers are only small staged objects.
        if let Err(e) = self.remove_staged(id).await {
            tracing::warn!(upload = id, error = %e, "cannot delete the staged tail");
        }
        Ok(key)
    }

    fn session_of(&self, key: &BlobKey) -> Option<String> {
        key.as_str().strip_prefix("blobs/").map(str::to_string)
    }

    async fn abort(&self, id: &str, state: &UploadState) -> Result<()> {
        check_name(id)?;
        if let Ok(progress) = Progress::decode(id, state) {
            let path = Path::from(progress.key.as_str());
            match self.s3.abort_multipart(&path, &progress.upload).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        self.remove_staged(id).await
    }
}
