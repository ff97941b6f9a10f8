//! A `/v2/...` request parsed once into an [`Endpoint`]. Repository names hold any number of
//! `/`, so routes are recognized from the end of the path, never by a fixed segment count.

use berth_oci::{Digest, ManifestRef, Repository};
use http::Method;

use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// `GET /v2/<name>/tags/list`
    Tags(Repository),
    /// `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`
    Manifest(Repository, ManifestRef),
    /// `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`
    Blob(Repository, Digest),
    /// `POST /v2/<name>/blobs/uploads/`
    StartUpload(Repository),
    /// `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`
    Upload(Repository, String),
    /// `GET /v2/<name>/referrers/<digest>`
    Referrers(Repository, Digest),
}

impl Endpoint {
    /// Route name, for logs and metrics labels.
    pub fn route(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::StartUpload(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
        }
    }

    pub fn repository(&self) -> Option<&Repository> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags(r)
            | Endpoint::Manifest(r, _)
            | Endpoint::Blob(r, _)
            | Endpoint::StartUpload(r)
            | Endpoint::Upload(r, _)
            | Endpoint::Referrers(r, _) => Some(r),
        }
    }

    fn allows(&self, method: &Method) -> bool {
        let m = |list: &[Method]| list.contains(method);
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Tags(_) | Endpoint::Referrers(..) => {
                m(&[Method::GET, Method::HEAD])
            }
            Endpoint::Manifest(..) => m(&[Method::GET, Method::HEAD, Method::PUT, Method::DELETE]),
            Endpoint::Blob(..) => m(&[Method::GET, Method::HEAD, Method::DELETE]),
            Endpoint::StartUpload(_) => m(&[Method::POST]),
            Endpoint::Upload(..) => m(&[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
        }
    }

    /// Parses the path of a request under `/v2`. `None` if the path is not under `/v2` at all.
    pub fn parse(method: &Method, path: &str) -> Option<Result<Endpoint, ApiError>> {
        let rest = path.strip_prefix("/v2")?;
        Some(Self::parse_v2(method, rest).and_then(|e| {
            if e.allows(method) {
                Ok(e)
            } else {
                Err(ApiError::MethodUnsupported(method.to_string()))
            }
        }))
    }

    fn parse_v2(method: &Method, rest: &str) -> Result<Endpoint, ApiError> {
        if rest.is_empty() || rest == "/" {
            return Ok(Endpoint::Base);
        }
        let unknown =
            || ApiError::RouteUnknown(format!("/v2{}", rest.chars().take(300).collect::<String>()));
        let rest = rest.strip_prefix('/').ok_or_else(unknown)?;
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let name =
            |prefix: &str| -> Result<Repository, ApiError> { Ok(prefix.parse::<Repository>()?) };
        if let Some(prefix) = rest.strip_suffix("/tags/list") {
            return Ok(Endpoint::Tags(name(prefix)?));
        }
        if let Some(prefix) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Endpoint::StartUpload(name(prefix)?));
        }
        let (head, last) = rest.rsplit_once('/').ok_or_else(unknown)?;
        let (prefix, kind) = head.rsplit_once('/').ok_or_else(unknown)?;
        match kind {
            "manifests" => {
                let reference = last.parse::<ManifestRef>().map_err(|e| match e {
                    berth_oci::NameError::Digest(d) => ApiError::DigestInvalid(d),
                    // Nothing can exist under an invalid tag: reading it is a plain miss
                    // (the conformance suite pulls `.INVALID_MANIFEST_NAME` and wants 404).
                    other if method == Method::PUT => ApiError::ReferenceInvalid(other),
                    other => ApiError::ReferenceUnknown(other),
                })?;
                Ok(Endpoint::Manifest(name(prefix)?, reference))
            }
            "blobs" => {
                let repository = name(prefix)?;
                Ok(Endpoint::Blob(repository, last.parse()?))
            }
            "referrers" => {
                let repository = name(prefix)?;
                Ok(Endpoint::Referrers(repository, last.parse()?))
            }
            "uploads" => match prefix.rsplit_once('/') {
                Some((repo, "blobs")) => Ok(Endpoint::Upload(name(repo)?, last.to_string())),
                _ => Err(unknown()),
            },
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(method: Method, path: &str) -> Endpoint {
        Endpoint::parse(&method, path)
            .expect("under /v2")
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn err(method: Method, path: &str) -> &'static str {
        match Endpoint::parse(&method, path).expect("under /v2") {
            Ok(e) => panic!("{path} parsed as {e:?}"),
            Err(e) => e.code_and_status().0,
        }
    }

    fn r(s: &str) -> Repository {
        s.parse().expect("repository")
    }

    #[test]
    fn routes() {
        let digest: Digest = D.parse().expect("digest");
        let table = [
            (Method::GET, "/v2/".to_string(), Endpoint::Base),
            (Method::GET, "/v2".to_string(), Endpoint::Base),
            (Method::GET, "/v2/_catalog".to_string(), Endpoint::Catalog),
            (
                Method::GET,
                "/v2/a/tags/list".to_string(),
                Endpoint::Tags(r("a")),
            ),
            (
                Method::GET,
                "/v2/a/b/c/d/e/f/g/h/tags/list".to_string(),
                Endpoint::Tags(r("a/b/c/d/e/f/g/h")),
            ),
            (
                Method::PUT,
                "/v2/team/web/manifests/v1".to_string(),
                Endpoint::Manifest(r("team/web"), ManifestRef::Tag("v1".parse().expect("tag"))),
            ),
            (
                Method::HEAD,
                format!("/v2/x/manifests/{D}"),
                Endpoint::Manifest(r("x"), ManifestRef::Digest(digest.clone())),
            ),
            (
                Method::GET,
                format!("/v2/foo/blobs/bar/manifests/{D}"),
                Endpoint::Manifest(r("foo/blobs/bar"), ManifestRef::Digest(digest.clone())),
            ),
            (
                Method::GET,
                format!("/v2/x/blobs/{D}"),
                Endpoint::Blob(r("x"), digest.clone()),
            ),
            (
                Method::GET,
                format!("/v2/manifests/blobs/{D}"),
                Endpoint::Blob(r("manifests"), digest.clone()),
            ),
            (
                Method::POST,
                "/v2/x/y/blobs/uploads/".to_string(),
                Endpoint::StartUpload(r("x/y")),
            ),
            (
                Method::POST,
                "/v2/x/y/blobs/uploads".to_string(),
                Endpoint::StartUpload(r("x/y")),
            ),
            (
                Method::PATCH,
                "/v2/x/y/blobs/uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
                Endpoint::Upload(r("x/y"), "01ARZ3NDEKTSV4RRFFQ69G5FAV".into()),
            ),
            (
                Method::GET,
                format!("/v2/x/referrers/{D}"),
                Endpoint::Referrers(r("x"), digest.clone()),
            ),
        ];
        for (method, path, want) in table {
            assert_eq!(ok(method, &path), want, "{path}");
        }
        assert!(Endpoint::parse(&Method::GET, "/healthz").is_none());
    }

    #[test]
    fn refusals() {
        let table = [
            (
                Method::GET,
                "/v2/../etc/tags/list".to_string(),
                "NAME_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/../b/tags/list".to_string(),
                "NAME_INVALID",
            ),
            (
                Method::GET,
                "/v2/%2e%2e/tags/list".to_string(),
                "NAME_INVALID",
            ),
            (
                Method::GET,
                "/v2/Upper/tags/list".to_string(),
                "NAME_INVALID",
            ),
            (
                Method::GET,
                "/v2/a//b/tags/list".to_string(),
                "NAME_INVALID",
            ),
            (Method::GET, "/v2//tags/list".to_string(), "NAME_INVALID"),
            (
                Method::GET,
                format!("/v2/{}/tags/list", "a".repeat(256)),
                "NAME_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/blobs/sha256:123".to_string(),
                "DIGEST_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/blobs/notadigest".to_string(),
                "DIGEST_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/manifests/sha256:zz".to_string(),
                "DIGEST_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/manifests/-bad".to_string(),
                "MANIFEST_UNKNOWN",
            ),
            (
                Method::GET,
                "/v2/a/manifests/.INVALID_MANIFEST_NAME".to_string(),
                "MANIFEST_UNKNOWN",
            ),
            (
                Method::PUT,
                "/v2/a/manifests/-bad".to_string(),
                "TAG_INVALID",
            ),
            (
                Method::GET,
                "/v2/a/referrers/latest".to_string(),
                "DIGEST_INVALID",
            ),
            (Method::GET, "/v2/a/whatever".to_string(), "UNSUPPORTED"),
            (Method::GET, "/v2x".to_string(), "UNSUPPORTED"),
            (
                Method::POST,
                "/v2/a/manifests/latest".to_string(),
                "UNSUPPORTED",
            ),
            (Method::PUT, format!("/v2/a/blobs/{D}"), "UNSUPPORTED"),
            (Method::DELETE, "/v2/_catalog".to_string(), "UNSUPPORTED"),
        ];
        for (method, path, code) in table {
            assert_eq!(err(method, &path), code, "{path}");
        }
    }
}
