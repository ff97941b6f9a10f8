//! One log line and the metrics of every request.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use crate::App;
use crate::metrics::RequestLabels;

/// What the handler learned of the request, for the log line: set as a response extension.
#[derive(Clone, Debug)]
pub struct RouteInfo {
    pub route: &'static str,
    pub repository: Option<String>,
}

pub async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // The client's address, once per request, for the login limit and the audit log.
    let mut request = request;
    let peer = crate::auth::Peer::of(request.extensions()).0;
    let client = peer.map(|peer| app.trusted_proxies().client(peer, request.headers()));
    request
        .extensions_mut()
        .insert(crate::auth::ClientAddr(client));
    // Only a trusted proxy may say which scheme the client used (`client_addr.rs`).
    if !peer.is_some_and(|peer| app.trusted_proxies().trusts(peer)) {
        request.headers_mut().remove("x-forwarded-proto");
    }
    let received = app.metrics().bytes_received.clone();
    let request = request.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                received.inc_by(data.len() as u64);
            }
            frame
        }))
    });
    let path_route = match request.uri().path() {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "unknown",
    };
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let info = response.extensions().get::<RouteInfo>().cloned();
    let route = info.as_ref().map_or(path_route, |i| i.route);
    let status = response.status().as_u16();
    let bytes = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let labels = RequestLabels {
        route,
        method: method.to_string(),
        status,
    };
    app.metrics().requests.get_or_create(&labels).inc();
    app.metrics()
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        route,
        client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
        repository = info.as_ref().and_then(|i| i.repository.as_deref()).unwrap_or("-"),
        status,
        bytes,
        duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "request"
    );
    let sent = app.metrics().bytes_sent.clone();
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                sent.inc_by(data.len() as u64);
            }
            frame
        }))
    })
}
