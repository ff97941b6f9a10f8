//! Where the bucket is and how to reach it.

use std::fmt;

use object_store::signer::Url;

use crate::{Result, StorageError};

use super::DEFAULT_PART_SIZE;

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Another S3-compatible service (`https://host[:port]`); AWS when `None`.
    pub endpoint: Option<String>,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`); virtual-hosted style
    /// (`<bucket>.<endpoint host>/<key>`) otherwise.
    pub path_style: bool,
    /// Static credentials; without them the usual `AWS_*` environment variables (and instance
    /// or container credentials) are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Size of every part but the last, at least [`MIN_PART_SIZE`](super::MIN_PART_SIZE). Each
    /// upload in flight holds at most one part in memory, and a blob has at most 10,000 parts.
    pub part_size: u64,
    /// Allow plain `http://` endpoints (tests, a local gateway).
    pub allow_http: bool,
}

impl S3Config {
    /// A configuration for `bucket` in `region` on AWS, with the defaults.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            part_size: DEFAULT_PART_SIZE,
            allow_http: false,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("part_size", &self.part_size)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The endpoint as object_store wants it: with virtual-hosted style, the bucket is part of the
/// host.
pub(super) fn endpoint_url(endpoint: &str, config: &S3Config) -> Result<String> {
    if config.path_style {
        return Ok(endpoint.to_string());
    }
    let invalid = |why: &str| StorageError::Config(format!("S3 endpoint {endpoint:?}: {why}"));
    let mut url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let host = format!("{}.{host}", config.bucket);
    url.set_host(Some(&host))
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3Store;

    #[test]
    fn config_is_validated() {
        let small = S3Config {
            part_size: 1 << 20,
            ..S3Config::new("b", "us-east-1")
        };
        assert!(matches!(S3Store::new(&small), Err(StorageError::Config(_))));
        let half = S3Config {
            access_key_id: Some("id".into()),
            ..S3Config::new("b", "us-east-1")
        };
        assert!(matches!(S3Store::new(&half), Err(StorageError::Config(_))));
        let secret = S3Config {
            secret_access_key: Some("hunter2".into()),
            ..S3Config::new("b", "us-east-1")
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        let mut config = S3Config::new("my-bucket", "us-east-1");
        assert_eq!(
            endpoint_url("https://s3.example.com:9000", &config).expect("url"),
            "https://my-bucket.s3.example.com:9000"
        );
        config.path_style = true;
        assert_eq!(
            endpoint_url("https://s3.example.com:9000", &config).expect("url"),
            "https://s3.example.com:9000"
        );
    }
}
