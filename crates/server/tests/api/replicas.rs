//! Several replicas sharing one database and one bucket (the scaled-out pass of the test
//! command; embedded, the "replicas" are one server and these tests check plain correctness):
//! one upload's requests go to alternating replicas, what one replica stored the other serves,
//! concurrent pushes of one blob through both keep one object, and an upload whose replica dies
//! mid-request goes on through the other.

use reqwest::StatusCode;

use crate::common::*;

/// The replica `i` (wrapping), as a base URL.
fn replica(app: &TestApp, i: usize) -> String {
    format!("http://{}", app.replicas[i % app.replicas.len()])
}

/// Data that does not compress and is not all one byte: `len` bytes from a seed.
fn data(len: usize, seed: u8) -> Vec<u8> {
    berth_testkit::noise(u64::from(seed), len)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_upload_through_alternating_replicas_then_pulled_from_each() {
    let app = TestApp::start().await;
    let http = reqwest::Client::new();
    // 12 MiB in three chunks, so that on S3 the parts and the staged tail change hands.
    let blob = data(12 << 20, 7);
    let digest = sha256(&blob);
    let r = http
        .post(format!("{}/v2/team/app/blobs/uploads/", replica(&app, 0)))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut location = header(&r, "location").to_string();
    let mut offset = 0usize;
    for (i, chunk) in blob.chunks(5 << 20).enumerate() {
        let r = http
            .patch(format!("{}{location}", replica(&app, i + 1)))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{}-{}", offset, offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk {i}");
        offset += chunk.len();
        assert_eq!(header(&r, "range"), format!("0-{}", offset - 1));
        location = header(&r, "location").to_string();
    }
    let r = http
        .put(format!("{}{location}?digest={digest}", replica(&app, 0)))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    for i in 0..app.replicas.len() {
        let r = http
            .get(format!("{}/v2/team/app/blobs/{digest}", replica(&app, i)))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "replica {i}");
        let got = r.bytes().await.expect("body");
        assert!(got == blob, "replica {i} serves the same bytes");
        let r = http
            .get(format!("{}/v2/team/app/blobs/{digest}", replica(&app, i)))
            .header("range", "bytes=5242870-5242889")
            .send()
            .await
            .expect("ranged GET");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.bytes().await.expect("body").as_ref(),
            &blob[5_242_870..5_242_890]
        );
    }
    // An image pushed through the balancer is pulled by tag through each replica.
    let (manifest, manifest_digest) = app.push_image("team/app", "v1", "replicas").await;
    for i in 0..app.replicas.len() {
        let r = http
            .get(format!("{}/v2/team/app/manifests/v1", replica(&app, i)))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), manifest_digest);
        assert_eq!(r.bytes().await.expect("body").as_ref(), manifest.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_of_one_blob_through_both_replicas_keep_one_object() {
    let app = TestApp::start().await;
    let blob = data(6 << 20, 3);
    let digest = sha256(&blob);
    let pushes = (0..8).map(|i| {
        let url = format!(
            "{}/v2/team/r{}/blobs/uploads/?digest={digest}",
            replica(&app, i),
            i % 3
        );
        let body = blob.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .expect("POST")
                .status()
        })
    });
    for status in futures_util::future::join_all(pushes).await {
        assert_eq!(status.expect("join"), StatusCode::CREATED);
    }
    for r in 0..3 {
        let got = app.get(&format!("/v2/team/r{r}/blobs/{digest}")).await;
        assert_eq!(got.status(), StatusCode::OK);
        assert!(got.bytes().await.expect("body") == blob);
    }
    // One stored object, and no upload left behind.
    assert_eq!(app.stored_objects().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_goes_on_through_the_other_replica_when_one_dies() {
    let mut app = TestApp::start().await;
    let Some(second) = app.second.take() else {
        eprintln!("one server (embedded pass): nothing to kill; the scaled-out pass runs this");
        return;
    };
    let http = reqwest::Client::new();
    let blob = data(9 << 20, 11);
    let digest = sha256(&blob);
    let r = http
        .post(format!("{}/v2/team/app/blobs/uploads/", replica(&app, 0)))
        .send()
        .await
        .expect("POST");
    let location = header(&r, "location").to_string();
    // The first 6 MiB through the second replica, acknowledged.
    let r = http
        .patch(format!("{}{location}", replica(&app, 1)))
        .header("content-range", format!("0-{}", (6 << 20) - 1))
        .body(blob[..6 << 20].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The next chunk starts streaming to the second replica, which dies half way.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let pending = tokio::spawn(
        http.patch(format!("{}{location}", replica(&app, 1)))
            .header("content-range", format!("{}-{}", 6 << 20, blob.len() - 1))
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    tx.send(Ok(blob[6 << 20..(7 << 20)].to_vec()))
        .await
        .expect("send");
    assert!(
        within_10s(|| async { metric(&app, "berth_upload_requests_running").await >= 1.0 }).await,
        "the PATCH never reached the second replica"
    );
    second.abort();
    let _ = second.await;
    drop(tx);
    let _ = pending.await;
    // The first replica reports what was acknowledged, and takes the rest from there.
    let r = http
        .get(format!("{}{location}", replica(&app, 0)))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let acknowledged: usize = header(&r, "range")
        .strip_prefix("0-")
        .and_then(|end| end.parse::<usize>().ok())
        .map(|end| end + 1)
        .expect("range");
    assert!(
        acknowledged == 6 << 20 || acknowledged == 7 << 20,
        "{acknowledged}"
    );
    let r = http
        .put(format!("{}{location}?digest={digest}", replica(&app, 0)))
        .header(
            "content-range",
            format!("{acknowledged}-{}", blob.len() - 1),
        )
        .body(blob[acknowledged..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = http
        .get(format!("{}/v2/team/app/blobs/{digest}", replica(&app, 0)))
        .send()
        .await
        .expect("GET");
    assert!(r.bytes().await.expect("body") == blob);
}

/// A replica keeps tag lists in memory, with the version the database gave for them: every
/// change made through the other replica (new tag, deleted tag, deleted manifest, retention
/// aside) shows in its next answer, a moved tag changes nothing, and pages come from the same
/// list.
#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_follow_changes_made_through_any_replica() {
    let app = TestApp::start().await;
    let list = |i: usize, query: &'static str| {
        let url = format!("{}/v2/team/list/tags/list{query}", replica(&app, i));
        let app = &app;
        async move {
            let r = app.get(&url).await;
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            let link = r
                .headers()
                .get("link")
                .map(|v| v.to_str().expect("link").to_string());
            let body: serde_json::Value = r.json().await.expect("json");
            let tags: Vec<String> = serde_json::from_value(body["tags"].clone()).expect("tags");
            (tags, link)
        }
    };
    let (manifest, digest) = app.push_image("team/list", "b", "list one").await;
    for i in 0..2 {
        assert_eq!(list(i, "").await.0, ["b"], "replica {i}");
    }
    for tag in ["a", "c"] {
        let r = app
            .put_manifest("team/list", tag, OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    assert_eq!(list(1, "").await.0, ["a", "b", "c"]);
    let (first, link) = list(1, "?n=2").await;
    assert_eq!(first, ["a", "b"]);
    assert!(
        link.is_some_and(|l| l.contains("last=b")),
        "a Link to page 2"
    );
    assert_eq!(list(1, "?n=2&last=b").await, (vec!["c".to_string()], None));

    // Moving a tag leaves the list; deleting one changes it on both replicas.
    let (_, other) = app.push_image("team/list", "c", "list two").await;
    assert_eq!(list(1, "").await.0, ["a", "b", "c"]);
    let r = app
        .send(|| app.req(reqwest::Method::DELETE, "/v2/team/list/manifests/a"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for i in [1, 0] {
        assert_eq!(list(i, "").await.0, ["b", "c"], "replica {i}");
    }
    // Deleting a manifest takes its tags with it.
    let path = format!("/v2/team/list/manifests/{digest}");
    let r = app.send(|| app.req(reqwest::Method::DELETE, &path)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(list(1, "").await.0, ["c"]);
    let path = format!("/v2/team/list/manifests/{other}");
    let r = app.send(|| app.req(reqwest::Method::DELETE, &path)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(list(1, "").await.0.is_empty());
}

/// A repository with more tags than a page (10,000) is not kept in memory: its pages come from
/// the database, on every replica, and follow a change.
#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_longer_than_a_page_are_paged_from_the_database() {
    let app = TestApp::start().await;
    let (manifest, _) = app.push_image("team/many", "t00000", "many tags").await;
    // 10,000 more tags on the same manifest, in one transaction.
    let parsed = berth_oci::parse_manifest(Some(OCI_MANIFEST), &manifest).expect("parse");
    let tags = (1..=10_000)
        .map(|i| format!("t{i:05}").parse().expect("tag"))
        .collect();
    let new = berth_registry::index_manifest(&parsed, manifest.clone(), tags).expect("index");
    let meta = app.meta().await;
    meta.put_manifest(&"team/many".parse().expect("repository"), &new)
        .await
        .expect("put");

    let page = |i: usize, query: &'static str| {
        let url = format!("{}/v2/team/many/tags/list{query}", replica(&app, i));
        let app = &app;
        async move {
            let r = app.get(&url).await;
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            let link = r
                .headers()
                .get("link")
                .map(|v| v.to_str().expect("link").to_string());
            let body: serde_json::Value = r.json().await.expect("json");
            let tags: Vec<String> = serde_json::from_value(body["tags"].clone()).expect("tags");
            (tags, link)
        }
    };
    // Twice on each replica: the second answer comes after the list was found too long.
    for i in [0, 1, 0, 1] {
        let (first, link) = page(i, "").await;
        assert_eq!(first.len(), 10_000, "replica {i}");
        assert_eq!(first.first().map(String::as_str), Some("t00000"));
        assert!(
            link.is_some_and(|l| l.contains("last=t09999")),
            "replica {i}"
        );
        assert_eq!(
            page(i, "?last=t09999").await,
            (vec!["t10000".to_string()], None)
        );
    }
    let r = app
        .send(|| app.req(reqwest::Method::DELETE, "/v2/team/many/manifests/t10000"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for i in [1, 0] {
        let (first, link) = page(i, "").await;
        assert_eq!(first.len(), 10_000, "replica {i}");
        assert_eq!(link, None, "replica {i}: one page now");
    }
}
