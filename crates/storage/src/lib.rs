//! Blob storage. Blobs are immutable objects addressed by a [`BlobKey`] that the metadata
//! database maps from a digest; uploads are written into sessions and become blobs only through
//! [`UploadStore::commit`], after the registry has verified the digest.
//!
//! The traits are split by role, as callers need them: reading ([`BlobReader`]), ingesting
//! ([`UploadStore`]), deleting ([`BlobRemover`]), listing ([`BlobLister`]); [`BlobStore`] is all of them plus a health
//! check. Every backend passes [`testsuite::run`]: [`FilesystemStore`] (one machine) and
//! [`S3Store`] (a bucket shared by any number of replicas).

mod filesystem;
mod s3;
pub mod testsuite;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::Stream;

pub use filesystem::{FilesystemProbe, FilesystemStore};
pub use s3::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, S3Config, S3Store};

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("blob {0} is missing from storage")]
    NotFound(String),
    #[error("upload {0} has no data in storage")]
    UploadNotFound(String),
    #[error("upload {id} holds {actual} bytes, the session says {expected}")]
    UploadCorrupt {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("upload {id} has a damaged backend state: {reason}")]
    UploadStateInvalid { id: String, reason: String },
    #[error("object storage: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// The backend cannot be used, in words for the operator: bucket missing, access denied,
    /// store unreachable, directory not writable (from [`BlobStore::check`]).
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Where a committed blob lives in its backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// Accepts only keys this crate could have produced: components of `[a-z0-9-]`, not
    /// starting with `-`, joined by `/` (so no `.`, `..` or absolute path).
    pub fn parse(key: &str) -> Result<BlobKey> {
        let ok = !key.is_empty()
            && key.split('/').all(|c| {
                !c.is_empty()
                    && !c.starts_with('-')
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if ok {
            Ok(BlobKey(key.to_string()))
        } else {
            Err(StorageError::InvalidKey(key.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Backend-specific state of an upload session (e.g. an S3 multipart upload id and its parts),
/// opaque to the rest of the registry, which persists it with the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadState(pub Vec<u8>);

/// An inclusive byte range `start..=end` of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[async_trait]
pub trait BlobReader: Send + Sync {
    /// Streams the blob, or the given range of it (which the caller has checked against the
    /// blob's size).
    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<ByteStream>;

    /// A URL from which a client may GET the blob itself, valid for `expires`, so the server
    /// can redirect instead of streaming (S3: a presigned URL). `None`: serve it through berth.
    async fn redirect_url(&self, _key: &BlobKey, _expires: std::time::Duration) -> Option<String> {
        None
    }
}

/// Receives the bytes of one request into an upload session.
#[async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Makes what was written durable and returns the session's new backend state, from which
    /// the next request continues.
    async fn finish(self: Box<Self>) -> Result<UploadState>;
    /// Like [`finish`](Self::finish), for the request that carries the upload's last bytes
    /// (a closing `PUT` with a body, a monolithic `POST ?digest=`): the returned state may only
    /// be passed to [`UploadStore::commit`] or [`UploadStore::abort`], never to
    /// [`UploadStore::writer`] again. This lets a backend store the remainder as the blob's
    /// last piece at once instead of staging it for a later request (S3: the last part).
    async fn finish_last(self: Box<Self>) -> Result<UploadState>;
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Prepares storage for a new upload session.
    async fn create_upload(&self, id: &str) -> Result<UploadState>;

    /// Opens the session for appending at `offset`, the number of bytes the session has
    /// acknowledged. Bytes past `offset` (a request interrupted before it was acknowledged) are
    /// discarded.
    async fn writer(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>>;

    /// Turns a complete upload whose digest the caller has verified into the blob `digest`.
    /// `state` is the last one a writer returned, by `finish` or `finish_last`.
    /// Atomic: the blob is either absent or whole.
    async fn commit(
        &self,
        id: &str,
        state: &UploadState,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobKey>;

    /// Drops an upload session and its data. Idempotent.
    async fn abort(&self, id: &str, state: &UploadState) -> Result<()>;

    /// The upload session (its id, lowercase) whose commit writes to `key`: each session
    /// commits to a key of its own. `None` for keys no session of this backend produces.
    /// `berth fsck --repair` leaves an unrecorded object alone while its session lives: that
    /// upload is between its commit and the database row.
    fn session_of(&self, key: &BlobKey) -> Option<String>;
}

#[async_trait]
pub trait BlobRemover: Send + Sync {
    /// Deletes a blob. Idempotent.
    async fn delete(&self, key: &BlobKey) -> Result<()>;

    /// Deletes many blobs (garbage collection); returns the failures, the rest are gone.
    /// Idempotent. By default 16 deletes at a time; S3 sends them in batches of up to 1,000
    /// keys a request (`DeleteObjects`).
    async fn delete_many(&self, keys: &[BlobKey]) -> Vec<StorageError> {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..keys.len())
            .map(|i| self.delete(&keys[i]))
            .buffer_unordered(16)
            .filter_map(|r| std::future::ready(r.err()))
            .collect()
            .await
    }
}

/// A blob object as the backend holds it, whatever the database says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub key: BlobKey,
    pub size: u64,
    /// When it was last written.
    pub modified: std::time::SystemTime,
}

/// A stream of the blob objects a backend holds.
pub type ObjectStream = Pin<Box<dyn Stream<Item = Result<StoredObject>> + Send>>;

#[async_trait]
pub trait BlobLister: Send + Sync {
    /// Every committed blob object (not upload data), in no particular order: what `berth
    /// fsck` compares with the database.
    async fn list_blobs(&self) -> Result<ObjectStream>;
}

#[async_trait]
pub trait BlobStore: BlobReader + UploadStore + BlobRemover + BlobLister {
    /// The backend is reachable and writable, with one small request (for `/readyz` and
    /// `berth serve --check-config`). A failure says why in words:
    /// [`StorageError::Unavailable`].
    async fn check(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::BlobKey;

    /// A key names an object under the store's root and nothing else: a key read back from
    /// the database (or made from a digest and a session id) cannot climb out of it.
    #[test]
    fn keys_cannot_leave_the_store() {
        for good in [
            "blobs/sha256/ab/abcdef-01arz3ndektsv4rrffq69g5fav",
            "blobs/01arz3ndektsv4rrffq69g5fav",
        ] {
            assert!(BlobKey::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "blobs/../meta.db",
            "blobs/./x",
            "..",
            "blobs//x",
            "blobs/x/",
            "blobs\\..\\meta.db",
            "blobs/-x",
            "blobs/X",
            "blobs/x\0",
            "blobs/%2e%2e/meta.db",
            "uploads/.readyz",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
