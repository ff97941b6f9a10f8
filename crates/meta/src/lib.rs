//! Registry metadata: the source of truth for repositories, blobs, which repository may read
//! which blob, manifests, tags, referrers and upload sessions. Listings, quotas and GC read
//! from here and never walk blob storage.
//!
//! [`MetaStore`] is composed of small role traits; every backend passes the shared suite
//! ([`testsuite`], one test per case through [`suite_tests!`]).

mod accounts;
mod audit;
mod clock;
mod gc;
mod inventory;
mod jobs;
mod lifecycle;
mod postgres;
mod probe;
mod rows;
mod sql;
mod sqlite;
pub mod testsuite;
mod throttle;
mod uploads;
mod url;

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};

pub use accounts::{
    Accounts, ProjectRecord, RobotPermission, RobotRecord, Role, UnknownRole, UserRecord,
};
pub use audit::{AuditEvent, AuditLog, AuditQuery, AuditRecord};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, system_clock};
pub use gc::{Collector, GcBlob, GcLink, GcManifest, GcReference, GcSnapshot};
pub use inventory::Inventory;
pub use jobs::{Job, JobLock, Jobs};
pub use lifecycle::{Lifecycle, ProjectSettings, ProjectUsage, RepositoryUsage, TagRecord};
pub use postgres::PostgresMeta;
pub use probe::Probe;
pub use sqlite::SqliteMeta;
pub use throttle::{LoginThrottle, ThrottleRecord, ThrottleUpdate};
pub use uploads::{UploadCap, UploadSessions};
pub use url::DatabaseUrl;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("blob {0} is not known in this repository")]
    BlobUnknown(Digest),
    #[error("manifest {0} is not known in this repository")]
    ManifestUnknown(Digest),
    #[error("the database holds a value berth did not write: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    /// A tag the project keeps immutable names another manifest already.
    #[error("tag {0} is immutable")]
    TagImmutable(Tag),
    #[error("{0} does not exist")]
    NotFound(String),
    /// The database cannot be used, in words for the operator: connection refused, password
    /// rejected, no such database (`PostgresMeta` maps the common cases to this).
    #[error("{0}")]
    Unavailable(String),
}

impl MetaError {
    /// Whether the database ran out of disk space: SQLite's `SQLITE_FULL` (13), PostgreSQL's
    /// `disk_full` (53100), or an I/O error saying `ENOSPC` or `EDQUOT`.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            MetaError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13" | "53100"))
            }
            MetaError::Database(sqlx::Error::Io(io)) => matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    pub storage_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    pub subject: Option<Digest>,
}

/// A validated manifest to store, with what it references.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// The manifest's annotations as JSON, reported by the referrers API.
    pub annotations: Option<String>,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
    pub tags: Vec<Tag>,
    /// Those of `tags` that must not move: if one names another manifest already, nothing is
    /// stored ([`MetaError::TagImmutable`]).
    pub immutable_tags: Vec<Tag>,
    /// The push's audit event, appended in the same transaction: one commit for both.
    pub audit: Option<AuditEvent>,
}

/// A manifest that names another as its `subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub repository: Repository,
    /// Bytes received and acknowledged.
    pub offset: u64,
    pub hash_state: Vec<u8>,
    pub backend_state: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Whose session it is, for the cap on open sessions: an account's name, `robot$name`, or
    /// `anonymous@<client address>`. `None`: nobody's (opened by `berth migrate`, or before
    /// sessions had owners).
    pub owner: Option<String>,
}

/// A page of a sorted listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items follow the last one returned.
    pub more: bool,
}

#[async_trait]
pub trait BlobIndex: Send + Sync {
    /// The blob, if `repository` may read it.
    async fn repository_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>>;
    /// The blob, whichever repositories hold it.
    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>>;
    /// Records a verified blob (once) and lets `repository` read it. Returns the record in
    /// force: when the blob was known already, the existing one.
    async fn add_blob(&self, repository: &Repository, blob: &BlobRecord) -> Result<BlobRecord>;
    /// Lets `repository` read a blob that exists. `false` if the blob is unknown.
    async fn link_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool>;
    /// Removes `repository`'s access to the blob. `false` if it had none.
    async fn unlink_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool>;
    /// Repositories that may read the blob, in name order, at most `limit`.
    async fn blob_repositories(&self, digest: &Digest, limit: u32) -> Result<Vec<Repository>>;
}

#[async_trait]
pub trait ManifestIndex: Send + Sync {
    /// Stores a manifest and its tags in one transaction, after checking that every blob it
    /// references is readable in the repository ([`MetaError::BlobUnknown`]) and every child
    /// manifest exists there ([`MetaError::ManifestUnknown`]).
    async fn put_manifest(&self, repository: &Repository, manifest: &NewManifest) -> Result<()>;
    async fn manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>>;
    async fn tagged_manifest(
        &self,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest and the tags that point at it. `false` if it did not exist.
    async fn delete_manifest(&self, repository: &Repository, digest: &Digest) -> Result<bool>;
    /// Deletes a tag, not the manifest. `false` if it did not exist.
    async fn delete_tag(&self, repository: &Repository, tag: &Tag) -> Result<bool>;
    /// The version of the repository's tag list: raised by every transaction that adds or
    /// removes one of its tags, not by one that moves a tag. `None` if the repository is
    /// unknown. A list read after this version was read is the list of that version for as
    /// long as the version stays the same.
    async fn tag_list_version(&self, repository: &Repository) -> Result<Option<i64>>;
    /// Tags in lexical order, after `last`, at most `limit`. `None` if the repository is unknown.
    async fn tags(
        &self,
        repository: &Repository,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page<Tag>>>;
    /// Manifests in the repository whose subject is `digest`, optionally of one artifact type.
    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
}

#[async_trait]
pub trait Catalog: Send + Sync {
    /// Repository names in lexical order, after `last`, at most `limit`.
    async fn repositories(&self, last: Option<&str>, limit: u32) -> Result<Page<Repository>>;
    async fn repository_exists(&self, repository: &Repository) -> Result<bool>;
}

#[async_trait]
pub trait MetaStore:
    BlobIndex
    + ManifestIndex
    + Catalog
    + UploadSessions
    + Accounts
    + AuditLog
    + Inventory
    + Collector
    + Lifecycle
    + Jobs
    + LoginThrottle
{
    /// The clock this store dates rows by; the services above it go by the same one.
    fn clock(&self) -> &SharedClock;
    /// The database answers (for `/readyz`).
    async fn check(&self) -> Result<()>;
    /// Closes the connections, waiting for those in use (at shutdown).
    async fn close(&self);
}
