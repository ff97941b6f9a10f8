//! The `/v2` API: parse the request into an [`Endpoint`], make the one access check, call the
//! registry, shape the response. Handlers stay a few lines each.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, ManifestRef, Repository, Tag};
use berth_registry::audit::actor_name;
use berth_registry::{
    Action, Audit, AuditAction, Caller, MountOutcome, Pusher, RangeRequest, UploadOwner,
    UploadStatus,
};
use berth_storage::ByteStream;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::App;
use crate::auth;
use crate::endpoint::Endpoint;
use crate::error::{ApiError, upload_range};
use crate::observe::RouteInfo;

type ApiResult = Result<Response, ApiError>;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// How long a presigned blob URL handed out in a redirect stays valid (distribution's S3
/// driver uses 20 minutes too).
const BLOB_REDIRECT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(20 * 60);

pub async fn dispatch(State(app): State<App>, request: Request) -> Response {
    let method = request.method().clone();
    let endpoint = match Endpoint::parse(&method, request.uri().path()) {
        Some(endpoint) => endpoint,
        None => {
            return ApiError::RouteUnknown(request.uri().path().chars().take(300).collect())
                .into_response();
        }
    };
    let info = RouteInfo {
        route: endpoint.as_ref().map_or("v2_invalid", |e| e.route()),
        repository: endpoint
            .as_ref()
            .ok()
            .and_then(|e| e.repository())
            .map(|r| r.to_string()),
    };
    let peer = auth::Peer::of(request.extensions());
    let result = match endpoint {
        Ok(endpoint) => match authorize(&app, &method, &endpoint, request.headers(), peer).await {
            Ok(caller) => {
                let who = Who {
                    caller: &caller,
                    peer,
                };
                // Requests that carry blob data hold a slot of `[limits]` while they run.
                let carries_data =
                    matches!(endpoint, Endpoint::StartUpload(_) | Endpoint::Upload(..))
                        && matches!(method, Method::POST | Method::PATCH | Method::PUT);
                match carries_data
                    .then(|| app.upload_slots().acquire(peer.0))
                    .transpose()
                {
                    Ok(_slot) => handle(&app, who, method.clone(), endpoint, request).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match &result {
        Err(ApiError::Registry(berth_registry::Error::QuotaExceeded(_))) => {
            app.metrics().quota_refusals.inc();
        }
        Err(ApiError::Registry(berth_registry::Error::TagImmutable(_))) => {
            app.metrics().immutable_refusals.inc();
        }
        Err(ApiError::Registry(berth_registry::Error::TooManyOpenUploads { .. })) => {
            app.metrics().open_upload_refusals.inc();
        }
        _ => {}
    }
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if method == Method::HEAD {
        // HEAD answers carry the headers of GET, never a body (not even an error document).
        *response.body_mut() = Body::empty();
    }
    response
        .headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    response.extensions_mut().insert(info);
    response
}

/// The single access check of every `/v2` request: who is calling, and may they do this
/// (the access service decides; here the request says what it is).
async fn authorize(
    app: &App,
    method: &Method,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    peer: auth::Peer,
) -> Result<Caller, ApiError> {
    let action = match (endpoint, method) {
        (_, &Method::DELETE) if !matches!(endpoint, Endpoint::Upload(..)) => Action::Delete,
        (Endpoint::StartUpload(_) | Endpoint::Upload(..), _) => Action::Push,
        (Endpoint::Manifest(..), &Method::PUT) => Action::Push,
        _ => Action::Pull,
    };
    let access = app.access();
    let refusal = |e| auth::refusal(app, headers, e);
    let caller = access
        .authenticate(&auth::credentials(headers), peer.0)
        .await
        .map_err(refusal)?;
    match endpoint.repository() {
        Some(repository) => access
            .authorize(&caller, repository, action, peer.0)
            .await
            .map_err(refusal)?,
        None if matches!(endpoint, Endpoint::Base) => {
            access.authorize_base(&caller).map_err(refusal)?;
        }
        // The catalog lists what the caller may pull.
        None => {}
    }
    Ok(caller)
}

/// Who is calling, and from where: for the access decisions and the audit log.
#[derive(Clone, Copy)]
struct Who<'a> {
    caller: &'a Caller,
    peer: auth::Peer,
}

impl Who<'_> {
    /// Records an event that just happened, by this caller.
    async fn record(&self, app: &App, event: Audit) {
        let actor = actor_name(&self.caller.principal());
        app.registry().record(&actor, self.peer.0, event).await;
    }

    /// Whose upload sessions the caller's new one counts with: its account, or its address.
    fn upload_owner(&self) -> UploadOwner {
        UploadOwner::of(&self.caller.principal(), self.peer.0)
    }
}

async fn handle(
    app: &App,
    who: Who<'_>,
    method: Method,
    endpoint: Endpoint,
    request: Request,
) -> ApiResult {
    let caller = who.caller;
    let query = Query::parse(request.uri().query())?;
    let headers = request.headers().clone();
    match (endpoint, method) {
        (Endpoint::Base, _) => Ok(axum::Json(json!({})).into_response()),
        (Endpoint::Catalog, _) => catalog(app, caller, &query).await,
        (Endpoint::Tags(repo), _) => tags(app, &repo, &query).await,
        (Endpoint::Manifest(repo, reference), Method::PUT) => {
            put_manifest(
                app,
                who,
                &repo,
                &reference,
                &query,
                &headers,
                request.into_body(),
            )
            .await
        }
        (Endpoint::Manifest(repo, reference), Method::DELETE) => {
            app.registry().delete_manifest(&repo, &reference).await?;
            let (action, what) = match &reference {
                ManifestRef::Tag(tag) => (AuditAction::DeleteTag, format!("{repo}:{tag}")),
                ManifestRef::Digest(digest) => {
                    (AuditAction::DeleteManifest, format!("{repo}@{digest}"))
                }
            };
            who.record(app, Audit::on_repository(action, &repo, what))
                .await;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Manifest(repo, reference), method) => {
            get_manifest(app, who, &repo, &reference, &method).await
        }
        (Endpoint::Blob(repo, digest), Method::DELETE) => {
            app.registry().delete_blob(&repo, &digest).await?;
            let what = format!("{repo}@{digest}");
            who.record(
                app,
                Audit::on_repository(AuditAction::DeleteBlob, &repo, what),
            )
            .await;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Blob(repo, digest), method) => {
            get_blob(app, &repo, &digest, &headers, method).await
        }
        (Endpoint::StartUpload(repo), _) => {
            start_upload(app, who, &repo, &query, request.into_body()).await
        }
        (Endpoint::Upload(repo, id), Method::GET) => {
            let status = app.registry().upload_status(&repo, &id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &status))
        }
        (Endpoint::Upload(repo, id), Method::PATCH) => {
            let chunk = content_range(&headers)?;
            let status = app
                .registry()
                .append_upload(&repo, &id, chunk, body_stream(request.into_body()))
                .await?;
            Ok(upload_response(StatusCode::ACCEPTED, &status))
        }
        (Endpoint::Upload(repo, id), Method::PUT) => {
            let digest = query.digest()?.ok_or_else(|| {
                ApiError::DigestInvalid(berth_oci::DigestError::Invalid(
                    "missing ?digest= on the closing PUT".into(),
                ))
            })?;
            let chunk = content_range(&headers)?;
            let body = has_body(&headers).then(|| body_stream(request.into_body()));
            let blob = app
                .registry()
                .finish_upload(&repo, &id, &digest, chunk, body)
                .await?;
            Ok(blob_created(&repo, &blob.digest))
        }
        (Endpoint::Upload(repo, id), _) => {
            app.registry().cancel_upload(&repo, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Endpoint::Referrers(repo, digest), _) => {
            let filter = query.get("artifactType");
            let index = app.registry().referrers(&repo, &digest, filter).await?;
            let mut response = (
                [(header::CONTENT_TYPE, berth_oci::media_type::OCI_INDEX)],
                index,
            )
                .into_response();
            if filter.is_some() {
                response.headers_mut().insert(
                    "oci-filters-applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(response)
        }
    }
}

/// Query parameters in order; a key may repeat (`?tag=a&tag=b`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        Ok(Query(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn digest(&self) -> Result<Option<Digest>, ApiError> {
        Ok(self.get("digest").map(str::parse).transpose()?)
    }

    fn n(&self) -> Result<Option<u32>, ApiError> {
        self.get("n")
            .map(|n| {
                n.parse::<u32>()
                    .map_err(|_| ApiError::BadRequest(format!("n={n:?} is not a count")))
            })
            .transpose()
    }
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::BadRequest("unrepresentable header".into()))
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(TryStreamExt::map_err(
        body.into_data_stream(),
        std::io::Error::other,
    ))
}

/// A request carries a body when it says so; a bodiless closing PUT is common.
fn has_body(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => {
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                > 0
        }
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// `Content-Range: <start>-<end>` of a chunk (distribution-spec "Pushing a blob in chunks"),
/// as (start, length). A malformed value is refused with 416.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || ApiError::RangeInvalid("Content-Range must be <start>-<end>".into());
    let text = value.to_str().map_err(|_| invalid())?;
    berth_registry::parse_content_range(text)
        .map(Some)
        .ok_or_else(invalid)
}

fn upload_response(status: StatusCode, upload: &UploadStatus) -> Response {
    let location = format!("/v2/{}/blobs/uploads/{}", upload.repository, upload.id);
    let mut response = (status, Body::empty()).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&upload_range(upload.offset)) {
        h.insert(header::RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&upload.id) {
        h.insert("docker-upload-uuid", v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn blob_created(repo: &Repository, digest: &Digest) -> Response {
    let mut response = (StatusCode::CREATED, Body::empty()).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/{repo}/blobs/{digest}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("docker-content-digest", v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// `POST /v2/<name>/blobs/uploads/`: a session, a mount, or a whole blob. Every path that
/// opens a session counts it against the caller's open sessions
/// (`[limits] max_open_uploads_per_account`).
async fn start_upload(
    app: &App,
    who: Who<'_>,
    repo: &Repository,
    query: &Query,
    body: Body,
) -> ApiResult {
    let caller = who.caller;
    let owner = who.upload_owner();
    if let Some(mount) = query.get("mount") {
        let digest: Digest = mount.parse()?;
        let from = query
            .get("from")
            .map(str::parse::<Repository>)
            .transpose()?;
        // A mount the caller may not make becomes an ordinary upload (distribution-spec: the
        // registry may answer a mount with a session).
        if !app.access().may_mount_from(caller, from.as_ref()).await? {
            let status = app.registry().start_upload(repo, &owner).await?;
            return Ok(upload_response(StatusCode::ACCEPTED, &status));
        }
        return match app
            .registry()
            .mount_blob(repo, &digest, from.as_ref(), &owner)
            .await?
        {
            MountOutcome::Mounted(blob) => Ok(blob_created(repo, &blob.digest)),
            MountOutcome::Session(status) => Ok(upload_response(StatusCode::ACCEPTED, &status)),
        };
    }
    if let Some(digest) = query.digest()? {
        let blob = app
            .registry()
            .upload_blob(repo, &digest, body_stream(body), &owner)
            .await?;
        return Ok(blob_created(repo, &blob.digest));
    }
    let status = app.registry().start_upload(repo, &owner).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &status))
}

async fn get_blob(
    app: &App,
    repo: &Repository,
    digest: &Digest,
    headers: &HeaderMap,
    method: Method,
) -> ApiResult {
    let digest_header = header_value(&digest.to_string())?;
    if method == Method::HEAD {
        let blob = app.registry().stat_blob(repo, digest).await?;
        let mut response = StatusCode::OK.into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, blob.size.into());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert("docker-content-digest", digest_header);
        return Ok(response);
    }
    if app.config().storage.redirect
        && let Some(url) = app
            .registry()
            .blob_redirect(repo, digest, BLOB_REDIRECT_LIFETIME)
            .await?
    {
        // distribution-spec "Pulling blobs": a registry MAY redirect a blob GET; the client
        // follows it (with its Range header) to the blob store.
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        let h = response.headers_mut();
        h.insert(header::LOCATION, header_value(&url)?);
        h.insert("docker-content-digest", digest_header);
        return Ok(response);
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(RangeRequest::parse);
    let (blob, served, stream) = app.registry().open_blob(repo, digest, range).await?;
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("docker-content-digest", digest_header);
    match served {
        Some(r) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = response.headers_mut();
            h.insert(header::CONTENT_LENGTH, r.len().into());
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{}", r.start, r.end, blob.size))?,
            );
        }
        None => {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, blob.size.into());
        }
    }
    Ok(response)
}

/// `GET` or `HEAD` of a manifest. With `[audit] pulls`, a `GET` served is queued for the
/// audit log (written in batches: no transaction of its own).
async fn get_manifest(
    app: &App,
    who: Who<'_>,
    repo: &Repository,
    reference: &ManifestRef,
    method: &Method,
) -> ApiResult {
    let m = app.registry().get_manifest(repo, reference).await?;
    let mut response = m.content.clone().into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type)?);
    h.insert(header::CONTENT_LENGTH, m.content.len().into());
    h.insert(
        "docker-content-digest",
        header_value(&m.digest.to_string())?,
    );
    if method == Method::GET
        && let Some(pulls) = app.pull_audit()
    {
        let actor = actor_name(&who.caller.principal());
        let now = app.registry().clock().now();
        pulls.push(Audit::pull(repo, reference, &m.digest).at(now, &actor, who.peer.0));
    }
    Ok(response)
}

async fn put_manifest(
    app: &App,
    who: Who<'_>,
    repo: &Repository,
    reference: &ManifestRef,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let limit = app.registry().limits().max_manifest_bytes;
    let too_large = || ApiError::Registry(berth_registry::Error::ManifestTooLarge { limit });
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return Err(too_large());
    }
    let mut body = body.into_data_stream();
    let mut content = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::Registry(berth_registry::Error::Body(std::io::Error::other(e)))
        })?;
        if content.len() + chunk.len() > limit {
            drain(Body::from_stream(body)).await;
            return Err(too_large());
        }
        content.extend_from_slice(&chunk);
    }
    let extra_tags = query
        .all("tag")
        .map(|t| t.parse::<Tag>().map_err(ApiError::ReferenceInvalid))
        .collect::<Result<Vec<_>, _>>()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // The push's audit event is written in the manifest's own transaction.
    let actor = actor_name(&who.caller.principal());
    let pusher = Pusher {
        actor: &actor,
        source: who.peer.0,
    };
    let put = app
        .registry()
        .put_manifest(repo, reference, content_type, content, extra_tags, pusher)
        .await?;
    let mut response = (StatusCode::CREATED, Body::empty()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{repo}/manifests/{}", put.digest))?,
    );
    h.insert(
        "docker-content-digest",
        header_value(&put.digest.to_string())?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(subject) = put.subject {
        h.insert("oci-subject", header_value(&subject.to_string())?);
    }
    Ok(response)
}

/// Reads and discards what is left of a refused request body, up to a bound, so that the client
/// gets to read the error instead of a reset connection.
async fn drain(body: Body) {
    const DRAIN_LIMIT: usize = 16 << 20;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
}

/// `Link: <url>; rel="next"` for a listing that continues after `last`.
fn next_link(path: &str, n: Option<u32>, last: &str) -> Result<HeaderValue, ApiError> {
    let mut query = vec![("last", last.to_string())];
    if let Some(n) = n {
        query.insert(0, ("n", n.to_string()));
    }
    let query =
        serde_urlencoded::to_string(query).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    header_value(&format!("<{path}?{query}>; rel=\"next\""))
}

async fn tags(app: &App, repo: &Repository, query: &Query) -> ApiResult {
    let n = query.n()?;
    let page = app.registry().list_tags(repo, n, query.get("last")).await?;
    // Serialized from the borrowed names: no JSON value built per tag.
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: Vec<&'a str>,
    }
    let items = page.items();
    let mut response = axum::Json(TagList {
        name: repo.as_str(),
        tags: items.iter().map(Tag::as_str).collect(),
    })
    .into_response();
    if page.more
        && let Some(last) = items.last()
    {
        let link = next_link(&format!("/v2/{repo}/tags/list"), n, last.as_str())?;
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn catalog(app: &App, caller: &Caller, query: &Query) -> ApiResult {
    let n = query.n()?;
    let limit = n
        .unwrap_or(berth_registry::MAX_PAGE)
        .min(berth_registry::MAX_PAGE) as usize;
    // With accounts, only repositories the caller may pull are listed: read pages until `n`
    // visible names are found or the catalog ends.
    let mut names: Vec<Repository> = Vec::new();
    let mut last = query.get("last").map(str::to_string);
    let mut more = false;
    loop {
        let page = app.registry().catalog(n, last.as_deref()).await?;
        let fetched = page.items.len();
        for repository in page.items {
            last = Some(repository.to_string());
            if names.len() == limit {
                more = true;
                break;
            }
            if app.access().may_pull(caller, &repository).await? {
                names.push(repository);
            }
        }
        if more || !page.more || fetched == 0 {
            more = more || (page.more && names.len() == limit);
            break;
        }
    }
    let names: Vec<&str> = names.iter().map(Repository::as_str).collect();
    let mut response = axum::Json(json!({ "repositories": names })).into_response();
    if more && let Some(last) = names.last() {
        let link = next_link("/v2/_catalog", n, last)?;
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}
