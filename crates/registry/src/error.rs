use berth_meta::MetaError;
use berth_oci::{Digest, Repository};
use berth_storage::StorageError;

use crate::Action;
use crate::token::MANAGEMENT_SCOPE;

/// Everything a registry operation can fail with. The server maps each variant to an OCI
/// error code and HTTP status in one table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {0} is unknown to this repository")]
    BlobUnknown(Digest),
    #[error("upload session {0} is unknown")]
    BlobUploadUnknown(String),
    #[error("{0}")]
    BlobUploadInvalid(String),
    /// A chunk that does not start where the session ends (distribution-spec "Pushing a blob
    /// in chunks": out of order -> 416).
    #[error("chunk starts at byte {start}, but the upload holds {offset} bytes")]
    ChunkOutOfOrder {
        repository: Repository,
        id: String,
        offset: u64,
        start: u64,
    },
    /// The caller has `[limits] max_open_uploads_per_account` upload sessions open already
    /// (`TOOMANYREQUESTS`). `owner` says whose, in words.
    #[error(
        "{owner} has {open} upload sessions open, the most allowed ([limits] \
         max_open_uploads_per_account = {limit}); finish or cancel (DELETE) some of them, or wait \
         for idle ones to expire, before starting another"
    )]
    TooManyOpenUploads {
        owner: String,
        open: u64,
        limit: u64,
    },
    #[error("range not satisfiable: the blob holds {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references blob {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    /// An index names a manifest its repository does not hold (`MANIFEST_BLOB_UNKNOWN`, as
    /// distribution answers: the spec's code for what a manifest references and lacks).
    #[error("the index references manifest {0}, which is not in this repository")]
    ManifestChildUnknown(Digest),
    /// The words say which manifest, and where.
    #[error("{0}")]
    ManifestUnknown(String),
    #[error("repository {0} is unknown")]
    NameUnknown(Repository),
    #[error("manifest is larger than the {limit} byte limit")]
    ManifestTooLarge { limit: usize },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Denied(String),
    /// No credentials, or refused ones, where the request needs some (`UNAUTHORIZED`, with a
    /// challenge saying where tokens come from): naming the repository and action asked for,
    /// when there was one, and marked `insufficient_scope` when a token fell short of it.
    #[error("{message}")]
    Unauthenticated {
        message: String,
        scope: Option<(Repository, Action)>,
        insufficient_scope: bool,
    },
    /// A token without the management scope on the management API (`DENIED`, with a challenge
    /// naming the scope to ask for).
    #[error(
        "insufficient_scope: this token does not grant the management API; ask the token \
         endpoint for scope {}:{}:* with account credentials",
        MANAGEMENT_SCOPE.0,
        MANAGEMENT_SCOPE.1
    )]
    ManagementScopeMissing,
    /// Too many failed logins for the account or the client address: try again later
    /// (`TOOMANYREQUESTS`).
    #[error("too many failed logins; try again in {retry_after_secs} seconds")]
    LoginLocked { retry_after_secs: u64 },
    /// The token endpoint refuses a login or a token request (401 with these words).
    #[error("{0}")]
    TokenRefused(String),
    /// A push that would take the project past its storage quota (`DENIED`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// A push or delete that would move or remove an immutable tag (`DENIED`).
    #[error("{0}")]
    TagImmutable(String),
    /// A request the registry understands but refuses as given (a too-long password, ...).
    #[error("{0}")]
    Invalid(String),
    /// A failure inside berth that the client can do nothing about; the detail is logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// The request body could not be read (client gone or sent garbage).
    #[error("reading the request body failed: {0}")]
    Body(std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
