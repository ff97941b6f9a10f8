//! Accounts: create, list, remove, change a password; sign-up.

use axum::extract::{Path, State};
use berth_registry::{Audit, AuditAction};

use super::{AdminCaller, ApiResult, body, created, no_content, ok, record};
use crate::App;
use crate::auth::Peer;
use berth_api::*;

/// Create an account (system administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = NewUserCreated), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 409, description = "The name is taken", body = Errors)))]
pub(super) async fn create_user(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
            created_at: app.registry().clock().now(),
        },
        namespace,
    }))
}

/// List accounts (system administrators).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [User]), (status = 401, body = Errors),
              (status = 403, body = Errors)))]
pub(super) async fn users(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
) -> ApiResult {
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
pub(super) async fn delete_user(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
    app.registry().admin_delete_user(&who, &name).await?;
    record(&app, &who, peer, Audit::new(AuditAction::UserDelete, name)).await;
    Ok(no_content())
}

/// Change a password: one's own, or anyone's as a system administrator.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "users",
    params(("name" = String, Path, description = "The account")), request_body = NewPassword,
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
pub(super) async fn change_password(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let p: NewPassword = body(&bytes)?;
    app.registry()
        .change_password(&who, &name, &p.password)
        .await?;
    let event = Audit::new(AuditAction::UserPassword, name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}

// ---- Sign-up ----------------------------------------------------------------------------

/// A new account with its personal namespace, for anyone, when `[auth] allow_signup` is on.
#[utoipa::path(post, path = "/api/v1/signup", tag = "users", request_body = Signup,
    security(()),
    responses((status = 201, body = SignedUp), (status = 400, body = Errors),
              (status = 403, description = "Sign-up is closed", body = Errors),
              (status = 409, body = Errors)))]
pub(super) async fn signup(
    State(app): State<App>,
    peer: Peer,
    bytes: axum::body::Bytes,
) -> ApiResult {
    app.access().authorize_signup()?;
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
