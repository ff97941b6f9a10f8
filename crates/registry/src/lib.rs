//! The registry's services, without HTTP: uploads, blobs, manifests, tags, referrers, the
//! catalog, and the access policy ([`access::Access`]). The server crate turns requests into calls here and maps
//! [`Error`] to OCI error codes in one table.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod audit;
mod blobs;
mod error;
pub mod fsck;
pub mod gc;
pub mod lifecycle;
mod listings;
pub mod login_limit;
mod manifests;
pub mod migration;
pub mod passwords;
pub mod permissions;
pub mod retention;
pub mod token;
mod uploads;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use berth_meta::MetaStore;
use berth_storage::BlobStore;

pub use access::{Access, AccessOptions, Action, Caller, Credentials, Principal};
pub use audit::{Audit, AuditAction};
pub use blobs::RangeRequest;
pub use error::{Error, Result};
pub use listings::{MAX_PAGE, TagPage};
pub use manifests::{Manifest, Pusher, StoredManifest, index_manifest};
pub use uploads::{ExpiryReport, MountOutcome, UploadOwner, UploadStatus, parse_content_range};

/// Limits the registry enforces on requests.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Upload sessions one account (anonymous callers: one client address) may have open at
    /// once, across every replica; one more is refused ([`Error::TooManyOpenUploads`]).
    pub max_open_uploads_per_account: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_bytes: 4 << 20,
            max_open_uploads_per_account: 100,
        }
    }
}

/// The registry: every operation of the OCI distribution API, on one metadata store and one
/// blob store.
pub struct Registry {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    limits: Limits,
    /// Upload sessions with a request in flight in this process: one writer per session.
    busy_uploads: Mutex<HashSet<String>>,
    /// Tags whose pull this process recorded, and when (pulls are recorded once an hour).
    recent_pulls: Mutex<std::collections::HashMap<(String, String), i64>>,
    /// Tag lists read recently, with their versions.
    tag_lists: listings::TagLists,
}

impl Registry {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>, limits: Limits) -> Self {
        Self {
            meta,
            blobs,
            limits,
            busy_uploads: Mutex::new(HashSet::new()),
            recent_pulls: Mutex::new(std::collections::HashMap::new()),
            tag_lists: Default::default(),
        }
    }

    /// The clock the registry goes by: its metadata store's.
    pub fn clock(&self) -> &berth_meta::SharedClock {
        self.meta.clock()
    }

    /// Seconds since the epoch, by [`Registry::clock`].
    pub(crate) fn now(&self) -> i64 {
        self.meta.clock().now()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Upload sessions open, across every replica sharing the database.
    pub async fn open_uploads(&self) -> Result<u64> {
        Ok(self.meta.count_uploads().await?)
    }
}
