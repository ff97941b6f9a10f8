//! The audit log.

use axum::extract::State;
use berth_registry::audit::MAX_AUDIT_PAGE;
use http::{HeaderValue, header};

use super::{AdminCaller, ApiResult, ok};
use crate::App;
use crate::error::ApiError;
use berth_api::*;

/// The audit log, newest first. System administrators read all of it; a project admin reads
/// its project's events (`project` required). A full page carries `Link: <...>; rel="next"`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = [AuditEntry],
               headers(("Link" = String, description = "The next page, when this one is full"))),
              (status = 400, body = Errors), (status = 401, body = Errors),
              (status = 403, body = Errors)))]
pub(super) async fn audit_events(
    State(app): State<App>,
    AdminCaller { who, .. }: AdminCaller,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult {
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
