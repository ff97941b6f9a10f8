//! The health check (`BlobStore::check`): one LIST, and its failure in words.

use std::io;

use async_trait::async_trait;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};

use crate::{BlobStore, Result, StorageError};

use super::{CHECK_TIMEOUT, S3Store};

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
