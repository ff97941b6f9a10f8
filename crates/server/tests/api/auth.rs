//! Accounts and Docker token auth (`[auth] enabled`): the challenge, the token endpoint,
//! Basic auth, the role rules on real requests, and attacks that must be refused.

use base64::Engine as _;
use berth_meta::Role;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn start() -> TestApp {
    TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
        c.auth.auto_create_projects = true;
    })
    .await
}

/// A token from `/auth/token` for `scopes`, with Basic credentials when given.
async fn token(app: &TestApp, credentials: Option<(&str, &str)>, scopes: &[&str]) -> Value {
    let mut url = format!("{}/auth/token?service=berth", app.base);
    for s in scopes {
        url.push_str(&format!("&scope={s}"));
    }
    let mut req = reqwest::Client::new().get(url);
    if let Some((u, p)) = credentials {
        req = req.header("authorization", basic(u, p));
    }
    let r = req.send().await.expect("token request");
    assert_eq!(r.status(), StatusCode::OK, "token for {credentials:?}");
    r.json().await.expect("token json")
}

/// An `application/x-www-form-urlencoded` body.
fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).expect("form")
}

fn bearer(token: &Value) -> String {
    format!("Bearer {}", token["token"].as_str().expect("token"))
}

/// The `access` claim of a token (its payload, base64url JSON).
fn access(token: &Value) -> Value {
    let jwt = token["token"].as_str().expect("token");
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("claims");
    claims["access"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn challenge_then_token_then_push_and_pull() {
    let mut app = start().await;
    // GET /v2/ without credentials: 401 and where to get a token.
    let r = app.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").to_string();
    assert_eq!(
        challenge,
        format!("Bearer realm=\"{}/auth/token\",service=\"berth\"", app.base)
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // The admin's token for push: granted; the project is created on the first push.
    let t = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:team/web:pull,push"],
    )
    .await;
    assert_eq!(t["expires_in"], 300);
    assert!(t["issued_at"].as_str().expect("issued_at").ends_with('Z'));
    assert_eq!(
        access(&t),
        serde_json::json!([{"type": "repository", "name": "team/web", "actions": ["pull", "push"]}])
    );
    app.authorize(Some(&bearer(&t)));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
    let (_, digest) = app.push_image("team/web", "v1", "one").await;

    // Anonymous: the private project is closed, with a challenge naming the scope.
    app.authorize(None);
    let r = app.get("/v2/team/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !header(&r, "www-authenticate").contains("error="),
        "no token was presented, so no token error"
    );
    assert!(
        header(&r, "www-authenticate").contains("scope=\"repository:team/web:pull\""),
        "{:?}",
        r.headers()
    );
    // An anonymous token is issued, but grants nothing there.
    let t = token(&app, None, &["repository:team/web:pull"]).await;
    assert_eq!(access(&t)[0]["actions"], serde_json::json!([]));
    app.authorize(Some(&bearer(&t)));
    assert_eq!(
        app.get("/v2/team/web/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Basic auth directly on /v2 works too.
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let r = app.get(&format!("/v2/team/web/manifests/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A wrong password, at the token endpoint and on /v2.
    let r = reqwest::Client::new()
        .get(format!("{}/auth/token?service=berth", app.base))
        .header("authorization", basic("admin", "wrong"))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.authorize(Some(&basic("admin", "wrong")));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_and_attacks_are_refused() {
    let mut app = start().await;
    let services = app.app.services();
    services
        .create_account("bob", "bob-pw", false, false)
        .await
        .expect("bob");
    services
        .create_account("carol", "carol-pw", false, false)
        .await
        .expect("carol");
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let (_, digest) = app.push_image("team/web", "v1", "team").await;
    let layer_digest = app.push_blob("team/web", b"a private layer").await;
    let meta = app.meta().await;
    meta.set_member("team", "bob", Role::Developer)
        .await
        .expect("member");

    // bob, developer: pull and push, no delete.
    app.authorize(Some(&basic("bob", "bob-pw")));
    assert_eq!(
        app.get("/v2/team/web/manifests/v1").await.status(),
        StatusCode::OK
    );
    app.push_image("team/other", "v1", "bob").await;
    let r = app
        .req(Method::DELETE, &format!("/v2/team/web/manifests/{digest}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "DENIED");

    // carol, not a member: denied. (With `auto_create_projects`, a project that does not exist
    // answers 404 instead, since she could create it by pushing.)
    app.authorize(Some(&basic("carol", "carol-pw")));
    let r = app.get("/v2/team/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Her own namespace is hers.
    app.push_image("carol/app", "v1", "carol").await;
    // A mount from the private project is not done: a plain upload session instead.
    let r = app
        .req(
            Method::POST,
            &format!("/v2/carol/app/blobs/uploads/?mount={layer_digest}&from=team/web"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "no cross-mount from a private repository"
    );
    let r = app
        .req(
            Method::POST,
            &format!("/v2/carol/app/blobs/uploads/?mount={layer_digest}"),
        )
        .send()
        .await
        .expect("automatic mount");
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "no automatic cross-mount either"
    );
    assert_eq!(
        app.get(&format!("/v2/carol/app/blobs/{layer_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "the blob is not readable through carol's repository"
    );
    // The catalog lists only what she may pull.
    let catalog: Value = app.get("/v2/_catalog").await.json().await.expect("json");
    assert_eq!(catalog["repositories"], serde_json::json!(["carol/app"]));
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    let catalog: Value = app.get("/v2/_catalog").await.json().await.expect("json");
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["carol/app", "team/other", "team/web"])
    );

    // carol asks for push on team/web: the token leaves it out (intersection, not refusal).
    let t = token(
        &app,
        Some(("carol", "carol-pw")),
        &["repository:team/web:pull,push"],
    )
    .await;
    assert_eq!(access(&t)[0]["actions"], serde_json::json!([]));

    // A token for one repository does not open another.
    let t = token(
        &app,
        Some(("bob", "bob-pw")),
        &["repository:team/other:pull"],
    )
    .await;
    app.authorize(Some(&bearer(&t)));
    assert_eq!(
        app.get("/v2/team/other/manifests/v1").await.status(),
        StatusCode::OK
    );
    let r = app.get("/v2/team/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&r, "www-authenticate").to_string();
    assert!(
        challenge.contains("scope=\"repository:team/web:pull\"")
            && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );

    // Tampered payload: claims rewritten to team/web, signature kept.
    let jwt = t["token"].as_str().expect("token");
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload"),
    )
    .expect("claims");
    claims["access"][0]["name"] = "team/web".into();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).expect("json"));
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    app.authorize(Some(&format!("Bearer {forged}")));
    assert_eq!(
        app.get("/v2/team/web/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // alg none, no signature.
    let none_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    app.authorize(Some(&format!("Bearer {none_header}.{forged_payload}.")));
    assert_eq!(
        app.get("/v2/team/web/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Garbage and an oversized header.
    app.authorize(Some("Bearer not-a-token"));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    app.authorize(Some(&format!("Bearer {}", "a".repeat(9000))));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);

    // A disabled account's Basic credentials and tokens stop working.
    let t = token(&app, Some(("bob", "bob-pw")), &["repository:team/web:pull"]).await;
    meta.set_user_disabled("bob", true).await.expect("disable");
    app.authorize(Some(&bearer(&t)));
    assert_eq!(
        app.get("/v2/team/web/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.authorize(Some(&basic("bob", "bob-pw")));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_password_and_refresh_token_grants() {
    let app = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/auth/token", app.base);
    let r = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("service", "berth"),
            ("scope", "repository:team/web:pull"),
            ("access_type", "offline"),
            ("client_id", "test"),
        ]))
        .send()
        .await
        .expect("POST token");
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.expect("json");
    let refresh = t["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    // The refresh token is not an access token...
    let r = http
        .get(format!("{}/v2/", app.base))
        .header("authorization", format!("Bearer {refresh}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // ...but buys one.
    let r = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("service", "berth"),
            ("scope", "repository:team/web:pull,push"),
        ]))
        .send()
        .await
        .expect("POST refresh");
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        access(&t)[0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    // An access token is not a refresh token, and a wrong password buys nothing.
    for fields in [
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", t["token"].as_str().expect("t")),
        ],
        vec![
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "nope"),
        ],
        vec![("grant_type", "client_credentials")],
    ] {
        let r = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&fields))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{fields:?}");
    }
}

/// Sends a JSON request to the management API as `credentials`.
async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    credentials: Option<(&str, &str)>,
    json: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base));
    if let Some((u, p)) = credentials {
        req = req.header("authorization", basic(u, p));
    }
    if let Some(j) = json {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&j).expect("json"));
    }
    let r = req.send().await.expect("api request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn management_api_users_projects_members_robots() {
    let mut app = start().await;
    let admin = Some(("admin", ADMIN_PASSWORD));
    // Users: only a system administrator creates them.
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/users",
        admin,
        Some(serde_json::json!({"name": "dave", "password": "dave-pw-1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = api(
        &app,
        Method::POST,
        "/api/v1/users",
        admin,
        Some(serde_json::json!({"name": "dave", "password": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/users",
        admin,
        Some(serde_json::json!({"name": "library", "password": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "reserved name");
    let dave = Some(("dave", "dave-pw-1"));
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/users",
        dave,
        Some(serde_json::json!({"name": "eve", "password": "eve-pw-12"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api(&app, Method::GET, "/api/v1/users", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = api(&app, Method::GET, "/api/v1/users", admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");
    api(
        &app,
        Method::POST,
        "/api/v1/users",
        admin,
        Some(serde_json::json!({"name": "eve", "password": "eve-pw-12"})),
    )
    .await;

    // Projects: any account creates one and administers it.
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        dave,
        Some(serde_json::json!({"name": "shop"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        dave,
        Some(serde_json::json!({"name": "shop"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        dave,
        Some(serde_json::json!({"name": "Bad/Name"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let eve = Some(("eve", "eve-pw-12"));
    let (_, body) = api(&app, Method::GET, "/api/v1/projects", eve, None).await;
    assert!(
        !body.to_string().contains("shop"),
        "a private project is invisible: {body}"
    );
    let (s, _) = api(
        &app,
        Method::PUT,
        "/api/v1/projects/shop/members/eve",
        eve,
        Some(serde_json::json!({"role": "admin"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "eve cannot make herself admin of a project she cannot see"
    );
    let (s, _) = api(
        &app,
        Method::PUT,
        "/api/v1/projects/shop/members/eve",
        dave,
        Some(serde_json::json!({"role": "guest"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api(
        &app,
        Method::PUT,
        "/api/v1/projects/shop/members/eve",
        dave,
        Some(serde_json::json!({"role": "owner"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, body) = api(
        &app,
        Method::GET,
        "/api/v1/projects/shop/members",
        eve,
        None,
    )
    .await;
    assert_eq!(
        body,
        serde_json::json!([{"user": "dave", "role": "admin"}, {"user": "eve", "role": "guest"}])
    );
    let (s, _) = api(
        &app,
        Method::PATCH,
        "/api/v1/projects/shop",
        eve,
        Some(serde_json::json!({"public": true})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // dave pushes; eve, guest, pulls but cannot push.
    app.authorize(Some(&basic("dave", "dave-pw-1")));
    app.push_image("shop/cart", "v1", "cart").await;
    app.authorize(Some(&basic("eve", "eve-pw-12")));
    assert_eq!(
        app.get("/v2/shop/cart/manifests/v1").await.status(),
        StatusCode::OK
    );
    let r = app
        .req(Method::POST, "/v2/shop/cart/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Robots: the secret is shown once and works as Basic `robot$name`; disabling stops it.
    let (s, robot) = api(
        &app,
        Method::POST,
        "/api/v1/robots",
        dave,
        Some(serde_json::json!({"name": "ci", "permissions": [{"project": "shop", "actions": ["pull"]}], "expires_in_days": 30})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{robot}");
    assert_eq!(robot["name"], "robot$ci");
    let secret = robot["secret"].as_str().expect("secret").to_string();
    app.authorize(Some(&basic("robot$ci", &secret)));
    assert_eq!(
        app.get("/v2/shop/cart/manifests/v1").await.status(),
        StatusCode::OK
    );
    let r = app
        .req(Method::POST, "/v2/shop/cart/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a pull-only robot cannot push"
    );
    let (s, _) = api(&app, Method::POST, "/api/v1/robots", eve, Some(serde_json::json!({"name": "sneaky", "permissions": [{"project": "shop", "actions": ["push"]}]}))).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "only project admins create robots for it"
    );
    let (s, _) = api(
        &app,
        Method::PATCH,
        "/api/v1/robots/robot$ci",
        admin,
        Some(serde_json::json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.get("/v2/shop/cart/manifests/v1").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Passwords: one's own, or anyone's for a system administrator.
    let (s, _) = api(
        &app,
        Method::PUT,
        "/api/v1/users/eve/password",
        eve,
        Some(serde_json::json!({"password": "eve-new-pw"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api(
        &app,
        Method::PUT,
        "/api/v1/users/dave/password",
        Some(("eve", "eve-new-pw")),
        Some(serde_json::json!({"password": "hijacked!"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api(&app, Method::DELETE, "/api/v1/users/eve", admin, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api(&app, Method::DELETE, "/api/v1/users/eve", admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body) = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        admin,
        Some(serde_json::json!({"nope": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid JSON")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn brute_force_locks_the_account_for_a_while() {
    // Scaled out, the failures alternate between the replicas: they share one count.
    let mut app = start().await;
    app.authorize(Some(&basic("admin", "guess")));
    for _ in 0..4 {
        assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    }
    // The fifth failure starts the lock-out; from then on even the right password waits.
    let r = app.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&r, "retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=300).contains(&retry), "{retry}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    app.authorize(Some(&basic("admin", ADMIN_PASSWORD)));
    assert_eq!(
        app.get("/v2/").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = reqwest::Client::new()
        .get(format!("{}/auth/token?service=berth", app.base))
        .header("authorization", basic("admin", ADMIN_PASSWORD))
        .send()
        .await
        .expect("token");
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the token endpoint is locked too"
    );
    // Other accounts are not affected.
    app.app
        .services()
        .create_account("frank", "frank-pw-1", false, false)
        .await
        .expect("frank");
    app.authorize(Some(&basic("frank", "frank-pw-1")));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
}

/// GETs `/v2/` with Basic credentials and an `X-Forwarded-For` header; the status.
async fn login_from(app: &TestApp, user: &str, password: &str, forwarded_for: &str) -> StatusCode {
    app.req(Method::GET, "/v2/")
        .header("authorization", basic(user, password))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .expect("GET /v2/")
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    // The test client connects from 127.0.0.1: here that is a trusted load balancer.
    let app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    // Twenty wrong passwords for twenty names from one client lock that client out ...
    for i in 0..19 {
        let status = login_from(&app, &format!("user{i}"), "guess", "203.0.113.5").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let status = login_from(&app, "user19", "guess", "203.0.113.5").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        login_from(&app, "admin", ADMIN_PASSWORD, "203.0.113.5").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and nobody else behind the same balancer, however the client dresses its header.
    assert_eq!(
        login_from(&app, "admin", ADMIN_PASSWORD, "203.0.113.6").await,
        StatusCode::OK
    );
    assert_eq!(
        login_from(&app, "admin", ADMIN_PASSWORD, "203.0.113.5, 203.0.113.7").await,
        StatusCode::OK
    );
    // The balancer ends TLS: the token realm follows its X-Forwarded-Proto.
    let realm = realm_when_forwarded_https(&app).await;
    assert!(realm.starts_with("Bearer realm=\"https://"), "{realm}");
    // The audit log names the client, not the balancer.
    let (_, raw) = api(
        &app,
        Method::GET,
        "/api/v1/audit?action=login.failed&limit=1",
        Some(("admin", ADMIN_PASSWORD)),
        None,
    )
    .await;
    assert_eq!(raw[0]["source"], "203.0.113.5", "{raw}");

    // Without trusted proxies the header is the client's own word, and ignored: the twenty
    // failures count against 127.0.0.1 whatever it claims.
    let app = start().await;
    for i in 0..20 {
        let forged = format!("198.51.100.{i}");
        login_from(&app, &format!("user{i}"), "guess", &forged).await;
    }
    assert_eq!(
        login_from(&app, "admin", ADMIN_PASSWORD, "198.51.100.99").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let realm = realm_when_forwarded_https(&app).await;
    assert!(realm.starts_with("Bearer realm=\"http://"), "{realm}");
}

/// The challenge of an anonymous `GET /v2/` that says `X-Forwarded-Proto: https`.
async fn realm_when_forwarded_https(app: &TestApp) -> String {
    let r = app
        .req(Method::GET, "/v2/")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("GET /v2/");
    header(&r, "www-authenticate").to_string()
}

/// The events of `GET /api/v1/audit{query}` as `(actor, action, project, resource, detail)`.
async fn audit(
    app: &TestApp,
    query: &str,
    credentials: (&str, &str),
) -> Vec<(String, String, String, String, String)> {
    let (status, body) = api(
        app,
        Method::GET,
        &format!("/api/v1/audit{query}"),
        Some(credentials),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    body.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["project"]),
                text(&e["resource"]),
                text(&e["detail"]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_records_pushes_deletes_failed_logins_and_permission_changes() {
    let mut app = start().await;
    let admin = ("admin", ADMIN_PASSWORD);
    let bob = ("bob", "bob-secret-1");
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/users",
            serde_json::json!({"name": "bob", "password": bob.1}),
        ),
        (
            Method::POST,
            "/api/v1/projects",
            serde_json::json!({"name": "team"}),
        ),
        (
            Method::PUT,
            "/api/v1/projects/team/members/bob",
            serde_json::json!({"role": "developer"}),
        ),
        (
            Method::PATCH,
            "/api/v1/projects/team",
            serde_json::json!({"public": true}),
        ),
        (
            Method::POST,
            "/api/v1/robots",
            serde_json::json!({"name": "ci", "permissions": [{"project": "team", "actions": ["pull"]}]}),
        ),
        (
            Method::PATCH,
            "/api/v1/robots/robot$ci",
            serde_json::json!({"disabled": true}),
        ),
    ] {
        let (status, body) = api(&app, method, path, Some(admin), Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {body}");
    }
    // Bob pushes, the admin deletes the tag and then the manifest; someone guesses a password.
    app.authorize(Some(&basic(bob.0, bob.1)));
    let (_, digest) = app.push_image("team/app", "1.0", "audited").await;
    app.authorize(Some(&basic(admin.0, admin.1)));
    let r = app
        .req(Method::DELETE, "/v2/team/app/manifests/1.0")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .req(Method::DELETE, &format!("/v2/team/app/manifests/{digest}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.authorize(Some(&basic("bob", "not-his-password")));
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
    // A refused change is not a change: nothing recorded.
    let (status, _) = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/members/bob",
        Some(bob),
        Some(serde_json::json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let s = |v: &str| v.to_string();
    let events = audit(&app, "", admin).await;
    assert_eq!(
        events,
        [
            (
                s("bob"),
                s("login.failed"),
                s(""),
                s("bob"),
                s("incorrect username or password, or a disabled account")
            ),
            (
                s("admin"),
                s("delete.manifest"),
                s("team"),
                format!("team/app@{digest}"),
                s("")
            ),
            (
                s("admin"),
                s("delete.tag"),
                s("team"),
                s("team/app:1.0"),
                s("")
            ),
            (
                s("bob"),
                s("push"),
                s("team"),
                format!("team/app:1.0@{digest}"),
                s("")
            ),
            (s("admin"), s("robot.disable"), s(""), s("robot$ci"), s("")),
            (
                s("admin"),
                s("robot.create"),
                s(""),
                s("robot$ci"),
                s("permissions=team:pull")
            ),
            (
                s("admin"),
                s("project.visibility"),
                s("team"),
                s("team"),
                s("public=true")
            ),
            (
                s("admin"),
                s("member.set"),
                s("team"),
                s("bob"),
                s("role=developer")
            ),
            (
                s("admin"),
                s("project.create"),
                s("team"),
                s("team"),
                s("public=false")
            ),
            (
                s("admin"),
                s("user.create"),
                s(""),
                s("bob"),
                s("admin=false")
            ),
        ]
    );
    // Where from, and when.
    let (_, raw) = api(
        &app,
        Method::GET,
        "/api/v1/audit?limit=1",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(raw[0]["source"], "127.0.0.1");
    assert!(
        raw[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{raw}"
    );

    // Filters: by actor, by action prefix, by project; paging follows `Link`.
    let actions = |events: Vec<(String, String, String, String, String)>| -> Vec<String> {
        events.into_iter().map(|e| e.1).collect()
    };
    assert_eq!(
        actions(audit(&app, "?actor=bob", admin).await),
        ["login.failed", "push"]
    );
    assert_eq!(
        actions(audit(&app, "?action=delete.", admin).await),
        ["delete.manifest", "delete.tag"]
    );
    assert_eq!(
        actions(audit(&app, "?project=team&action=push", admin).await),
        ["push"]
    );
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/audit?project=team&limit=3"))
        .header("authorization", basic(admin.0, admin.1))
        .send()
        .await
        .expect("page");
    let link = header(&r, "link").to_string();
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once('>'))
        .map(|(path, _)| path.to_string())
        .expect("a next link");
    let first: Vec<Value> = r.json().await.expect("json");
    assert_eq!(first.len(), 3);
    let (status, rest) = api(&app, Method::GET, &next, Some(admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let rest: Vec<String> = rest
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(rest, ["project.visibility", "member.set", "project.create"]);

    // Who may read it: not a plain member, not anonymous; a project admin its own project only.
    let (status, _) = api(&app, Method::GET, "/api/v1/audit", Some(bob), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(
        &app,
        Method::GET,
        "/api/v1/audit?project=team",
        Some(bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(&app, Method::GET, "/api/v1/audit", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(audit(&app, "?project=bob", bob).await, []);
    let (status, body) = api(
        &app,
        Method::GET,
        "/api/v1/audit?action=nonsense",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api(
        &app,
        Method::GET,
        "/api/v1/audit?colour=red",
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
