//! Robot accounts.

use berth_meta::RobotPermission;
use berth_registry::accounts::ROBOT_PREFIX;
use berth_registry::{Audit, AuditAction};

use super::robot_name;
use axum::extract::{Path, State};

use super::{AdminCaller, ApiResult, body, created, no_content, ok, record};
use crate::App;
use berth_api::*;

/// Create a robot account; its secret is in the answer, once.
#[utoipa::path(post, path = "/api/v1/robots", tag = "robots", request_body = NewRobot,
    responses((status = 201, body = CreatedRobot), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors), (status = 409, body = Errors)))]
pub(super) async fn create_robot(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let r: NewRobot = body(&bytes)?;
    let expires_at = r
        .expires_in_days
        .map(|d| app.registry().clock().now() + i64::from(d) * 86_400);
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
pub(super) async fn robots(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
) -> ApiResult {
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
pub(super) async fn update_robot(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn delete_robot(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
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
