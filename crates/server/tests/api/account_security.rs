//! The findings of the attack pass on accounts and tokens (issue 19), each as the attack that
//! worked before: tokens that outlived their account or its password, a management API that
//! ignored token scope and let robots in, names that forged audit rows or took reserved and
//! other people's names. Like every API test, these run on SQLite + filesystem and again on
//! two replicas sharing PostgreSQL and S3.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";

async fn start() -> TestApp {
    TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
        c.auth.allow_signup = true;
    })
    .await
}

fn admin() -> String {
    basic("admin", ADMIN_PASSWORD)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A request with `authorization`: its status and JSON body (`Null` when empty).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .header("authorization", authorization);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, challenge)
}

/// Management calls that must succeed, as the system administrator.
async fn admin_call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, json, _) = call(app, method.clone(), path, &admin(), body).await;
    assert!(status.is_success(), "{method} {path}: {status} {json}");
    json
}

async fn create_user(app: &TestApp, name: &str, password: &str, admin: bool) -> Value {
    admin_call(
        app,
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": name, "password": password, "admin": admin})),
    )
    .await
}

async fn create_robot(app: &TestApp, name: &str, project: &str) -> String {
    let robot = admin_call(
        app,
        Method::POST,
        "/api/v1/robots",
        Some(json!({"name": name, "permissions": [{"project": project, "actions": ["pull"]}]})),
    )
    .await;
    robot["secret"].as_str().expect("secret").to_string()
}

/// Creates a project as the system administrator.
async fn create_project(app: &TestApp, name: &str, public: bool) {
    let body = json!({"name": name, "public": public});
    admin_call(app, Method::POST, "/api/v1/projects", Some(body)).await;
}

/// The status of a `GET` of `path` with the access token `token`.
async fn get_with_token(app: &TestApp, path: &str, token: &str) -> StatusCode {
    call(app, Method::GET, path, &bearer(token), None).await.0
}

/// Gives `user` `role` in `project`, as the system administrator.
async fn set_role(app: &TestApp, project: &str, user: &str, role: &str) {
    let path = format!("/api/v1/projects/{project}/members/{user}");
    admin_call(app, Method::PUT, &path, Some(json!({"role": role}))).await;
}

/// `GET /auth/token` with Basic credentials for `scopes`, asking for a refresh token too:
/// the access token and the refresh token.
async fn login(app: &TestApp, user: &str, password: &str, scopes: &[&str]) -> (String, String) {
    let r = token_response(app, Some(&basic(user, password)), scopes, true).await;
    assert_eq!(r.status(), StatusCode::OK, "login as {user}");
    let body: Value = r.json().await.expect("json");
    (
        body["token"].as_str().expect("token").to_string(),
        body["refresh_token"].as_str().expect("refresh").to_string(),
    )
}

/// The refresh-token grant (oauth.md) for `scope`: the status, and the access it granted.
async fn refresh(app: &TestApp, refresh_token: &str, scope: &str) -> (StatusCode, Value) {
    let r = post_token_form(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("service", "berth"),
            ("scope", scope),
        ],
    )
    .await;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A registry with accounts whose helpers (`push_image`, ...) act as the system
/// administrator.
async fn start_as_admin() -> TestApp {
    let mut app = start().await;
    app.login("admin", ADMIN_PASSWORD);
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_robots_tokens_do_not_serve_its_successor() {
    let app = start_as_admin().await;
    for project in ["open", "secret"] {
        admin_call(
            &app,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": project, "public": false})),
        )
        .await;
        app.push_image(&format!("{project}/app"), "v1", project)
            .await;
    }
    let secret = create_robot(&app, "rr", "open").await;
    let (access, refresh_token) =
        login(&app, "robot$rr", &secret, &["repository:open/app:pull"]).await;
    let status = get_with_token(&app, "/v2/open/app/tags/list", &access).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the robot's token works while it lives"
    );

    admin_call(&app, Method::DELETE, "/api/v1/robots/rr", None).await;
    create_robot(&app, "rr", "secret").await;

    let status = get_with_token(&app, "/v2/open/app/tags/list", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old access token");
    let (status, body) = refresh(&app, &refresh_token, "repository:secret/app:pull").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old refresh token: {body}"
    );
    assert!(body.to_string().contains("revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_created_again_under_the_same_name_does_not_revive_old_tokens() {
    let app = start().await;
    create_user(&app, "carol", "carol-pw-1", false).await;
    let (access, refresh_token) =
        login(&app, "carol", "carol-pw-1", &["registry:management:*"]).await;
    let status = get_with_token(&app, "/api/v1/projects", &access).await;
    assert_eq!(status, StatusCode::OK);

    admin_call(&app, Method::DELETE, "/api/v1/users/carol", None).await;
    create_user(&app, "carol", "carol-pw-2", true).await;

    let (status, json, _) = call(&app, Method::GET, "/api/v1/users", &bearer(&access), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    let (status, body) = refresh(&app, &refresh_token, "registry:management:*").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The new carol logs in as herself.
    let (access, _) = login(&app, "carol", "carol-pw-2", &["registry:management:*"]).await;
    let status = get_with_token(&app, "/api/v1/users", &access).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_or_a_lowered_role_stops_every_token_of_the_account() {
    let app = start_as_admin().await;
    create_project(&app, "team", false).await;
    app.push_image("team/app", "v1", "team").await;
    create_user(&app, "bob", "bob-pw-123", false).await;
    set_role(&app, "team", "bob", "developer").await;
    let scope = "repository:team/app:pull";
    let (access, refresh_token) = login(&app, "bob", "bob-pw-123", &[scope]).await;
    assert_eq!(refresh(&app, &refresh_token, scope).await.0, StatusCode::OK);

    // Raising the role leaves the tokens alone...
    set_role(&app, "team", "bob", "maintainer").await;
    let status = get_with_token(&app, "/v2/team/app/tags/list", &access).await;
    assert_eq!(status, StatusCode::OK, "a raised role keeps the tokens");
    // ...changing the password stops them all, on every replica.
    let (status, ..) = call(
        &app,
        Method::PUT,
        "/api/v1/users/bob/password",
        &basic("bob", "bob-pw-123"),
        Some(json!({"password": "bob-pw-456"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for replica in 0..app.replicas.len() {
        let url = format!("http://{}/v2/team/app/tags/list", app.replicas[replica]);
        let r = reqwest::Client::new()
            .get(url)
            .header("authorization", bearer(&access))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "replica {replica}");
    }
    let (status, body) = refresh(&app, &refresh_token, scope).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A lowered role stops the tokens issued before it.
    let (access, refresh_token) = login(&app, "bob", "bob-pw-456", &[scope]).await;
    set_role(&app, "team", "bob", "guest").await;
    let status = get_with_token(&app, "/v2/team/app/tags/list", &access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "lowered role");
    assert_eq!(
        refresh(&app, &refresh_token, scope).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A new login gets what the role now allows.
    let (access, _) = login(&app, "bob", "bob-pw-456", &[scope]).await;
    let status = get_with_token(&app, "/v2/team/app/tags/list", &access).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_management_api_wants_the_management_scope_and_no_robots() {
    let app = start().await;
    create_project(&app, "open", true).await;
    let new_user = json!({"name": "mallory", "password": "mallory-pw-1", "admin": true});

    // The system administrator's own tokens, without the management scope: 403, with the
    // challenge naming the scope to ask for.
    for scopes in [&["repository:open/app:pull"][..], &[][..]] {
        let (access, _) = login(&app, "admin", ADMIN_PASSWORD, scopes).await;
        for (method, path, body) in [
            (Method::POST, "/api/v1/users", Some(new_user.clone())),
            (Method::GET, "/api/v1/audit", None),
            (Method::DELETE, "/api/v1/users/nobody", None),
        ] {
            let (status, json, challenge) =
                call(&app, method.clone(), path, &bearer(&access), body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with {scopes:?}"
            );
            assert_eq!(json["errors"][0]["code"], "DENIED", "{json}");
            assert!(
                challenge.contains("error=\"insufficient_scope\"")
                    && challenge.contains("scope=\"registry:management:*\""),
                "{challenge}"
            );
        }
    }
    let users = admin_call(&app, Method::GET, "/api/v1/users", None).await;
    assert!(
        !users.to_string().contains("mallory"),
        "nothing was created: {users}"
    );

    // With the management scope (asked with the password), it works, and the issuance is
    // audited.
    let (access, _) = login(&app, "admin", ADMIN_PASSWORD, &["registry:management:*"]).await;
    let status = get_with_token(&app, "/api/v1/users", &access).await;
    assert_eq!(status, StatusCode::OK);
    let events = admin_call(
        &app,
        Method::GET,
        "/api/v1/audit?action=token.management",
        None,
    )
    .await;
    let events = events.as_array().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e["actor"] == "admin" && e["resource"] == "registry:management:*"),
        "{events:?}"
    );

    // Robots: never, with Basic or with any token.
    let secret = create_robot(&app, "ci", "open").await;
    let robot = basic("robot$ci", &secret);
    for path in ["/api/v1/projects", "/api/v1/robots", "/api/v1/users"] {
        let (status, json, _) = call(&app, Method::GET, path, &robot, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {json}");
    }
    let (access, _) = login(&app, "robot$ci", &secret, &["registry:management:*"]).await;
    let status = get_with_token(&app, "/api/v1/projects", &access).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a robot gets no management scope"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_a_login_name_cannot_forge_audit_rows() {
    let app = start().await;
    let forged = "x\nadmin delete.manifest secret/app\u{1b}[2J";
    // Basic on /v2, Basic on the token endpoint, and the OAuth2 password grant.
    let (status, ..) = call(&app, Method::GET, "/v2/", &basic(forged, "whatever"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = post_token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", forged),
            ("password", "whatever"),
            ("service", "berth"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let events = admin_call(&app, Method::GET, "/api/v1/audit?action=login.failed", None).await;
    let actors: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(actors.len(), 2, "{events}");
    for actor in actors {
        assert_eq!(actor, "x\\nadmin delete.manifest secret/app\\x1b[2J");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_words_and_other_peoples_names_are_not_for_ordinary_users() {
    let app = start().await;
    create_user(&app, "bob", "bob-pw-123", false).await;
    create_user(&app, "carol", "carol-pw-1", false).await;
    let bob = basic("bob", "bob-pw-123");
    for name in [
        "admin",
        "library",
        "api",
        "robot",
        "v2",
        "auth",
        "anonymous",
        "ui",
    ] {
        let (status, json, _) = call(
            &app,
            Method::POST,
            "/api/v1/projects",
            &bob,
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {json}");
        assert!(json.to_string().contains("reserved"), "{json}");
    }
    // carol's namespace, gone, is still hers: bob may not take it.
    admin_call(&app, Method::DELETE, "/api/v1/projects/carol", None).await;
    let (status, json, _) = call(
        &app,
        Method::POST,
        "/api/v1/projects",
        &bob,
        Some(json!({"name": "carol"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    let (status, ..) = call(
        &app,
        Method::POST,
        "/api/v1/projects",
        &basic("carol", "carol-pw-1"),
        Some(json!({"name": "carol"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "carol takes her own name back");
    // A system administrator may use a reserved word (e.g. for mirrored official images).
    admin_call(
        &app,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "library"})),
    )
    .await;

    // A project made before an account of that name does not block the account: it is
    // created without a namespace, and the project stays whose it was.
    let (status, ..) = call(
        &app,
        Method::POST,
        "/api/v1/projects",
        &bob,
        Some(json!({"name": "dave"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let dave = create_user(&app, "dave", "dave-pw-12", false).await;
    assert_eq!(dave["namespace"], Value::Null, "{dave}");
    let members = admin_call(&app, Method::GET, "/api/v1/projects/dave/members", None).await;
    assert!(!members.to_string().contains("\"dave\""), "{members}");

    // Sign-up: no reserved word, `anonymous` included.
    for name in ["anonymous", "admin", "library"] {
        let r = reqwest::Client::new()
            .post(app.url("/api/v1/signup"))
            .json(&json!({"name": name, "password": "signup-pw-1"}))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    // Not even an administrator names an account `anonymous`.
    let (status, ..) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin(),
        Some(json!({"name": "anonymous", "password": "anon-pw-12"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
