use std::io;
use std::path::PathBuf;

use berth_oci::Digest;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong in running containers on this host.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A layer entry that would land outside the root filesystem, or write through a link.
    #[error("layer {layer}: refused entry {entry:?}: {reason}")]
    UnsafeEntry {
        layer: Digest,
        entry: String,
        reason: &'static str,
    },
    #[error("layer {layer}: {reason}")]
    BadLayer { layer: Digest, reason: String },
    /// A layer that unpacks to more than its limit (`BERTH_MAX_UNPACK_SIZE`).
    #[error(
        "layer {layer} unpacks to more than {}, its limit: set BERTH_MAX_UNPACK_SIZE to a larger size (such as 20G), or to 0 for no limit",
        size(*limit)
    )]
    LayerTooLarge { layer: Digest, limit: u64 },
    #[error("layer {layer} unpacks to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("image {0}: {1}")]
    BadImage(String, String),
    #[error(
        "the container runtime {0:?} was not found: install it (Debian: apt-get install runc) or set BERTH_RUNTIME to its path"
    )]
    RuntimeMissing(String),
    #[error("running containers needs root (this is uid {0}); run berth as root, e.g. with sudo")]
    NotRoot(u32),
    #[error("the container runtime failed: {0}")]
    Runtime(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error(
        "the container name \"/{name}\" is already in use by container {id}; remove it or choose another name"
    )]
    NameInUse { name: String, id: String },
    #[error(
        "invalid container name {0:?}: use letters, digits and [_.-], starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("invalid port publication {0:?}: {1}")]
    InvalidPort(String, String),
    #[error("cannot publish {address}: {source} (is the port taken?)")]
    PortTaken {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("user {0:?}: {1}")]
    InvalidUser(String, String),
    #[error("you cannot remove a running container {0}: stop it first, or remove it with -f")]
    Running(String),
    #[error("{0}")]
    Store(#[from] berth_store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// A size as people read it: `1 GiB`, `512 MiB`, else `1.2 GiB (1288490188 bytes)`.
fn size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            let value = bytes as f64 / (1u64 << shift) as f64;
            return format!("{value:.1} {unit} ({bytes} bytes)");
        }
    }
    format!("{bytes} bytes")
}

impl RuntimeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RuntimeError::Io {
            action,
            path,
            source,
        }
    }
}
