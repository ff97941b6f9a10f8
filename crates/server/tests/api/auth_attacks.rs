//! Attacks on accounts and tokens that `auth.rs` does not cover: tokens past their time or
//! signed for someone else, an expired robot account, names that try to walk out of the
//! repository the credentials are for, and oversized `Authorization` headers.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use berth_meta::RobotPermission;
use berth_registry::Principal;
use berth_registry::token::{AccountClaim, ResourceAccess, SigningKey, TokenIssuer};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";

fn admin() -> Principal {
    Principal::User {
        name: "admin".into(),
        system_admin: true,
    }
}

/// A registry with accounts, the private project `team` and `team/web:v1` pushed by the
/// administrator, who stays signed in with Basic credentials.
async fn start() -> TestApp {
    start_with_clock(berth_meta::system_clock()).await
}

async fn start_with_clock(clock: berth_meta::SharedClock) -> TestApp {
    let mut app = TestApp::start_with_clock(clock, |c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
    })
    .await;
    app.app
        .services()
        .admin_create_project(&admin(), "team", false)
        .await
        .expect("project");
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    app.push_image("team/web", "v1", "team").await;
    app
}

/// Sends `GET path` with `authorization` (and nothing else).
async fn get_with(app: &TestApp, path: &str, authorization: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .header("authorization", authorization)
        .send()
        .await
        .expect("GET")
}

/// A token from `/auth/token`, which must answer 200.
async fn token(app: &TestApp, authorization: Option<&str>, scopes: &[&str]) -> String {
    let r = token_response(app, authorization, scopes, false).await;
    assert_eq!(r.status(), StatusCode::OK, "token for {scopes:?}");
    let body: Value = r.json().await.expect("token json");
    body["token"].as_str().expect("token").to_string()
}

/// The `access` claim of a token.
fn access(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("claims");
    claims["access"].clone()
}

/// A 401 `UNAUTHORIZED` whose challenge is not `insufficient_scope`: the token itself was
/// refused, not merely found short.
async fn assert_token_refused(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = header(&r, "www-authenticate").to_string();
    assert!(
        challenge.starts_with("Bearer realm=") && !challenge.contains("insufficient_scope"),
        "{what}: {challenge}"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_out_of_their_time_or_for_another_service_are_refused() {
    let app = start().await;
    // The app's own signing key, as every replica reads it from the metadata database; the
    // tokens below are minted with it and the real issuer code, only the clock or the claims
    // differ from what `/auth/token` would sign.
    let meta = app.meta().await;
    let unused = SigningKey::generate().expect("candidate key");
    let pkcs8 = meta.signing_key(unused.pkcs8()).await.expect("stored key");
    assert_ne!(pkcs8, unused.pkcs8(), "the app stored its key at start");
    let issuer = |iss: &str, aud: &str| {
        TokenIssuer::new(
            SigningKey::from_pkcs8(&pkcs8).expect("key"),
            iss,
            aud,
            Duration::from_secs(300),
        )
    };
    let pull = || vec![ResourceAccess::repository("team/web", &["pull"])];
    // The account as `/auth/token` names it: its id and token stamp.
    let admin = meta.user("admin").await.expect("user").expect("admin");
    let account = AccountClaim {
        id: admin.id,
        stamp: admin.token_stamp,
    };
    let mint = |issuer: TokenIssuer, at: SystemTime| {
        let t = issuer
            .issue_to("admin", Some(account.clone()), pull(), at)
            .expect("issue");
        format!("Bearer {}", t.token)
    };
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let manifest = "/v2/team/web/manifests/v1";

    // Minted now, it is a token like any other: the key is the app's.
    let r = get_with(&app, manifest, &mint(issuer("berth", "berth"), now)).await;
    assert_eq!(r.status(), StatusCode::OK);

    let expired = mint(issuer("berth", "berth"), now - hour);
    assert_token_refused(get_with(&app, manifest, &expired).await, "expired").await;
    assert_token_refused(get_with(&app, "/v2/", &expired).await, "expired, /v2/").await;
    let early = mint(issuer("berth", "berth"), now + hour);
    assert_token_refused(get_with(&app, manifest, &early).await, "not yet valid").await;
    let elsewhere = mint(issuer("berth", "another-service"), now);
    assert_token_refused(get_with(&app, manifest, &elsewhere).await, "audience").await;
    let stranger = mint(issuer("someone-else", "berth"), now);
    assert_token_refused(get_with(&app, manifest, &stranger).await, "issuer").await;
    // Signed with the right key, but naming no account, or another stamp of it: a token
    // from before the account's password changed, or never issued by `/auth/token`.
    let unnamed = issuer("berth", "berth")
        .issue("admin", pull(), now)
        .expect("issue");
    let unnamed = format!("Bearer {}", unnamed.token);
    assert_token_refused(get_with(&app, manifest, &unnamed).await, "no account").await;
    let stale = AccountClaim {
        stamp: account.stamp + 1,
        ..account.clone()
    };
    let stale = issuer("berth", "berth")
        .issue_to("admin", Some(stale), pull(), now)
        .expect("issue");
    let stale = format!("Bearer {}", stale.token);
    assert_token_refused(get_with(&app, manifest, &stale).await, "another stamp").await;
    assert_token_refused(
        get_with(&app, "/api/v1/users", &expired).await,
        "expired, management API",
    )
    .await;

    // Another berth with the same service name, accounts and project, but its own key: its
    // token opens its own registry and not this one.
    let mut other = start().await;
    other.authorize(None);
    let foreign = format!(
        "Bearer {}",
        token(
            &other,
            Some(&basic("admin", ADMIN_PASSWORD)),
            &["repository:team/web:pull"],
        )
        .await
    );
    assert_eq!(
        get_with(&other, manifest, &foreign).await.status(),
        StatusCode::OK
    );
    assert_token_refused(get_with(&app, manifest, &foreign).await, "foreign").await;
    assert_token_refused(get_with(&app, "/v2/", &foreign).await, "foreign, /v2/").await;

    // A token is not a login: the token endpoint does not take one as credentials.
    let own = format!(
        "Bearer {}",
        token(&app, Some(&basic("admin", ADMIN_PASSWORD)), &[]).await
    );
    let r = token_response(&app, Some(&own), &["repository:team/web:pull"], false).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_robot_account_is_refused_everywhere() {
    let clock = berth_meta::ManualClock::starting_now();
    let app = start_with_clock(clock.clone()).await;
    let registry = app.app.services();
    let now = registry.clock().now();
    let pull = || {
        vec![RobotPermission {
            project: "team".into(),
            actions: vec!["pull".into()],
        }]
    };
    let live = registry
        .admin_create_robot(&admin(), "live", pull(), None)
        .await
        .expect("robot");
    let old = registry
        .admin_create_robot(&admin(), "old", pull(), Some(now - 60))
        .await
        .expect("robot");
    let soon = registry
        .admin_create_robot(&admin(), "soon", pull(), Some(now + 3))
        .await
        .expect("robot");
    let manifest = "/v2/team/web/manifests/v1";

    // The same grant, unexpired: Basic and the token flow both work.
    let live_basic = basic(&live.login, &live.secret);
    assert_eq!(
        get_with(&app, manifest, &live_basic).await.status(),
        StatusCode::OK
    );
    let t = token(&app, Some(&live_basic), &["repository:team/web:pull"]).await;
    assert_eq!(
        access(&t),
        serde_json::json!([{"type": "repository", "name": "team/web", "actions": ["pull"]}])
    );

    // Expired: refused as a failed login on /v2 and at the token endpoint, both grants.
    // (Four failures: the fifth would lock the account out.)
    let old_basic = basic(&old.login, &old.secret);
    for path in [manifest, "/v2/"] {
        assert_error(
            get_with(&app, path, &old_basic).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        )
        .await;
    }
    let r = token_response(&app, Some(&old_basic), &["repository:team/web:pull"], false).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = post_token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", old.login.as_str()),
            ("password", old.secret.as_str()),
            ("service", "berth"),
            ("scope", "repository:team/web:pull"),
        ],
    )
    .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // A token taken while the robot was valid dies with it.
    let soon_basic = basic(&soon.login, &soon.secret);
    let held = format!(
        "Bearer {}",
        token(&app, Some(&soon_basic), &["repository:team/web:pull"]).await
    );
    assert_eq!(
        get_with(&app, manifest, &held).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(4));
    assert_token_refused(get_with(&app, manifest, &held).await, "robot expired").await;
    assert_error(
        get_with(&app, manifest, &soon_basic).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_cannot_walk_out_of_the_granted_repository() {
    let mut app = start().await;
    let layer = app.push_blob("team/web", b"a private layer").await;
    app.app
        .services()
        .create_account("carol", "carol-pw-1", false, false)
        .await
        .expect("carol");
    let carol = basic("carol", "carol-pw-1");
    app.authorize(Some(&carol));
    app.push_image("carol/app", "v1", "carol").await;
    let own_token = format!(
        "Bearer {}",
        token(&app, Some(&carol), &["repository:carol/app:pull,push"]).await
    );

    // Paths that would reach team/web if anything decoded or normalized them: refused as
    // names, with Basic credentials and with a token for carol/app alike.
    for authorization in [&carol, &own_token] {
        for path in [
            "/v2/carol/../team/web/manifests/v1".to_string(),
            "/v2/carol/app/../../team/web/manifests/v1".to_string(),
            "/v2/carol%2F..%2Fteam/web/manifests/v1".to_string(),
            "/v2/team%2Fweb/manifests/v1".to_string(),
            "/v2/%74eam/web/manifests/v1".to_string(),
            "/v2/carol/app/%2e%2e/%2e%2e/team/web/manifests/v1".to_string(),
            format!("/v2/carol/app/../../team/web/blobs/{layer}"),
            "/v2/carol/app/../../team/web/blobs/uploads/".to_string(),
        ] {
            let (code, body) = app
                .raw(&format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\
                     Connection: close\r\n\r\n"
                ))
                .await;
            assert_eq!(code, 400, "{path}: {body}");
            assert!(body.contains("NAME_INVALID"), "{path}: {body}");
        }
        // In the reference or the upload id, a walk is a plain miss in carol's repository.
        let (code, body) = app
            .raw(&format!(
                "GET /v2/carol/app/manifests/..%2F..%2Fteam%2Fweb%2Fmanifests%2Fv1 HTTP/1.1\r\n\
                 Host: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(
            (code, body.contains("MANIFEST_UNKNOWN")),
            (404, true),
            "{body}"
        );
    }

    // Scopes that try the same at the token endpoint grant nothing on team/web.
    for scope in [
        "repository:carol/../team/web:pull",
        "repository:carol/app/../../team/web:pull",
        "repository:team%2Fweb:pull",
        "repository:TEAM/web:pull",
        "repository:team/web:*",
        "repository:team/web:pull:push",
        "repository:carol/app:pull repository:team/web:pull",
    ] {
        let t = token(&app, Some(&carol), &[scope]).await;
        let claims = access(&t);
        let granted: Vec<&Value> = claims
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| !e["actions"].as_array().is_none_or(Vec::is_empty))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            granted.iter().all(|e| e["name"] == "carol/app"),
            "{scope}: {granted:?}"
        );
        let r = get_with(&app, "/v2/team/web/manifests/v1", &format!("Bearer {t}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{scope}");
    }

    // An upload session of team/web, reached through carol's repository or directly.
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let session = app.open_session("team/web").await;
    let id = session.rsplit('/').next().expect("session id").to_string();
    app.authorize(Some(&carol));
    let hijack = format!("/v2/carol/app/blobs/uploads/{id}");
    let r = app
        .req(Method::PATCH, &hijack)
        .header("content-type", "application/octet-stream")
        .body(b"injected".to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let injected = sha256(b"injected");
    let r = app
        .req(Method::PUT, &format!("{hijack}?digest={injected}"))
        .body(b"injected".to_vec())
        .send()
        .await
        .expect("PUT");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = app
        .req(Method::PATCH, &session)
        .body(b"injected".to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let r = app.get(&session).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-0", "nothing was written into it");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_authorization_headers_are_refused_unread() {
    let mut app = start().await;
    app.authorize(None);
    // Over the 8 KiB the server reads, under what HTTP parsing allows.
    let huge_basic = basic("admin", &"p".repeat(9 << 10));
    for _ in 0..6 {
        for path in ["/v2/", "/v2/team/web/manifests/v1", "/api/v1/users"] {
            let r = get_with(&app, path, &huge_basic).await;
            assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
        let r = token_response(
            &app,
            Some(&huge_basic),
            &["repository:team/web:pull"],
            false,
        )
        .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // Refused before the username is even read: 24 of them lock nobody out.
    let r = get_with(&app, "/v2/", &basic("admin", ADMIN_PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A password over the 1 KiB limit in a header under 8 KiB: a wrong password, hashed no
    // more than any other.
    let long_password = basic("admin", &"p".repeat(4 << 10));
    let r = get_with(&app, "/v2/", &long_password).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Far over what HTTP parsing allows: no handler sees it. The server answers 431, or
    // resets the connection when it stops reading the rest, and keeps serving.
    let giant = format!("Bearer {}", "a".repeat(1 << 20));
    let code = status_of_raw(
        &app,
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {giant}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(matches!(code, Some(431) | None), "{code:?}");
    let r = get_with(&app, "/v2/", &basic("admin", ADMIN_PASSWORD)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Sends `request` on a new connection; the status code of the answer, `None` when the
/// connection closed without one. Write errors are not fatal: the server may stop reading.
async fn status_of_raw(app: &TestApp, request: String) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_needs_pull_on_the_source_in_the_token_itself() {
    let mut app = start().await;
    let layer = app.push_blob("team/web", b"a layer to mount").await;
    // The administrator may read team/web, but a token that names only the target repository
    // does not mount from it: the upload starts instead (202), nothing is linked.
    let admin = basic("admin", ADMIN_PASSWORD);
    let narrow = token(&app, Some(&admin), &["repository:team/copy:pull,push"]).await;
    app.authorize(Some(&format!("Bearer {narrow}")));
    let mount = format!("/v2/team/copy/blobs/uploads/?mount={layer}&from=team/web");
    let r = app.req(Method::POST, &mount).send().await.expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "an upload, not a mount");
    let r = app.head(&format!("/v2/team/copy/blobs/{layer}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing linked");
    // With pull on the source in the token, as docker asks for it, the same mount links.
    let both = token(
        &app,
        Some(&admin),
        &["repository:team/copy:pull,push", "repository:team/web:pull"],
    )
    .await;
    app.authorize(Some(&format!("Bearer {both}")));
    let r = app.req(Method::POST, &mount).send().await.expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED, "mounted");
    let r = app.head(&format!("/v2/team/copy/blobs/{layer}")).await;
    assert_eq!(r.status(), StatusCode::OK);
}
