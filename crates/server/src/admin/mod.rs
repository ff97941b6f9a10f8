//! The management API under `/api/v1/`: users, projects, members, robot accounts, passwords,
//! sign-up and the audit log. Authenticated like the registry (Basic, or a Bearer token from
//! `/auth/token`), the caller checked by the registry's access service; each operation's
//! permission check is in the registry crate (`admin.rs`).
//! Errors use the same `{"errors":[{"code","message"}]}` body as `/v2`.
//!
//! Routes and the OpenAPI document served at `/api/v1/openapi.json` come from one place: each
//! handler's `#[utoipa::path]` attribute, registered through `utoipa_axum::routes!`, so a route
//! cannot exist without its description (nor the reverse).

mod audit;
mod lifecycle;
mod members;
mod projects;
mod robots;
mod users;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use berth_registry::accounts::ROBOT_PREFIX;
use berth_registry::audit::actor_name;
use berth_registry::{Audit, Principal};
use http::request::Parts;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{self, Peer};
use crate::error::ApiError;

pub(super) type ApiResult = Result<Response, ApiError>;

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
        .routes(routes!(users::users, users::create_user))
        .routes(routes!(users::delete_user))
        .routes(routes!(users::change_password))
        .routes(routes!(projects::projects, projects::create_project))
        .routes(routes!(projects::update_project, projects::delete_project))
        .routes(routes!(members::members))
        .routes(routes!(members::set_member, members::remove_member))
        .routes(routes!(robots::robots, robots::create_robot))
        .routes(routes!(robots::update_robot, robots::delete_robot))
        .routes(routes!(audit::audit_events))
        .routes(routes!(lifecycle::collect_garbage))
        .routes(routes!(lifecycle::project_usage))
        .routes(routes!(lifecycle::set_quota))
        .routes(routes!(
            lifecycle::immutable_tags,
            lifecycle::set_immutable_tags
        ))
        .routes(routes!(
            lifecycle::retention_policy,
            lifecycle::set_retention_policy
        ))
        .routes(routes!(lifecycle::run_retention))
        .routes(routes!(users::signup))
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

/// The management API's caller, as every route but sign-up and the OpenAPI document wants
/// it: authenticated, a user (never a robot), and holding the management scope when it came
/// with a token (`Access::authorize_management`). Extracted from the request head, before any
/// body is read. The API exists only when accounts are enabled.
pub(super) struct AdminCaller {
    pub(super) who: Principal,
    pub(super) peer: Peer,
}

impl FromRequestParts<App> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let access = app.access();
        if !access.enabled() {
            return Err(ApiError::RouteUnknown(
                "the management API needs [auth] enabled = true".into(),
            ));
        }
        let peer = Peer::of(&parts.extensions);
        let refusal = |e| auth::refusal(app, &parts.headers, e);
        let caller = access
            .authenticate(&auth::credentials(&parts.headers), peer.0)
            .await
            .map_err(refusal)?;
        let who = access.authorize_management(&caller).map_err(refusal)?;
        Ok(AdminCaller { who, peer })
    }
}

/// Records a change the caller just made, from where it made it.
pub(super) async fn record(app: &App, who: &Principal, peer: Peer, event: Audit) {
    app.registry().record(&actor_name(who), peer.0, event).await;
}

/// A JSON body, or a 400 that says what is wrong with it.
pub(super) fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

pub(super) fn ok<T: Serialize>(value: T) -> Response {
    axum::Json(value).into_response()
}

pub(super) fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Robot names are accepted with or without the `robot$` prefix.
pub(super) fn robot_name(name: &str) -> &str {
    name.strip_prefix(ROBOT_PREFIX).unwrap_or(name)
}
