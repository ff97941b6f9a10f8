//! Many clients at once on the same content: pushes of one blob (to one repository and to a
//! hundred), pushes of many manifests to one tag, deletes racing pushes of one manifest. Each
//! ends in a state a single client could have produced: one stored object per blob, a link in
//! every repository that pushed it, exactly one manifest per tag, no tag without its manifest.
//! Both passes: embedded, and two replicas on PostgreSQL and S3 (requests alternate between
//! them). Collections racing pushes are `gc.rs`'s `pushes_during_collections_lose_nothing`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_testkit::noise;
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::common::*;

/// Requests [`send`] sent again after a `429`, in this test process.
static RETRIED: AtomicUsize = AtomicUsize::new(0);

/// Sends as a well-behaved client does: a `429` (the registry caps the upload requests one
/// client runs at once) is tried again a moment later. Any other answer is returned.
async fn send(app: &TestApp, build: impl Fn() -> reqwest::RequestBuilder) -> Response {
    for _ in 0..200 {
        let r = app.send(&build).await;
        if r.status() != StatusCode::TOO_MANY_REQUESTS {
            return r;
        }
        RETRIED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still 429 after 200 tries");
}

/// The ways a client pushes a blob (distribution-spec "Pushing blobs"), chunked ones in two
/// chunks.
#[derive(Clone, Copy, Debug)]
enum Push {
    /// `POST ?digest=` with the whole body.
    SinglePost,
    /// `POST`, then `PUT ?digest=` with the whole body.
    PostThenPut,
    /// `POST`, `PATCH` the first half, `PUT ?digest=` with the second.
    PatchThenPut,
    /// `POST`, `PATCH` both halves, a bodiless `PUT ?digest=`.
    TwoPatches,
}

const PUSHES: [Push; 4] = [
    Push::SinglePost,
    Push::PostThenPut,
    Push::PatchThenPut,
    Push::TwoPatches,
];

/// Pushes `blob` to `repo` the way `how` says; returns the closing response (201 expected),
/// having checked every intermediate one.
async fn push(app: &TestApp, repo: &str, blob: &[u8], how: Push) -> Response {
    let digest = sha256(blob);
    let start = format!("/v2/{repo}/blobs/uploads/");
    if let Push::SinglePost = how {
        let path = format!("{start}?digest={digest}");
        return send(app, || {
            app.req(Method::POST, &path)
                .header("content-type", "application/octet-stream")
                .body(blob.to_vec())
        })
        .await;
    }
    let r = send(app, || app.req(Method::POST, &start)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{how:?} POST to {repo}");
    let location = header(&r, "location").to_string();
    let half = blob.len() / 2;
    let chunk = |location: String, from: usize, to: usize| async move {
        let r = send(app, || {
            app.req(Method::PATCH, &location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{from}-{}", to - 1))
                .body(blob[from..to].to_vec())
        })
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{how:?} PATCH to {repo}");
        assert_eq!(header(&r, "range"), format!("0-{}", to - 1));
        header(&r, "location").to_string()
    };
    let close = |location: String, body: Option<(usize, usize)>| {
        let path = format!("{location}?digest={digest}");
        async move {
            send(app, || {
                let put = app.req(Method::PUT, &path);
                match body {
                    Some((from, to)) => put
                        .header("content-type", "application/octet-stream")
                        .header("content-range", format!("{from}-{}", to - 1))
                        .body(blob[from..to].to_vec()),
                    None => put,
                }
            })
            .await
        }
    };
    match how {
        Push::SinglePost => unreachable!("pushed above"),
        Push::PostThenPut => {
            let path = format!("{location}?digest={digest}");
            send(app, || {
                app.req(Method::PUT, &path)
                    .header("content-type", "application/octet-stream")
                    .body(blob.to_vec())
            })
            .await
        }
        Push::PatchThenPut => {
            let location = chunk(location, 0, half).await;
            close(location, Some((half, blob.len()))).await
        }
        Push::TwoPatches => {
            let location = chunk(location, 0, half).await;
            let location = chunk(location, half, blob.len()).await;
            close(location, None).await
        }
    }
}

/// Runs `count` pushes of `blob` at once, the `i`th to `repo(i)` in the `i % 4`th way;
/// asserts each one answered 201 with the blob's digest and location.
async fn push_all_at_once(
    app: &Arc<TestApp>,
    blob: &Arc<Vec<u8>>,
    count: usize,
    repo: impl Fn(usize) -> String,
) {
    let digest = sha256(blob);
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (app, blob, repo) = (app.clone(), blob.clone(), repo(i));
            tokio::spawn(async move {
                let how = PUSHES[i % PUSHES.len()];
                let r = push(&app, &repo, &blob, how).await;
                let status = r.status();
                let digest = r
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.text().await.unwrap_or_default();
                (repo, how, status, digest, location, body)
            })
        })
        .collect();
    for task in futures_util::future::join_all(tasks).await {
        let (repo, how, status, got, location, body) = task.expect("push task");
        assert_eq!(status, StatusCode::CREATED, "{how:?} to {repo}: {body}");
        assert_eq!(got.as_deref(), Some(digest.as_str()), "{how:?} to {repo}");
        assert_eq!(
            location,
            Some(format!("/v2/{repo}/blobs/{digest}")),
            "{how:?} to {repo}"
        );
    }
}

/// The blob is readable in `repo`: HEAD and GET give its size, digest and bytes.
async fn assert_blob_in(app: &TestApp, repo: &str, blob: &[u8]) {
    let digest = sha256(blob);
    let path = format!("/v2/{repo}/blobs/{digest}");
    let r = app.head(&path).await;
    assert_eq!(r.status(), StatusCode::OK, "HEAD in {repo}");
    assert_eq!(header(&r, "content-length"), blob.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let r = app.get(&path).await;
    assert_eq!(r.status(), StatusCode::OK, "GET in {repo}");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert!(
        r.bytes().await.expect("blob") == blob,
        "{repo} serves other bytes"
    );
}

/// The blob is not readable in `repo`, which never pushed it.
async fn assert_blob_not_in(app: &TestApp, repo: &str, blob: &[u8]) {
    let path = format!("/v2/{repo}/blobs/{}", sha256(blob));
    assert_eq!(app.head(&path).await.status(), StatusCode::NOT_FOUND);
    assert_error(app.get(&path).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_blob_pushed_100_times_at_once_to_one_repository_is_stored_once() {
    let app = Arc::new(TestApp::start().await);
    let blob = Arc::new(noise(1, 6000));
    let other = app.push_blob("race/other", b"another blob").await;
    let started = std::time::Instant::now();
    push_all_at_once(&app, &blob, 100, |_| "race/one".to_string()).await;
    eprintln!(
        "100 pushes of one blob to one repository: {:?}, {} requests sent again after a 429",
        started.elapsed(),
        RETRIED.load(Ordering::Relaxed)
    );

    assert_blob_in(&app, "race/one", &blob).await;
    assert_blob_not_in(&app, "race/other", &blob).await;
    assert_eq!(
        app.head(&format!("/v2/race/one/blobs/{other}"))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a blob of another repository"
    );
    // One object for the hundred pushes and one for the other blob; no upload left behind.
    assert_eq!(app.stored_objects().await, 2);
    assert_fsck_clean(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_blob_pushed_to_100_repositories_at_once_is_stored_once_and_linked_in_each() {
    let app = Arc::new(TestApp::start().await);
    let blob = Arc::new(noise(2, 5000));
    app.push_blob("fan/none", b"not the raced blob").await;
    let started = std::time::Instant::now();
    push_all_at_once(&app, &blob, 100, |i| format!("fan/r{i}")).await;
    eprintln!(
        "100 pushes of one blob to 100 repositories: {:?}, {} requests sent again after a 429",
        started.elapsed(),
        RETRIED.load(Ordering::Relaxed)
    );

    for i in 0..100 {
        assert_blob_in(&app, &format!("fan/r{i}"), &blob).await;
    }
    assert_blob_not_in(&app, "fan/none", &blob).await;
    assert_blob_not_in(&app, "fan/never", &blob).await;
    assert_eq!(app.stored_objects().await, 2);
    assert_fsck_clean(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifests_pushed_to_one_tag_at_once_leave_exactly_one_of_them() {
    const MANIFESTS: usize = 50;
    let app = Arc::new(TestApp::start().await);
    let repo = "race/tag";
    let layer = noise(3, 3000);
    let layer_digest = app.push_blob(repo, &layer).await;
    // Each manifest over a config of its own, all pushed first.
    let configs: Vec<Vec<u8>> = (0..MANIFESTS)
        .map(|i| format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{i}}}").into_bytes())
        .collect();
    let pushes = configs
        .iter()
        .map(|c| push(&app, repo, c, Push::SinglePost));
    for r in futures_util::future::join_all(pushes).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let manifests: Arc<Vec<Vec<u8>>> = Arc::new(
        configs
            .iter()
            .map(|c| {
                image_manifest(
                    &sha256(c),
                    c.len(),
                    &[(&layer_digest, layer.len())],
                    None,
                    None,
                )
            })
            .collect(),
    );

    let tasks: Vec<_> = (0..MANIFESTS)
        .map(|i| {
            let (app, manifests) = (app.clone(), manifests.clone());
            tokio::spawn(async move {
                let r = app
                    .put_manifest(repo, "latest", OCI_MANIFEST, &manifests[i])
                    .await;
                let digest = r
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (r.status(), digest, r.text().await.unwrap_or_default())
            })
        })
        .collect();
    for (i, task) in futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
    {
        let (status, digest, body) = task.expect("PUT task");
        assert_eq!(status, StatusCode::CREATED, "manifest {i}: {body}");
        assert_eq!(digest, Some(sha256(&manifests[i])), "manifest {i}");
    }

    // The tag names one of them, the same through either replica, byte for byte.
    let r = app.get(&format!("/v2/{repo}/manifests/latest")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
    let served_digest = header(&r, "docker-content-digest").to_string();
    let served = r.bytes().await.expect("manifest").to_vec();
    assert!(
        manifests.contains(&served),
        "the tag serves a manifest nobody pushed"
    );
    assert_eq!(served_digest, sha256(&served));
    for _ in 0..2 {
        let r = app.head(&format!("/v2/{repo}/manifests/latest")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "docker-content-digest"), served_digest);
        let r = app.get(&format!("/v2/{repo}/manifests/latest")).await;
        assert!(r.bytes().await.expect("manifest") == served);
    }
    let tags = app.tag_list(repo).await;
    assert_eq!(tags, json!({"name": repo, "tags": ["latest"]}));
    // Every manifest pushed is still there by digest, tagged or not.
    for (i, m) in manifests.iter().enumerate() {
        let r = app
            .get(&format!("/v2/{repo}/manifests/{}", sha256(m)))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "manifest {i} by digest");
        assert!(r.bytes().await.expect("manifest") == *m, "manifest {i}");
    }
}

/// What the registry says of tag `t` and manifest `digest` after a round: both there, or both
/// gone; the tag list agrees; what is there is whole.
async fn assert_consistent(
    app: &TestApp,
    repo: &str,
    manifest: &[u8],
    blobs: &[&str],
    round: usize,
) -> bool {
    let digest = sha256(manifest);
    let by_tag = app.get(&format!("/v2/{repo}/manifests/t")).await;
    let tagged = match by_tag.status() {
        StatusCode::OK => {
            assert_eq!(header(&by_tag, "docker-content-digest"), digest);
            assert!(
                by_tag.bytes().await.expect("manifest") == manifest,
                "round {round}"
            );
            true
        }
        StatusCode::NOT_FOUND => {
            let body: serde_json::Value = by_tag.json().await.expect("error body");
            assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN", "{body}");
            false
        }
        other => panic!("round {round}: GET by tag answered {other}"),
    };
    let by_digest = app
        .get(&format!("/v2/{repo}/manifests/{digest}"))
        .await
        .status();
    if tagged {
        assert_eq!(by_digest, StatusCode::OK, "round {round}: a dangling tag");
        for blob in blobs {
            let r = app.head(&format!("/v2/{repo}/blobs/{blob}")).await;
            assert_eq!(r.status(), StatusCode::OK, "round {round}: blob {blob}");
        }
    } else {
        // Every PUT tags it: a manifest that is there without its tag was never pushed back.
        assert_eq!(
            by_digest,
            StatusCode::NOT_FOUND,
            "round {round}: the manifest is there, its tag is not"
        );
    }
    let tags = app.tag_list(repo).await;
    let want = if tagged {
        json!(["stable", "t"])
    } else {
        json!(["stable"])
    };
    assert_eq!(tags["tags"], want, "round {round}: the tag list");
    tagged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_pushes_of_one_manifest_leave_no_dangling_tag() {
    const ROUNDS: usize = 20;
    let app = Arc::new(TestApp::start().await);
    let repo = "race/delete";
    // Another image in the repository, which no request of the race touches.
    let (stable, _) = app.push_image(repo, "stable", "untouched").await;
    let config = b"{\"architecture\":\"arm64\",\"os\":\"linux\"}".to_vec();
    let layer = noise(4, 4000);
    let c = app.push_blob(repo, &config).await;
    let l = app.push_blob(repo, &layer).await;
    let manifest = Arc::new(image_manifest(
        &c,
        config.len(),
        &[(&l, layer.len())],
        None,
        None,
    ));
    let digest = sha256(&manifest);
    let r = app.put_manifest(repo, "t", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let (mut deleted, mut missed, mut left_tagged) = (0, 0, 0);
    for round in 0..ROUNDS {
        // Two pushes by tag and two deletes by digest, interleaved, all at once.
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let (app, manifest, digest) = (app.clone(), manifest.clone(), digest.clone());
                tokio::spawn(async move {
                    let r = if i % 2 == 0 {
                        app.put_manifest(repo, "t", OCI_MANIFEST, &manifest).await
                    } else {
                        let path = format!("/v2/{repo}/manifests/{digest}");
                        app.send(|| app.req(Method::DELETE, &path)).await
                    };
                    (i % 2 == 0, r.status(), r.text().await.unwrap_or_default())
                })
            })
            .collect();
        for task in futures_util::future::join_all(tasks).await {
            let (put, status, body) = task.expect("task");
            match (put, status) {
                (true, StatusCode::CREATED) => {}
                (false, StatusCode::ACCEPTED) => deleted += 1,
                (false, StatusCode::NOT_FOUND) if body.contains("MANIFEST_UNKNOWN") => {
                    missed += 1;
                }
                (put, status) => panic!(
                    "round {round}: {} answered {status}: {body}",
                    if put { "PUT" } else { "DELETE" }
                ),
            }
        }
        if assert_consistent(&app, repo, &manifest, &[&c, &l], round).await {
            left_tagged += 1;
        }
        let r = app.get(&format!("/v2/{repo}/manifests/stable")).await;
        assert!(r.bytes().await.expect("stable") == stable, "round {round}");
    }
    eprintln!(
        "{ROUNDS} rounds of 2 PUTs and 2 DELETEs: {deleted} deletes found the manifest, \
         {missed} did not; {left_tagged} rounds ended tagged"
    );
    assert!(deleted > 0, "no DELETE ever found the manifest");
    assert_fsck_clean(&app).await;
}
