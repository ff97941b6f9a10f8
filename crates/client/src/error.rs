use berth_oci::{Digest, ManifestError, ReferenceError};

/// Everything that can go wrong while talking to a registry or moving an image.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry wants credentials and none were given (or the anonymous token was not
    /// enough).
    #[error("unauthorized: authentication required")]
    AuthenticationRequired { registry: String },
    /// Credentials were given and the registry (or its token server) refused them.
    #[error("unauthorized: incorrect username or password for {registry}")]
    BadCredentials { registry: String },
    /// The saved login is a refresh token (docker's `identitytoken`) that the token server no
    /// longer takes: revoked by a password or role change, a disabled or removed account.
    #[error(
        "unauthorized: the saved login for {registry} was revoked (a password or role change, a \
         disabled or removed account) or has expired: run `berth login {registry}` again"
    )]
    LoginRevoked { registry: String },
    /// Credentials were accepted but do not allow this action.
    #[error("denied: requested access to the resource is denied ({message})")]
    Denied { registry: String, message: String },
    #[error("{what} not found on {registry}: {message}")]
    NotFound {
        registry: String,
        what: String,
        message: String,
    },
    /// Any other error answer; `code` and `message` come from the OCI error body when there is
    /// one.
    #[error("{registry} answered {method} {path} with {status}: {code}{message}")]
    Status {
        registry: String,
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach {registry}: {source}")]
    Connect {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("transfer from {registry} failed: {source}")]
    Transfer {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("no image for platform {wanted} in the index (it has: {available})")]
    NoMatchingPlatform { wanted: String, available: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("client configuration {path}: {message}")]
    Settings { path: String, message: String },
}

impl ClientError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
        let context = context.into();
        move |source| ClientError::Io { context, source }
    }

    /// Whether the error means "log in first": the CLI adds the `berth login` hint.
    pub fn needs_login(&self) -> bool {
        matches!(self, ClientError::AuthenticationRequired { .. })
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
