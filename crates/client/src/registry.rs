//! One registry, as the client sees it: where it is (HTTPS, or plain HTTP where allowed), how it
//! wants to be authenticated, and the distribution API calls the pull and push engines use.
//!
//! Auth follows distribution's `docs/spec/auth/token.md`: a request answered 401 with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` is retried with a token from the
//! realm for that scope; `Basic` challenges get the credentials on every request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_oci::{Digest, Repository, media_type, registry_host};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use crate::challenge::{self, Challenge, Scheme};
use crate::error::{ClientError, Result};
use crate::settings::Settings;

/// The scope of berth's management API (`/api/v1/...`): a token for it is asked with
/// account credentials; repository-scoped tokens are refused there.
pub const MANAGEMENT_SCOPE: &str = "registry:management:*";

/// How the user proves who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Password {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token a token server handed out at login (docker's `identitytoken`).
    IdentityToken {
        username: String,
        token: String,
    },
}

/// What the registry's `GET /v2/` said about authentication.
#[derive(Clone, Debug)]
enum AuthScheme {
    None,
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

/// The Accept list for manifests: every manifest and index type berth understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Manifests larger than this are refused before they are read whole.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

const ATTEMPTS: u32 = 5;

/// A manifest as fetched: its bytes exactly as served, its media type and digest.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// The answer to a blob upload start.
pub enum UploadStart {
    /// The registry linked the blob from another repository; nothing to send.
    Mounted,
    /// An upload session to send the bytes to.
    Session(Url),
}

pub struct RegistryClient {
    http: reqwest::Client,
    /// The name users write (`docker.io`, `localhost:5000`).
    domain: String,
    base: Url,
    login: Option<Login>,
    scheme: Mutex<AuthScheme>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// The refresh token from the last token request made with `offline_token=true`.
    refresh_token: Mutex<Option<String>>,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

impl RegistryClient {
    /// Finds the registry and learns how it authenticates (`GET /v2/`). Loopback and insecure
    /// registries are tried over HTTPS first and over plain HTTP when that fails, as docker does.
    pub async fn connect(domain: &str, settings: &Settings, login: Option<Login>) -> Result<Self> {
        let host = registry_host(domain);
        let http = http_client(settings, settings.is_insecure(host))?;
        let https = parse_base(&format!("https://{host}/"))?;
        let mut client = RegistryClient {
            http,
            domain: domain.to_string(),
            base: https,
            login,
            scheme: Mutex::new(AuthScheme::None),
            tokens: Mutex::new(HashMap::new()),
            refresh_token: Mutex::new(None),
        };
        match client.ping().await {
            Ok(()) => Ok(client),
            Err(ClientError::Connect { .. }) if settings.is_insecure(host) => {
                client.base = parse_base(&format!("http://{host}/"))?;
                client.ping().await?;
                Ok(client)
            }
            Err(e) => Err(e),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The base URL actually used, e.g. `http://127.0.0.1:5000/`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /v2/` without credentials, to learn the auth scheme.
    async fn ping(&self) -> Result<()> {
        let url = self.url("v2/")?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| self.connect_error(source))?;
        let scheme = match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenges = parse_challenges(resp.headers());
                if let Some(c) = challenges.iter().find(|c| c.scheme == Scheme::Bearer) {
                    let realm = c.realm().ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "{}: Bearer challenge without a realm",
                            self.domain
                        ))
                    })?;
                    let realm = self.base.join(realm).map_err(|e| {
                        ClientError::Protocol(format!(
                            "{}: bad token realm {realm:?}: {e}",
                            self.domain
                        ))
                    })?;
                    AuthScheme::Bearer {
                        realm,
                        service: c.service().map(str::to_string),
                    }
                } else if challenges.iter().any(|c| c.scheme == Scheme::Basic) {
                    AuthScheme::Basic
                } else {
                    return Err(ClientError::Protocol(format!(
                        "{} answered GET /v2/ with 401 and no challenge berth understands",
                        self.domain
                    )));
                }
            }
            s if s.is_success() => AuthScheme::None,
            s => {
                return Err(ClientError::Protocol(format!(
                    "{} answered GET /v2/ with {s}: is it a registry?",
                    self.domain
                )));
            }
        };
        *lock(&self.scheme) = scheme;
        Ok(())
    }

    /// Checks the login against the registry: a token for no particular scope (or an
    /// authenticated `GET /v2/`). Returns the refresh token when the token server gave one,
    /// to be stored as docker's `identitytoken`.
    pub async fn verify_login(&self) -> Result<Option<String>> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            AuthScheme::None => Ok(None),
            AuthScheme::Basic => {
                let resp = self.send(Method::GET, "v2/", &[], Ok).await?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(ClientError::BadCredentials {
                        registry: self.domain.clone(),
                    });
                }
                self.expect_success(resp, "GET", "/v2/").await.map(|_| None)
            }
            AuthScheme::Bearer { realm, service } => {
                if self.login.is_none() {
                    return Err(ClientError::AuthenticationRequired {
                        registry: self.domain.clone(),
                    });
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), &[], true)
                    .await?;
                // The token must also open /v2/ itself.
                let resp = self
                    .http
                    .get(self.url("v2/")?)
                    .bearer_auth(&token.token)
                    .send()
                    .await
                    .map_err(|source| self.connect_error(source))?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(ClientError::BadCredentials {
                        registry: self.domain.clone(),
                    });
                }
                self.expect_success(resp, "GET", "/v2/").await?;
                Ok(lock(&self.refresh_token).clone())
            }
        }
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| ClientError::Protocol(format!("bad URL path {path:?}: {e}")))
    }

    fn connect_error(&self, source: reqwest::Error) -> ClientError {
        ClientError::Connect {
            registry: self.domain.clone(),
            source,
        }
    }

    /// Sends a request, authenticating as the registry asks and retrying with backoff on
    /// connection errors, 408, 429 and 5xx. `build` is called again for every attempt, so a
    /// streamed body is made anew each time.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        scopes: &[String],
        mut build: impl FnMut(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            Url::parse(path_or_url)
                .map_err(|e| ClientError::Protocol(format!("bad URL {path_or_url:?}: {e}")))?
        } else {
            self.url(path_or_url)?
        };
        let mut scopes: BTreeSet<String> = scopes.iter().cloned().collect();
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = build(self.http.request(method.clone(), url.clone()))?;
            if let Some(auth) = self.authorization(&scopes).await? {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e)
                    if attempt < ATTEMPTS
                        && (e.is_connect() || e.is_timeout() || e.is_request()) =>
                {
                    tracing::debug!(%url, error = %e, attempt, "retrying");
                    backoff(attempt).await;
                    continue;
                }
                Err(source) => return Err(self.connect_error(source)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                // The token may lack a scope the registry wants (a mount's source, say), or the
                // auth scheme changed: learn from the challenge and try once more.
                let challenges = parse_challenges(resp.headers());
                if let Some(c) = challenges.iter().find(|c| c.scheme == Scheme::Bearer) {
                    if let Some(scope) = c.scope() {
                        scopes.extend(scope.split(' ').map(str::to_string));
                    }
                    if matches!(*lock(&self.scheme), AuthScheme::None | AuthScheme::Basic) {
                        self.ping().await?;
                    }
                    lock(&self.tokens).remove(&scope_key(&scopes));
                    reauthenticated = true;
                    continue;
                }
                if challenges.iter().any(|c| c.scheme == Scheme::Basic)
                    && matches!(*lock(&self.scheme), AuthScheme::None)
                {
                    *lock(&self.scheme) = AuthScheme::Basic;
                    reauthenticated = true;
                    continue;
                }
            }
            let retryable = status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error();
            if retryable && attempt < ATTEMPTS {
                tracing::debug!(%url, %status, attempt, "retrying");
                backoff(attempt).await;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` header for a request needing `scopes`, fetching a token if needed.
    async fn authorization(&self, scopes: &BTreeSet<String>) -> Result<Option<HeaderValue>> {
        let scheme = lock(&self.scheme).clone();
        let value = match scheme {
            AuthScheme::None => return Ok(None),
            AuthScheme::Basic => match &self.login {
                Some(Login::Password { username, password }) => basic(username, password),
                Some(Login::IdentityToken { .. }) | None => return Ok(None),
            },
            AuthScheme::Bearer { realm, service } => {
                let key = scope_key(scopes);
                let cached = lock(&self.tokens).get(&key).cloned();
                let token = match cached {
                    Some(t) if t.expires > Instant::now() => t,
                    _ => {
                        let scopes: Vec<String> = scopes.iter().cloned().collect();
                        let t = self
                            .fetch_token(&realm, service.as_deref(), &scopes, false)
                            .await?;
                        lock(&self.tokens).insert(key, t.clone());
                        t
                    }
                };
                format!("Bearer {}", token.token)
            }
        };
        HeaderValue::from_str(&value).map(Some).map_err(|_| {
            ClientError::Protocol("credentials hold characters not allowed in a header".into())
        })
    }

    /// Asks the token server for a token (token.md "Requesting a Token"; oauth.md for the
    /// refresh-token grant).
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        offline: bool,
    ) -> Result<CachedToken> {
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let req = match &self.login {
                Some(Login::IdentityToken { token, .. }) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("refresh_token", token.clone()),
                        ("client_id", "berth".to_string()),
                        ("access_type", "offline".to_string()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s.to_string()));
                    }
                    if !scopes.is_empty() {
                        form.push(("scope", scopes.join(" ")));
                    }
                    let body = serde_urlencoded::to_string(&form).map_err(|e| {
                        ClientError::Protocol(format!("cannot encode token request: {e}"))
                    })?;
                    self.http
                        .post(realm.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                }
                login => {
                    let mut url = realm.clone();
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(s) = service {
                            q.append_pair("service", s);
                        }
                        for s in scopes {
                            q.append_pair("scope", s);
                        }
                        if offline {
                            q.append_pair("offline_token", "true");
                            q.append_pair("client_id", "berth");
                        }
                    }
                    let req = self.http.get(url);
                    match login {
                        Some(Login::Password { username, password }) => {
                            req.header(header::AUTHORIZATION, basic(username, password))
                        }
                        _ => req,
                    }
                }
            };
            match req.send().await {
                Ok(r) if r.status().is_server_error() && attempt < ATTEMPTS => {
                    backoff(attempt).await
                }
                Ok(r) => break r,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    backoff(attempt).await
                }
                Err(source) => return Err(self.connect_error(source)),
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(if matches!(self.login, Some(Login::IdentityToken { .. })) {
                ClientError::LoginRevoked {
                    registry: self.domain.clone(),
                }
            } else if self.login.is_some() {
                ClientError::BadCredentials {
                    registry: self.domain.clone(),
                }
            } else {
                ClientError::AuthenticationRequired {
                    registry: self.domain.clone(),
                }
            });
        }
        let resp = self.expect_success(resp, "GET", realm.path()).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|source| self.connect_error(source))?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!(
                "{}: token server sent invalid JSON: {e}",
                self.domain
            ))
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ClientError::Protocol(format!("{}: token server sent no token", self.domain))
            })?;
        if let Some(refresh) = parsed.refresh_token {
            *lock(&self.refresh_token) = Some(refresh);
        }
        // token.md: expires_in defaults to 60 seconds; keep a margin for slow requests.
        let lifetime = parsed.expires_in.unwrap_or(60).max(60);
        Ok(CachedToken {
            token,
            expires: Instant::now() + Duration::from_secs(lifetime.saturating_sub(10)),
        })
    }

    /// Turns an error answer into the matching `ClientError`, reading the OCI error body.
    pub(crate) async fn expect_success(
        &self,
        resp: Response,
        method: &str,
        path: &str,
    ) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let (code, message) = oci_error(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED if self.login.is_some() => ClientError::Denied {
                registry: self.domain.clone(),
                message: if message.is_empty() { code } else { message },
            },
            StatusCode::UNAUTHORIZED => ClientError::AuthenticationRequired {
                registry: self.domain.clone(),
            },
            StatusCode::FORBIDDEN => ClientError::Denied {
                registry: self.domain.clone(),
                message: if message.is_empty() { code } else { message },
            },
            StatusCode::NOT_FOUND => ClientError::NotFound {
                registry: self.domain.clone(),
                what: path.to_string(),
                message: if message.is_empty() { code } else { message },
            },
            _ => ClientError::Status {
                registry: self.domain.clone(),
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                code,
                message: if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                },
            },
        })
    }

    /// A JSON request to the registry's management API (`/api/v1/...`), authenticated like
    /// registry requests: Basic, or a token for the management scope
    /// ([`MANAGEMENT_SCOPE`]), which berth's token server grants to account credentials only.
    /// `Null` for an empty answer.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let bytes =
            match body {
                Some(b) => Some(serde_json::to_vec(b).map_err(|e| {
                    ClientError::Protocol(format!("cannot encode the request: {e}"))
                })?),
                None => None,
            };
        let resp = self
            .send(
                method.clone(),
                path.trim_start_matches('/'),
                &[MANAGEMENT_SCOPE.to_string()],
                |r| {
                    Ok(match &bytes {
                        Some(b) => r
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(b.clone()),
                        None => r,
                    })
                },
            )
            .await?;
        let resp = self.expect_success(resp, method.as_str(), path).await?;
        let text = read_limited(resp, MAX_MANIFEST_BYTES, &self.domain).await?;
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&text).map_err(|e| {
            ClientError::Protocol(format!(
                "{}: {path} answered with invalid JSON: {e}",
                self.domain
            ))
        })
    }

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

pub fn pull_scope(repo: &Repository) -> String {
    format!("repository:{repo}:pull")
}

pub fn push_scope(repo: &Repository) -> String {
    format!("repository:{repo}:pull,push")
}

fn scope_key(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(" ")
}

fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

fn parse_challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| challenge::parse(v).unwrap_or_default())
        .collect()
}

/// The first `{"errors":[{"code","message"}]}` entry of an error body, if any.
fn oci_error(body: &[u8]) -> (String, String) {
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b
            .errors
            .into_iter()
            .next()
            .map(|e| (e.code, e.message))
            .unwrap_or_default(),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string(),
        ),
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

async fn read_limited(resp: Response, limit: usize, registry: &str) -> Result<Bytes> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ClientError::Protocol(format!(
            "{registry}: manifest larger than {limit} bytes"
        )));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ClientError::Transfer {
            registry: registry.to_string(),
            source,
        })?;
        if out.len() + chunk.len() > limit {
            return Err(ClientError::Protocol(format!(
                "{registry}: manifest larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

fn parse_base(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| ClientError::Protocol(format!("bad registry address {s:?}: {e}")))
}

fn http_client(settings: &Settings, insecure: bool) -> Result<reqwest::Client> {
    // reqwest is built without a default crypto provider; ring is ours. A second install
    // (another client in this process) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120));
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(ClientError::io(format!(
            "reading CA file {}",
            path.display()
        )))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::Settings {
                path: path.display().to_string(),
                message: format!("not a PEM certificate bundle: {e}"),
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    if insecure {
        // docker's insecure registries: HTTPS without certificate checks, or plain HTTP.
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| ClientError::Protocol(format!("cannot set up HTTP client: {e}")))
}

async fn backoff(attempt: u32) {
    let ms = 200u64 << attempt.min(5);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
