//! The one place where errors become HTTP responses: each OCI error code with its status
//! (distribution-spec "Error Codes"), and the JSON body every error carries.

use axum::response::{IntoResponse, Response};
use berth_oci::{DigestError, NameError};
use berth_registry::Error;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registry(#[from] Error),
    #[error("{0}")]
    NameInvalid(NameError),
    #[error("{0}")]
    DigestInvalid(DigestError),
    #[error("{0}")]
    ReferenceInvalid(NameError),
    #[error("manifest unknown: {0}")]
    ReferenceUnknown(NameError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    RangeInvalid(String),
    #[error("no such endpoint: {0}")]
    RouteUnknown(String),
    #[error("method {0} is not supported here")]
    MethodUnsupported(String),
    /// `[limits] max_uploads_per_client` (`per_client`) or `max_uploads` upload requests are
    /// already running.
    #[error(
        "too many blob uploads in progress {}; try again in a moment",
        if *per_client { "from this client" } else { "on this registry" }
    )]
    TooManyUploads { per_client: bool },
    /// No, bad or insufficient credentials: 401 with the challenge that says how to get them.
    #[error("{message}")]
    Unauthorized { message: String, challenge: String },
    /// Authenticated, but the token lacks the scope (RFC 6750 3.1 `insufficient_scope`): 403
    /// with the challenge naming the scope to ask for.
    #[error("{message}")]
    InsufficientScope { message: String, challenge: String },
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Digest(d) => ApiError::DigestInvalid(d),
            other => ApiError::NameInvalid(other),
        }
    }
}

impl From<DigestError> for ApiError {
    fn from(e: DigestError) -> Self {
        ApiError::DigestInvalid(e)
    }
}

impl ApiError {
    /// The OCI error code and HTTP status: the whole mapping, in one table.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use StatusCode as S;
        match self {
            ApiError::Registry(e) => match e {
                Error::BlobUnknown(_) => ("BLOB_UNKNOWN", S::NOT_FOUND),
                Error::BlobUploadUnknown(_) => ("BLOB_UPLOAD_UNKNOWN", S::NOT_FOUND),
                Error::BlobUploadInvalid(_) => ("BLOB_UPLOAD_INVALID", S::BAD_REQUEST),
                Error::ChunkOutOfOrder { .. } => ("BLOB_UPLOAD_INVALID", S::RANGE_NOT_SATISFIABLE),
                Error::RangeNotSatisfiable { .. } => ("SIZE_INVALID", S::RANGE_NOT_SATISFIABLE),
                Error::DigestInvalid(_) => ("DIGEST_INVALID", S::BAD_REQUEST),
                Error::ManifestInvalid(_) => ("MANIFEST_INVALID", S::BAD_REQUEST),
                Error::ManifestBlobUnknown(_) | Error::ManifestChildUnknown(_) => {
                    ("MANIFEST_BLOB_UNKNOWN", S::BAD_REQUEST)
                }
                Error::ManifestUnknown(_) => ("MANIFEST_UNKNOWN", S::NOT_FOUND),
                Error::NameUnknown(_) => ("NAME_UNKNOWN", S::NOT_FOUND),
                Error::ManifestTooLarge { .. } => ("SIZE_INVALID", S::PAYLOAD_TOO_LARGE),
                Error::SizeInvalid(_) => ("SIZE_INVALID", S::BAD_REQUEST),
                Error::Unsupported(_) => ("UNSUPPORTED", S::BAD_REQUEST),
                Error::Denied(_) | Error::QuotaExceeded(_) | Error::TagImmutable(_) => {
                    ("DENIED", S::FORBIDDEN)
                }
                Error::Invalid(_) => ("UNSUPPORTED", S::BAD_REQUEST),
                // The challenges of these two are the request's: `auth::refusal` turns them
                // into `Unauthorized` and `InsufficientScope` below.
                Error::Unauthenticated { .. } => ("UNAUTHORIZED", S::UNAUTHORIZED),
                Error::ManagementScopeMissing => ("DENIED", S::FORBIDDEN),
                // Too many failed logins: with Retry-After.
                Error::LoginLocked { .. } => ("TOOMANYREQUESTS", S::TOO_MANY_REQUESTS),
                // The token endpoint's refusals: the code and message only.
                Error::TokenRefused(_) => ("UNAUTHORIZED", S::UNAUTHORIZED),
                Error::Body(_) => ("BLOB_UPLOAD_INVALID", S::BAD_REQUEST),
                // Freed by finishing or cancelling sessions, or by expiry: no Retry-After,
                // since waiting a moment alone does not help.
                Error::TooManyOpenUploads { .. } => ("TOOMANYREQUESTS", S::TOO_MANY_REQUESTS),
                // Management API: a taken or missing name.
                Error::Meta(berth_meta::MetaError::Conflict(_)) => ("CONFLICT", S::CONFLICT),
                Error::Meta(berth_meta::MetaError::NotFound(_)) => ("NOT_FOUND", S::NOT_FOUND),
                // A full disk is the operator's to fix, and the client may try again later:
                // 507, with words that say so rather than an opaque 500.
                _ if out_of_space(e) => ("UNKNOWN", S::INSUFFICIENT_STORAGE),
                Error::Storage(_) | Error::Meta(_) | Error::Internal(_) => {
                    ("UNKNOWN", S::INTERNAL_SERVER_ERROR)
                }
            },
            ApiError::NameInvalid(_) => ("NAME_INVALID", S::BAD_REQUEST),
            ApiError::DigestInvalid(_) => ("DIGEST_INVALID", S::BAD_REQUEST),
            ApiError::ReferenceInvalid(_) => ("TAG_INVALID", S::BAD_REQUEST),
            ApiError::ReferenceUnknown(_) => ("MANIFEST_UNKNOWN", S::NOT_FOUND),
            ApiError::BadRequest(_) => ("UNSUPPORTED", S::BAD_REQUEST),
            ApiError::RangeInvalid(_) => ("BLOB_UPLOAD_INVALID", S::RANGE_NOT_SATISFIABLE),
            ApiError::RouteUnknown(_) => ("UNSUPPORTED", S::NOT_FOUND),
            ApiError::MethodUnsupported(_) => ("UNSUPPORTED", S::METHOD_NOT_ALLOWED),
            ApiError::Unauthorized { .. } => ("UNAUTHORIZED", S::UNAUTHORIZED),
            ApiError::InsufficientScope { .. } => ("DENIED", S::FORBIDDEN),
            ApiError::TooManyUploads { .. } => ("TOOMANYREQUESTS", S::TOO_MANY_REQUESTS),
        }
    }

    fn detail(&self) -> Value {
        match self {
            ApiError::Registry(
                Error::BlobUnknown(d)
                | Error::ManifestBlobUnknown(d)
                | Error::ManifestChildUnknown(d),
            ) => {
                json!({ "digest": d.to_string() })
            }
            ApiError::Registry(Error::NameUnknown(n)) => json!({ "name": n.as_str() }),
            ApiError::Registry(Error::ChunkOutOfOrder { offset, start, .. }) => {
                json!({ "offset": offset, "start": start })
            }
            ApiError::Registry(Error::RangeNotSatisfiable { size }) => json!({ "size": size }),
            ApiError::Registry(Error::ManifestTooLarge { limit }) => json!({ "limit": limit }),
            ApiError::Registry(Error::TooManyOpenUploads { open, limit, .. }) => {
                json!({ "open": open, "limit": limit })
            }
            _ => json!({}),
        }
    }

    fn is_internal(&self) -> bool {
        matches!(
            self,
            ApiError::Registry(Error::Storage(_) | Error::Meta(_) | Error::Internal(_))
        ) && !matches!(
            self,
            ApiError::Registry(Error::Meta(
                berth_meta::MetaError::Conflict(_) | berth_meta::MetaError::NotFound(_)
            ))
        )
    }
}

/// Whether `e` comes from a full disk or an exhausted quota: the blob store's `ENOSPC` or
/// `EDQUOT`, SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full` (53100).
fn out_of_space(e: &Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    match e {
        Error::Storage(berth_storage::StorageError::Io(io)) | Error::Body(io) => {
            matches!(io.kind(), StorageFull | QuotaExceeded)
        }
        Error::Meta(meta) => meta.is_out_of_space(),
        _ => false,
    }
}

/// `Range` header value for an upload holding `offset` bytes: the inclusive received range.
/// With nothing received yet it reads `0-0`, as every registry and client expect.
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        let message = if status == StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = %self, "storage full");
            "the registry's storage is full (no space left on device); nothing was stored. \
             Try again once space has been freed"
                .to_string()
        } else if self.is_internal() {
            tracing::error!(error = %self, "internal error");
            "internal server error; the server log has the details".to_string()
        } else {
            self.to_string()
        };
        let body = if matches!(self, ApiError::Registry(Error::TokenRefused(_))) {
            json!({ "errors": [{ "code": code, "message": message }] })
        } else {
            json!({ "errors": [{ "code": code, "message": message, "detail": self.detail() }] })
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Registry(Error::ChunkOutOfOrder {
                repository,
                id,
                offset,
                ..
            }) => {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("/v2/{repository}/blobs/uploads/{id}"))
                {
                    headers.insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&upload_range(*offset)) {
                    headers.insert(header::RANGE, v);
                }
            }
            ApiError::Registry(Error::RangeNotSatisfiable { size }) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Registry(Error::LoginLocked { retry_after_secs }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::TooManyUploads { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            ApiError::Unauthorized { challenge, .. }
            | ApiError::InsufficientScope { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        response
    }
}
