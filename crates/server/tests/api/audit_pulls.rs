//! `[audit] pulls`: successful manifest `GET`s in the audit log (action `pull`), written in
//! batches off the request path; off by default.

use berth_meta::AuditQuery;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

const ADMIN: (&str, &str) = ("admin", "admin-password-1");

async fn start(pulls: bool) -> TestApp {
    let app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN.1.into();
        c.audit.pulls = pulls;
    })
    .await;
    let services = app.app.services();
    // alice's namespace is private, carol's public (anonymous pulls).
    for (user, public) in [("alice", false), ("carol", true)] {
        services
            .create_account(user, &format!("{user}-password-1"), false, public)
            .await
            .expect("account");
    }
    app
}

/// `method` on `path` with Basic credentials, if any.
async fn send(app: &TestApp, method: Method, path: &str, user: Option<&str>) -> reqwest::Response {
    let mut request = app.req(method, path);
    if let Some(user) = user {
        request = request.header("authorization", basic(user, &format!("{user}-password-1")));
    }
    request.send().await.expect("request")
}

/// The `pull` events of `GET /api/v1/audit`, newest first, as (actor, project, resource,
/// source).
async fn pull_events(app: &TestApp) -> Vec<(String, String, String, String)> {
    let r = app
        .req(Method::GET, "/api/v1/audit?action=pull")
        .header("authorization", basic(ADMIN.0, ADMIN.1))
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    body.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                text(&e["actor"]),
                text(&e["project"]),
                text(&e["resource"]),
                text(&e["source"]),
            )
        })
        .collect()
}

/// Pushes `repo:tag` as `user`; returns the manifest's digest and its config blob's path.
async fn push(app: &mut TestApp, user: &str, repo: &str, tag: &str) -> (String, String) {
    app.authorize(Some(&basic(user, &format!("{user}-password-1"))));
    let (manifest, digest) = app.push_image(repo, tag, user).await;
    app.authorize(None);
    let config = serde_json::from_slice::<Value>(&manifest).expect("manifest")["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    (digest, format!("/v2/{repo}/blobs/{config}"))
}

/// The pulls that are a manifest `GET`, and nothing else: a `HEAD`, a blob, a missing tag and
/// a refused pull are not recorded.
async fn pull_and_more(app: &mut TestApp) -> (String, String) {
    let (alice_digest, alice_blob) = push(app, "alice", "alice/app", "1.0").await;
    let (carol_digest, _) = push(app, "carol", "carol/pub", "latest").await;
    for (method, path, user, status) in [
        (
            Method::GET,
            "/v2/alice/app/manifests/1.0".to_string(),
            Some("alice"),
            200,
        ),
        (
            Method::HEAD,
            "/v2/alice/app/manifests/1.0".into(),
            Some("alice"),
            200,
        ),
        (Method::GET, alice_blob, Some("alice"), 200),
        (
            Method::GET,
            "/v2/alice/app/manifests/2.0".into(),
            Some("alice"),
            404,
        ),
        (
            Method::GET,
            "/v2/alice/app/manifests/1.0".into(),
            Some("carol"),
            403,
        ),
        (
            Method::GET,
            format!("/v2/alice/app/manifests/{alice_digest}"),
            Some("alice"),
            200,
        ),
        (
            Method::GET,
            "/v2/carol/pub/manifests/latest".into(),
            None,
            200,
        ),
    ] {
        let r = send(app, method.clone(), &path, user).await;
        assert_eq!(r.status().as_u16(), status, "{method} {path} as {user:?}");
    }
    (alice_digest, carol_digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_are_audited_when_asked() {
    let mut app = start(true).await;
    let (alice_digest, carol_digest) = pull_and_more(&mut app).await;
    let s = |v: &str| v.to_string();
    let expected = vec![
        (
            s("anonymous"),
            s("carol"),
            format!("carol/pub:latest@{carol_digest}"),
            s("127.0.0.1"),
        ),
        (
            s("alice"),
            s("alice"),
            format!("alice/app@{alice_digest}"),
            s("127.0.0.1"),
        ),
        (
            s("alice"),
            s("alice"),
            format!("alice/app:1.0@{alice_digest}"),
            s("127.0.0.1"),
        ),
    ];
    // Written in batches, within a second of the pull (each replica its own).
    let mut events = Vec::new();
    for _ in 0..100 {
        events = pull_events(&app).await;
        if events.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if scaled_out() {
        // Two replicas write their batches independently: the order between them may differ.
        events.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(events, expected);
    } else {
        assert_eq!(events, expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_are_not_audited_by_default() {
    let mut app = start(false).await;
    pull_and_more(&mut app).await;
    assert_eq!(pull_events(&app).await, []);
    // Nothing is queued either: once the first replica has stopped and written what it held
    // (App::close), the log has the pushes and still no pull.
    app.trigger_shutdown();
    if let Some(server) = app.server.take() {
        server.await.expect("join").expect("serve");
    }
    app.app.close().await;
    let meta = app.meta().await;
    let count = |action: &str| {
        let query = AuditQuery {
            action: Some(action.into()),
            limit: 10,
            ..AuditQuery::default()
        };
        let meta = meta.clone();
        async move { meta.events(&query).await.expect("events").len() }
    };
    assert_eq!(count("pull").await, 0);
    assert_eq!(count("push").await, 2, "the log itself works");
}

/// Pulls still queued when the server stops are written by `App::close`, before the
/// database closes.
#[tokio::test(flavor = "multi_thread")]
async fn queued_pulls_are_written_at_shutdown() {
    let mut app = TestApp::start_with(|c| c.audit.pulls = true).await;
    let (_, digest) = app.push_image("open/app", "v1", "shutdown").await;
    // To the first replica, whose App this test holds.
    let url = format!("http://{}/v2/open/app/manifests/v1", app.replicas[0]);
    let r = reqwest::get(&url).await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    app.trigger_shutdown();
    if let Some(server) = app.server.take() {
        server.await.expect("join").expect("serve");
    }
    app.app.close().await;
    let meta = app.meta().await;
    let events = meta
        .events(&AuditQuery {
            action: Some("pull".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("events");
    let events: Vec<(String, String)> = events
        .into_iter()
        .map(|r| (r.event.actor, r.event.resource))
        .collect();
    assert_eq!(
        events,
        [("anonymous".to_string(), format!("open/app:v1@{digest}"))]
    );
}
