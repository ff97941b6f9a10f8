//! Who is calling, and the token endpoint (distribution's `docs/spec/auth/token.md`,
//! `oauth.md`, `scope.md`).
//!
//! A `/v2` request carries nothing (anonymous), `Basic` credentials (checked against the
//! accounts on every request), or a `Bearer` token from `/auth/token` (verified: signature,
//! `iss`, `aud`, `exp`, `nbf`; its `access` claims are what it may do). A request that needs
//! more than it carries gets 401 with a `WWW-Authenticate: Bearer` challenge naming the scope,
//! so docker, podman, skopeo and berth fetch a token and retry.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_oci::Repository;
use berth_registry::accounts::is_login_name;
use berth_registry::audit::escape_control;
use berth_registry::permissions::Actions;
use berth_registry::token::{
    AccountClaim, Claims, MANAGEMENT_SCOPE, ResourceAccess, SigningKey, TokenIssuer, TokenVerifier,
};
use berth_registry::{Action, Audit, AuditAction, Principal};
use http::request::Parts;
use http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::json;

use crate::App;
use crate::error::ApiError;
use berth_registry::login_limit::{self, LimitError};

/// Longest `Authorization` header read; anything longer is refused before parsing.
pub const MAX_AUTHORIZATION_LEN: usize = 8 << 10;

/// Refresh tokens (`grant_type=refresh_token`) live this long.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The token issuer and verifier of this registry, and refresh tokens (same key, another
/// audience, so one can never be used as the other).
pub struct Tokens {
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    refresh_issuer: TokenIssuer,
    refresh_verifier: TokenVerifier,
}

impl Tokens {
    pub fn new(pkcs8: &[u8], service: &str, lifetime: Duration) -> Result<Tokens, String> {
        let key = || SigningKey::from_pkcs8(pkcs8).map_err(|e| e.to_string());
        let issuer = TokenIssuer::new(key()?, "berth", service, lifetime);
        let refresh_audience = format!("{service}/refresh");
        let refresh_issuer = TokenIssuer::new(key()?, "berth", &refresh_audience, REFRESH_LIFETIME);
        Ok(Tokens {
            verifier: issuer.verifier(),
            refresh_verifier: refresh_issuer.verifier(),
            issuer,
            refresh_issuer,
        })
    }
}

/// The caller of a request.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    /// Basic credentials, checked (or a refresh token, at the token endpoint), with what a
    /// token issued to the account must carry.
    Account(Principal, AccountClaim),
    /// A verified token: what it grants, and whose it is (for the catalog).
    Token {
        claims: Claims,
        principal: Principal,
    },
}

impl Caller {
    pub fn principal(&self) -> Principal {
        match self {
            Caller::Anonymous => Principal::Anonymous,
            Caller::Account(p, _) | Caller::Token { principal: p, .. } => p.clone(),
        }
    }

    /// Whether the caller may use the management API: account credentials may, a token only
    /// when it was granted the management scope (`registry:management:*`).
    pub fn has_management_scope(&self) -> bool {
        match self {
            Caller::Anonymous => false,
            Caller::Account(..) => true,
            Caller::Token { claims, .. } => {
                claims.allows(MANAGEMENT_SCOPE.0, MANAGEMENT_SCOPE.1, "*")
            }
        }
    }
}

/// Reads the `Authorization` header. Bad credentials or a bad token are 401.
pub async fn authenticate(app: &App, headers: &HeaderMap, peer: Peer) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(unauthorized(
            app,
            headers,
            None,
            "the Authorization header is too long",
        ));
    }
    let text = value.to_str().unwrap_or_default();
    if let Some((user, password)) = basic_credentials(text) {
        return match check_password(app, &user, &password, peer).await? {
            Some((p, claim)) => Ok(Caller::Account(p, claim)),
            None => Err(unauthorized(
                app,
                headers,
                None,
                "incorrect username or password",
            )),
        };
    }
    let Some(token) = text.strip_prefix("Bearer ") else {
        return Err(unauthorized(
            app,
            headers,
            None,
            "unsupported authorization scheme",
        ));
    };
    let Some(tokens) = app.tokens() else {
        return Err(unauthorized(
            app,
            headers,
            None,
            "this registry issues no tokens",
        ));
    };
    let claims = tokens
        .verifier
        .verify(token.trim(), SystemTime::now())
        .map_err(|e| {
            tracing::info!(error = %e, "token refused");
            unauthorized(app, headers, None, "invalid or expired token")
        })?;
    let principal = if claims.sub.is_empty() {
        Principal::Anonymous
    } else {
        let current = app
            .registry()
            .principal_of_token(&claims.sub, claims.account.as_ref())
            .await?;
        match current {
            Some(p) => p,
            None => {
                return Err(unauthorized(
                    app,
                    headers,
                    None,
                    "the token was revoked (a password or role change, a disabled or removed \
                     account): log in again",
                ));
            }
        }
    };
    Ok(Caller::Token { claims, principal })
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

/// Checks a password through the login limiter: a locked account or address is refused
/// before any hashing work (429 with `Retry-After`); failures and successes are recorded.
/// A user name no account can have (`is_login_name`) fails without a password check, and is
/// logged escaped (a newline or an escape sequence in it must not reach a terminal).
async fn check_password(
    app: &App,
    user: &str,
    password: &str,
    peer: Peer,
) -> Result<Option<(Principal, AccountClaim)>, ApiError> {
    let shown;
    let (user, valid_name) = if is_login_name(user) {
        (user, true)
    } else {
        shown = escape_control(&user.chars().take(80).collect::<String>());
        (shown.as_str(), false)
    };
    let address = peer.0.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let limiter = app.login_limiter();
    let now = login_limit::now_millis();
    let checked = match limiter.check(user, address, now).await {
        Ok(checked) => checked,
        Err(LimitError::Locked(locked)) => {
            return Err(ApiError::TooManyRequests {
                retry_after_secs: locked.retry_after_secs(now),
            });
        }
        Err(LimitError::Meta(e)) => return Err(berth_registry::Error::from(e).into()),
    };
    let found = if valid_name {
        app.registry().authenticate_account(user, password).await?
    } else {
        None
    };
    let now = login_limit::now_millis();
    match &found {
        Some(_) => limiter
            .succeeded(user, checked, now)
            .await
            .map_err(berth_registry::Error::from)?,
        None => {
            tracing::info!(account = user, %address, "failed login");
            // Requests refused during a lock-out (above) are not recorded: they cost nothing,
            // and an attacker must not be able to fill the log.
            let reason = if valid_name {
                "incorrect username or password, or a disabled account"
            } else {
                "a user name no account can have (shown escaped)"
            };
            let event = Audit::new(AuditAction::LoginFailed, user).detail(reason);
            app.registry().record(user, peer.0, event).await;
            // The limiter logs a lock-out itself; the answer says when to try again.
            let locked = limiter
                .failed(user, address, now)
                .await
                .map_err(berth_registry::Error::from)?;
            if let Some(locked) = locked {
                let event = Audit::new(AuditAction::LoginFailed, user)
                    .detail(format!("locked out for {} s", locked.retry_after_secs(now)));
                app.registry().record(user, peer.0, event).await;
                return Err(ApiError::TooManyRequests {
                    retry_after_secs: locked.retry_after_secs(now),
                });
            }
        }
    }
    Ok(found)
}

/// The single access check of a `/v2` request on `repository`.
pub async fn check(
    app: &App,
    headers: &HeaderMap,
    caller: &Caller,
    repository: &Repository,
    action: Action,
) -> Result<(), ApiError> {
    let scope = Some((repository, action));
    match caller {
        Caller::Token { claims, .. } => {
            if claims.allows("repository", repository.as_str(), action.as_str()) {
                return Ok(());
            }
            // token.md / RFC 6750 3.1: a token short of the scope is answered with a challenge
            // for it, marked `insufficient_scope`.
            let mut refusal = unauthorized(app, headers, scope, "the token does not grant this");
            if let ApiError::Unauthorized { challenge, .. } = &mut refusal {
                challenge.push_str(",error=\"insufficient_scope\"");
            }
            Err(refusal)
        }
        Caller::Anonymous => {
            if allowed(app, caller, repository).await?.allows(action) {
                return Ok(());
            }
            Err(unauthorized(app, headers, scope, "authentication required"))
        }
        Caller::Account(..) => {
            if allowed(app, caller, repository).await?.allows(action) {
                return Ok(());
            }
            Err(denied(repository, action))
        }
    }
}

/// What the caller's account may do on `repository`, with `auto_create_projects` letting a
/// signed-in user push to a project that does not exist yet.
pub async fn allowed(
    app: &App,
    caller: &Caller,
    repository: &Repository,
) -> Result<Actions, ApiError> {
    let principal = caller.principal();
    let actions = app
        .registry()
        .allowed_actions(&principal, repository)
        .await?;
    if actions == Actions::NONE
        && app.config().auth.auto_create_projects
        && matches!(principal, Principal::User { .. })
        && !app.registry().project_exists(repository).await?
        // The same names a user may not create through the API (reserved words, another
        // account's namespace) are not created by a push either.
        && app
            .registry()
            .may_create_project(&principal, repository.project())
            .await
            .is_ok()
    {
        return Ok(Actions {
            pull: true,
            push: true,
            ..Actions::NONE
        });
    }
    Ok(actions)
}

fn denied(repository: &Repository, action: Action) -> ApiError {
    ApiError::Registry(berth_registry::Error::Denied(format!(
        "requested access to the resource is denied: {} on {repository}",
        action.as_str()
    )))
}

/// A 401 with the Bearer challenge (and the scope, on resource endpoints).
pub fn unauthorized(
    app: &App,
    headers: &HeaderMap,
    scope: Option<(&Repository, Action)>,
    message: &str,
) -> ApiError {
    let mut challenge = format!(
        "Bearer realm=\"{}/auth/token\",service=\"{}\"",
        base_url(app, headers),
        app.config().auth.service
    );
    if let Some((repository, action)) = scope {
        let actions = match action {
            Action::Pull => "pull",
            Action::Push => "pull,push",
            Action::Delete => "delete",
        };
        challenge.push_str(&format!(",scope=\"repository:{repository}:{actions}\""));
    }
    ApiError::Unauthorized {
        message: message.to_string(),
        challenge,
    }
}

/// A 403 for a token without the management scope (a repository-scoped token on
/// `/api/v1/...`): its challenge names the scope to ask `/auth/token` for.
pub fn insufficient_management_scope(app: &App, headers: &HeaderMap) -> ApiError {
    let (kind, name) = MANAGEMENT_SCOPE;
    let mut challenge = match unauthorized(app, headers, None, "") {
        ApiError::Unauthorized { challenge, .. } => challenge,
        _ => String::new(),
    };
    challenge.push_str(&format!(
        ",scope=\"{kind}:{name}:*\",error=\"insufficient_scope\""
    ));
    ApiError::InsufficientScope {
        message: format!(
            "insufficient_scope: this token does not grant the management API; ask the token \
             endpoint for scope {kind}:{name}:* with account credentials"
        ),
        challenge,
    }
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

fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
    let caller = match headers.get(header::AUTHORIZATION) {
        None => Ok(Caller::Anonymous),
        Some(_) => match authenticate(&app, &headers, peer).await {
            // Only account credentials log in here; a token is not a login.
            Ok(c @ Caller::Account(..)) => Ok(c),
            Ok(_) => Err(token_error("invalid credentials")),
            Err(ApiError::Unauthorized { .. }) => {
                Err(token_error("incorrect username or password"))
            }
            Err(e) => Err(e.into_response()),
        },
    };
    let offline = get("offline_token") == Some("true");
    match caller {
        Ok(caller) => issue(&app, get("service"), &caller, &scopes, offline, peer).await,
        Err(response) => response,
    }
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
    let caller = match form.grant_type.as_str() {
        "password" => {
            let (Some(user), Some(password)) = (&form.username, &form.password) else {
                return token_error("username and password are required");
            };
            match check_password(&app, user, password, peer).await {
                Ok(Some((p, claim))) => Caller::Account(p, claim),
                Ok(None) => return token_error("incorrect username or password"),
                Err(e) => return e.into_response(),
            }
        }
        "refresh_token" => {
            let Some(tokens) = app.tokens() else {
                return token_error("this registry issues no tokens");
            };
            let refresh = form.refresh_token.as_deref().unwrap_or_default();
            let Ok(claims) = tokens.refresh_verifier.verify(refresh, SystemTime::now()) else {
                return token_error("invalid refresh token");
            };
            let current = app
                .registry()
                .principal_of_token(&claims.sub, claims.account.as_ref())
                .await;
            match (current, claims.account) {
                (Ok(Some(p)), Some(claim)) => Caller::Account(p, claim),
                (Ok(_), _) => {
                    // A login by a known account that may no longer log in (a validly signed
                    // refresh token: this cannot be sent in bulk by a stranger).
                    let event = Audit::new(AuditAction::LoginFailed, &claims.sub).detail(
                        "refresh token revoked: password or role changed, account disabled, \
                         expired, removed or created again",
                    );
                    app.registry().record(&claims.sub, peer.0, event).await;
                    return token_error(
                        "the refresh token was revoked (a password or role change, a disabled \
                         or removed account): log in again",
                    );
                }
                (Err(e), _) => return ApiError::from(e).into_response(),
            }
        }
        _ => return token_error("unsupported grant_type"),
    };
    let offline = form.access_type.as_deref() == Some("offline");
    issue(
        &app,
        form.service.as_deref(),
        &caller,
        &scopes,
        offline,
        peer,
    )
    .await
}

fn token_error(message: &str) -> Response {
    (
        http::StatusCode::UNAUTHORIZED,
        axum::Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]})),
    )
        .into_response()
}

/// Grants the intersection of what was asked and what is allowed (token.md "Requesting a
/// Token"): a scope the caller may not use is left out, not refused.
async fn issue(
    app: &App,
    service: Option<&str>,
    caller: &Caller,
    scopes: &[&str],
    offline: bool,
    peer: Peer,
) -> Response {
    let Some(tokens) = app.tokens() else {
        return token_error("this registry issues no tokens");
    };
    if let Some(s) = service
        && s != app.config().auth.service
    {
        return token_error("unknown service");
    }
    let mut access: Vec<ResourceAccess> = Vec::new();
    let mut management = false;
    for scope in scopes.iter().take(32) {
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if (kind, name) == MANAGEMENT_SCOPE {
            // Account credentials only (a password or a refresh token), never a robot's: the
            // management API acts as the whole account.
            management = matches!(caller, Caller::Account(Principal::User { .. }, _))
                && actions.split(',').any(|a| a == "*");
            continue;
        }
        if kind != "repository" {
            continue;
        }
        let Ok(repository) = name.parse::<Repository>() else {
            continue;
        };
        let allowed = match allowed(app, caller, &repository).await {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        let granted: Vec<String> = actions
            .split(',')
            .filter(|a| match *a {
                "pull" => allowed.pull,
                "push" => allowed.push,
                "delete" => allowed.delete,
                _ => false,
            })
            .map(str::to_string)
            .collect();
        match access.iter_mut().find(|a| a.name == repository.as_str()) {
            Some(existing) => {
                for g in granted {
                    if !existing.actions.contains(&g) {
                        existing.actions.push(g);
                    }
                }
            }
            None => access.push(ResourceAccess {
                resource_type: "repository".into(),
                name: repository.to_string(),
                actions: granted,
            }),
        }
    }
    let subject = match caller.principal() {
        Principal::Anonymous => String::new(),
        Principal::User { name, .. } => name,
        Principal::Robot { name, .. } => {
            format!("{}{name}", berth_registry::accounts::ROBOT_PREFIX)
        }
    };
    if management {
        access.push(ResourceAccess {
            resource_type: MANAGEMENT_SCOPE.0.into(),
            name: MANAGEMENT_SCOPE.1.into(),
            actions: vec!["*".into()],
        });
    }
    let account = match caller {
        Caller::Account(_, claim) => Some(claim.clone()),
        _ => None,
    };
    let now = SystemTime::now();
    let issued = match tokens
        .issuer
        .issue_to(&subject, account.clone(), access, now)
    {
        Ok(t) => t,
        Err(e) => {
            return ApiError::from(berth_registry::Error::Internal(e.to_string())).into_response();
        }
    };
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at_text(),
    });
    if offline && !subject.is_empty() {
        match tokens
            .refresh_issuer
            .issue_to(&subject, account, Vec::new(), now)
        {
            Ok(r) => body["refresh_token"] = r.token.into(),
            Err(e) => {
                return ApiError::from(berth_registry::Error::Internal(e.to_string()))
                    .into_response();
            }
        }
    }
    if management {
        let scope = format!("{}:{}:*", MANAGEMENT_SCOPE.0, MANAGEMENT_SCOPE.1);
        let event = Audit::new(AuditAction::TokenManagement, scope)
            .detail(format!("expires_in={}", issued.expires_in));
        app.registry().record(&subject, peer.0, event).await;
    }
    axum::Json(body).into_response()
}
