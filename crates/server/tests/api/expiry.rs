//! Upload expiry: a session no request advances for `[uploads] expire_after_secs` goes, with
//! its partial data (files, or on S3 the multipart upload and the staged tail); a session in
//! use stays. Scaled out, both replicas run the job; the database lock lets one at a time.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::ManualClock;
use reqwest::{Method, StatusCode};

use crate::common::*;

/// Sessions idle for 2 s expire; the job looks every second. Time is `clock`'s.
async fn start(clock: Arc<ManualClock>) -> TestApp {
    TestApp::start_with_clock(clock, |c| {
        c.uploads.expire_after_secs = 2;
        c.uploads.expiry_interval_secs = 1;
    })
    .await
}

/// Multipart uploads open in the bucket; 0 on the filesystem.
fn open_multipart_uploads(app: &TestApp) -> usize {
    let storage = &app.config.storage;
    if storage.backend != "s3" {
        return 0;
    }
    let address = storage.endpoint.trim_start_matches("http://");
    berth_testkit::s3::multipart_uploads(address, &storage.bucket).len()
}

/// `berth_uploads_expired_total`, summed over the replicas.
async fn expired_total(app: &TestApp) -> u64 {
    metric(app, "berth_uploads_expired_total").await as u64
}

async fn patch(app: &TestApp, location: &str, start: usize, data: &[u8]) -> reqwest::Response {
    app.req(Method::PATCH, location)
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{start}-{}", start + data.len() - 1),
        )
        .body(data.to_vec())
        .send()
        .await
        .expect("PATCH")
}

#[tokio::test]
async fn idle_sessions_expire_with_their_data() {
    let clock = ManualClock::starting_now();
    let app = start(clock.clone()).await;
    let kept: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let kept_digest = app.push_blob("expiry/app", &kept).await;
    let objects_before = app.stored_objects().await;

    // 6 MiB: on S3 (5 MiB parts) one part is uploaded and 1 MiB staged as the tail.
    let abandoned = app.open_session("expiry/app").await;
    let data = vec![7u8; 6 << 20];
    let r = patch(&app, &abandoned, 0, &data).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        app.stored_objects().await > objects_before,
        "partial data is stored"
    );
    if app.config.storage.backend == "s3" {
        assert_eq!(open_multipart_uploads(&app), 1);
    }

    // Idle for longer than the expiry time: the job's next look takes it.
    clock.advance(Duration::from_secs(3));
    assert!(
        within_10s(|| async { app.get(&abandoned).await.status() == StatusCode::NOT_FOUND }).await,
        "the idle session was not expired within 10 s"
    );
    let r = patch(&app, &abandoned, data.len(), b"more").await;
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // Its data went with it; the finished blob stayed.
    assert_eq!(app.stored_objects().await, objects_before);
    assert_eq!(open_multipart_uploads(&app), 0);
    assert_eq!(app.meta().await.count_uploads().await.expect("count"), 0);
    let r = app
        .get(&format!("/v2/expiry/app/blobs/{kept_digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body"), kept);
    assert_eq!(expired_total(&app).await, 1);
}

#[tokio::test]
async fn sessions_in_use_do_not_expire() {
    let clock = ManualClock::starting_now();
    let app = start(clock.clone()).await;
    let location = app.open_session("expiry/busy").await;
    let data: Vec<u8> = (0..8_000u32).map(|i| (i * 13 % 256) as u8).collect();
    // Eight chunks over eight seconds: four times the expiry time, never idle for it. After
    // each second, an expiry pass (the job's own) finds nothing to take.
    let mut location = location;
    for (i, chunk) in data.chunks(1_000).enumerate() {
        let r = patch(&app, &location, i * 1_000, chunk).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk {i}");
        location = header(&r, "location").to_string();
        clock.advance(Duration::from_secs(1));
        let pass = app
            .app
            .services()
            .expire_uploads(Duration::from_secs(2))
            .await
            .expect("expiry");
        if let Some(report) = pass {
            assert_eq!(report.expired, 0, "chunk {i}: {report:?}");
        }
    }
    let separator = if location.contains('?') { '&' } else { '?' };
    let digest = sha256(&data);
    let r = app
        .req(
            Method::PUT,
            &format!("{location}{separator}digest={digest}"),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get(&format!("/v2/expiry/busy/blobs/{digest}")).await;
    assert_eq!(r.bytes().await.expect("body"), data);
    assert_eq!(expired_total(&app).await, 0);
}
