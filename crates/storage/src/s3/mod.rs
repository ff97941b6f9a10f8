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
//! the session (see `Progress`). A request that dies leaves that saved state valid: parts it
//! uploaded past the saved ones are overwritten by the next request or dropped at completion,
//! and its tail, a new object, is not the one the saved state names.
//!
//! `config.rs` holds [`S3Config`] (where the bucket is), `progress.rs` the saved `Progress` of
//! a session, `upload.rs` the uploads (writer, commit, abort) and `check.rs` the health check and
//! what its failures mean.
//!
//! [`UploadWriter::finish_last`]: crate::UploadWriter::finish_last
//! [`UploadState`]: crate::UploadState
//! [`BlobStore::check`]: crate::BlobStore::check

mod check;
mod config;
mod progress;
mod upload;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, RetryConfig,
};

pub use config::S3Config;
use config::endpoint_url;

use crate::{
    BlobKey, BlobLister, BlobReader, BlobRemover, ByteRange, ByteStream, ObjectStream, Result,
    StorageError, StoredObject,
};

/// S3's smallest part, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The default part size: 8 MiB parts bound an upload to 10,000 × 8 MiB = 78 GiB.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// How long [`BlobStore::check`](crate::BlobStore::check) waits for the connection, and then
/// for the answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Blob storage in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    s3: Arc<AmazonS3>,
    /// The same bucket without retries and with a short timeout, for
    /// [`BlobStore::check`](crate::BlobStore::check): a health check should say what is wrong
    /// at once, not after minutes of backing off.
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
    /// Builds a client for the bucket. Sends no request:
    /// [`BlobStore::check`](crate::BlobStore::check) does.
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
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StorageError::InvalidKey(name.to_string()));
    }
    Ok(())
}

fn backend(e: object_store::Error) -> StorageError {
    StorageError::Backend(Box::new(e))
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
