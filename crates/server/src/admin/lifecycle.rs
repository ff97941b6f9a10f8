//! Garbage collection, usage, quotas, immutable tags and retention.

use axum::extract::{Path, State};
use berth_registry::audit::actor_name;
use berth_registry::{Audit, AuditAction};

use super::{AdminCaller, ApiResult, body, no_content, ok, record};
use crate::App;
use crate::error::ApiError;
use berth_api::*;

/// Collect garbage now (system administrators). Answers when the collection is over, with
/// its report: `manifests` (repository and digest of each deleted), `links_removed`,
/// `blobs_deleted`, `bytes_freed`, `kept_in_use` (garbage a concurrent push took back),
/// `objects_failed`, `seconds`, `blobs_per_second`, `objects_per_second`.
#[utoipa::path(post, path = "/api/v1/gc", tag = "lifecycle", request_body = GcRequest,
    responses((status = 200, description = "The collection's report", body = Object),
              (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors),
              (status = 409, description = "A collection is running elsewhere", body = Errors)))]
pub(super) async fn collect_garbage(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    bytes: axum::body::Bytes,
) -> ApiResult {
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

/// What a project holds (its admins and system administrators): `bytes` (counted against
/// the quota: each blob and manifest once), `quota_bytes`, `blobs`, `blob_bytes`,
/// `manifests`, `manifest_bytes`, and `repositories`, each with `bytes`, `unique_bytes`
/// (held by no other repository of the project) and `shared_bytes`.
#[utoipa::path(get, path = "/api/v1/projects/{name}/usage", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, description = "The usage report", body = Object),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
pub(super) async fn project_usage(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(ok(app.registry().project_usage(&who, &name).await?))
}

/// Set or remove a project's storage quota (system administrators). A push that would take
/// the project past it is refused with `DENIED`.
#[utoipa::path(put, path = "/api/v1/projects/{name}/quota", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")), request_body = Quota,
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
pub(super) async fn set_quota(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn immutable_tags(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
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
pub(super) async fn set_immutable_tags(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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

/// A project's retention policy (its admins and system administrators): `{"rules": [...]}`,
/// each rule with `repositories` and `tags` patterns (default `*`) and exactly one of
/// `keep_last` (N), `keep_pushed_within_days`, `keep_pulled_within_days`, `keep_always`.
#[utoipa::path(get, path = "/api/v1/projects/{name}/retention", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    responses((status = 200, description = "The policy", body = Object),
              (status = 401, body = Errors), (status = 403, body = Errors),
              (status = 404, body = Errors)))]
pub(super) async fn retention_policy(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(ok(app.registry().retention_policy(&who, &name).await?))
}

/// Replace a project's retention policy (its admins and system administrators); no rules:
/// none. It is applied on the `[retention]` schedule, or at once with `.../retention/run`.
#[utoipa::path(put, path = "/api/v1/projects/{name}/retention", tag = "lifecycle",
    params(("name" = String, Path, description = "The project")),
    request_body(content = Object, description = "The policy"),
    responses((status = 204), (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors), (status = 404, body = Errors)))]
pub(super) async fn set_retention_policy(
    State(app): State<App>,
    AdminCaller { who, peer }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
pub(super) async fn run_retention(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
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
