//! Roles in a project.

use std::str::FromStr;

use axum::extract::{Path, State};
use berth_meta::Role;
use berth_registry::{Audit, AuditAction};

use super::{AdminCaller, ApiResult, body, no_content, ok, record};
use crate::App;
use crate::error::ApiError;
use berth_api::*;

/// A project's members (anyone who may pull from it).
#[utoipa::path(get, path = "/api/v1/projects/{name}/members", tag = "members",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, body = [Member]), (status = 401, body = Errors),
              (status = 404, body = Errors)))]
pub(super) async fn members(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
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
pub(super) async fn set_member(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path((name, user)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn remove_member(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path((name, user)): Path<(String, String)>,
) -> ApiResult {
    app.registry()
        .admin_remove_member(&who, &name, &user)
        .await?;
    let event = Audit::new(AuditAction::MemberRemove, &user).project(&name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}
