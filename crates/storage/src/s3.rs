//! Blobs in an S3-compatible bucket, through object_store's S3 client.
//!
//! ```text
//! <bucket>/
//! ├── uploads/
//! │   └── <session id>/
//! │       └── <ulid>        the staged tail of an upload: its bytes past the last full part
//! │                         (< part size), one new object per request
//! └── blobs/
//!     └── <session id>      a blob: a completed multipart upload, named after the session
//!                           that opened it, never modified
//! ```
//!
//! An upload is a multipart upload at its final key from the first request on: every byte is sent
//! to S3 once, as part of the blob's own parts, and the closing `PUT` only completes it. No
//! server-side copy and no re-read of a blob, ever. Bytes that do not fill a part yet are staged
//! as a small tail object, so that any replica can take the next chunk; only that tail is read
//! back (once, by the next request or the commit). The request that carries the last bytes
//! ([`UploadWriter::finish_last`]) stages nothing: its remainder goes up as the last part, which
//! S3 allows below the minimum part size. A multipart upload is invisible until it is completed,
//! so a blob is either absent or whole.
//!
//! Everything a replica needs to continue is in the [`UploadState`] that the registry saves with
//! the session (see [`Progress`]). A request that dies leaves that saved state valid: parts it
//! uploaded past the saved ones are overwritten by the next request or dropped at completion,
//! and its tail, a new object, is not the one the saved state names.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{Method, Signer, Url};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};

use crate::{
    BlobKey, BlobLister, BlobReader, BlobRemover, BlobStore, ByteRange, ByteStream, ObjectStream,
    Result, StorageError, StoredObject, UploadState, UploadStore, UploadWriter,
};

/// S3's smallest part, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The default part size: 8 MiB parts bound an upload to 10,000 × 8 MiB = 78 GiB.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;
/// How long [`BlobStore::check`] waits for the connection, and then for the answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Another S3-compatible service (`https://host[:port]`); AWS when `None`.
    pub endpoint: Option<String>,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`); virtual-hosted style
    /// (`<bucket>.<endpoint host>/<key>`) otherwise.
    pub path_style: bool,
    /// Static credentials; without them the usual `AWS_*` environment variables (and instance
    /// or container credentials) are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Size of every part but the last, at least [`MIN_PART_SIZE`]. Each upload in flight holds
    /// at most one part in memory, and a blob has at most 10,000 parts.
    pub part_size: u64,
    /// Allow plain `http://` endpoints (tests, a local gateway).
    pub allow_http: bool,
}

impl S3Config {
    /// A configuration for `bucket` in `region` on AWS, with the defaults.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            part_size: DEFAULT_PART_SIZE,
            allow_http: false,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("part_size", &self.part_size)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// What the registry saves with an upload session (`UploadState`), as JSON.
///
/// The saved state names everything the next request needs, on whatever replica it lands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    /// Format version.
    v: u8,
    /// The blob's key, `blobs/<session id>`, where the multipart upload is open.
    key: String,
    /// The S3 multipart upload id.
    upload: String,
    /// ETags of parts 1..=n, in order.
    parts: Vec<String>,
    /// Bytes in those parts.
    parts_len: u64,
    /// The staged tail, `uploads/<session id>/<tail>`, holding the `tail_len` bytes after the
    /// parts. It always exists while the session is open (empty at first), so reading it also
    /// tells whether the session still is.
    tail: String,
    tail_len: u64,
    /// The tail this state replaced. The state before this one still named it until this one
    /// was saved, so it is deleted only by the next request, which knows this one was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced: Option<String>,
    /// The last part is uploaded (`finish_last`): `parts` hold every byte, the last part may be
    /// short, so nothing can be appended; the upload can only be completed or aborted. The tail
    /// is not part of the upload any more (`tail_len` is 0).
    #[serde(default, skip_serializing_if = "is_false")]
    closed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

const STATE_VERSION: u8 = 1;

impl Progress {
    fn decode(id: &str, state: &UploadState) -> Result<Progress> {
        let invalid = |reason: String| StorageError::UploadStateInvalid {
            id: id.to_string(),
            reason,
        };
        let progress: Progress =
            serde_json::from_slice(&state.0).map_err(|e| invalid(e.to_string()))?;
        if progress.v != STATE_VERSION {
            return Err(invalid(format!("unknown format version {}", progress.v)));
        }
        BlobKey::parse(&progress.key)?;
        check_name(&progress.tail)?;
        Ok(progress)
    }

    fn encode(&self) -> UploadState {
        UploadState(serde_json::to_vec(self).expect("upload progress serializes"))
    }

    fn acknowledged(&self) -> u64 {
        self.parts_len + self.tail_len
    }
}

/// Blob storage in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    s3: Arc<AmazonS3>,
    /// The same bucket without retries and with a short timeout, for [`BlobStore::check`]: a
    /// health check should say what is wrong at once, not after minutes of backing off.
    probe: Arc<AmazonS3>,
    /// For messages: the bucket's name and the store's URL (or AWS region).
    bucket: String,
    endpoint: String,
    part_size: u64,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.s3.to_string())
            .field("part_size", &self.part_size)
            .finish()
    }
}

impl S3Store {
    /// Builds a client for the bucket. Sends no request: [`BlobStore::check`] does.
    pub fn new(config: &S3Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(StorageError::Config("the S3 bucket name is empty".into()));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&config.part_size) {
            return Err(StorageError::Config(format!(
                "the S3 part size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes, not {}",
                config.part_size
            )));
        }
        // reqwest is built without a default crypto provider; ring is ours. A second install
        // (another client in this process) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut builder = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            (None, None) => AmazonS3Builder::from_env(),
            _ => {
                return Err(StorageError::Config(
                    "give both the S3 access key id and the secret access key, or neither".into(),
                ));
            }
        };
        builder = builder
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            // No overall timeout: a blob GET streams at the pace of the registry's client, for
            // as long as that takes. A connection that delivers nothing for a minute is dropped
            // by the read timeout, and object_store resumes a GET where it stopped.
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_read_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint_url(endpoint, config)?);
        }
        let probe = builder
            .clone()
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: CHECK_TIMEOUT,
                backoff: BackoffConfig::default(),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_timeout(CHECK_TIMEOUT)
                    .with_connect_timeout(CHECK_TIMEOUT),
            );
        let built = |b: AmazonS3Builder| {
            b.build()
                .map_err(|e| StorageError::Config(format!("S3 bucket {}: {e}", config.bucket)))
        };
        Ok(Self {
            s3: Arc::new(built(builder)?),
            probe: Arc::new(built(probe)?),
            bucket: config.bucket.clone(),
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("the AWS S3 endpoint of region {}", config.region)),
            part_size: config.part_size,
        })
    }

    /// A URL that lets its holder GET the blob without credentials until `expires` has passed,
    /// for redirecting clients to the bucket. `None` when no URL can be signed (no credentials);
    /// the caller then serves the blob itself.
    pub async fn presigned_get(&self, key: &BlobKey, expires: Duration) -> Option<String> {
        match self
            .s3
            .signed_url(Method::GET, &Path::from(key.as_str()), expires)
            .await
        {
            Ok(url) => Some(url.to_string()),
            Err(e) => {
                tracing::warn!(key = key.as_str(), error = %e, "cannot presign a blob URL");
                None
            }
        }
    }

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

/// The endpoint as object_store wants it: with virtual-hosted style, the bucket is part of the
/// host.
fn endpoint_url(endpoint: &str, config: &S3Config) -> Result<String> {
    if config.path_style {
        return Ok(endpoint.to_string());
    }
    let invalid = |why: &str| StorageError::Config(format!("S3 endpoint {endpoint:?}: {why}"));
    let mut url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let host = format!("{}.{host}", config.bucket);
    url.set_host(Some(&host))
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(url.as_str().trim_end_matches('/').to_string())
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

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StorageError::InvalidKey(name.to_string()));
    }
    Ok(())
}

fn new_name() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

fn backend(e: object_store::Error) -> StorageError {
    StorageError::Backend(Box::new(e))
}

/// A missing object or multipart upload during an upload means the session is gone (committed,
/// aborted or expired).
fn upload_error(id: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::UploadNotFound(id.to_string()),
        e => backend(e),
    }
}

#[async_trait]
impl BlobReader for S3Store {
    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let options = GetOptions::new().with_range(range.map(|r| r.start..r.end + 1));
        match self.s3.get_opts(&Path::from(key.as_str()), options).await {
            Ok(result) => Ok(Box::pin(result.into_stream().map_err(io::Error::other))),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(key.as_str().to_string()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn redirect_url(&self, key: &BlobKey, expires: Duration) -> Option<String> {
        self.presigned_get(key, expires).await
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

#[async_trait]
impl BlobRemover for S3Store {
    async fn delete(&self, key: &BlobKey) -> Result<()> {
        match self.s3.delete(&Path::from(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// `DeleteObjects` with up to 1,000 keys a request (object_store's `delete_stream`).
    async fn delete_many(&self, keys: &[BlobKey]) -> Vec<StorageError> {
        let locations: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(Path::from(k.as_str()))).collect();
        self.s3
            .delete_stream(futures_util::stream::iter(locations).boxed())
            .filter_map(|r| {
                std::future::ready(match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => Some(backend(e)),
                })
            })
            .collect()
            .await
    }
}

#[async_trait]
impl BlobLister for S3Store {
    /// Lists `blobs/` (paged by the store, 1000 keys a request).
    async fn list_blobs(&self) -> Result<ObjectStream> {
        let listing = self.s3.list(Some(&Path::from("blobs"))).map(|meta| {
            let meta = meta.map_err(backend)?;
            let key = meta.location.to_string();
            Ok(StoredObject {
                key: BlobKey::parse(&key).unwrap_or(BlobKey(key)),
                size: meta.size,
                modified: meta.last_modified.into(),
            })
        });
        Ok(Box::pin(listing))
    }
}

#[async_trait]
impl BlobStore for S3Store {
    /// One LIST of at most one key, not retried: the bucket exists and the credentials may
    /// read it. A failure says why in words ([`StorageError::Unavailable`]).
    async fn check(&self) -> Result<()> {
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..Default::default()
        };
        match self.probe.list_paginated(Some("uploads/"), options).await {
            Ok(_) => Ok(()),
            Err(e) => Err(StorageError::Unavailable(self.explain(&e))),
        }
    }
}

impl S3Store {
    /// What a failed request to the bucket means, for the operator: the S3 error code of the
    /// answer (`<Code>NoSuchBucket</Code>`), else its HTTP status, else the connection error;
    /// object_store's own message where none of those is telling.
    fn explain(&self, e: &object_store::Error) -> String {
        let (bucket, endpoint) = (&self.bucket, &self.endpoint);
        let mut chain = String::new();
        let mut http = None;
        let mut io = None;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            chain.push_str(&c.to_string());
            chain.push('\n');
            http = http.or_else(|| c.downcast_ref::<HttpError>().map(HttpError::kind));
            io = io.or_else(|| c.downcast_ref::<io::Error>().map(io::Error::kind));
            cause = c.source();
        }
        let code = chain
            .split("<Code>")
            .nth(1)
            .and_then(|rest| rest.split("</Code>").next())
            .unwrap_or("");
        let status = |s: &str| chain.contains(&format!("status code: {s}"));
        let missing =
            || format!("bucket {bucket:?} does not exist: create it, or correct [storage] bucket");
        match code {
            "NoSuchBucket" => return missing(),
            "InvalidAccessKeyId" => {
                return "access denied: the store does not know the access key id \
                        (InvalidAccessKeyId); check [storage] access_key_id or AWS_ACCESS_KEY_ID"
                    .into();
            }
            "SignatureDoesNotMatch" => {
                return "access denied: the secret access key is wrong (SignatureDoesNotMatch); \
                        check [storage] secret_access_key or AWS_SECRET_ACCESS_KEY"
                    .into();
            }
            "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => {
                return format!(
                    "access denied ({code}): these credentials may not list bucket {bucket:?}"
                );
            }
            "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
                return format!(
                    "bucket {bucket:?} is in another region ({code}): correct [storage] region"
                );
            }
            "" => {}
            other => return format!("the store refused with {other}: {e}"),
        }
        if matches!(e, object_store::Error::NotFound { .. }) || status("404") {
            return missing();
        }
        if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || status("401")
            || status("403")
        {
            return format!(
                "access denied: wrong credentials, or none that may list bucket {bucket:?}"
            );
        }
        match (http, io) {
            (_, Some(io::ErrorKind::ConnectionRefused)) => format!(
                "connection refused by {endpoint}: is the S3 server running, and is [storage] \
                 endpoint right?"
            ),
            (Some(HttpErrorKind::Timeout), _) | (_, Some(io::ErrorKind::TimedOut)) => format!(
                "no answer from {endpoint} within {} s",
                CHECK_TIMEOUT.as_secs()
            ),
            (Some(HttpErrorKind::Connect), _) => {
                let root = chain.lines().last().unwrap_or_default();
                format!("cannot connect to {endpoint}: {root}")
            }
            _ => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress {
            v: STATE_VERSION,
            key: "blobs/01jz0000000000000000000000".into(),
            upload: "some+upload/id==".into(),
            parts: vec!["\"9e107d9d372bb6826bd81d3542a419d6\"".into()],
            parts_len: 8 << 20,
            tail: "01jz0000000000000000000001".into(),
            tail_len: 12,
            replaced: None,
            closed: false,
        }
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let p = progress();
        let state = p.encode();
        assert_eq!(Progress::decode("x", &state).expect("decode"), p);
        // Compact: one DB row per session, rewritten by every request.
        assert!(state.0.len() < 200, "{}", String::from_utf8_lossy(&state.0));
        // Sessions saved before `closed` existed read as open.
        assert!(!String::from_utf8_lossy(&state.0).contains("closed"));
        let closed = Progress {
            closed: true,
            tail_len: 0,
            ..progress()
        };
        assert_eq!(
            Progress::decode("x", &closed.encode()).expect("decode"),
            closed
        );

        let bad = |p: Progress| Progress::decode("x", &p.encode()).is_err();
        assert!(bad(Progress {
            key: "../etc".into(),
            ..progress()
        }));
        assert!(bad(Progress {
            tail: "../x".into(),
            ..progress()
        }));
        assert!(bad(Progress { v: 9, ..progress() }));
        assert!(Progress::decode("x", &UploadState::default()).is_err());
    }

    #[test]
    fn config_is_validated() {
        let small = S3Config {
            part_size: 1 << 20,
            ..S3Config::new("b", "us-east-1")
        };
        assert!(matches!(S3Store::new(&small), Err(StorageError::Config(_))));
        let half = S3Config {
            access_key_id: Some("id".into()),
            ..S3Config::new("b", "us-east-1")
        };
        assert!(matches!(S3Store::new(&half), Err(StorageError::Config(_))));
        let secret = S3Config {
            secret_access_key: Some("hunter2".into()),
            ..S3Config::new("b", "us-east-1")
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        let mut config = S3Config::new("my-bucket", "us-east-1");
        assert_eq!(
            endpoint_url("https://s3.example.com:9000", &config).expect("url"),
            "https://my-bucket.s3.example.com:9000"
        );
        config.path_style = true;
        assert_eq!(
            endpoint_url("https://s3.example.com:9000", &config).expect("url"),
            "https://s3.example.com:9000"
        );
    }
}
