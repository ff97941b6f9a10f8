use std::net::SocketAddr;

use berth_server::{App, Config};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A real berth server in this process, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The application, for managing accounts in-process.
    pub app: App,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Set by [`TestApp::login`]: requests sent through [`TestApp::send`] answer Bearer
    /// challenges with tokens fetched with these credentials.
    login: Option<(String, String)>,
    /// The scopes challenged so far and the token last fetched for all of them.
    bearer: std::sync::Mutex<(Vec<String>, Option<String>)>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        // The API tests speak to an open registry; `auth.rs` turns accounts back on.
        config.auth.enabled = false;
        tweak(&mut config);
        let app = App::open(config).await.expect("open app");
        let handle = app.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(berth_server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        // A workspace-wide build links reqwest as the berth client does, without a default TLS
        // crypto provider; install the one the client uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        TestApp {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            dir,
            app: handle,
            shutdown: Some(tx),
            server: Some(server),
            login: None,
            bearer: std::sync::Mutex::new((Vec::new(), None)),
        }
    }

    /// Signs in as a registry client does (`docker login`, the conformance suite's
    /// `OCI_USERNAME`/`OCI_PASSWORD`): from now on [`TestApp::send`] and the helpers built on it
    /// follow a 401 Bearer challenge to its realm, fetch a token there with these Basic
    /// credentials, and send the request again with it.
    pub fn login(&mut self, user: &str, password: &str) {
        self.login = Some((user.to_string(), password.to_string()));
        *self.bearer.lock().expect("bearer lock") = (Vec::new(), None);
    }

    /// Sends the request `build` makes. When signed in and answered with a Bearer challenge,
    /// fetches a token for every scope challenged so far (tokens grant per scope, so the
    /// token for a push must still allow the pull before it) and sends a fresh request once
    /// more: `build` runs again because a streamed body cannot be replayed.
    pub async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Response {
        let with_token = || {
            let token = self.bearer.lock().expect("bearer lock").1.clone();
            match token {
                Some(t) => build().bearer_auth(t),
                None => build(),
            }
        };
        let r = with_token().send().await.expect("request");
        let Some((user, password)) = &self.login else {
            return r;
        };
        if r.status() != StatusCode::UNAUTHORIZED {
            return r;
        }
        let Some(challenge) = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(BearerChallenge::parse)
        else {
            return r;
        };
        let scopes = {
            let mut bearer = self.bearer.lock().expect("bearer lock");
            if let Some(scope) = challenge.scope.filter(|s| !bearer.0.contains(s)) {
                bearer.0.push(scope);
            }
            bearer.0.clone()
        };
        let mut query = vec![("service", challenge.service.as_str())];
        query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        let query = serde_urlencoded::to_string(query).expect("query");
        let t = self
            .http
            .get(format!("{}?{query}", challenge.realm))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("token request");
        assert_eq!(
            t.status(),
            StatusCode::OK,
            "token for {user} and {scopes:?}"
        );
        let body: Value = t.json().await.expect("token json");
        let token = body["token"].as_str().expect("token").to_string();
        self.bearer.lock().expect("bearer lock").1 = Some(token);
        with_token().send().await.expect("request with token")
    }

    /// From now on every request carries `Authorization: <value>` (`None`: no credentials).
    pub fn authorize(&mut self, value: Option<&str>) {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = value {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                reqwest::header::HeaderValue::from_str(v).expect("header value"),
            );
        }
        self.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client");
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(|| self.req(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Response {
        self.send(|| self.req(Method::HEAD, path)).await
    }

    /// Pushes a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let r = self
            .send(|| {
                self.req(Method::POST, &path)
                    .header("content-type", "application/octet-stream")
                    .body(data.to_vec())
            })
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "push blob to {repo}");
        digest
    }

    /// Opens an upload session; returns its Location.
    pub async fn open_session(&self, repo: &str) -> String {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let r = self.send(|| self.req(Method::POST, &path)).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        header(&r, "location").to_string()
    }

    /// Pushes a manifest; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send(|| {
            self.req(Method::PUT, &path)
                .header("content-type", media_type)
                .body(body.to_vec())
        })
        .await
    }

    /// Pushes a config and one layer, then an image manifest under `tag`. Returns
    /// (manifest bytes, manifest digest).
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, String) {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed}").repeat(100);
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(&c, config.len(), &[(&l, layer.len())], None, None);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
        let digest = sha256(&manifest);
        (manifest, digest)
    }

    /// Sends raw bytes over a new connection and returns the status line's code and the body:
    /// for paths that an HTTP client library would normalize (`..`).
    pub async fn raw(&self, request: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (code, body)
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` challenge
/// (distribution's `docs/spec/auth/token.md`).
#[derive(Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: String,
    pub scope: Option<String>,
    /// `insufficient_scope` when a token was presented but falls short (RFC 6750 3.1).
    pub error: Option<String>,
}

impl BearerChallenge {
    /// Parses the quoted `key="value"` pairs after `Bearer `; `None` without a realm.
    pub fn parse(header: &str) -> Option<BearerChallenge> {
        let mut rest = header.strip_prefix("Bearer ")?;
        let mut pairs = Vec::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let (value, after) = after.split_once('"')?;
            pairs.push((key.trim_start_matches(',').trim(), value.to_string()));
            rest = after;
        }
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        Some(BearerChallenge {
            realm: get("realm")?,
            service: get("service").unwrap_or_default(),
            scope: get("scope"),
            error: get("error"),
        })
    }
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    subject: Option<(&str, usize)>,
    artifact_type: Option<&str>,
) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})
        })
        .collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": layers,
    });
    if let Some((d, s)) = subject {
        m["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": s});
    }
    if let Some(at) = artifact_type {
        m["artifactType"] = at.into();
        m["annotations"] = serde_json::json!({"org.example.kind": at});
    }
    serde_json::to_vec_pretty(&m).expect("json")
}

/// Asserts an OCI error response: status, and the first error's code.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "expected {status} {code}");
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    assert!(body["errors"][0]["message"].is_string(), "{body}");
}

pub fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ascii header")
}
