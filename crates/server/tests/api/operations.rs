//! The base endpoint, names and traversal attempts, health, metrics, graceful shutdown.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::common::*;

#[tokio::test]
async fn base_endpoint() {
    let app = TestApp::start().await;
    for path in ["/v2/", "/v2"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
}

#[tokio::test]
async fn invalid_names_and_traversal_attempts() {
    let app = TestApp::start().await;
    let digest = app.push_blob("a", b"x").await;
    for path in [
        "/v2/../a/tags/list",
        "/v2/a/../../etc/tags/list",
        "/v2/%2e%2e/a/tags/list",
        "/v2/a/%2e%2e/%2e%2e/blobs/sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        "/v2/A/tags/list",
        "/v2/a//b/tags/list",
        "/v2/a/b%2fc/tags/list",
        "/v2/a\\b/tags/list",
    ] {
        let (code, body) = app
            .raw(&format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("NAME_INVALID"), "{path}: {body}");
    }
    let (code, body) = app.raw("GET /v2/a/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("DIGEST_INVALID"));
    let long = "a".repeat(256);
    assert_error(
        app.get(&format!("/v2/{long}/tags/list")).await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
    assert_eq!(
        app.get(&format!("/v2/a/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_oci_errors() {
    let app = TestApp::start().await;
    assert_error(
        app.get("/v2/a/whatever").await,
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        app.get("/nothing").await,
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
    )
    .await;
    let r = app
        .req(Method::POST, "/v2/a/manifests/latest")
        .send()
        .await
        .expect("POST");
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    if scaled_out() {
        // Metrics count per process and the storage it breaks is the data directory's; the
        // embedded pass checks both.
        eprintln!("skipped on replicas: per-process metrics, filesystem storage");
        return;
    }
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.push_image("m", "v1", "metrics").await;
    let _ = app.get("/v2/m/manifests/v1").await;
    let r = app
        .req(Method::POST, "/v2/m/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let text = app.get("/metrics").await.text().await.expect("text");
    for needle in [
        "berth_http_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 1",
        "berth_http_requests_total{route=\"upload_start\",method=\"POST\",status=\"201\"} 2",
        "berth_http_request_duration_seconds_bucket",
        "berth_uploads_in_progress 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let received = metric(&text, "berth_http_received_bytes_total");
    assert!(received > 1000.0, "{received}");
    assert!(metric(&text, "berth_http_sent_bytes_total") > 100.0);

    // Storage gone: not ready, still alive.
    std::fs::remove_dir_all(app.dir.path().join("data/uploads")).expect("rm");
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

/// `/readyz` reports each backend: 200 and `ready` when both answer; 503, `unavailable` and
/// what is wrong with the one that does not.
#[tokio::test]
async fn readiness_reports_each_backend() {
    let app = TestApp::start().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "status": "ready",
            "checks": {"database": {"status": "ok"}, "storage": {"status": "ok"}}
        })
    );
    if scaled_out() {
        eprintln!("the failure half needs the filesystem storage of the embedded pass");
        return;
    }
    let uploads = app.dir.path().join("data/uploads");
    std::fs::remove_dir_all(&uploads).expect("rm");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "status": "unavailable",
            "checks": {
                "database": {"status": "ok"},
                // What is wrong goes to the log, not to anyone who asks.
                "storage": {"status": "error"},
            }
        })
    );
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    std::fs::create_dir(&uploads).expect("mkdir");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let mut app = TestApp::start().await;
    let loc = app.open_session("a").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let request = app.req(Method::PATCH, &loc).body(body).send();
    let pending = tokio::spawn(request);
    tx.send(Ok(vec![1u8; 1000])).await.expect("send");
    assert!(
        within_10s(|| async {
            crate::common::metric(&app, "berth_upload_requests_running").await >= 1.0
        })
        .await,
        "the PATCH never reached the server"
    );
    app.trigger_shutdown();
    // New connections are refused while the old request goes on.
    let base = app.base.clone();
    assert!(
        within_10s(|| async { reqwest::get(format!("{base}/v2/")).await.is_err() }).await,
        "new connections still accepted 10 s after the shutdown began"
    );
    tx.send(Ok(vec![2u8; 1000])).await.expect("send");
    drop(tx);
    let r = pending.await.expect("join").expect("response");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-1999");
    let server = app.server.take().expect("server");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("serve ok");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
