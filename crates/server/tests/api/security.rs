//! Claims of `docs/SECURITY.md` that no other test proves: private repositories answer as
//! missing ones do, the log holds no secret, `/metrics` and the health endpoints name nothing,
//! request bodies of the JSON endpoints are capped, sign-up cannot take a name in use, every
//! refused login costs the same password check, and upload ids and digests cannot reach
//! outside the store.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::RobotPermission;
use berth_registry::Principal;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";

fn admin() -> Principal {
    Principal::User {
        name: "admin".into(),
        system_admin: true,
    }
}

/// A private project `name`, made by the system administrator in-process.
async fn create_private_project(services: &berth_registry::Registry, name: &str) {
    services
        .admin_create_project(&admin(), name, false)
        .await
        .expect("project");
}

async fn private_project(app: &TestApp, name: &str) {
    create_private_project(app.app.services(), name).await;
}

/// A registry with accounts and `allow_signup` as given.
async fn start(allow_signup: bool) -> TestApp {
    TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
        c.auth.allow_signup = allow_signup;
    })
    .await
}

/// `GET /auth/token` with `authorization` for `scopes`; the token.
async fn token(app: &TestApp, authorization: &str, scopes: &[&str]) -> String {
    let r = token_response(app, Some(authorization), scopes, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    body["token"].as_str().expect("token").to_string()
}

/// Status, OCI error code and challenge (with `repository` written as `<repo>`) of one request.
async fn answer(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    repository: &str,
) -> (u16, String, String) {
    let mut req = reqwest::Client::new().request(method, app.url(path));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replace(repository, "<repo>");
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, challenge)
}

/// An outsider cannot tell a private repository from one that does not exist: without
/// credentials, with an account that is no member (Basic) and with that account's token, every
/// read of the private `vault/app` answers exactly as the same read of `nowhere/app` (a
/// project that does not exist), blob digests and referrers included.
#[tokio::test]
async fn private_and_missing_repositories_look_alike() {
    let mut app = start(false).await;
    private_project(&app, "vault").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let (_, manifest) = app.push_image("vault/app", "v1", "vault").await;
    let layer = app.push_blob("vault/app", b"a private layer").await;
    app.app
        .services()
        .create_account("mallory", "mallory-pw-1", false, false)
        .await
        .expect("mallory");
    let mallory = basic("mallory", "mallory-pw-1");
    let bearer = format!(
        "Bearer {}",
        token(
            &app,
            &mallory,
            &[
                "repository:vault/app:pull,push,delete",
                "repository:nowhere/app:pull,push,delete"
            ]
        )
        .await
    );
    for authorization in [None, Some(mallory.as_str()), Some(bearer.as_str())] {
        for (method, path) in [
            (Method::GET, "/v2/{repo}/manifests/v1".to_string()),
            (Method::HEAD, format!("/v2/{{repo}}/manifests/{manifest}")),
            (Method::GET, format!("/v2/{{repo}}/blobs/{layer}")),
            (Method::HEAD, format!("/v2/{{repo}}/blobs/{layer}")),
            (Method::GET, "/v2/{repo}/tags/list".to_string()),
            (Method::GET, format!("/v2/{{repo}}/referrers/{manifest}")),
            (Method::POST, "/v2/{repo}/blobs/uploads/".to_string()),
            (Method::DELETE, format!("/v2/{{repo}}/manifests/{manifest}")),
        ] {
            let private = answer(
                &app,
                method.clone(),
                &path.replace("{repo}", "vault/app"),
                authorization,
                "vault/app",
            )
            .await;
            let missing = answer(
                &app,
                method.clone(),
                &path.replace("{repo}", "nowhere/app"),
                authorization,
                "nowhere/app",
            )
            .await;
            assert_eq!(private, missing, "{method} {path} as {authorization:?}");
            assert!(
                matches!(private.0, 401 | 403),
                "{method} {path} as {authorization:?}: {private:?}"
            );
        }
    }
    // The catalog leaves it out for them.
    for authorization in [&mallory, &bearer] {
        let r = reqwest::Client::new()
            .get(app.url("/v2/_catalog"))
            .header("authorization", authorization)
            .send()
            .await
            .expect("catalog");
        let body: Value = r.json().await.expect("json");
        assert!(
            !body.to_string().contains("vault"),
            "{authorization}: {body}"
        );
    }
}

/// Everything `berth serve` logs, as text: each event's target, level and fields (spans too).
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl tracing::Subscriber for CapturedLog {
    /// What the default `log = "info"` writes, and berth's own debug events on top.
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
            || (metadata.target().starts_with("berth")
                && *metadata.level() <= tracing::Level::DEBUG)
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = self.0.lock().expect("log lock");
        let _ = write!(text, "span {}", span.metadata().name());
        span.record(&mut Fields(&mut text));
        text.push('\n');
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut text = self.0.lock().expect("log lock");
        values.record(&mut Fields(&mut text));
        text.push('\n');
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = self.0.lock().expect("log lock");
        let m = event.metadata();
        let _ = write!(text, "{} {}", m.level(), m.target());
        event.record(&mut Fields(&mut text));
        text.push('\n');
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Passwords (right and wrong), robot secrets, access and refresh tokens and secrets in query
/// strings go through every way in: Basic and Bearer on `/v2` and the management API, both
/// token grants, sign-up, a password change, a robot login. None of them reaches the log,
/// whose request lines and failed-login lines are there.
#[tokio::test]
async fn the_log_holds_no_passwords_secrets_or_tokens() {
    let log = CapturedLog::default();
    // The server runs on this test's thread (a current-thread runtime): its events come here.
    let _guard = tracing::subscriber::set_default(log.clone());
    let mut app = start(true).await;
    let http = reqwest::Client::new();
    let admin_basic = basic("admin", ADMIN_PASSWORD);
    app.authorize(Some(&admin_basic));
    private_project(&app, "team").await;
    app.push_image("team/web", "v1", "logged").await;

    let mut secrets: Vec<String> = vec![ADMIN_PASSWORD.into()];
    let api = |method: Method, path: &str, authorization: Option<&str>, body: Value| {
        let mut req = http
            .request(method, app.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        req.send()
    };
    // An account made by the administrator, a password change, a sign-up.
    let r = api(
        Method::POST,
        "/api/v1/users",
        Some(&admin_basic),
        json!({"name": "bob", "password": "bob-first-Secret-1"}),
    )
    .await
    .expect("create bob");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = api(
        Method::PUT,
        "/api/v1/users/bob/password",
        Some(&basic("bob", "bob-first-Secret-1")),
        json!({"password": "bob-second-Secret-2"}),
    )
    .await
    .expect("password");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api(
        Method::POST,
        "/api/v1/signup",
        None,
        json!({"name": "carol", "password": "carol-signup-Secret-3"}),
    )
    .await
    .expect("signup");
    assert_eq!(r.status(), StatusCode::CREATED);
    secrets.extend(
        [
            "bob-first-Secret-1",
            "bob-second-Secret-2",
            "carol-signup-Secret-3",
        ]
        .map(String::from),
    );
    // Wrong passwords: on /v2, at the token endpoint, on the management API.
    for (path, password) in [
        ("/v2/", "Wrong-guess-Secret-4"),
        ("/auth/token?service=berth", "Wrong-guess-Secret-5"),
        ("/api/v1/projects", "Wrong-guess-Secret-6"),
    ] {
        let r = http
            .get(app.url(path))
            .header("authorization", basic("bob", password))
            .send()
            .await
            .expect("wrong password");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        secrets.push(password.into());
    }
    // A robot's secret as Basic credentials.
    let robot = app
        .app
        .services()
        .admin_create_robot(
            &admin(),
            "ci",
            vec![RobotPermission {
                project: "team".into(),
                actions: vec!["pull".into()],
            }],
            None,
        )
        .await
        .expect("robot");
    let r = http
        .get(app.url("/v2/team/web/manifests/v1"))
        .header("authorization", basic(&robot.login, &robot.secret))
        .send()
        .await
        .expect("robot pull");
    assert_eq!(r.status(), StatusCode::OK);
    secrets.push(robot.secret.clone());
    // Tokens: GET with Basic, the OAuth2 password grant with a refresh token, the refresh
    // grant; each used as Bearer, and a forged one refused.
    let access = token(&app, &admin_basic, &["repository:team/web:pull"]).await;
    let form = |fields: &[(&str, &str)]| serde_urlencoded::to_string(fields).expect("form");
    let r = http
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-second-Secret-2"),
            ("service", "berth"),
            ("access_type", "offline"),
        ]))
        .send()
        .await
        .expect("password grant");
    let granted: Value = r.json().await.expect("json");
    let refresh = granted["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let r = http
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "berth"),
            ("scope", "repository:bob/x:pull"),
        ]))
        .send()
        .await
        .expect("refresh grant");
    let refreshed: Value = r.json().await.expect("json");
    let refreshed = refreshed["token"].as_str().expect("token").to_string();
    for t in [&access, &refreshed] {
        let r = http
            .get(app.url("/v2/team/web/tags/list"))
            .bearer_auth(t)
            .send()
            .await
            .expect("bearer");
        assert!(r.status().is_success() || r.status() == StatusCode::UNAUTHORIZED);
    }
    let forged = format!("{access}Forged-Secret-7");
    let r = http
        .get(app.url("/v2/"))
        .bearer_auth(&forged)
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Secrets a careless client puts into query strings.
    for path in [
        "/v2/?password=Query-Secret-8",
        "/v2/team/web/tags/list?access_token=Query-Secret-9",
        "/auth/token?service=berth&password=Query-Secret-10",
    ] {
        let _ = http
            .get(app.url(path))
            .header("authorization", &admin_basic)
            .send()
            .await
            .expect("query secret");
    }
    secrets.extend(
        [
            "Forged-Secret-7",
            "Query-Secret-8",
            "Query-Secret-9",
            "Query-Secret-10",
        ]
        .map(String::from),
    );
    for t in [&access, &refresh, &refreshed] {
        // The whole token, and its signature alone.
        secrets.push(t.clone());
        secrets.push(t.rsplit('.').next().expect("signature").to_string());
    }

    let text = log.0.lock().expect("log lock").clone();
    assert!(
        text.contains("failed login") && text.contains("route=manifest"),
        "the capture sees the server's events:\n{text}"
    );
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is in the log:\n{text}"
        );
    }
    // Nor the Basic credentials as sent (base64).
    assert!(!text.contains(admin_basic.trim_start_matches("Basic ")));
}

/// `/metrics`, `/healthz` and `/readyz` need no credentials and name no repository, project,
/// account or address: only routes, methods, statuses and counts.
#[tokio::test]
async fn metrics_and_health_name_no_repository_or_account() {
    let mut app = start(false).await;
    private_project(&app, "hidden-project").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    app.push_image("hidden-project/secret-repo", "v1", "metrics")
        .await;
    app.authorize(Some(&basic("someone-else", "wrong-password")));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    for replica in &app.replicas {
        for path in ["/metrics", "/healthz", "/readyz"] {
            let r = reqwest::get(format!("http://{replica}{path}"))
                .await
                .expect("GET");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let text = r.text().await.expect("text");
            for name in [
                "hidden-project",
                "secret-repo",
                "someone-else",
                "admin",
                "127.0.0.1",
            ] {
                assert!(!text.contains(name), "{path} names {name}:\n{text}");
            }
        }
    }
}

/// The JSON and form bodies of the management API, sign-up and the token endpoint are read
/// whole before parsing, so they are capped (axum's 2 MiB default): 3 MiB is refused with 413
/// before any account is checked.
#[tokio::test]
async fn management_and_token_request_bodies_are_capped() {
    let app = start(true).await;
    let http = reqwest::Client::new();
    let big = format!(
        "{{\"name\":\"x\",\"password\":\"{}\"}}",
        "p".repeat(3 << 20)
    );
    for (path, content_type, authorization) in [
        (
            "/api/v1/projects",
            "application/json",
            Some(basic("admin", ADMIN_PASSWORD)),
        ),
        ("/api/v1/signup", "application/json", None),
        (
            "/auth/token",
            "application/x-www-form-urlencoded",
            Some(basic("admin", ADMIN_PASSWORD)),
        ),
    ] {
        let mut req = http
            .post(app.url(path))
            .header("content-type", content_type)
            .body(big.clone());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        match req.send().await {
            Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}"),
            // The server answers 413 from the length and closes; a client (or the replicas'
            // balancer) still sending the body may see the connection reset instead.
            Err(e) => assert!(e.is_request(), "{path}: {e}"),
        }
    }
    // Nobody got an account from it.
    let users = app
        .app
        .services()
        .admin_users(&admin())
        .await
        .expect("users");
    assert_eq!(users.len(), 1, "only admin");
}

/// Sign-up is closed unless `allow_signup`; when open, it cannot take the name of an account,
/// of a project (it would become that project's admin) or a reserved name, and it never makes
/// a system administrator.
#[tokio::test]
async fn sign_up_is_closed_by_default_and_cannot_take_a_name_in_use() {
    let closed = start(false).await;
    let http = reqwest::Client::new();
    let signup = |app: &TestApp, body: Value| {
        http.post(app.url("/api/v1/signup"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = signup(&closed, json!({"name": "alice", "password": "alice-pw-1"}))
        .await
        .expect("signup");
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;

    let mut app = start(true).await;
    private_project(&app, "team").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    app.push_image("team/web", "v1", "team").await;
    app.app
        .services()
        .create_account("bob", "bob-pw-123", false, false)
        .await
        .expect("bob");
    for name in ["team", "bob", "admin", "library"] {
        let r = signup(&app, json!({"name": name, "password": "takeover-pw-1"}))
            .await
            .expect("signup");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        let r = reqwest::Client::new()
            .get(app.url("/v2/team/web/manifests/v1"))
            .header("authorization", basic(name, "takeover-pw-1"))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    let r = signup(
        &app,
        json!({"name": "eve", "password": "eve-pw-123", "admin": true}),
    )
    .await
    .expect("signup");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no such field");
    let r = signup(&app, json!({"name": "eve", "password": "eve-pw-123"}))
        .await
        .expect("signup");
    assert_eq!(r.status(), StatusCode::CREATED);
    let (eve, _) = app
        .app
        .access()
        .authenticate_password("eve", "eve-pw-123")
        .await
        .expect("login")
        .expect("eve");
    assert_eq!(
        eve,
        Principal::User {
            name: "eve".into(),
            system_admin: false
        }
    );
}

/// The shortest of three runs of `authenticate_password(user, password)`, which must refuse.
async fn refusal_time(app: &TestApp, user: &str, password: &str) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let found = app
            .app
            .access()
            .authenticate_password(user, password)
            .await
            .expect("authenticate");
        best = best.min(t.elapsed());
        assert!(found.is_none(), "{user} is refused");
    }
    best
}

/// Whatever the reason a login is refused (no such user or robot, a disabled or expired
/// account, a wrong password), it costs one argon2 check, so its time does not tell which
/// names exist or which accounts are disabled. (A check takes tens of milliseconds; a refusal
/// without one, well under one.)
#[tokio::test]
async fn refused_logins_cost_one_password_check_whatever_the_reason() {
    let app = start(false).await;
    let services = app.app.services();
    create_private_project(services, "team").await;
    services
        .create_account("live", "live-pw-123", false, false)
        .await
        .expect("live");
    services
        .create_account("off", "off-pw-123", false, false)
        .await
        .expect("off");
    app.meta()
        .await
        .set_user_disabled("off", true)
        .await
        .expect("disable");
    let pull = || {
        vec![RobotPermission {
            project: "team".into(),
            actions: vec!["pull".into()],
        }]
    };
    let bot = services
        .admin_create_robot(&admin(), "bot", pull(), None)
        .await
        .expect("robot");
    let idle = services
        .admin_create_robot(&admin(), "idle", pull(), None)
        .await
        .expect("robot");
    services
        .admin_set_robot_disabled(&admin(), "idle", true)
        .await
        .expect("disable robot");
    let old = services
        .admin_create_robot(&admin(), "old", pull(), Some(services.clock().now() - 60))
        .await
        .expect("robot");

    let reference = refusal_time(&app, "live", "wrong-password").await;
    for (user, password) in [
        ("nobody", "wrong-password"),
        ("off", "off-pw-123"),
        ("robot$ghost", "wrong-password"),
        (bot.login.as_str(), "wrong-password"),
        (idle.login.as_str(), idle.secret.as_str()),
        (old.login.as_str(), old.secret.as_str()),
    ] {
        let took = refusal_time(&app, user, password).await;
        assert!(
            took >= reference / 4,
            "{user}: refused in {took:?}, a wrong password for a live account in {reference:?}"
        );
    }
}

/// Upload session ids and digests are checked before any path is built: ids that walk out of
/// `uploads/` are unknown sessions, digests that do are invalid (or no route), and nothing
/// outside the store is touched.
#[tokio::test]
async fn upload_ids_and_digests_cannot_reach_outside_the_store() {
    let app = TestApp::start().await;
    app.push_image("a/b", "v1", "outside").await;
    let meta_db = app.config.data_dir.join("meta.db");
    let before = std::fs::metadata(&meta_db).map(|m| m.len()).ok();
    for id in [
        "..%2F..%2Fmeta.db",
        "..%2Fblobs",
        "%2e%2e",
        "..",
        "a%00b",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV%2F..%2F..%2Fmeta.db",
    ] {
        let path = format!("/v2/a/b/blobs/uploads/{id}");
        for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            let query = if method == Method::PUT {
                format!("?digest={}", sha256(b"x"))
            } else {
                String::new()
            };
            let r = app
                .req(method.clone(), &format!("{path}{query}"))
                .body(b"x".to_vec())
                .send()
                .await
                .expect("request");
            let status = r.status();
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
                "{method} {path}: {status}"
            );
        }
    }
    for digest in [
        "sha256:..%2F..%2Fmeta.db",
        "sha256:%2e%2e",
        "sha256:../../meta.db",
    ] {
        let (code, body) = app
            .raw(&format!(
                "GET /v2/a/b/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ))
            .await;
        // Refused as a digest, or (`..` making more path segments) as no route at all.
        assert!(
            (code == 400 && body.contains("DIGEST_INVALID"))
                || (code == 404 && body.contains("UNSUPPORTED")),
            "{digest}: {code} {body}"
        );
    }
    if !scaled_out() {
        let after = std::fs::metadata(&meta_db).map(|m| m.len()).ok();
        assert_eq!(before.is_some(), after.is_some(), "meta.db still there");
        let stray: Vec<_> = std::fs::read_dir(app.config.data_dir.join("uploads"))
            .expect("uploads")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(stray.is_empty(), "no file written in uploads/: {stray:?}");
    }
    assert_eq!(
        app.get("/v2/a/b/manifests/v1").await.status(),
        StatusCode::OK
    );
}

/// Deleting a blob link needs `delete` (maintainer), cancelling or reading an upload session
/// needs `push` (developer): a guest gets 403 for both and the blob and session stay.
#[tokio::test]
async fn blob_deletes_need_delete_and_upload_sessions_need_push() {
    let mut app = start(false).await;
    let services = app.app.services();
    create_private_project(services, "team").await;
    let meta = app.meta().await;
    for (name, role) in [
        ("gina", berth_meta::Role::Guest),
        ("dev", berth_meta::Role::Developer),
    ] {
        services
            .create_account(name, &format!("{name}-pw-123"), false, false)
            .await
            .expect("account");
        meta.set_member("team", name, role).await.expect("member");
    }
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let layer = app.push_blob("team/web", b"a layer to keep").await;
    let session = app.open_session("team/web").await;
    let blob = format!("/v2/team/web/blobs/{layer}");

    app.authorize(Some(&basic("gina", "gina-pw-123")));
    assert_eq!(
        app.head(&blob).await.status(),
        StatusCode::OK,
        "guests pull"
    );
    for (method, path) in [
        (Method::DELETE, blob.as_str()),
        (Method::DELETE, session.as_str()),
        (Method::GET, session.as_str()),
        (Method::PATCH, session.as_str()),
    ] {
        let r = app
            .req(method.clone(), path)
            .body(b"x".to_vec())
            .send()
            .await
            .expect("request");
        assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    }
    app.authorize(Some(&basic("dev", "dev-pw-123")));
    let r = app.req(Method::DELETE, &blob).send().await.expect("DELETE");
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    assert_eq!(
        app.head(&blob).await.status(),
        StatusCode::OK,
        "still linked"
    );
    let r = app.get(&session).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&r, "range"),
        "0-0",
        "nothing written into the session"
    );
}

/// Project settings (usage, the retention policy, a retention run) are for the project's
/// admins; the quota, immutable-tag rules and garbage collection for system administrators.
/// A maintainer gets 403; an account that is no member of the private project gets 404 for
/// its settings (as for a missing project) and 403 for what only system administrators do.
#[tokio::test]
async fn lifecycle_settings_need_a_project_admin_or_a_system_administrator() {
    let app = start(false).await;
    let services = app.app.services();
    create_private_project(services, "team").await;
    let meta = app.meta().await;
    for (name, role) in [
        ("pat", Some(berth_meta::Role::Admin)),
        ("mia", Some(berth_meta::Role::Maintainer)),
        ("nora", None),
    ] {
        services
            .create_account(name, &format!("{name}-pw-123"), false, false)
            .await
            .expect("account");
        if let Some(role) = role {
            meta.set_member("team", name, role).await.expect("member");
        }
    }
    let http = reqwest::Client::new();
    // (method, path, body, whether a project admin may)
    let requests = [
        (Method::GET, "/api/v1/projects/team/usage", None, true),
        (Method::GET, "/api/v1/projects/team/retention", None, true),
        (
            Method::PUT,
            "/api/v1/projects/team/retention",
            Some(json!({"rules": [{"keep_last": 5}]})),
            true,
        ),
        (
            Method::POST,
            "/api/v1/projects/team/retention/run",
            Some(json!({"dry_run": true})),
            true,
        ),
        (
            Method::PUT,
            "/api/v1/projects/team/quota",
            Some(json!({"quota_bytes": 1000})),
            false,
        ),
        (
            Method::PUT,
            "/api/v1/projects/team/immutable-tags",
            Some(json!({"patterns": ["v*"]})),
            false,
        ),
        (
            Method::POST,
            "/api/v1/gc",
            Some(json!({"dry_run": true})),
            false,
        ),
    ];
    for (method, path, body, project_admin_may) in requests {
        for (user, password) in [
            ("nora", "nora-pw-123"),
            ("mia", "mia-pw-123"),
            ("pat", "pat-pw-123"),
            ("admin", ADMIN_PASSWORD),
        ] {
            let mut req = http
                .request(method.clone(), app.url(path))
                .header("authorization", basic(user, password));
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let status = req.send().await.expect("request").status();
            let expected = match user {
                "admin" => status.is_success(),
                "pat" if project_admin_may => status.is_success(),
                "nora" if project_admin_may => status == StatusCode::NOT_FOUND,
                _ => status == StatusCode::FORBIDDEN,
            };
            assert!(expected, "{user}: {method} {path}: {status}");
        }
    }
}

/// Runs `openssl s_client` against `addr` with `args`; its output.
async fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(addr.to_string())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("s_client within 20 s")
    .expect("run openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// HTTPS speaks TLS 1.2 and 1.3 only, and in TLS 1.2 only ECDHE key exchange with AEAD
/// ciphers (AES-GCM, ChaCha20-Poly1305): every TLS 1.2 suite OpenSSL knows is offered on its
/// own, with an EC and with an RSA certificate, and only those are accepted. TLS 1.0 and 1.1
/// are refused by the server (an alert). Needs the `openssl` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_offers_only_tls_1_2_and_1_3_with_ecdhe_and_aead() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no openssl command");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ciphers = std::process::Command::new("openssl")
        .args(["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
        .output()
        .expect("openssl ciphers");
    let tls12: Vec<String> = String::from_utf8_lossy(&ciphers.stdout)
        .trim()
        .split(':')
        .filter(|c| !c.starts_with("TLS_"))
        .map(String::from)
        .collect();
    assert!(tls12.len() > 20, "{tls12:?}");
    for key in [
        vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        vec!["-newkey", "rsa:2048"],
    ] {
        let (cert, keyfile) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .args(&key)
            .arg("-keyout")
            .arg(&keyfile)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl req");
        assert!(made.status.success(), "{made:?}");
        let config = berth_server::Config {
            data_dir: dir.path().join(format!("data-{}", key[1])),
            ..berth_server::Config::default()
        };
        let mut config = config;
        config.auth.enabled = false;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let app = berth_server::App::open(config).await.expect("app");
        let tls = berth_server::ServerTls::from_pem_files(&cert, &keyfile).expect("tls");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(berth_server::serve_tls(listener, app, tls, async {
            let _ = stopped.await;
        }));

        for old in ["-tls1", "-tls1_1"] {
            let out = s_client(addr, &[old, "-cipher", "DEFAULT@SECLEVEL=0"]).await;
            assert!(
                out.contains("alert") && out.contains("Cipher is (NONE)"),
                "{} {old}: {out}",
                key[1]
            );
        }
        let out = s_client(addr, &["-tls1_3"]).await;
        assert!(out.contains("New, TLSv1.3, Cipher is TLS_"), "{out}");
        let mut accepted = Vec::new();
        for cipher in &tls12 {
            let out = s_client(
                addr,
                &["-tls1_2", "-cipher", &format!("{cipher}:@SECLEVEL=0")],
            )
            .await;
            if out.contains("New, TLSv1.2, Cipher is ") && !out.contains("Cipher is (NONE)") {
                accepted.push(cipher.clone());
            }
        }
        assert!(!accepted.is_empty(), "{}: no TLS 1.2 suite at all", key[1]);
        for cipher in &accepted {
            assert!(
                cipher.starts_with("ECDHE-")
                    && (cipher.contains("GCM") || cipher.contains("CHACHA20")),
                "{}: accepted {cipher} (all accepted: {accepted:?})",
                key[1]
            );
        }
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }
}

/// A failure inside the server (here: the store's `uploads/` directory gone) answers 500 with
/// a fixed message; the path and the OS error stay in the log.
#[tokio::test]
async fn internal_errors_tell_the_client_nothing_of_the_server() {
    if scaled_out() {
        eprintln!("skipped on replicas: breaks the filesystem store of the embedded pass");
        return;
    }
    let app = TestApp::start().await;
    let session = app.open_session("a").await;
    let uploads = app.config.data_dir.join("uploads");
    std::fs::remove_dir_all(&uploads).expect("rm uploads");
    let r = app
        .req(Method::PATCH, &session)
        .body(vec![7u8; 1000])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.text().await.expect("body");
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["errors"][0]["code"], "UNKNOWN", "{body}");
    assert_eq!(
        v["errors"][0]["message"],
        "internal server error; the server log has the details"
    );
    let dir = app.config.data_dir.display().to_string();
    for leak in [dir.as_str(), "uploads", "os error", "No such file"] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    std::fs::create_dir(&uploads).expect("mkdir uploads");
}

/// Query parameters that reach SQL (`last=` of tags/list and the catalog, the audit log's
/// filters) are bound as data: SQL in them selects nothing extra and breaks nothing.
#[tokio::test]
async fn sql_in_query_parameters_is_data() {
    let mut app = start(false).await;
    private_project(&app, "team").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    app.push_image("team/web", "v1", "sql").await;
    app.push_image("team/web", "v2", "sql").await;
    let injection = "' OR '1'='1' --";
    let q = |k: &str| serde_urlencoded::to_string([(k, injection)]).expect("query");
    let r = app
        .get(&format!("/v2/team/web/tags/list?{}", q("last")))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let tags: Value = r.json().await.expect("json");
    assert_eq!(
        tags["tags"],
        json!(["v1", "v2"]),
        "tags after \"'\" sort after it"
    );
    let r = app.get(&format!("/v2/_catalog?{}", q("last"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .get(&format!("/v2/team/web/tags/list?n=1&last=v1{}", "%27%3B--"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for key in ["actor", "project"] {
        let r = app.get(&format!("/api/v1/audit?{}", q(key))).await;
        assert_eq!(r.status(), StatusCode::OK, "{key}");
        let events: Value = r.json().await.expect("json");
        assert_eq!(events, json!([]), "{key}: nothing matches");
    }
    // Everything is still there.
    let tags: Value = app
        .get("/v2/team/web/tags/list")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(tags["tags"], json!(["v1", "v2"]));
}

/// A token request names any number of scopes, but only the first 32 are looked at (each
/// costs database reads): a request for 500 repositories gets a token for 32 at most.
#[tokio::test]
async fn a_token_request_reads_at_most_32_scopes() {
    let app = start(false).await;
    let scopes: Vec<String> = (0..500)
        .map(|i| format!("repository:admin/r{i}:pull"))
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let t = token(&app, &basic("admin", ADMIN_PASSWORD), &scopes).await;
    let payload = t.split('.').nth(1).expect("payload");
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    let access = claims["access"].as_array().expect("access");
    assert!(access.len() <= 32, "{} entries", access.len());
}

/// Without accounts (`[auth] enabled = false`, the open development registry) the
/// management API does not exist: nobody can create accounts, change settings or collect
/// garbage through it, and sign-up is closed.
#[tokio::test]
async fn the_management_api_is_off_without_accounts() {
    let app = TestApp::start().await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/users", None),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": "x", "password": "x-password"})),
        ),
        (Method::POST, "/api/v1/projects", Some(json!({"name": "p"}))),
        (Method::POST, "/api/v1/gc", Some(json!({"dry_run": true}))),
        (Method::GET, "/api/v1/audit", None),
    ] {
        let mut req = app.req(method.clone(), path);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request");
        assert_error(r, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
    }
    let r = app
        .req(Method::POST, "/api/v1/signup")
        .header("content-type", "application/json")
        .body(json!({"name": "x", "password": "x-password"}).to_string())
        .send()
        .await
        .expect("signup");
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
}
