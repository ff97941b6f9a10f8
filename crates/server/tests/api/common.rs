use std::net::SocketAddr;

use berth_server::{App, Config};
use berth_testkit::balancer::Balancer;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The deployment under test. By default one server on the embedded backends (SQLite and the
/// filesystem in a temp directory). When the test command provides PostgreSQL and an S3
/// server (`BERTH_TEST_POSTGRES_URL`, an administrator's URL; `BERTH_TEST_S3_ENDPOINT`, with
/// credentials in `AWS_*`), every test gets its own database and bucket and two replicas
/// sharing them behind a round-robin balancer: each new connection goes to the other replica,
/// and the test client opens a new connection for every request.
struct ScaleOut {
    postgres: String,
    s3: String,
}

impl ScaleOut {
    fn from_env() -> Option<ScaleOut> {
        Some(ScaleOut {
            postgres: std::env::var("BERTH_TEST_POSTGRES_URL").ok()?,
            s3: std::env::var("BERTH_TEST_S3_ENDPOINT").ok()?,
        })
    }

    /// A fresh database and bucket, named into `config`.
    async fn prepare(&self, config: &mut Config) {
        use sqlx::Connection as _;
        let name = format!("berth-test-{}", ulid::Ulid::new()).to_lowercase();
        let mut admin = sqlx::PgConnection::connect(&self.postgres)
            .await
            .expect("connect to the test PostgreSQL");
        // The name is ours (a ULID), not input.
        let create = format!("CREATE DATABASE \"{name}\"");
        sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(create))
            .await
            .expect("create the test database");
        let mut url = reqwest::Url::parse(&self.postgres).expect("postgres url");
        url.set_path(&name);
        config.database.url = url.to_string();
        config.database.max_connections = 4;
        // S3's CreateBucket: a PUT on the bucket (moto takes it unsigned).
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.s3))
            .send()
            .await
            .expect("create the test bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        config.storage.backend = "s3".into();
        config.storage.endpoint = self.s3.clone();
        config.storage.bucket = name;
        config.storage.path_style = true;
        config.storage.part_size_mib = 5;
    }
}

/// Whether the tests run against the scaled-out deployment (see [`ScaleOut`]).
pub fn scaled_out() -> bool {
    ScaleOut::from_env().is_some()
}

/// A client for the tests: no redirects followed; with replicas, no connection reuse, so that
/// consecutive requests alternate between them.
fn test_client(headers: reqwest::header::HeaderMap) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers);
    if scaled_out() {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().expect("client")
}

/// Serves `app` on a new loopback port until `stop` fires.
async fn serve_on_loopback(
    app: App,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    (addr, tx, server)
}

/// A real berth server in this process (or two replicas and a balancer, see [`ScaleOut`]),
/// stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The application, for managing accounts in-process.
    pub app: App,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Each replica's own address (one when embedded); `addr` is the balancer's when scaled out.
    pub replicas: Vec<SocketAddr>,
    /// The second replica's serving task, to kill it in the middle of a request.
    pub second: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The configuration the servers run with (backends included).
    pub config: Config,
    /// The second replica, when scaled out: stopped with the first.
    others: Vec<tokio::sync::oneshot::Sender<()>>,
    /// In front of the replicas, when scaled out.
    _balancer: Option<Balancer>,
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
        Self::start_with_clock(berth_meta::system_clock(), tweak).await
    }

    /// A registry going by `clock` (every replica): a test moves a
    /// [`berth_meta::ManualClock`] forward instead of sleeping.
    pub async fn start_with_clock(
        clock: berth_meta::SharedClock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            shutdown_grace_secs: 5,
            ..Config::default()
        };
        // The API tests speak to an open registry; `auth.rs` turns accounts back on.
        config.auth.enabled = false;
        tweak(&mut config);
        // A workspace-wide build links reqwest as the berth client does, without a default TLS
        // crypto provider; install the one the client uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scale_out = ScaleOut::from_env();
        if let Some(s) = &scale_out {
            s.prepare(&mut config).await;
        }
        let app = App::open_with_clock(config.clone(), clock.clone())
            .await
            .expect("open app");
        let kept = config.clone();
        let (mut addr, tx, server) = serve_on_loopback(app.clone()).await;
        let mut others = Vec::new();
        let mut replicas = vec![addr];
        let mut second_task = None;
        let mut balancer = None;
        if scale_out.is_some() {
            let second = App::open_with_clock(config, clock)
                .await
                .expect("open the second replica");
            let (second_addr, second_tx, task) = serve_on_loopback(second).await;
            replicas.push(second_addr);
            second_task = Some(task);
            let balanced = Balancer::start(vec![addr, second_addr]).await;
            addr = balanced.addr();
            balancer = Some(balanced);
            others = vec![second_tx];
        }
        TestApp {
            addr,
            base: format!("http://{addr}"),
            http: test_client(reqwest::header::HeaderMap::new()),
            dir,
            app,
            shutdown: Some(tx),
            server: Some(server),
            others,
            _balancer: balancer,
            replicas,
            second: second_task,
            config: kept,
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

    /// The metadata database the servers share, opened beside them (as another replica would).
    pub async fn meta(&self) -> std::sync::Arc<dyn berth_meta::MetaStore> {
        let url = &self.config.database.url;
        if url.starts_with("postgres") {
            std::sync::Arc::new(
                berth_meta::PostgresMeta::connect(url, 2)
                    .await
                    .expect("open the metadata database"),
            )
        } else {
            std::sync::Arc::new(
                berth_meta::SqliteMeta::open(&self.config.data_dir.join("meta.db"))
                    .await
                    .expect("open the metadata database"),
            )
        }
    }

    /// How many objects the blob store holds, blobs and upload data alike: files under the data
    /// directory, or keys in the bucket (S3 `ListObjectsV2`, unsigned as moto takes it).
    pub async fn stored_objects(&self) -> usize {
        if self.config.storage.backend != "s3" {
            let data = &self.config.data_dir;
            return walk_files(&data.join("blobs")) + walk_files(&data.join("uploads"));
        }
        let storage = &self.config.storage;
        let address = storage.endpoint.trim_start_matches("http://");
        berth_testkit::s3::object_keys(address, &storage.bucket, "").len()
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
        self.http = test_client(headers);
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

    /// The JSON of `GET /v2/<repo>/tags/list`.
    pub async fn tag_list(&self, repo: &str) -> serde_json::Value {
        self.get(&format!("/v2/{repo}/tags/list"))
            .await
            .json()
            .await
            .expect("tags/list JSON")
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
        for tx in self.others.drain(..) {
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
/// `GET /auth/token` for `scopes` with `authorization` (`offline`: asking for a refresh token
/// too); the response as it is.
pub async fn token_response(
    app: &TestApp,
    authorization: Option<&str>,
    scopes: &[&str],
    offline: bool,
) -> Response {
    let mut query = vec![("service", "berth")];
    if offline {
        query.push(("offline_token", "true"));
    }
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let url = format!(
        "{}/auth/token?{}",
        app.base,
        serde_urlencoded::to_string(query).expect("query")
    );
    let mut request = reqwest::Client::new().get(url);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    request.send().await.expect("token request")
}

/// `POST /auth/token` with the OAuth2 form `fields` (oauth.md: `grant_type=password` or
/// `refresh_token`, `service`, `scope`, ...).
pub async fn post_token_form(app: &TestApp, fields: &[(&str, &str)]) -> Response {
    reqwest::Client::new()
        .post(format!("{}/auth/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).expect("form"))
        .send()
        .await
        .expect("POST /auth/token")
}

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

fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Whether `check` holds within 10 s, asked every 100 ms: for what a background job (a
/// scheduled collection, a retention run) does in its own time.
pub async fn within_10s<F: std::future::Future<Output = bool>>(
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    check().await
}

/// A metric's value, summed over the replicas.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let mut total = 0.0;
    for replica in &app.replicas {
        let text = reqwest::get(format!("http://{replica}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        total += text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"));
    }
    total
}

/// Storage and database agree: every row has its object, no object lacks a row.
pub async fn assert_fsck_clean(app: &TestApp) {
    let options = berth_server::fsck::FsckOptions {
        verify_digests: true,
        grace: std::time::Duration::ZERO,
        repair: false,
    };
    let report = berth_server::fsck::fsck(&app.config, &options)
        .await
        .expect("fsck");
    assert!(report.is_clean(), "{report:?}");
}
