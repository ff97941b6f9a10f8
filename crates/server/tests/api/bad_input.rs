//! Bad input never costs data: a malformed chunk, a lying Content-Length, a client that hangs
//! up mid-body, a manifest the registry refuses, a malformed name, digest or reference in a
//! path. Each is answered with its OCI error, and what was stored before (an upload's
//! acknowledged bytes, a tag, a repository's content) is as it was and stays usable.

use std::time::Duration;

use berth_testkit::noise;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

/// The session's acknowledged range, as GET on its URL reports it.
async fn acknowledged(app: &TestApp, location: &str) -> String {
    let r = app.get(location).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "GET {location}");
    header(&r, "range").to_string()
}

async fn patch(app: &TestApp, location: &str, range: Option<&str>, body: &[u8]) -> Response {
    app.send(|| {
        let r = app
            .req(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .body(body.to_vec());
        match range {
            Some(range) => r.header("content-range", range),
            None => r,
        }
    })
    .await
}

/// The closing PUT, with `?digest=` as given and an optional last chunk.
async fn close(
    app: &TestApp,
    location: &str,
    digest: &str,
    chunk: Option<(&str, &[u8])>,
) -> Response {
    let path = format!("{location}?digest={digest}");
    app.send(|| {
        let r = app.req(Method::PUT, &path);
        match chunk {
            Some((range, body)) => r
                .header("content-type", "application/octet-stream")
                .header("content-range", range)
                .body(body.to_vec()),
            None => r,
        }
    })
    .await
}

/// Asserts an OCI error like [`assert_error`], saying which request it was about.
async fn assert_refused(r: Response, status: StatusCode, code: &str, what: &str) -> Value {
    assert_eq!(r.status(), status, "{what}");
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "{what}: {body}");
    assert!(body["errors"][0]["message"].is_string(), "{what}: {body}");
    body
}

/// The blob is served byte for byte under `repo`.
async fn assert_blob(app: &TestApp, repo: &str, data: &[u8]) {
    let r = app.get(&format!("/v2/{repo}/blobs/{}", sha256(data))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.expect("blob") == data, "other bytes served");
}

#[tokio::test]
async fn malformed_requests_in_a_chunked_upload_leave_it_usable() {
    let app = TestApp::start().await;
    let data = noise(7, 3 * 4096 + 100);
    let digest = sha256(&data);
    let end = data.len() - 1;
    let loc = app.open_session("bad/chunks").await;
    let r = patch(&app, &loc, Some("0-4095"), &data[..4096]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location").to_string();

    // Chunks that do not continue at byte 4096 (distribution-spec: out of order -> 416, with
    // the Range the client resumes from).
    for (what, range, body) in [
        ("a gap", "5000-5999", &data[5000..6000]),
        ("an overlap", "4000-4999", &data[4000..5000]),
        ("the first chunk again", "0-4095", &data[..4096]),
        (
            "a start far beyond the end",
            "1000000-1000099",
            &data[..100],
        ),
        (
            "a start at the last byte u64 holds",
            "18446744073709551615-18446744073709551615",
            &data[..1],
        ),
    ] {
        let r = patch(&app, &loc, Some(range), body).await;
        assert_eq!(header(&r, "range"), "0-4095", "{what}");
        assert!(header(&r, "location").ends_with(loc.rsplit('/').next().unwrap_or("-")));
        assert_refused(
            r,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            what,
        )
        .await;
        assert_eq!(acknowledged(&app, &loc).await, "0-4095", "after {what}");
    }
    // A Content-Range that is no range at all: 416 too.
    for (what, range) in [
        ("garbage", "bytes=zz-yy"),
        ("an end before the start", "5000-4096"),
        ("no end", "4096-"),
        ("a negative start", "-1-100"),
        ("a length past u64", "0-18446744073709551615"),
    ] {
        let r = patch(&app, &loc, Some(range), &data[4096..5096]).await;
        assert_refused(
            r,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            what,
        )
        .await;
        assert_eq!(acknowledged(&app, &loc).await, "0-4095", "after {what}");
    }
    // A Content-Length that disagrees with the Content-Range: the body is read (and written
    // to storage) before the difference shows; none of it may count.
    for (what, range, body) in [
        (
            "a body shorter than its range",
            "4096-5095",
            &data[4096..4596],
        ),
        (
            "a body longer than its range",
            "4096-4195",
            &data[4096..5096],
        ),
        (
            "a range ending at the last byte u64 holds",
            "4096-18446744073709551615",
            &data[4096..5096],
        ),
        ("an empty body", "4096-5095", &data[..0]),
    ] {
        let r = patch(&app, &loc, Some(range), body).await;
        assert_refused(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", what).await;
        assert_eq!(acknowledged(&app, &loc).await, "0-4095", "after {what}");
    }
    // A closing PUT with a digest that is no digest: refused before anything is read.
    for bad in [
        "sha256:1234",
        "notadigest",
        "md5:abc",
        "sha256:",
        "SHA256:abc",
    ] {
        let r = close(&app, &loc, bad, Some(("4096-5095", &data[4096..5096]))).await;
        assert_refused(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID", bad).await;
        assert_eq!(acknowledged(&app, &loc).await, "0-4095", "after {bad}");
    }
    // A closing PUT with the right digest but a last chunk out of order, or not as long as
    // its range: nothing is committed, the session stays.
    let r = close(&app, &loc, &digest, Some(("8192-12387", &data[8192..]))).await;
    assert_eq!(header(&r, "range"), "0-4095");
    assert_refused(
        r,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        "closing PUT out of order",
    )
    .await;
    let r = close(&app, &loc, &digest, Some(("4096-12387", &data[4096..8192]))).await;
    assert_refused(
        r,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
        "closing PUT shorter than its range",
    )
    .await;
    assert_eq!(acknowledged(&app, &loc).await, "0-4095");
    assert_eq!(
        app.head(&format!("/v2/bad/chunks/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "nothing committed"
    );

    // Correct requests finish it, byte for byte.
    let r = patch(&app, &loc, Some("4096-8191"), &data[4096..8192]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-8191");
    let loc = header(&r, "location").to_string();
    let r = close(
        &app,
        &loc,
        &digest,
        Some((&format!("8192-{end}"), &data[8192..])),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_blob(&app, "bad/chunks", &data).await;
    assert_refused(
        app.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        "the finished session",
    )
    .await;
    // The blob, and nothing the refused requests wrote.
    assert_eq!(app.stored_objects().await, 1);
}

#[tokio::test]
async fn a_wrong_digest_costs_only_the_upload_that_claimed_it() {
    let app = TestApp::start().await;
    let repo = "bad/digest";
    // The digest the bad uploads claim is that of a blob the registry holds.
    let existing = noise(8, 3000);
    let claimed = app.push_blob(repo, &existing).await;
    let data = noise(9, 2 * 4096 + 10);
    let digest = sha256(&data);

    // Chunked, the last chunk on the closing PUT, under another blob's digest: DIGEST_INVALID.
    // berth then drops the session and its data (distribution-spec: after a 4xx other than
    // 416 the upload has failed; a client starts again), so nothing half-verified lingers.
    let loc = app.open_session(repo).await;
    let r = patch(&app, &loc, Some("0-4095"), &data[..4096]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location").to_string();
    let r = close(&app, &loc, &claimed, Some(("4096-8201", &data[4096..]))).await;
    assert_refused(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID", "wrong digest").await;
    assert_refused(
        app.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        "the session after a wrong digest",
    )
    .await;
    // Monolithic, the same claim.
    let r = app
        .send(|| {
            app.req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={claimed}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.clone())
        })
        .await;
    assert_refused(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID", "monolithic").await;

    // The blob whose digest was claimed is untouched; the bytes sent are nowhere.
    assert_blob(&app, repo, &existing).await;
    let r = app.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_refused(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "the bytes sent").await;
    assert_eq!(app.stored_objects().await, 1);

    // The client starts again and succeeds.
    let loc = app.open_session(repo).await;
    let r = patch(&app, &loc, Some("0-4095"), &data[..4096]).await;
    let loc = header(&r, "location").to_string();
    let r = close(&app, &loc, &digest, Some(("4096-8201", &data[4096..]))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_blob(&app, repo, &data).await;
    assert_blob(&app, repo, &existing).await;
    assert_eq!(app.stored_objects().await, 2);
}

/// Sends `head` and `body`, waits for the server to take them in, then closes the connection
/// without sending the rest of the body its Content-Length announced.
async fn hang_up_mid_body(app: &TestApp, head: &str, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    s.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
}

/// A PATCH sent right after a client hung up may find the session still held by the
/// abandoned request (400 "busy", until the server has seen the connection close): sent again
/// then, as a client would.
async fn patch_when_free(app: &TestApp, location: &str, range: &str, body: &[u8]) -> Response {
    for _ in 0..50 {
        let r = patch(app, location, Some(range), body).await;
        if r.status() != StatusCode::BAD_REQUEST {
            return r;
        }
        let refusal =
            assert_refused(r, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", range).await;
        let message = refusal["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("busy"), "{refusal}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the session stayed busy for 5 s after its client left");
}

#[tokio::test]
async fn a_client_gone_mid_body_leaves_the_upload_at_its_last_acknowledged_byte() {
    let app = TestApp::start().await;
    let repo = "bad/hangup";
    let data = noise(10, 3 * 4096 + 7);
    let digest = sha256(&data);
    let loc = app.open_session(repo).await;
    let r = patch(&app, &loc, Some("0-4095"), &data[..4096]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location").to_string();
    let request = |method: &str, target: &str, range: &str, length: usize| {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: registry\r\n\
             Content-Type: application/octet-stream\r\nContent-Range: {range}\r\n\
             Content-Length: {length}\r\n\r\n"
        )
    };

    // A PATCH announcing 4096 bytes that sends 1500, one that sends none, and a closing PUT
    // (right digest) that sends half its last chunk.
    let end = data.len() - 1;
    hang_up_mid_body(
        &app,
        &request("PATCH", &loc, "4096-8191", 4096),
        &data[4096..5596],
    )
    .await;
    assert_eq!(acknowledged(&app, &loc).await, "0-4095");
    hang_up_mid_body(&app, &request("PATCH", &loc, "4096-8191", 4096), &[]).await;
    assert_eq!(acknowledged(&app, &loc).await, "0-4095");
    hang_up_mid_body(
        &app,
        &request(
            "PUT",
            &format!("{loc}?digest={digest}"),
            &format!("4096-{end}"),
            data.len() - 4096,
        ),
        &data[4096..8000],
    )
    .await;
    assert_eq!(acknowledged(&app, &loc).await, "0-4095");
    assert_eq!(
        app.head(&format!("/v2/{repo}/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a closing PUT cut short commits nothing"
    );

    // The upload goes on from byte 4096 and ends with the right bytes.
    let r = patch_when_free(&app, &loc, "4096-8191", &data[4096..8192]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-8191");
    let loc = header(&r, "location").to_string();
    // And once more after the second chunk: cut short, then sent whole.
    hang_up_mid_body(
        &app,
        &request("PATCH", &loc, &format!("8192-{end}"), data.len() - 8192),
        &data[8192..9000],
    )
    .await;
    assert_eq!(acknowledged(&app, &loc).await, "0-8191");
    let r = patch_when_free(&app, &loc, &format!("8192-{end}"), &data[8192..]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location").to_string();
    let r = close(&app, &loc, &digest, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_blob(&app, repo, &data).await;
    assert_eq!(app.stored_objects().await, 1);
}

/// A manifest of exactly `len` bytes: `base` with an annotation padding it out.
fn padded(base: &[u8], len: usize) -> Vec<u8> {
    let mut m: Value = serde_json::from_slice(base).expect("manifest");
    m["annotations"] = json!({"pad": ""});
    let bare = serde_json::to_vec(&m).expect("json").len();
    m["annotations"]["pad"] = "a".repeat(len - bare).into();
    let out = serde_json::to_vec(&m).expect("json");
    assert_eq!(out.len(), len);
    out
}

/// Tag `t` still serves `manifest` byte for byte, and the tag list is `tags`.
async fn assert_tag_unchanged(
    app: &TestApp,
    repo: &str,
    manifest: &[u8],
    tags: &Value,
    after: &str,
) {
    let digest = sha256(manifest);
    let r = app.get(&format!("/v2/{repo}/manifests/t")).await;
    assert_eq!(r.status(), StatusCode::OK, "after {after}");
    assert_eq!(header(&r, "docker-content-digest"), digest, "after {after}");
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST, "after {after}");
    assert!(
        r.bytes().await.expect("manifest") == manifest,
        "after {after}: other bytes"
    );
    let r = app.head(&format!("/v2/{repo}/manifests/t")).await;
    assert_eq!(header(&r, "docker-content-digest"), digest, "after {after}");
    let list = app.tag_list(repo).await;
    assert_eq!(&list["tags"], tags, "after {after}");
}

#[tokio::test]
async fn refused_manifests_leave_the_tag_as_it_was() {
    const LIMIT: usize = 16 << 10;
    let app = TestApp::start_with(|c| c.max_manifest_bytes = LIMIT).await;
    let repo = "bad/manifests";
    let (original, _) = app.push_image(repo, "t", "original").await;
    let config = br#"{"architecture":"amd64","os":"linux","seed":"next"}"#;
    let c = app.push_blob(repo, config).await;
    let layer = noise(12, 2000);
    let l = app.push_blob(repo, &layer).await;
    let good = image_manifest(&c, config.len(), &[(&l, layer.len())], None, None);
    // The limit is inclusive: a manifest of exactly that size is taken (under another tag).
    let r = app
        .put_manifest(repo, "edge", OCI_MANIFEST, &padded(&good, LIMIT))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let tags = json!(["edge", "t"]);
    assert_tag_unchanged(&app, repo, &original, &tags, "the setup").await;

    let missing = sha256(b"never pushed");
    let as_value = |m: &[u8]| -> Value { serde_json::from_slice(m).expect("manifest") };
    let with = |pointer: &str, value: Value| {
        let mut m = as_value(&good);
        *m.pointer_mut(pointer).expect("field") = value;
        serde_json::to_vec(&m).expect("json")
    };
    let docker_v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let unknown_child = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]
    }))
    .expect("json");
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "invalid JSON",
            OCI_MANIFEST,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "an empty body",
            OCI_MANIFEST,
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "a JSON array",
            OCI_MANIFEST,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "an unknown layer",
            OCI_MANIFEST,
            with("/layers/0/digest", missing.clone().into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "an unknown config",
            OCI_MANIFEST,
            with("/config/digest", missing.clone().into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "no config",
            OCI_MANIFEST,
            {
                let mut m = as_value(&good);
                m.as_object_mut().expect("object").remove("config");
                serde_json::to_vec(&m).expect("json")
            },
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "a layer digest that is no digest",
            OCI_MANIFEST,
            with("/layers/0/digest", "sha256:zz".into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "schemaVersion 3",
            OCI_MANIFEST,
            with("/schemaVersion", 3.into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "schemaVersion \"2\"",
            OCI_MANIFEST,
            with("/schemaVersion", "2".into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "schemaVersion 1",
            OCI_MANIFEST,
            with("/schemaVersion", 1.into()),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "an image manifest sent as an index",
            OCI_INDEX,
            good.clone(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "an OCI manifest sent as a Docker one",
            docker_v2,
            good.clone(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "an index of an unknown manifest",
            OCI_INDEX,
            unknown_child,
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            "one byte over the limit",
            OCI_MANIFEST,
            padded(&good, LIMIT + 1),
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
        ),
    ];
    for (what, content_type, body, status, code) in &cases {
        let r = app.put_manifest(repo, "t", content_type, body).await;
        let refusal = assert_refused(r, *status, code, what).await;
        if *code == "MANIFEST_BLOB_UNKNOWN" {
            assert_eq!(refusal["errors"][0]["detail"]["digest"], missing.as_str());
        }
        assert_tag_unchanged(&app, repo, &original, &tags, what).await;
        // Nor is it stored untagged.
        let r = app
            .head(&format!("/v2/{repo}/manifests/{}", sha256(body)))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{what}, by digest");
    }

    // Over the limit without a Content-Length: refused as the bytes come.
    let big = padded(&good, LIMIT + 1000);
    let stream = futures_util::stream::iter(
        big.chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .req(Method::PUT, &format!("/v2/{repo}/manifests/t"))
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("PUT");
    assert_refused(
        r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        "a streamed manifest over the limit",
    )
    .await;
    assert_tag_unchanged(&app, repo, &original, &tags, "a streamed manifest").await;

    // A good manifest PUT by a digest that is not its own, tagging t: DIGEST_INVALID. And by
    // its own digest, with t and a tag that is invalid: TAG_INVALID, and t is not moved.
    let wrong = sha256(b"some other manifest");
    let r = app
        .send(|| {
            app.req(Method::PUT, &format!("/v2/{repo}/manifests/{wrong}?tag=t"))
                .header("content-type", OCI_MANIFEST)
                .body(good.clone())
        })
        .await;
    assert_refused(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID", "wrong digest").await;
    assert_tag_unchanged(&app, repo, &original, &tags, "a wrong digest").await;
    let r = app
        .send(|| {
            app.req(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{}?tag=t&tag=-bad", sha256(&good)),
            )
            .header("content-type", OCI_MANIFEST)
            .body(good.clone())
        })
        .await;
    assert_refused(r, StatusCode::BAD_REQUEST, "TAG_INVALID", "?tag=-bad").await;
    assert_tag_unchanged(&app, repo, &original, &tags, "an invalid ?tag=").await;
    for digest in [wrong, sha256(&good)] {
        let r = app.head(&format!("/v2/{repo}/manifests/{digest}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{digest}");
    }

    // The same manifest, sent right, moves the tag.
    let r = app.put_manifest(repo, "t", OCI_MANIFEST, &good).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_tag_unchanged(&app, repo, &good, &tags, "a good manifest").await;
}

/// The `/v2` routes with a repository name, as (method, path) for `name`; `upload` is an
/// upload session's id, `digest` a valid digest.
fn routes_of(name: &str, upload: &str, digest: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, format!("/v2/{name}/tags/list")),
        (Method::GET, format!("/v2/{name}/manifests/latest")),
        (Method::HEAD, format!("/v2/{name}/manifests/latest")),
        (Method::PUT, format!("/v2/{name}/manifests/latest")),
        (Method::DELETE, format!("/v2/{name}/manifests/latest")),
        (Method::GET, format!("/v2/{name}/blobs/{digest}")),
        (Method::HEAD, format!("/v2/{name}/blobs/{digest}")),
        (Method::DELETE, format!("/v2/{name}/blobs/{digest}")),
        (Method::POST, format!("/v2/{name}/blobs/uploads/")),
        (
            Method::POST,
            format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        ),
        (
            Method::POST,
            format!("/v2/{name}/blobs/uploads/?mount={digest}&from=r"),
        ),
        (Method::GET, format!("/v2/{name}/blobs/uploads/{upload}")),
        (Method::PATCH, format!("/v2/{name}/blobs/uploads/{upload}")),
        (
            Method::PUT,
            format!("/v2/{name}/blobs/uploads/{upload}?digest={digest}"),
        ),
        (Method::DELETE, format!("/v2/{name}/blobs/uploads/{upload}")),
        (Method::GET, format!("/v2/{name}/referrers/{digest}")),
    ]
}

/// Sends `method path` (with a small body where the method takes one) and asserts the
/// refusal; HEAD answers carry no body, so only the status is checked for them.
async fn assert_route_refuses(
    app: &TestApp,
    method: Method,
    path: &str,
    status: StatusCode,
    code: &str,
) {
    let with_body = [Method::PUT, Method::PATCH, Method::POST].contains(&method);
    let r = app
        .send(|| {
            let r = app.req(method.clone(), path);
            if with_body {
                r.header("content-type", OCI_MANIFEST).body(b"{}".to_vec())
            } else {
                r
            }
        })
        .await;
    let what = format!("{method} {path}");
    if method == Method::HEAD {
        assert_eq!(r.status(), status, "{what}");
    } else {
        assert_refused(r, status, code, &what).await;
    }
}

#[tokio::test]
async fn invalid_names_digests_and_references_are_refused_on_every_route() {
    let app = TestApp::start().await;
    let (manifest, manifest_digest) = app.push_image("r", "v1", "kept").await;
    let loc = app.open_session("r").await;
    let upload = loc.rsplit('/').next().expect("upload id").to_string();
    let objects = app.stored_objects().await;
    let valid = sha256(b"valid but unknown");

    // Names: refused on every route before anything else is looked at.
    let long = format!("a/{}", "b".repeat(254));
    for name in [
        "Upper",
        "r/Upper",
        "a..b",
        "-lead",
        "trail-",
        "a/_b",
        "a___b",
        "a%20b",
        "r%2Fx",
        long.as_str(),
    ] {
        for (method, path) in routes_of(name, &upload, &valid) {
            assert_route_refuses(&app, method, &path, StatusCode::BAD_REQUEST, "NAME_INVALID")
                .await;
        }
    }
    // A mount from an invalid repository.
    assert_route_refuses(
        &app,
        Method::POST,
        &format!("/v2/r/blobs/uploads/?mount={valid}&from=Bad"),
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;

    // Digests, in the path and in the query.
    for bad in [
        "sha256:abc",
        &format!("sha256:{}", "A".repeat(64)),
        &format!("sha256:{}", "g".repeat(64)),
        &format!("sha256:{}", "a".repeat(65)),
        &format!("sha512:{}", "a".repeat(64)),
        "sha256:",
        ":abc",
        "SHA256:abc",
        "md5:abc",
    ] {
        for (method, path) in [
            (Method::GET, format!("/v2/r/blobs/{bad}")),
            (Method::HEAD, format!("/v2/r/blobs/{bad}")),
            (Method::DELETE, format!("/v2/r/blobs/{bad}")),
            (Method::GET, format!("/v2/r/manifests/{bad}")),
            (Method::HEAD, format!("/v2/r/manifests/{bad}")),
            (Method::PUT, format!("/v2/r/manifests/{bad}")),
            (Method::DELETE, format!("/v2/r/manifests/{bad}")),
            (Method::GET, format!("/v2/r/referrers/{bad}")),
            (Method::POST, format!("/v2/r/blobs/uploads/?digest={bad}")),
            (
                Method::POST,
                format!("/v2/r/blobs/uploads/?mount={bad}&from=r"),
            ),
            (Method::PUT, format!("{loc}?digest={bad}")),
        ] {
            assert_route_refuses(
                &app,
                method,
                &path,
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
            )
            .await;
        }
    }

    // Tags: nothing can be stored under an invalid one (TAG_INVALID); reading or deleting one
    // is a plain miss, as for any tag the repository lacks.
    let too_long = "t".repeat(129);
    for bad in [".bad", "-bad", "bad%20tag", "bad@tag", too_long.as_str()] {
        assert_route_refuses(
            &app,
            Method::PUT,
            &format!("/v2/r/manifests/{bad}"),
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
        )
        .await;
        assert_route_refuses(
            &app,
            Method::PUT,
            &format!("/v2/r/manifests/{manifest_digest}?tag={bad}"),
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
        )
        .await;
        for method in [Method::GET, Method::HEAD, Method::DELETE] {
            assert_route_refuses(
                &app,
                method,
                &format!("/v2/r/manifests/{bad}"),
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
            )
            .await;
        }
    }
    // The longest valid tag is taken.
    let longest = "t".repeat(128);
    let r = app
        .put_manifest("r", &longest, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // None of it cost anything: the image, the session, the catalog, storage are as they were.
    let r = app.get("/v2/r/manifests/v1").await;
    assert_eq!(header(&r, "docker-content-digest"), manifest_digest);
    assert!(r.bytes().await.expect("manifest") == manifest);
    assert_eq!(acknowledged(&app, &loc).await, "0-0");
    let catalog: Value = app.get("/v2/_catalog").await.json().await.expect("catalog");
    assert_eq!(catalog["repositories"], json!(["r"]));
    let tags: Value = app.get("/v2/r/tags/list").await.json().await.expect("tags");
    assert_eq!(tags["tags"], json!([longest, "v1"]));
    assert_eq!(app.stored_objects().await, objects);
}
