//! distribution-spec "Pushing blobs": monolithic, streamed, chunked, mounts, errors.

use reqwest::{Method, StatusCode};

use crate::common::*;

#[tokio::test]
async fn chunked_upload_with_stale_location_and_out_of_order_chunk() {
    let app = TestApp::start().await;
    let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = sha256(&data);

    let r = app
        .req(Method::POST, "/v2/team/web/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-0");
    let first = header(&r, "location").to_string();
    assert!(!header(&r, "docker-upload-uuid").is_empty());

    let r = app
        .req(Method::PATCH, &first)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-49999")
        .header("content-length", "50000")
        .body(data[..50_000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-49999");
    let second = header(&r, "location").to_string();

    // Out of order: 416, and the session is unchanged.
    let r = app
        .req(Method::PATCH, &second)
        .header("content-range", "60000-60009")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), "0-49999");

    // Status through a stale Location still answers.
    let r = app.get(&first).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-49999");
    assert!(header(&r, "location").contains("/blobs/uploads/"));

    // A streamed PATCH (no Content-Range) appends.
    let r = app
        .req(Method::PATCH, &second)
        .body(data[50_000..100_000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-99999");
    let third = header(&r, "location").to_string();

    // Closing PUT with the last chunk.
    let r = app
        .req(Method::PUT, &format!("{third}?digest={digest}"))
        .header("content-range", "100000-100002")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/team/web/blobs/{digest}")
    );

    let r = app.get(&format!("/v2/team/web/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
    // The session is gone.
    assert_error(
        app.get(&first).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn closing_put_without_body_and_monolithic_put() {
    let app = TestApp::start().await;
    let data = b"streamed then closed".to_vec();
    let digest = sha256(&data);
    let loc = app.open_session("a").await;
    let r = app
        .req(Method::PATCH, &loc)
        .body(data.clone())
        .send()
        .await
        .expect("PATCH");
    let loc = header(&r, "location").to_string();
    let r = app
        .req(Method::PUT, &format!("{loc}?digest={digest}"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);

    // POST then a single PUT carrying all the bytes.
    let data2 = b"monolithic put".to_vec();
    let digest2 = sha256(&data2);
    let loc = app.open_session("a").await;
    let r = app
        .req(Method::PUT, &format!("{loc}?digest={digest2}"))
        .header("content-type", "application/octet-stream")
        .body(data2.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.head(&format!("/v2/a/blobs/{digest2}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), data2.len().to_string());
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_visible() {
    let app = TestApp::start().await;
    let claimed = sha256(b"what the client claims");
    let actual = sha256(b"what it sends");
    // Monolithic POST.
    let r = app
        .req(
            Method::POST,
            &format!("/v2/a/blobs/uploads/?digest={claimed}"),
        )
        .body(b"what it sends".to_vec())
        .send()
        .await
        .expect("POST");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // Chunked, then a wrong digest at PUT.
    let loc = app.open_session("a").await;
    let r = app
        .req(Method::PATCH, &loc)
        .body(b"what it sends".to_vec())
        .send()
        .await
        .expect("PATCH");
    let loc = header(&r, "location").to_string();
    let r = app
        .req(Method::PUT, &format!("{loc}?digest={claimed}"))
        .send()
        .await
        .expect("PUT");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    for d in [&claimed, &actual] {
        assert_eq!(
            app.head(&format!("/v2/a/blobs/{d}")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_error(
        app.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // Nothing left in blob storage either: no blob, no upload data.
    assert_eq!(app.stored_objects().await, 0);
}

#[tokio::test]
async fn bad_requests_on_upload_sessions() {
    let app = TestApp::start().await;
    let loc = app.open_session("a").await;

    // Malformed Content-Range.
    let r = app
        .req(Method::PATCH, &loc)
        .header("content-range", "bytes=abc")
        .body(vec![1u8; 4])
        .send()
        .await
        .expect("PATCH");
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    // Content-Range whose length disagrees with the body.
    let r = app
        .req(Method::PATCH, &loc)
        .header("content-range", "0-9")
        .body(vec![1u8; 4])
        .send()
        .await
        .expect("PATCH");
    assert_error(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    let r = app.get(&loc).await;
    assert_eq!(header(&r, "range"), "0-0", "a refused chunk is not kept");

    // Closing PUT without a digest, or with an invalid one.
    let r = app.req(Method::PUT, &loc).send().await.expect("PUT");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = app
        .req(Method::PUT, &format!("{loc}?digest=sha256:1234"))
        .send()
        .await
        .expect("PUT");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    // Unknown, malformed, and other-repository sessions.
    for path in [
        "/v2/a/blobs/uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
        "/v2/a/blobs/uploads/not-an-id".to_string(),
        loc.replace("/v2/a/", "/v2/b/"),
    ] {
        assert_error(
            app.get(&path).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
    }

    // Cancel.
    let r = app.req(Method::DELETE, &loc).send().await.expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let r = app.req(Method::DELETE, &loc).send().await.expect("DELETE");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn cross_repository_mounts() {
    let app = TestApp::start().await;
    let digest = app.push_blob("src/one", b"shared layer").await;

    let r = app
        .req(
            Method::POST,
            &format!("/v2/dst/one/blobs/uploads/?mount={digest}&from=src/one"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/dst/one/blobs/{digest}")
    );
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(
        app.head(&format!("/v2/dst/one/blobs/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );

    // Without `from`: mounted automatically from a repository that holds it.
    let r = app
        .req(
            Method::POST,
            &format!("/v2/dst/two/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);

    // From a repository that does not hold it, or an unknown blob: a session instead.
    let r = app
        .req(
            Method::POST,
            &format!("/v2/dst/three/blobs/uploads/?mount={digest}&from=empty/repo"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/dst/three/blobs/uploads/"));
    let unknown = sha256(b"never pushed");
    let r = app
        .req(
            Method::POST,
            &format!("/v2/dst/three/blobs/uploads/?mount={unknown}&from=src/one"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.head(&format!("/v2/dst/three/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let r = app
        .req(
            Method::POST,
            "/v2/dst/three/blobs/uploads/?mount=sha256:bad&from=src/one",
        )
        .send()
        .await
        .expect("mount");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn concurrent_uploads_to_one_session_do_not_interleave() {
    let app = TestApp::start().await;
    let loc = app.open_session("a").await;
    let sends = (0..8).map(|i| {
        app.req(Method::PATCH, &loc)
            .header("content-range", "0-65535")
            .body(vec![i as u8; 65_536])
            .send()
    });
    let results = futures_util::future::join_all(sends).await;
    let accepted = results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == StatusCode::ACCEPTED))
        .count();
    assert_eq!(accepted, 1, "exactly one chunk 0-65535 can win");
    let r = app.get(&loc).await;
    assert_eq!(header(&r, "range"), "0-65535");
}
