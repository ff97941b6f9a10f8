//! Authentication's HTTP side: the `Authorization` header read into [`Credentials`], the
//! client's address, the `WWW-Authenticate` challenges of refusals, and the token endpoint's
//! requests and responses (distribution's `docs/spec/auth/token.md`, `oauth.md`). Who a
//! caller is and what it may do are decided by the registry's access service
//! ([`berth_registry::access`]).
//!
//! A request that needs more than it carries gets 401 with a `WWW-Authenticate: Bearer`
//! challenge naming the scope, so docker, podman, skopeo and berth fetch a token and retry.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_registry::access::IssuedTokens;
use berth_registry::token::MANAGEMENT_SCOPE;
use berth_registry::{Action, Credentials, Error};
use http::request::Parts;
use http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::json;

use crate::App;
use crate::error::ApiError;

/// Longest `Authorization` header read; anything longer is refused before parsing.
pub const MAX_AUTHORIZATION_LEN: usize = 8 << 10;

/// What the `Authorization` header holds.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Credentials::Malformed("the Authorization header is too long");
    }
    let text = value.to_str().unwrap_or_default();
    if let Some((user, password)) = basic_credentials(text) {
        return Credentials::Basic { user, password };
    }
    match text.strip_prefix("Bearer ") {
        Some(token) => Credentials::Bearer(token.trim().to_string()),
        None => Credentials::Malformed("unsupported authorization scheme"),
    }
}

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The client's address, for limiting failed logins per address and for the audit log: the
/// connection's peer, or behind a trusted proxy the address it forwarded (`client_addr.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Peer(pub Option<IpAddr>);

/// The client's address as `observe` worked it out for this request.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer::of(&parts.extensions))
    }
}

impl Peer {
    /// The client's address: as `observe` found it, else the connection's peer.
    pub fn of(extensions: &http::Extensions) -> Peer {
        if let Some(ClientAddr(client)) = extensions.get::<ClientAddr>() {
            return Peer(*client);
        }
        Peer(
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip()),
        )
    }
}

/// An error of the access service as the client gets it: a refusal for want of credentials
/// with the challenge that says where tokens come from (scoped, and marked
/// `insufficient_scope` when a token fell short), a token without the management scope with
/// the challenge naming it; anything else as it is.
pub fn refusal(app: &App, headers: &HeaderMap, error: Error) -> ApiError {
    match error {
        Error::Unauthenticated {
            message,
            scope,
            insufficient_scope,
        } => {
            let mut challenge = challenge(app, headers);
            if let Some((repository, action)) = scope {
                let actions = match action {
                    Action::Pull => "pull",
                    Action::Push => "pull,push",
                    Action::Delete => "delete",
                };
                challenge.push_str(&format!(",scope=\"repository:{repository}:{actions}\""));
            }
            // token.md / RFC 6750 3.1: a token short of the scope is answered with a challenge
            // for it, marked `insufficient_scope`.
            if insufficient_scope {
                challenge.push_str(",error=\"insufficient_scope\"");
            }
            ApiError::Unauthorized { message, challenge }
        }
        Error::ManagementScopeMissing => {
            let (kind, name) = MANAGEMENT_SCOPE;
            let mut challenge = challenge(app, headers);
            challenge.push_str(&format!(
                ",scope=\"{kind}:{name}:*\",error=\"insufficient_scope\""
            ));
            ApiError::InsufficientScope {
                message: Error::ManagementScopeMissing.to_string(),
                challenge,
            }
        }
        other => ApiError::Registry(other),
    }
}

/// The Bearer challenge: where tokens come from, for which service.
fn challenge(app: &App, headers: &HeaderMap) -> String {
    format!(
        "Bearer realm=\"{}/auth/token\",service=\"{}\"",
        base_url(app, headers),
        app.config().auth.service
    )
}

/// `http://host:port` as the client reached us (the `Host` header), for the token realm. The
/// scheme is ours, or a trusted proxy's `X-Forwarded-Proto` when it ends TLS for us (the header
/// reaches this point only from trusted proxies: `observe` removes it from others).
fn base_url(app: &App, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255 && !h.contains(['/', '"', ' ']))
        .map(str::to_string)
        .unwrap_or_else(|| app.config().listen.to_string());
    let scheme =
        crate::client_addr::forwarded_proto(headers).unwrap_or_else(|| app.config().url_scheme());
    format!("{scheme}://{host}")
}

/// `GET /auth/token?service=&scope=...&offline_token=`: Basic credentials optional.
pub async fn token_get(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let scopes: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .collect();
    let offline = get("offline_token") == Some("true");
    let access = app.access();
    let issued = async {
        let caller = access.token_caller(&credentials(&headers), peer.0).await?;
        access
            .issue_token(get("service"), &caller, &scopes, offline, peer.0)
            .await
    };
    token_response(issued.await)
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: String,
    service: Option<String>,
    #[serde(default)]
    scope: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    access_type: Option<String>,
}

/// `POST /auth/token`, OAuth2 form (oauth.md): `grant_type=password` or `refresh_token`.
pub async fn token_post(
    State(app): State<App>,
    peer: Peer,
    axum::Form(form): axum::Form<TokenForm>,
) -> Response {
    let scopes: Vec<&str> = form.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let offline = form.access_type.as_deref() == Some("offline");
    let access = app.access();
    let issued = async {
        let caller = match form.grant_type.as_str() {
            "password" => {
                let (Some(user), Some(password)) = (&form.username, &form.password) else {
                    return Err(refused("username and password are required"));
                };
                access.login(user, password, peer.0).await?
            }
            "refresh_token" => {
                let refresh = form.refresh_token.as_deref().unwrap_or_default();
                access.refresh(refresh, peer.0).await?
            }
            _ => return Err(refused("unsupported grant_type")),
        };
        access
            .issue_token(form.service.as_deref(), &caller, &scopes, offline, peer.0)
            .await
    };
    token_response(issued.await)
}

fn refused(message: &str) -> Error {
    Error::TokenRefused(message.to_string())
}

/// The token endpoint's answer (token.md, "Token Response Fields"; oauth.md).
fn token_response(issued: Result<IssuedTokens, Error>) -> Response {
    let issued = match issued {
        Ok(issued) => issued,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let token = issued.access;
    let mut body = json!({
        "token": token.token,
        "access_token": token.token,
        "expires_in": token.expires_in,
        "issued_at": token.issued_at_text(),
    });
    if let Some(refresh) = issued.refresh_token {
        body["refresh_token"] = refresh.into();
    }
    axum::Json(body).into_response()
}
