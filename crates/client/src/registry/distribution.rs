//! The distribution API calls the pull and push engines use: manifests and blobs, read and
//! written, each checked against its digest where one is known.

use berth_oci::{Digest, Repository, media_type};
use bytes::Bytes;
use reqwest::header;
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use crate::error::{ClientError, Result};

use super::{
    FetchedManifest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, RegistryClient, UploadStart, oci_error,
    pull_scope, push_scope, read_limited,
};

impl RegistryClient {
    /// `GET /v2/<name>/manifests/<reference>`, bytes kept exactly as served. When
    /// `reference` is a digest the bytes are checked against it.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let path = format!("v2/{repo}/manifests/{reference}");
        let resp = self
            .send(Method::GET, &path, &[pull_scope(repo)], |r| {
                Ok(r.header(header::ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            let body = resp.bytes().await.unwrap_or_default();
            let (code, message) = oci_error(&body);
            return Err(ClientError::NotFound {
                registry: self.domain.clone(),
                what: format!("manifest for {repo}:{reference}"),
                message: if message.is_empty() { code } else { message },
            });
        }
        let resp = self
            .expect_success(resp, "GET", &format!("/{path}"))
            .await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type::essence)
            .unwrap_or_default();
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &self.domain).await?;
        let digest = Digest::sha256_of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>()
            && expected != digest
        {
            return Err(ClientError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        // Some registries send `application/json`; the body's own mediaType is what counts.
        let media_type = if berth_oci::media_type::MANIFEST_TYPES.contains(&media_type.as_str()) {
            media_type
        } else {
            body_media_type(&bytes).unwrap_or(media_type)
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: the size when the repository has the blob.
    pub async fn blob_size(
        &self,
        repo: &Repository,
        digest: &Digest,
        scopes: &[String],
    ) -> Result<Option<u64>> {
        let path = format!("v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::HEAD, &path, scopes, Ok).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp.content_length().unwrap_or(0))),
            _ => self
                .expect_success(resp, "HEAD", &format!("/{path}"))
                .await
                .map(|_| None),
        }
    }

    /// `GET /v2/<name>/blobs/<digest>` from `offset` on. The answer is 206 when the registry
    /// honoured the range, 200 when it sent everything.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response> {
        let path = format!("v2/{repo}/blobs/{digest}");
        let resp = self
            .send(Method::GET, &path, &[pull_scope(repo)], |r| {
                Ok(if offset > 0 {
                    r.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    r
                })
            })
            .await?;
        self.expect_success(resp, "GET", &format!("/{path}")).await
    }

    /// A small JSON blob (an image config), read whole and checked against its digest.
    pub async fn get_small_blob(
        &self,
        repo: &Repository,
        desc: &berth_oci::Descriptor,
    ) -> Result<serde_json::Value> {
        let resp = self.get_blob(repo, &desc.digest, 0).await?;
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &self.domain).await?;
        let actual = Digest::sha256_of(&bytes);
        if actual != desc.digest {
            return Err(ClientError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Protocol(format!(
                "{}: blob {} is not JSON: {e}",
                self.domain, desc.digest
            ))
        })
    }

    /// `POST /v2/<name>/blobs/uploads/`, with `?mount=&from=` when a source is known.
    pub async fn start_upload(
        &self,
        repo: &Repository,
        mount: Option<(&Digest, &Repository)>,
    ) -> Result<UploadStart> {
        let mut path = format!("v2/{repo}/blobs/uploads/");
        let mut scopes = vec![push_scope(repo)];
        if let Some((digest, from)) = mount {
            path.push_str(&format!("?mount={digest}&from={from}"));
            scopes.push(pull_scope(from));
        }
        let resp = self
            .send(Method::POST, &path, &scopes, |r| {
                Ok(r.header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        let resp = self
            .expect_success(resp, "POST", &format!("/{path}"))
            .await?;
        if resp.status() == StatusCode::CREATED && mount.is_some() {
            return Ok(UploadStart::Mounted);
        }
        let location = self.location(&resp)?;
        Ok(UploadStart::Session(location))
    }

    fn location(&self, resp: &Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Protocol(format!("{}: upload answer without Location", self.domain))
            })?;
        // distribution-spec: Location may be absolute or relative to the registry.
        resp.url().join(loc).map_err(|e| {
            ClientError::Protocol(format!("{}: bad Location {loc:?}: {e}", self.domain))
        })
    }

    /// Sends a whole blob to an upload session: one `PATCH` with the bytes, then
    /// `PUT ?digest=` (the way docker pushes). `body` is called for each attempt.
    pub async fn upload_blob(
        &self,
        repo: &Repository,
        session: Url,
        digest: &Digest,
        size: u64,
        mut body: impl FnMut() -> Result<reqwest::Body>,
    ) -> Result<()> {
        let scopes = [push_scope(repo)];
        let resp = self
            .send(Method::PATCH, session.as_str(), &scopes, |r| {
                Ok(r.header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body()?))
            })
            .await?;
        let resp = self.expect_success(resp, "PATCH", session.path()).await?;
        let mut put = self.location(&resp)?;
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(Method::PUT, put.as_str(), &scopes, |r| {
                Ok(r.header(header::CONTENT_LENGTH, "0"))
            })
            .await?;
        self.expect_success(resp, "PUT", put.path()).await?;
        Ok(())
    }

    /// `PUT /v2/<name>/manifests/<reference>` with the bytes as they are.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let path = format!("v2/{repo}/manifests/{reference}");
        let resp = self
            .send(Method::PUT, &path, &[push_scope(repo)], |r| {
                Ok(r.header(header::CONTENT_TYPE, media_type)
                    .body(bytes.clone()))
            })
            .await?;
        let resp = self
            .expect_success(resp, "PUT", &format!("/{path}"))
            .await?;
        let computed = Digest::sha256_of(&bytes);
        if let Some(served) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && served != computed
        {
            return Err(ClientError::DigestMismatch {
                expected: computed,
                actual: served,
            });
        }
        Ok(computed)
    }
}

fn body_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| {
        Some(if p.manifests.is_some() {
            media_type::OCI_INDEX.to_string()
        } else {
            media_type::OCI_MANIFEST.to_string()
        })
    })
}
