//! distribution-spec "Pulling blobs", "Deleting blobs", and repository isolation.

use reqwest::{Method, StatusCode};

use crate::common::*;

#[tokio::test]
async fn get_head_and_ranges() {
    let app = TestApp::start().await;
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let digest = app.push_blob("r", &data).await;
    let path = format!("/v2/r/blobs/{digest}");

    let r = app.head(&path).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "1000");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert!(r.bytes().await.expect("body").is_empty());

    let r = app.get(&path).await;
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);

    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=900-", 900, 999),
        ("bytes=-10", 990, 999),
        ("bytes=990-5000", 990, 999),
    ] {
        let r = app
            .req(Method::GET, &path)
            .header("range", range)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/1000")
        );
        assert_eq!(header(&r, "content-length"), (end - start + 1).to_string());
        assert_eq!(
            r.bytes().await.expect("body").to_vec(),
            data[start..=end].to_vec()
        );
    }
    let r = app
        .req(Method::GET, &path)
        .header("range", "bytes=1000-")
        .send()
        .await
        .expect("GET");
    assert_eq!(header(&r, "content-range"), "bytes */1000");
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "SIZE_INVALID").await;
    // Syntax berth does not serve partially is ignored: the whole blob (RFC 9110 §14.2).
    let r = app
        .req(Method::GET, &path)
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_blobs_and_isolation_between_repositories() {
    let app = TestApp::start().await;
    let digest = app.push_blob("a/private", b"secret layer").await;
    // Same digest, another repository: not readable, whatever exists elsewhere.
    assert_error(
        app.get(&format!("/v2/b/other/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let r = app.head(&format!("/v2/b/other/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.bytes().await.expect("body").is_empty(),
        "HEAD has no body"
    );
    let unknown = sha256(b"unknown");
    assert_error(
        app.get(&format!("/v2/a/private/blobs/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_error(
        app.get("/v2/a/private/blobs/sha256:abc").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert_error(
        app.get("/v2/a/private/blobs/md5:abc").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn delete_blob() {
    let app = TestApp::start().await;
    let digest = app.push_blob("r", b"to be deleted").await;
    app.push_blob("keep", b"to be deleted").await;
    let r = app
        .req(Method::DELETE, &format!("/v2/r/blobs/{digest}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_error(
        app.get(&format!("/v2/r/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    let r = app
        .req(Method::DELETE, &format!("/v2/r/blobs/{digest}"))
        .send()
        .await
        .expect("DELETE");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // Other repositories keep it.
    assert_eq!(
        app.get(&format!("/v2/keep/blobs/{digest}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn empty_blob() {
    let app = TestApp::start().await;
    let digest = app.push_blob("r", b"").await;
    let r = app.get(&format!("/v2/r/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), "0");
    let r = app
        .req(Method::GET, &format!("/v2/r/blobs/{digest}"))
        .header("range", "bytes=0-0")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}
