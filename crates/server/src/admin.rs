//! The management API under `/api/v1/`: users, projects, members, robot accounts, passwords,
//! sign-up and the audit log. Authenticated like the registry (Basic, or a Bearer token from
//! `/auth/token`); each operation's permission check is in the registry crate (`admin.rs`).
//! Errors use the same `{"errors":[{"code","message"}]}` body as `/v2`.
//!
//! Routes and the OpenAPI document served at `/api/v1/openapi.json` come from one place: each
//! handler's `#[utoipa::path]` attribute, registered through `utoipa_axum::routes!`, so a route
//! cannot exist without its description (nor the reverse).

use std::str::FromStr;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use berth_meta::{RobotPermission, Role};
use berth_registry::accounts::ROBOT_PREFIX;
use berth_registry::audit::{MAX_AUDIT_PAGE, actor_name};
use berth_registry::{Audit, AuditAction, Principal};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{self, Peer};
use crate::error::ApiError;

type ApiResult = Result<Response, ApiError>;

const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "berth management API",
        description = "Users, projects, members, robot accounts and the audit log of a berth \
                       registry. Authenticate with HTTP Basic (a user's name and password) or with \
                       a Bearer token from `/auth/token` that grants the management scope \
                       `registry:management:*` (asked for with account credentials or a \
                       refresh token; a repository-scoped token gets 403 `insufficient_scope`). \
                       Robot accounts get 403 on every route here.",
    ),
    modifiers(&Security),
    security(("basic" = []), ("bearer" = [])),
    tags(
        (name = "users", description = "Accounts (system administrators)"),
        (name = "projects", description = "Projects: the first component of repository names"),
        (name = "members", description = "Roles in a project"),
        (name = "robots", description = "Robot accounts for CI"),
        (name = "audit", description = "Who did what, when, from where"),
        (name = "lifecycle", description = "Garbage collection, quotas and storage usage"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every management route, each with its OpenAPI operation. Handlers of one path go in one
/// `routes!` (one path, several methods).
fn api() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(change_password))
        .routes(routes!(projects, create_project))
        .routes(routes!(update_project, delete_project))
        .routes(routes!(members))
        .routes(routes!(set_member, remove_member))
        .routes(routes!(robots, create_robot))
        .routes(routes!(update_robot, delete_robot))
        .routes(routes!(audit_events))
        .routes(routes!(collect_garbage))
        .routes(routes!(project_usage))
        .routes(routes!(set_quota))
        .routes(routes!(immutable_tags, set_immutable_tags))
        .routes(routes!(retention_policy, set_retention_policy))
        .routes(routes!(run_retention))
        .routes(routes!(signup))
}

/// The OpenAPI 3.1 document of the management API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn routes() -> Router<App> {
    let (router, _) = api().split_for_parts();
    router.route(OPENAPI_PATH, axum::routing::get(openapi_json))
}

/// `GET /api/v1/openapi.json`: public, like the API's shape itself.
async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// The caller, authenticated; the API exists only when accounts are enabled.
async fn caller(app: &App, headers: &HeaderMap, peer: Peer) -> Result<Principal, ApiError> {
    if app.tokens().is_none() {
        return Err(ApiError::RouteUnknown(
            "the management API needs [auth] enabled = true".into(),
        ));
    }
    let caller = auth::authenticate(app, headers, peer).await?;
    let principal = caller.principal();
    if principal == Principal::Anonymous {
        return Err(auth::unauthorized(
            app,
            headers,
            None,
            "authentication required",
        ));
    }
    if matches!(principal, Principal::Robot { .. }) {
        return Err(ApiError::Registry(berth_registry::Error::Denied(
            "robot accounts cannot use the management API".into(),
        )));
    }
    if !caller.has_management_scope() {
        return Err(auth::insufficient_management_scope(app, headers));
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

fn ok<T: Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Robot names are accepted with or without the `robot$` prefix.
fn robot_name(name: &str) -> &str {
    name.strip_prefix(ROBOT_PREFIX).unwrap_or(name)
}

// ---- Documents ----------------------------------------------------------------------------

/// The error body of every failed request, as on `/v2`.
#[derive(Serialize, ToSchema)]
struct Errors {
    errors: Vec<ErrorItem>,
}

#[derive(Serialize, ToSchema)]
struct ErrorItem {
    /// `UNAUTHORIZED`, `DENIED`, `NAME_UNKNOWN`, `UNSUPPORTED`, `TOOMANYREQUESTS`, ...
    code: String,
    message: String,
    detail: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    /// At least 8 characters.
    password: String,
    /// A system administrator.
    #[serde(default)]
    admin: bool,
}

/// An account just created, and its personal namespace.
#[derive(Serialize, ToSchema)]
struct NewUserCreated {
    #[serde(flatten)]
    user: User,
    /// The personal namespace made for it (private); `null` when a project of the account's
    /// name existed before it, which stays as it was.
    namespace: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct User {
    name: String,
    admin: bool,
    disabled: bool,
    /// Unix seconds.
    created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    /// At least 8 characters.
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    /// Anyone, even anonymous, may pull.
    #[serde(default)]
    public: bool,
}

#[derive(Serialize, ToSchema)]
struct Project {
    name: String,
    public: bool,
    /// The account whose personal namespace this is.
    owner: Option<String>,
    /// Unix seconds (absent in the answer to a creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: bool,
}

#[derive(Serialize, ToSchema)]
struct ProjectVisibility {
    name: String,
    public: bool,
}

#[derive(Serialize, ToSchema)]
struct Member {
    user: String,
    /// `guest`, `developer`, `maintainer` or `admin`.
    role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Membership {
    /// `guest` (pull), `developer` (push), `maintainer` (delete), `admin` (manage).
    role: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Grant {
    project: String,
    /// A subset of `pull`, `push`, `delete`.
    actions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    /// The login becomes `robot$<name>`.
    name: String,
    /// `[{"project": "team", "actions": ["pull", "push"]}]`; the caller must administer
    /// every project named.
    permissions: Vec<Grant>,
    /// Days until the robot stops working; absent: never.
    expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct CreatedRobot {
    /// `robot$<name>`: the login.
    name: String,
    /// Shown once; stored only hashed.
    secret: String,
    /// Unix seconds.
    expires_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct Robot {
    /// `robot$<name>`.
    name: String,
    permissions: Vec<Grant>,
    /// Unix seconds.
    expires_at: Option<i64>,
    disabled: bool,
    created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RobotUpdate {
    disabled: bool,
}

#[derive(Serialize, ToSchema)]
struct RobotState {
    name: String,
    disabled: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Signup {
    /// Also the personal namespace: a project name, not a reserved one.
    name: String,
    /// At least 8 characters.
    password: String,
    /// Whether the personal namespace is public [default: true, as on Docker Hub].
    public: Option<bool>,
}

#[derive(Serialize, ToSchema)]
struct SignedUp {
    name: String,
    namespace: String,
    public: bool,
}

/// Which events to read; every parameter narrows.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// An account, or `robot$name`.
    actor: Option<String>,
    /// An action (`push`, `delete.tag`, `login.failed`, `member.set`, ...) or a prefix ending
    /// in `.` (`delete.`).
    action: Option<String>,
    /// Required unless the caller is a system administrator.
    project: Option<String>,
    /// Only events at or after these Unix seconds.
    since: Option<i64>,
    /// Only events with a smaller id: the next page (see the `Link` header).
    before: Option<i64>,
    /// At most this many events [default 100, at most 1000].
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct AuditEntry {
    id: i64,
    /// Unix seconds.
    at: i64,
    /// The same instant, RFC 3339 UTC.
    time: String,
    /// An account, `robot$name`, or `anonymous`.
    actor: String,
    /// The client's address.
    source: Option<String>,
    action: String,
    project: Option<String>,
    resource: String,
    detail: String,
}

// ---- Users ------------------------------------------------------------------------------

/// Create an account (system administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = NewUserCreated), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 409, description = "The name is taken", body = Errors)))]
async fn create_user(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let u: NewUser = body(&bytes)?;
    let namespace = app
        .registry()
        .admin_create_user(&who, &u.name, &u.password, u.admin)
        .await?;
    let detail = match &namespace {
        Some(_) => format!("admin={}", u.admin),
        None => format!(
            "admin={} namespace=none (a project of that name exists)",
            u.admin
        ),
    };
    let event = Audit::new(AuditAction::UserCreate, &u.name).detail(detail);
    record(&app, &who, peer, event).await;
    Ok(created(NewUserCreated {
        user: User {
            name: u.name,
            admin: u.admin,
            disabled: false,
            created_at: berth_meta::unix_now(),
        },
        namespace,
    }))
}

/// List accounts (system administrators).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [User]), (status = 401, body = Errors),
              (status = 403, body = Errors)))]
async fn users(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<User> = app
        .registry()
        .admin_users(&who)
        .await?
        .into_iter()
        .map(|u| User {
            name: u.name,
            admin: u.system_admin,
            disabled: u.disabled,
            created_at: u.created_at,
        })
        .collect();
    Ok(ok(list))
}

/// Remove an account (system administrators; not one's own).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users",
    params(("name" = String, Path, description = "The account")),
    responses((status = 204), (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
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

/// Change a password: one's own, or anyone's as a system administrator.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users",
    params(("name" = String, Path, description = "The account")), request_body = NewPassword,
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
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
    let event = Audit::new(AuditAction::UserPassword, name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

// ---- Projects ---------------------------------------------------------------------------

/// Create a project (private unless `public`); the caller becomes its admin.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 409, description = "The name is taken", body = Errors)))]
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
    Ok(created(Project {
        name: p.name,
        public: p.public,
        owner: None,
        created_at: None,
    }))
}

/// The projects the caller can see: public ones, its own, all for a system administrator.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, body = [Project]), (status = 401, body = Errors)))]
async fn projects(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Project> = app
        .registry()
        .admin_projects(&who)
        .await?
        .into_iter()
        .map(|p| Project {
            name: p.name,
            public: p.public,
            owner: p.owner,
            created_at: Some(p.created_at),
        })
        .collect();
    Ok(ok(list))
}

/// Make a project public or private (its admins).
#[utoipa::path(patch, path = "/api/v1/projects/{name}", tag = "projects",
    params(("name" = String, Path, description = "The project")), request_body = ProjectUpdate,
    responses((status = 200, body = ProjectVisibility), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
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
    Ok(ok(ProjectVisibility {
        name,
        public: u.public,
    }))
}

/// Remove a project's record, members and robot grants (its admins).
#[utoipa::path(delete, path = "/api/v1/projects/{name}", tag = "projects",
    params(("name" = String, Path, description = "The project")),
    responses((status = 204), (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
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

// ---- Members ----------------------------------------------------------------------------

/// A project's members (anyone who may pull from it).
#[utoipa::path(get, path = "/api/v1/projects/{name}/members", tag = "members",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, body = [Member]), (status = 401, body = Errors),
              (status = 404, body = Errors)))]
async fn members(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Member> = app
        .registry()
        .admin_members(&who, &name)
        .await?
        .into_iter()
        .map(|(user, role)| Member {
            user,
            role: role.as_str().into(),
        })
        .collect();
    Ok(ok(list))
}

/// Add a member, or change its role (the project's admins).
#[utoipa::path(put, path = "/api/v1/projects/{name}/members/{user}", tag = "members",
    params(("name" = String, Path, description = "The project"),
           ("user" = String, Path, description = "The account")),
    request_body = Membership,
    responses((status = 200, body = Member), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
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
    Ok(ok(Member {
        user,
        role: role.as_str().into(),
    }))
}

/// Remove a member (the project's admins).
#[utoipa::path(delete, path = "/api/v1/projects/{name}/members/{user}", tag = "members",
    params(("name" = String, Path, description = "The project"),
           ("user" = String, Path, description = "The account")),
    responses((status = 204), (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
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

// ---- Robots -----------------------------------------------------------------------------

/// Create a robot account; its secret is in the answer, once.
#[utoipa::path(post, path = "/api/v1/robots", tag = "robots", request_body = NewRobot,
    responses((status = 201, body = CreatedRobot), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors), (status = 409, body = Errors)))]
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
    Ok(created(CreatedRobot {
        name: robot.login,
        secret: robot.secret,
        expires_at,
    }))
}

/// List robot accounts (system administrators).
#[utoipa::path(get, path = "/api/v1/robots", tag = "robots",
    responses((status = 200, body = [Robot]), (status = 401, body = Errors),
              (status = 403, body = Errors)))]
async fn robots(State(app): State<App>, peer: Peer, headers: HeaderMap) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let list: Vec<Robot> = app
        .registry()
        .admin_robots(&who)
        .await?
        .into_iter()
        .map(|r| Robot {
            name: format!("{ROBOT_PREFIX}{}", r.name),
            permissions: r
                .permissions
                .into_iter()
                .map(|p| Grant {
                    project: p.project,
                    actions: p.actions,
                })
                .collect(),
            expires_at: r.expires_at,
            disabled: r.disabled,
            created_at: r.created_at,
        })
        .collect();
    Ok(ok(list))
}

/// Disable or enable a robot account (system administrators).
#[utoipa::path(patch, path = "/api/v1/robots/{name}", tag = "robots",
    params(("name" = String, Path, description = "`robot$name` or `name`")),
    request_body = RobotUpdate,
    responses((status = 200, body = RobotState), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
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
    let login = format!("{ROBOT_PREFIX}{}", robot_name(&name));
    record(&app, &who, peer, Audit::new(action, login.clone())).await;
    Ok(ok(RobotState {
        name: login,
        disabled: u.disabled,
    }))
}

/// Remove a robot account (system administrators).
#[utoipa::path(delete, path = "/api/v1/robots/{name}", tag = "robots",
    params(("name" = String, Path, description = "`robot$name` or `name`")),
    responses((status = 204), (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
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
    let login = format!("{ROBOT_PREFIX}{}", robot_name(&name));
    record(
        &app,
        &who,
        peer,
        Audit::new(AuditAction::RobotDelete, login),
    )
    .await;
    Ok(no_content())
}

// ---- Sign-up ----------------------------------------------------------------------------

/// A new account with its personal namespace, for anyone, when `[auth] allow_signup` is on.
#[utoipa::path(post, path = "/api/v1/signup", tag = "users", request_body = Signup,
    security(()),
    responses((status = 201, body = SignedUp), (status = 400, body = Errors),
              (status = 403, description = "Sign-up is closed", body = Errors),
              (status = 409, body = Errors)))]
async fn signup(State(app): State<App>, peer: Peer, bytes: axum::body::Bytes) -> ApiResult {
    if app.tokens().is_none() || !app.config().auth.allow_signup {
        return Err(ApiError::Registry(berth_registry::Error::Denied(
            "sign-up is closed on this registry; ask an administrator for an account".into(),
        )));
    }
    let s: Signup = body(&bytes)?;
    berth_registry::accounts::validate_password(&s.password)?;
    let public = s.public.unwrap_or(true);
    app.registry()
        .create_account(&s.name, &s.password, false, public)
        .await?;
    tracing::info!(account = %s.name, "signed up");
    let event = Audit::new(AuditAction::UserSignup, &s.name)
        .project(&s.name)
        .detail(format!("public={public}"));
    app.registry().record(&s.name, peer.0, event).await;
    Ok(created(SignedUp {
        namespace: s.name.clone(),
        name: s.name,
        public,
    }))
}

// ---- Lifecycle ----------------------------------------------------------------------------

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
struct GcRequest {
    /// Report what would go; delete nothing.
    dry_run: bool,
    /// Also collect untagged manifests (not those an index lists or a referrer names).
    delete_untagged: bool,
    /// Content younger than this many seconds is kept [default: `[gc] grace_secs`].
    grace_secs: Option<u64>,
}

/// Collect garbage now (system administrators). Answers when the collection is over, with
/// its report: `manifests` (repository and digest of each deleted), `links_removed`,
/// `blobs_deleted`, `bytes_freed`, `kept_in_use` (garbage a concurrent push took back),
/// `objects_failed`, `seconds`, `blobs_per_second`, `objects_per_second`.
#[utoipa::path(post, path = "/api/v1/gc", tag = "lifecycle", request_body = GcRequest,
    responses((status = 200, description = "The collection's report", body = Object),
              (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors),
              (status = 409, description = "A collection is running elsewhere", body = Errors)))]
async fn collect_garbage(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    berth_registry::admin::require_system_admin(&who)?;
    let request: GcRequest = if bytes.is_empty() {
        GcRequest::default()
    } else {
        body(&bytes)?
    };
    let options = crate::gc::GcOptions {
        grace: std::time::Duration::from_secs(
            request.grace_secs.unwrap_or(app.config().gc.grace_secs),
        ),
        delete_untagged: request.delete_untagged,
        dry_run: request.dry_run,
    };
    match app
        .collect_garbage(&options, crate::gc::Trigger::Api, &actor_name(&who))
        .await?
    {
        Some(report) => Ok(ok(report)),
        None => Err(ApiError::Registry(berth_registry::Error::Meta(
            berth_meta::MetaError::Conflict(
                "a garbage collection is running (another replica, `berth gc`, or the schedule)"
                    .into(),
            ),
        ))),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Quota {
    /// Bytes the project may hold (each blob and manifest counted once); `null`: no limit.
    quota_bytes: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TagPatterns {
    /// Tag patterns (`*` and `?` wildcards, e.g. `v*`, `release-*`) whose tags, once pushed,
    /// cannot be overwritten or deleted. Empty: none.
    patterns: Vec<String>,
}

/// What a project holds (its admins and system administrators): `bytes` (counted against
/// the quota: each blob and manifest once), `quota_bytes`, `blobs`, `blob_bytes`,
/// `manifests`, `manifest_bytes`, and `repositories`, each with `bytes`, `unique_bytes`
/// (held by no other repository of the project) and `shared_bytes`.
#[utoipa::path(get, path = "/api/v1/projects/{name}/usage", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, description = "The usage report", body = Object),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
async fn project_usage(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    Ok(ok(app.registry().project_usage(&who, &name).await?))
}

/// Set or remove a project's storage quota (system administrators). A push that would take
/// the project past it is refused with `DENIED`.
#[utoipa::path(put, path = "/api/v1/projects/{name}/quota", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")), request_body = Quota,
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
async fn set_quota(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let q: Quota = body(&bytes)?;
    app.registry()
        .set_project_quota(&who, &name, q.quota_bytes)
        .await?;
    let detail = q
        .quota_bytes
        .map_or("quota=none".to_string(), |b| format!("quota={b}"));
    let event = Audit::new(AuditAction::ProjectSettings, name.clone())
        .project(name)
        .detail(detail);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

/// A project's immutable tag patterns (its admins and system administrators).
#[utoipa::path(get, path = "/api/v1/projects/{name}/immutable-tags", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, body = TagPatterns), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
async fn immutable_tags(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let settings = app.registry().project_settings(&who, &name).await?;
    Ok(ok(TagPatterns {
        patterns: settings.immutable_tags,
    }))
}

/// Replace a project's immutable tag patterns (system administrators: the only ones who may
/// lift a rule).
#[utoipa::path(put, path = "/api/v1/projects/{name}/immutable-tags", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")), request_body = TagPatterns,
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
async fn set_immutable_tags(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let t: TagPatterns = body(&bytes)?;
    app.registry()
        .set_immutable_tags(&who, &name, &t.patterns)
        .await?;
    let event = Audit::new(AuditAction::ProjectSettings, name.clone())
        .project(name)
        .detail(format!("immutable_tags={}", t.patterns.join(",")));
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
struct RetentionRun {
    /// Report what would go; delete nothing.
    dry_run: bool,
}

/// A project's retention policy (its admins and system administrators): `{"rules": [...]}`,
/// each rule with `repositories` and `tags` patterns (default `*`) and exactly one of
/// `keep_last` (N), `keep_pushed_within_days`, `keep_pulled_within_days`, `keep_always`.
#[utoipa::path(get, path = "/api/v1/projects/{name}/retention", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, description = "The policy", body = Object),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
async fn retention_policy(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    Ok(ok(app.registry().retention_policy(&who, &name).await?))
}

/// Replace a project's retention policy (its admins and system administrators); no rules:
/// none. It is applied on the `[retention]` schedule, or at once with `.../retention/run`.
#[utoipa::path(put, path = "/api/v1/projects/{name}/retention", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    request_body(content = Object, description = "The policy"),
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
async fn set_retention_policy(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::BadRequest("the policy is not UTF-8 JSON".into()))?;
    let policy = berth_registry::retention::RetentionPolicy::parse(text)?;
    app.registry()
        .set_retention_policy(&who, &name, &policy)
        .await?;
    let detail = serde_json::to_string(&policy).unwrap_or_default();
    let event = Audit::new(AuditAction::ProjectSettings, name.clone())
        .project(name)
        .detail(format!("retention={detail}"));
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

/// Apply a project's retention policy now (its admins and system administrators); with
/// `dry_run`, only report. The report: `tags` (looked at), `deleted` (repository, tag, digest
/// of each), `immutable` (kept by an immutable rule), `moved` (pushed again meanwhile: kept).
#[utoipa::path(post, path = "/api/v1/projects/{name}/retention/run", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")), request_body = RetentionRun,
    responses((status = 200, description = "The report", body = Object),
              (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
async fn run_retention(
    State(app): State<App>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let who = caller(&app, &headers, peer).await?;
    let run: RetentionRun = if bytes.is_empty() {
        RetentionRun::default()
    } else {
        body(&bytes)?
    };
    let report = app
        .registry()
        .run_retention(&who, &name, run.dry_run, &actor_name(&who))
        .await;
    let metrics = app.metrics();
    match &report {
        Ok(r) if !r.dry_run => {
            metrics.retention_runs.inc();
            metrics
                .retention_tags_deleted
                .inc_by(r.deleted.len() as u64);
        }
        Ok(_) => {}
        Err(_) => {
            metrics.retention_failures.inc();
        }
    }
    Ok(ok(report?))
}

// ---- Audit log --------------------------------------------------------------------------

/// The audit log, newest first. System administrators read all of it; a project admin reads
/// its project's events (`project` required). A full page carries `Link: <...>; rel="next"`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = [AuditEntry],
               headers(("Link" = String, description = "The next page, when this one is full"))),
              (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors)))]
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
        limit: params.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE),
    };
    let records = app.registry().audit_events(&who, query.clone()).await?;
    let full_page = records.len() == query.limit as usize;
    let next = records.last().filter(|_| full_page).map(|last| last.id);
    let list: Vec<AuditEntry> = records
        .into_iter()
        .map(|r| {
            let e = r.event;
            AuditEntry {
                id: r.id,
                at: e.at,
                time: berth_registry::token::rfc3339_utc(u64::try_from(e.at).unwrap_or(0)),
                actor: e.actor,
                source: e.source,
                action: e.action,
                project: e.project,
                resource: e.resource,
                detail: e.detail,
            }
        })
        .collect();
    let mut response = ok(list);
    if let Some(before) = next {
        // The next page, as `/v2` listings link theirs (RFC 5988).
        let pairs: Vec<(&str, String)> = [
            ("actor", query.actor),
            ("action", query.action),
            ("project", query.project),
            ("since", query.since.map(|s| s.to_string())),
            ("limit", Some(query.limit.to_string())),
            ("before", Some(before.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let link = serde_urlencoded::to_string(pairs)
            .ok()
            .map(|q| format!("</api/v1/audit?{q}>; rel=\"next\""))
            .and_then(|l| HeaderValue::from_str(&l).ok());
        if let Some(value) = link {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}
