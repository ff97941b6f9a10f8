//! The management API under `/api/v1/`: users, projects, members, robot accounts, passwords.
//! Authenticated like the registry (Basic, or a Bearer token from `/auth/token`); each
//! operation's permission check is in the registry crate (`admin.rs`). Errors use the same
//! `{"errors":[{"code","message"}]}` body as `/v2`.

use std::str::FromStr;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use berth_meta::{RobotPermission, Role};
use berth_registry::audit::actor_name;
use berth_registry::{Audit, AuditAction, Principal};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::auth::{self, Peer};
use crate::error::ApiError;

type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/users", get(users).post(create_user))
        .route("/api/v1/users/{name}", axum::routing::delete(delete_user))
        .route("/api/v1/users/{name}/password", put(change_password))
        .route("/api/v1/projects", get(projects).post(create_project))
        .route(
            "/api/v1/projects/{name}",
            axum::routing::patch(update_project).delete(delete_project),
        )
        .route("/api/v1/projects/{name}/members", get(members))
        .route(
            "/api/v1/projects/{name}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route("/api/v1/robots", get(robots).post(create_robot))
        .route("/api/v1/audit", get(audit_events))
        .route("/api/v1/signup", axum::routing::post(signup))
        .route(
            "/api/v1/robots/{name}",
            axum::routing::patch(update_robot).delete(delete_robot),
        )
}

/// The caller, authenticated; the API exists only when accounts are enabled.
async fn caller(app: &App, headers: &HeaderMap, peer: Peer) -> Result<Principal, ApiError> {
    if app.tokens().is_none() {
        return Err(ApiError::RouteUnknown(
            "the management API needs [auth] enabled = true".into(),
        ));
    }
    let principal = auth::authenticate(app, headers, peer).await?.principal();
    if principal == Principal::Anonymous {
        return Err(auth::unauthorized(
            app,
            headers,
            None,
            "authentication required",
        ));
    }
    Ok(principal)
}

/// Records a change the caller just made, from where it made it.
async fn record(app: &App, who: &Principal, peer: Peer, event: Audit) {
    app.registry().record(&actor_name(who), peer.0, event).await;
}

/// A JSON body, or a 400 that says what is wrong with it.
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn create_user(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let u: NewUser = body(&bytes)?;
    app.registry()
        .admin_create_user(&who, &u.name, &u.password, u.admin)
        .await?;
    let event = Audit::new(AuditAction::UserCreate, &u.name).detail(format!("admin={}", u.admin));
    record(&app, &who, peer, event).await;
    Ok(created(json!({ "name": u.name, "admin": u.admin })))
}

async fn users(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Value> = app
        .registry()
        .admin_users(&who)
        .await?
        .into_iter()
        .map(|u| {
            json!({
                "name": u.name, "admin": u.system_admin, "disabled": u.disabled,
                "created_at": u.created_at,
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

async fn delete_user(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    app.registry().admin_delete_user(&who, &name).await?;
    record(&app, &who, peer, Audit::new(AuditAction::UserDelete, name)).await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn change_password(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let p: NewPassword = body(&bytes)?;
    app.registry()
        .change_password(&who, &name, &p.password)
        .await?;
    record(
        &app,
        &who,
        peer,
        Audit::new(AuditAction::UserPassword, name),
    )
    .await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
}

async fn create_project(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let p: NewProject = body(&bytes)?;
    app.registry()
        .admin_create_project(&who, &p.name, p.public)
        .await?;
    let event = Audit::new(AuditAction::ProjectCreate, &p.name)
        .project(&p.name)
        .detail(format!("public={}", p.public));
    record(&app, &who, peer, event).await;
    Ok(created(json!({ "name": p.name, "public": p.public })))
}

async fn projects(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Value> = app
        .registry()
        .admin_projects(&who)
        .await?
        .into_iter()
        .map(|p| json!({ "name": p.name, "public": p.public, "owner": p.owner, "created_at": p.created_at }))
        .collect();
    Ok(axum::Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: bool,
}

async fn update_project(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let u: ProjectUpdate = body(&bytes)?;
    app.registry()
        .admin_set_project_public(&who, &name, u.public)
        .await?;
    let event = Audit::new(AuditAction::ProjectVisibility, &name)
        .project(&name)
        .detail(format!("public={}", u.public));
    record(&app, &who, peer, event).await;
    Ok(axum::Json(json!({ "name": name, "public": u.public })).into_response())
}

async fn delete_project(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    app.registry().admin_delete_project(&who, &name).await?;
    let event = Audit::new(AuditAction::ProjectDelete, &name).project(&name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

async fn members(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Value> = app
        .registry()
        .admin_members(&who, &name)
        .await?
        .into_iter()
        .map(|(user, role)| json!({ "user": user, "role": role.as_str() }))
        .collect();
    Ok(axum::Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

async fn set_member(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path((name, user)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let m: Membership = body(&bytes)?;
    let role = Role::from_str(&m.role).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    app.registry()
        .admin_set_member(&who, &name, &user, role)
        .await?;
    let event = Audit::new(AuditAction::MemberSet, &user)
        .project(&name)
        .detail(format!("role={role}"));
    record(&app, &who, peer, event).await;
    Ok(axum::Json(json!({ "user": user, "role": role.as_str() })).into_response())
}

async fn remove_member(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    app.registry()
        .admin_remove_member(&who, &name, &user)
        .await?;
    let event = Audit::new(AuditAction::MemberRemove, &user).project(&name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    /// `[{"project": "team", "actions": ["pull", "push"]}]`
    permissions: Vec<Grant>,
    /// Days until the robot stops working; none: never.
    expires_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    project: String,
    actions: Vec<String>,
}

async fn create_robot(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let r: NewRobot = body(&bytes)?;
    let expires_at = r
        .expires_in_days
        .map(|d| berth_meta::unix_now() + i64::from(d) * 86_400);
    let granted = r
        .permissions
        .iter()
        .map(|g| format!("{}:{}", g.project, g.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    let permissions = r
        .permissions
        .into_iter()
        .map(|g| RobotPermission {
            project: g.project,
            actions: g.actions,
        })
        .collect();
    let robot = app
        .registry()
        .admin_create_robot(&who, &r.name, permissions, expires_at)
        .await?;
    let mut detail = format!("permissions={granted}");
    if let Some(at) = expires_at {
        detail.push_str(&format!(" expires_at={at}"));
    }
    let event = Audit::new(AuditAction::RobotCreate, &robot.login).detail(detail);
    record(&app, &who, peer, event).await;
    Ok(created(json!({
        "name": robot.login,
        "secret": robot.secret,
        "expires_at": expires_at,
    })))
}

async fn robots(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Value> = app
        .registry()
        .admin_robots(&who)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "name": format!("{}{}", berth_registry::accounts::ROBOT_PREFIX, r.name),
                "permissions": r.permissions.iter().map(|p| json!({"project": p.project, "actions": p.actions})).collect::<Vec<_>>(),
                "expires_at": r.expires_at,
                "disabled": r.disabled,
                "created_at": r.created_at,
            })
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotUpdate {
    disabled: bool,
}

/// Robot names are accepted with or without the `robot$` prefix.
fn robot_name(name: &str) -> &str {
    name.strip_prefix(berth_registry::accounts::ROBOT_PREFIX)
        .unwrap_or(name)
}

async fn update_robot(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let u: RobotUpdate = body(&bytes)?;
    app.registry()
        .admin_set_robot_disabled(&who, robot_name(&name), u.disabled)
        .await?;
    let action = if u.disabled {
        AuditAction::RobotDisable
    } else {
        AuditAction::RobotEnable
    };
    let login = format!(
        "{}{}",
        berth_registry::accounts::ROBOT_PREFIX,
        robot_name(&name)
    );
    record(&app, &who, peer, Audit::new(action, login)).await;
    Ok(axum::Json(json!({ "name": name, "disabled": u.disabled })).into_response())
}

async fn delete_robot(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    app.registry()
        .admin_delete_robot(&who, robot_name(&name))
        .await?;
    let login = format!(
        "{}{}",
        berth_registry::accounts::ROBOT_PREFIX,
        robot_name(&name)
    );
    record(
        &app,
        &who,
        peer,
        Audit::new(AuditAction::RobotDelete, login),
    )
    .await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signup {
    name: String,
    password: String,
    /// Whether the personal namespace is public [default: true, as on Docker Hub].
    public: Option<bool>,
}

/// `POST /api/v1/signup`: a new account for anyone, when `[auth] allow_signup` is on.
async fn signup(State(app): State<App>, peer: Peer, bytes: axum::body::Bytes) -> ApiResult {
    if app.tokens().is_none() || !app.config().auth.allow_signup {
        return Err(ApiError::Registry(berth_registry::Error::Denied(
            "sign-up is closed on this registry; ask an administrator for an account".into(),
        )));
    }
    let s: Signup = body(&bytes)?;
    if s.password.len() < 8 {
        return Err(ApiError::Registry(berth_registry::Error::Invalid(
            "passwords have at least 8 characters".into(),
        )));
    }
    let public = s.public.unwrap_or(true);
    app.registry()
        .create_account(&s.name, &s.password, false, public)
        .await?;
    tracing::info!(account = %s.name, "signed up");
    let event = Audit::new(AuditAction::UserSignup, &s.name)
        .project(&s.name)
        .detail(format!("public={public}"));
    app.registry().record(&s.name, peer.0, event).await;
    Ok(created(
        json!({ "name": s.name, "namespace": s.name, "public": public }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    project: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    /// An event id: the page below it.
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/audit`: the audit log, newest first. System administrators read all of it;
/// a project admin reads its project's events (`?project=` required).
async fn audit_events(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let params: AuditParams = serde_urlencoded::from_str(raw.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    let query = berth_meta::AuditQuery {
        actor: params.actor,
        action: params.action,
        project: params.project,
        since: params.since,
        before: params.before,
        limit: params
            .limit
            .unwrap_or(100)
            .clamp(1, berth_registry::audit::MAX_AUDIT_PAGE),
    };
    let records = app.registry().audit_events(&who, query.clone()).await?;
    let full_page = records.len() == query.limit as usize;
    let next = records.last().filter(|_| full_page).map(|last| last.id);
    let list: Vec<Value> = records
        .into_iter()
        .map(|r| {
            let e = r.event;
            json!({
                "id": r.id,
                "at": e.at,
                "time": berth_registry::token::rfc3339_utc(u64::try_from(e.at).unwrap_or(0)),
                "actor": e.actor,
                "source": e.source,
                "action": e.action,
                "project": e.project,
                "resource": e.resource,
                "detail": e.detail,
            })
        })
        .collect();
    let mut response = axum::Json(list).into_response();
    if let Some(before) = next {
        // The next page, as `/v2` listings do it (RFC 5988).
        let mut pairs = serde_urlencoded::to_string(
            [
                ("actor", query.actor.as_deref()),
                ("action", query.action.as_deref()),
                ("project", query.project.as_deref()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_string())))
            .chain(query.since.map(|s| ("since", s.to_string())))
            .chain([
                ("limit", query.limit.to_string()),
                ("before", before.to_string()),
            ])
            .collect::<Vec<_>>(),
        )
        .map_err(|e| ApiError::from(berth_registry::Error::Internal(e.to_string())))?;
        pairs = format!("</api/v1/audit?{pairs}>; rel=\"next\"");
        if let Ok(value) = http::HeaderValue::from_str(&pairs) {
            response.headers_mut().insert(http::header::LINK, value);
        }
    }
    Ok(response)
}
