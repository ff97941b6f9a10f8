//! Projects: create, list, make public or private, remove.

use axum::extract::{Path, State};
use berth_registry::{Audit, AuditAction};

use super::{AdminCaller, ApiResult, body, created, no_content, ok, record};
use crate::App;
use berth_api::*;

/// Create a project (private unless `public`); the caller becomes its admin.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 400, body = Errors),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 409, description = "The name is taken", body = Errors)))]
pub(super) async fn create_project(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn projects(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
) -> ApiResult {
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
pub(super) async fn update_project(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn delete_project(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
    app.registry().admin_delete_project(&who, &name).await?;
    let event = Audit::new(AuditAction::ProjectDelete, &name).project(&name);
    record(&app, &who, peer, event).await;
    Ok(no_content())
}
