//! The Bearer token flow of distribution's `docs/spec/auth/token.md` and `oauth.md`, as the
//! client must follow it. The registry here is a small in-process HTTP server that behaves as
//! the spec says (challenge, token endpoint, scope check); berth's own token server (issue 4)
//! will be tested against the same client end to end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use berth_client::ClientError;
use berth_client::registry::{Login, RegistryClient};
use berth_client::settings::Settings;
use berth_oci::Repository;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

/// A token request as the server saw it: method, Basic user (or "-"), grant, scopes.
type TokenRequest = (String, String, String, Vec<String>);

#[derive(Default)]
struct Registry {
    addr: String,
    /// token -> the scopes it was issued for
    tokens: Mutex<HashMap<String, Vec<String>>>,
    /// Every token request.
    requests: Mutex<Vec<TokenRequest>>,
}

fn basic_user(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn issue(reg: &Registry, scopes: Vec<String>, refresh: bool) -> Response {
    let token = format!("t{}", reg.tokens.lock().unwrap().len());
    reg.tokens.lock().unwrap().insert(token.clone(), scopes);
    let mut body = serde_json::json!({"access_token": token, "expires_in": 300});
    if refresh {
        body["refresh_token"] = "refresh-alice".into();
    }
    axum::Json(body).into_response()
}

async fn token_get(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let offline = query
        .iter()
        .any(|(k, v)| k == "offline_token" && v == "true");
    let user = basic_user(&headers);
    reg.requests.lock().unwrap().push((
        "GET".into(),
        user.as_ref().map_or("-".into(), |u| u.0.clone()),
        "password".into(),
        scopes.clone(),
    ));
    match user {
        Some((u, p)) if u == "alice" && p == "pw" => issue(&reg, scopes, offline),
        Some(_) => StatusCode::UNAUTHORIZED.into_response(),
        // Anonymous: a token, but only pull on the public repository.
        None => issue(
            &reg,
            scopes
                .into_iter()
                .filter(|s| s == "repository:public/app:pull")
                .collect(),
            false,
        ),
    }
}

async fn token_post(State(reg): State<Arc<Registry>>, body: String) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = get("scope")
        .map(|s| s.split(' ').map(str::to_string).collect())
        .unwrap_or_default();
    reg.requests.lock().unwrap().push((
        "POST".into(),
        "-".into(),
        get("grant_type").unwrap_or_default(),
        scopes.clone(),
    ));
    if get("grant_type").as_deref() == Some("refresh_token")
        && get("refresh_token").as_deref() == Some("refresh-alice")
        && get("service").as_deref() == Some("test-registry")
    {
        issue(&reg, scopes, false)
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// Every /v2/ route: needs a Bearer token whose scopes cover the repository.
async fn v2(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path().to_string();
    let needed = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.split_once("/manifests/"))
        .map(|(repo, _)| format!("repository:{repo}:pull"));
    let granted = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| reg.tokens.lock().unwrap().get(t).cloned());
    let ok = match (&granted, &needed) {
        (Some(_), None) => true,
        (Some(scopes), Some(n)) => scopes.contains(n),
        (None, _) => false,
    };
    if !ok {
        let mut challenge = format!(
            "Bearer realm=\"http://{}/token\",service=\"test-registry\"",
            reg.addr
        );
        if let Some(n) = &needed {
            challenge.push_str(&format!(",scope=\"{n}\""));
        }
        let code = if granted.is_some() {
            "DENIED"
        } else {
            "UNAUTHORIZED"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            format!(r#"{{"errors":[{{"code":"{code}","message":"access to the requested resource is not authorized"}}]}}"#),
        )
            .into_response();
    }
    if needed.is_some() {
        return (
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            MANIFEST,
        )
            .into_response();
    }
    "{}".into_response()
}

async fn start() -> (Arc<Registry>, String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let reg = Arc::new(Registry {
        addr: addr.clone(),
        ..Default::default()
    });
    let app = Router::new()
        .route("/token", get(token_get).post(token_post))
        .fallback(any(v2))
        .with_state(reg.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (reg, addr, tx)
}

fn repo(s: &str) -> Repository {
    s.parse().expect("repository")
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_token_for_public_pull_and_clear_refusal_for_private() {
    let (reg, addr, _stop) = start().await;
    let client = RegistryClient::connect(&addr, &Settings::default(), None)
        .await
        .expect("connect");
    assert!(
        client.base_url().as_str().starts_with("http://"),
        "plain HTTP on loopback"
    );
    let m = client
        .get_manifest(&repo("public/app"), "v1")
        .await
        .expect("public pull");
    assert_eq!(&m.bytes[..], MANIFEST);
    let err = client
        .get_manifest(&repo("private/app"), "v1")
        .await
        .expect_err("private");
    assert!(err.needs_login(), "{err:?}");
    assert_eq!(err.to_string(), "unauthorized: authentication required");
    let requests = reg.requests.lock().unwrap();
    assert!(
        requests.iter().all(|r| r.1 == "-"),
        "anonymous token requests carry no credentials"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.3 == ["repository:public/app:pull"]),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_login_gets_scoped_tokens_and_caches_them() {
    let (reg, addr, _stop) = start().await;
    let login = Login::Password {
        username: "alice".into(),
        password: "pw".into(),
    };
    let client = RegistryClient::connect(&addr, &Settings::default(), Some(login))
        .await
        .expect("connect");
    let refresh = client.verify_login().await.expect("valid login");
    assert_eq!(
        refresh.as_deref(),
        Some("refresh-alice"),
        "offline token kept as identitytoken"
    );
    for _ in 0..3 {
        client
            .get_manifest(&repo("private/app"), "v1")
            .await
            .expect("pull");
    }
    let requests = reg.requests.lock().unwrap();
    let for_private: Vec<_> = requests
        .iter()
        .filter(|r| r.3 == ["repository:private/app:pull"])
        .collect();
    assert_eq!(
        for_private.len(),
        1,
        "one token per scope, then cached: {requests:?}"
    );
    assert_eq!(for_private[0].1, "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_password_is_reported_as_such() {
    let (_reg, addr, _stop) = start().await;
    let login = Login::Password {
        username: "alice".into(),
        password: "nope".into(),
    };
    let client = RegistryClient::connect(&addr, &Settings::default(), Some(login))
        .await
        .expect("connect");
    let err = client.verify_login().await.expect_err("bad password");
    assert!(matches!(err, ClientError::BadCredentials { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_token_uses_the_oauth2_refresh_grant() {
    let (reg, addr, _stop) = start().await;
    let login = Login::IdentityToken {
        username: "alice".into(),
        token: "refresh-alice".into(),
    };
    let client = RegistryClient::connect(&addr, &Settings::default(), Some(login))
        .await
        .expect("connect");
    client
        .get_manifest(&repo("private/app"), "v1")
        .await
        .expect("pull");
    let requests = reg.requests.lock().unwrap();
    assert!(
        requests.iter().any(|r| r.0 == "POST"
            && r.2 == "refresh_token"
            && r.3 == ["repository:private/app:pull"]),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| r.0 == "POST"),
        "no password grant: {requests:?}"
    );
}
