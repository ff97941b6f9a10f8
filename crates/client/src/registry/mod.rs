//! One registry, as the client sees it: where it is (HTTPS, or plain HTTP where allowed), how it
//! wants to be authenticated, and the distribution API calls the pull and push engines use.
//!
//! Auth follows distribution's `docs/spec/auth/token.md`: a request answered 401 with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` is retried with a token from the
//! realm for that scope; `Basic` challenges get the credentials on every request.
//!
//! `auth.rs` learns the registry's auth scheme and fetches tokens, `distribution.rs` holds the
//! manifest and blob calls; here are the connection, `send` (auth and retries for every
//! request), the error answers and the management API call.

mod auth;
mod distribution;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use berth_oci::{Digest, Repository, registry_host};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use crate::challenge::Scheme;
use crate::error::{ClientError, Result};
use crate::settings::Settings;

use auth::{AuthScheme, CachedToken, parse_challenges, scope_key};

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
}

pub fn pull_scope(repo: &Repository) -> String {
    format!("repository:{repo}:pull")
}

pub fn push_scope(repo: &Repository) -> String {
    format!("repository:{repo}:pull,push")
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
