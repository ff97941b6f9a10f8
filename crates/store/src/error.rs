use std::io;
use std::path::{Path, PathBuf};

use berth_oci::{Digest, ManifestError};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the local image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid image store: {reason}", root.display())]
    InvalidLayout { root: PathBuf, reason: String },
    #[error(
        "no place for the image store: set BERTH_STORE, XDG_DATA_HOME or HOME to an absolute path"
    )]
    NoDefaultRoot,
    #[error("digest mismatch: expected {expected}, got {actual}; the data was discarded")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}{}", if *.kept { "; the partial download is kept to be resumed" } else { "; the data was discarded" })]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
        /// Whether the partial file is still there (it is a possibly valid prefix).
        kept: bool,
    },
    #[error("blob {digest} in the store is corrupt: its content hashes to {actual}")]
    Corrupt { digest: Digest, actual: Digest },
    #[error("blob {digest} is {size} bytes, more than the {limit} bytes read into memory")]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("unsupported digest algorithm in {0}: the store verifies sha256 digests only")]
    UnsupportedDigest(Digest),
    #[error("blob {0} is already in the store; nothing to write")]
    AlreadyExists(Digest),
    #[error("no image named {0:?} in the store")]
    ImageNotFound(String),
    #[error("invalid image name {0:?}: expected a normalized reference")]
    InvalidName(String),
    #[error("manifest {digest}: {source}")]
    Manifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error("image {name}: {reason}")]
    IncompleteImage { name: String, reason: String },
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid image archive: {0}")]
    Archive(String),
    #[error("writing the image archive: {0}")]
    ArchiveWrite(#[source] io::Error),
}

impl StoreError {
    /// A closure for `map_err` that names what was being done to which path.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}
