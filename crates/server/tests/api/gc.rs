//! Garbage collection, online: what nothing references goes, what anything references stays,
//! and pushes running during a collection lose nothing. Both passes: embedded, and two
//! replicas on PostgreSQL and S3 (a collection on one while pushes reach both).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use berth_meta::ManualClock;
use berth_registry::gc::{GcOptions, GcReport};
use reqwest::{Method, StatusCode};
use serde_json::json;

use berth_testkit::noise;

use crate::common::*;

fn options(grace_secs: u64, delete_untagged: bool, dry_run: bool) -> GcOptions {
    GcOptions {
        grace: Duration::from_secs(grace_secs),
        delete_untagged,
        dry_run,
    }
}

async fn collect(app: &TestApp, options: &GcOptions) -> GcReport {
    app.app
        .services()
        .collect_garbage(options)
        .await
        .expect("gc")
        .expect("no other collection runs")
}

async fn status(app: &TestApp, method: Method, path: &str) -> StatusCode {
    app.send(|| app.req(method.clone(), path)).await.status()
}

#[tokio::test]
async fn gc_deletes_what_nothing_references_and_keeps_the_rest() {
    // A zero-grace collection waits for the clock's next second: this one moves at once.
    let app = TestApp::start_with_clock(ManualClock::starting_now(), |_| {}).await;
    let repo = "gc/app";
    let shared = app.push_blob(repo, &noise(1, 40_000)).await;
    let only_b = noise(2, 30_000);
    let only_b_digest = app.push_blob(repo, &only_b).await;
    let (config_a, config_b) = (b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec());
    let ca = app.push_blob(repo, &config_a).await;
    let cb = app.push_blob(repo, &config_b).await;
    let a = image_manifest(&ca, config_a.len(), &[(&shared, 40_000)], None, None);
    let b = image_manifest(
        &cb,
        config_b.len(),
        &[(&shared, 40_000), (&only_b_digest, 30_000)],
        None,
        None,
    );
    for (tag, body) in [("a", &a), ("b", &b)] {
        let r = app.put_manifest(repo, tag, OCI_MANIFEST, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // A signature of a (a referrer, untagged), an index of two untagged children.
    let sig_config = app.push_blob(repo, b"{}").await;
    let signature = image_manifest(&sig_config, 2, &[], Some((&sha256(&a), a.len())), None);
    let r = app
        .put_manifest(repo, &sha256(&signature), OCI_MANIFEST, &signature)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let children: Vec<Vec<u8>> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            let config = format!("{{\"architecture\":\"{arch}\"}}");
            (arch.to_string(), config)
        })
        .map(|(_, config)| config.into_bytes())
        .collect();
    let mut entries = Vec::new();
    for config in &children {
        let c = app.push_blob(repo, config).await;
        let child = image_manifest(&c, config.len(), &[(&shared, 40_000)], None, None);
        let r = app
            .put_manifest(repo, &sha256(&child), OCI_MANIFEST, &child)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        entries.push(
            json!({"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len()}),
        );
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .expect("index");
    let r = app.put_manifest(repo, "multi", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A blob no manifest references.
    let loose = app.push_blob(repo, &noise(3, 20_000)).await;

    // Within the grace period nothing goes; a dry run deletes nothing.
    let r = collect(&app, &options(3600, true, false)).await;
    assert_eq!((r.blobs_deleted, r.manifests.len()), (0, 0), "{r:?}");
    let r = collect(&app, &options(0, false, true)).await;
    assert_eq!((r.blobs_deleted, r.links_removed), (1, 1), "{r:?}");
    let blob = |d: &str| format!("/v2/{repo}/blobs/{d}");
    assert_eq!(
        status(&app, Method::GET, &blob(&loose)).await,
        StatusCode::OK
    );

    // The loose blob goes; every manifest stays (untagged ones too, without the option).
    let objects = app.stored_objects().await;
    let r = collect(&app, &options(0, false, false)).await;
    assert_eq!((r.blobs_deleted, r.manifests.len()), (1, 0), "{r:?}");
    assert_eq!(r.bytes_freed, 20_000);
    assert_eq!(app.stored_objects().await, objects - 1);
    assert_error(
        app.get(&blob(&loose)).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;

    // Untag b: with delete_untagged it goes with its own blobs; the index's children and a's
    // signature stay, and so does the layer a shares.
    let r = app
        .send(|| app.req(Method::DELETE, &format!("/v2/{repo}/manifests/b")))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = collect(&app, &options(0, true, false)).await;
    assert_eq!(r.manifests.len(), 1, "{r:?}");
    assert_eq!(r.manifests[0].digest.to_string(), sha256(&b));
    assert_eq!(
        (r.blobs_deleted, r.bytes_freed),
        (2, 30_000 + config_b.len() as u64)
    );
    let manifest = |d: &str| format!("/v2/{repo}/manifests/{d}");
    assert_eq!(
        status(&app, Method::GET, &manifest(&sha256(&b))).await,
        StatusCode::NOT_FOUND
    );
    for gone in [&only_b_digest, &cb] {
        assert_eq!(
            status(&app, Method::GET, &blob(gone)).await,
            StatusCode::NOT_FOUND
        );
    }
    for kept in [&sha256(&a), &sha256(&signature), &sha256(&index)] {
        assert_eq!(
            status(&app, Method::GET, &manifest(kept)).await,
            StatusCode::OK
        );
    }
    for entry in &entries {
        let d = entry["digest"].as_str().expect("digest");
        assert_eq!(
            status(&app, Method::GET, &manifest(d)).await,
            StatusCode::OK
        );
    }
    let r = app.get(&blob(&shared)).await;
    assert_eq!(r.bytes().await.expect("body").as_ref(), noise(1, 40_000));

    // Untag the index: it and both children go in one run; the shared layer stays for a.
    let r = app
        .send(|| app.req(Method::DELETE, &format!("/v2/{repo}/manifests/multi")))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = collect(&app, &options(0, true, false)).await;
    assert_eq!(r.manifests.len(), 3, "{r:?}");
    assert_eq!(r.blobs_deleted, 2, "the children's configs: {r:?}");
    assert_eq!(
        status(&app, Method::GET, &blob(&shared)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, Method::GET, &manifest("a")).await,
        StatusCode::OK
    );

    // A second collection finds nothing; storage and database agree.
    let r = collect(&app, &options(0, true, false)).await;
    assert_eq!(
        (r.blobs_deleted, r.manifests.len(), r.links_removed),
        (0, 0, 0),
        "{r:?}"
    );
    assert_fsck_clean(&app).await;
}

/// Pushes an image as clients do: blobs the registry has are skipped (HEAD), the others
/// uploaded, then the manifest. A manifest refused with MANIFEST_BLOB_UNKNOWN (a collection
/// took a blob between the HEAD and the PUT) is pushed again from the start. Returns the
/// manifest's bytes once acknowledged, and how many retries it took.
///
/// Bound by time, not by a count of attempts: a collection never takes what was pushed from
/// its mark on, so an attempt after a refusal lands unless a later collection's mark falls
/// between its blobs and its manifest; a push still refused after two minutes is starved.
async fn push_like_a_client(
    app: &TestApp,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
) -> (Vec<u8>, u32) {
    let digests: Vec<String> = blobs.iter().map(|b| sha256(b)).collect();
    let layers: Vec<(&str, usize)> = digests[1..]
        .iter()
        .zip(&blobs[1..])
        .map(|(d, b)| (d.as_str(), b.len()))
        .collect();
    let manifest = image_manifest(&digests[0], blobs[0].len(), &layers, None, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut attempt = 0;
    while std::time::Instant::now() < deadline {
        for (blob, digest) in blobs.iter().zip(&digests) {
            let path = format!("/v2/{repo}/blobs/{digest}");
            if status(app, Method::HEAD, &path).await != StatusCode::OK {
                app.push_blob(repo, blob).await;
            }
        }
        // A slow client: the blobs it checked or sent age past the zero grace period before
        // its manifest comes, so a collection may take them in between. (Scaled out, every
        // request is slow enough already: S3 and PostgreSQL round trips.)
        if !scaled_out() {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let r = app.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        match r.status() {
            StatusCode::CREATED => return (manifest, attempt),
            StatusCode::BAD_REQUEST => {
                let body: serde_json::Value = r.json().await.expect("error body");
                assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{body}");
                attempt += 1;
            }
            other => panic!(
                "manifest PUT: {other}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
    panic!("{repo}:{tag} was refused {attempt} times in two minutes: starved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_during_collections_lose_nothing() {
    let app = Arc::new(TestApp::start().await);
    // A pool of layers every image draws from, so collections and pushes meet on them.
    let layers: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..6)
            .map(|i| noise(100 + i, 20_000 + i as usize * 1000))
            .collect(),
    );
    const PUSHERS: usize = 12;
    const IMAGES_EACH: usize = 5;

    let done = Arc::new(AtomicBool::new(false));
    let (runs, deleted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let collector = {
        let (app, done, runs, deleted) = (app.clone(), done.clone(), runs.clone(), deleted.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let r = collect(&app, &options(0, true, false)).await;
                runs.fetch_add(1, Ordering::SeqCst);
                deleted.fetch_add(r.blobs_deleted + r.manifests.len() as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (app, layers) = (app.clone(), layers.clone());
        pushers.push(tokio::spawn(async move {
            let repo = format!("race/r{}", p % 4);
            let tag = format!("t{p}");
            let mut last = Vec::new();
            let mut retries = 0;
            for i in 0..IMAGES_EACH {
                let config = format!("{{\"pusher\":{p},\"image\":{i}}}").into_bytes();
                let mut blobs = vec![config];
                blobs.push(layers[(p + i) % layers.len()].clone());
                blobs.push(layers[(p * 3 + i + 1) % layers.len()].clone());
                blobs.push(noise((p * 100 + i) as u64 + 1000, 5000));
                let (manifest, r) = push_like_a_client(&app, &repo, &tag, &blobs).await;
                retries += r;
                // Each push untags the previous image of this tag: garbage for the collector,
                // sharing layers with the pushes still coming.
                last = vec![(manifest, blobs)];
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (repo, tag, last.remove(0), retries)
        }));
    }
    let mut finals = Vec::new();
    let mut retries = 0;
    for pusher in pushers {
        let (repo, tag, image, r) = pusher.await.expect("pusher");
        retries += r;
        finals.push((repo, tag, image));
    }
    done.store(true, Ordering::SeqCst);
    collector.await.expect("collector");
    let (runs, deleted) = (runs.load(Ordering::SeqCst), deleted.load(Ordering::SeqCst));
    assert!(runs >= 3, "only {runs} collections ran beside the pushes");
    assert!(
        deleted > 0,
        "the collections found nothing to delete: the race was not run"
    );
    eprintln!(
        "{} pushes, {runs} collections beside them deleting {deleted} manifests and blobs, {retries} pushes retried after MANIFEST_BLOB_UNKNOWN",
        PUSHERS * IMAGES_EACH
    );

    // One more collection with nothing running, then every tag pulls byte for byte.
    collect(&app, &options(0, true, false)).await;
    for (repo, tag, (manifest, blobs)) in &finals {
        let r = app.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
        assert_eq!(
            r.bytes().await.expect("manifest").as_ref(),
            manifest.as_slice()
        );
        for blob in blobs {
            let r = app.get(&format!("/v2/{repo}/blobs/{}", sha256(blob))).await;
            assert_eq!(r.status(), StatusCode::OK, "{repo}: blob of {tag}");
            assert_eq!(r.bytes().await.expect("blob").as_ref(), blob.as_slice());
        }
    }
    assert_fsck_clean(&app).await;
}

#[tokio::test]
async fn system_admins_collect_through_the_api() {
    let mut app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = "admin-secret-1".into();
        c.auth.auto_create_projects = true;
    })
    .await;
    app.authorize(Some(&basic("admin", "admin-secret-1")));
    let r = app
        .req(Method::POST, "/api/v1/users")
        .json(&json!({"name": "bob", "password": "bob-password"}))
        .send()
        .await
        .expect("create bob");
    assert_eq!(r.status(), StatusCode::CREATED);
    let loose = app.push_blob("ops/app", &noise(9, 10_000)).await;

    app.authorize(Some(&basic("bob", "bob-password")));
    let gc = |body: serde_json::Value| app.req(Method::POST, "/api/v1/gc").json(&body).send();
    assert_error(
        gc(json!({})).await.expect("POST"),
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;

    app.authorize(Some(&basic("admin", "admin-secret-1")));
    let gc = |body: serde_json::Value| app.req(Method::POST, "/api/v1/gc").json(&body).send();
    let r = gc(json!({"bogus": 1})).await.expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = gc(json!({"grace_secs": 0, "dry_run": true}))
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::OK);
    let report: serde_json::Value = r.json().await.expect("report");
    assert_eq!(
        (
            report["dry_run"].as_bool(),
            report["blobs_deleted"].as_u64()
        ),
        (Some(true), Some(1))
    );
    let r = gc(json!({"grace_secs": 0})).await.expect("POST");
    assert_eq!(r.status(), StatusCode::OK);
    let report: serde_json::Value = r.json().await.expect("report");
    assert_eq!(report["blobs_deleted"], 1, "{report}");
    assert_eq!(report["bytes_freed"], 10_000, "{report}");
    assert_error(
        app.get(&format!("/v2/ops/app/blobs/{loose}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;

    // In the audit log once (not the dry run), and in the metrics of the replica that ran it.
    let events: serde_json::Value = app
        .get("/api/v1/audit?action=gc")
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(events[0]["actor"], "admin");
    assert!(
        events[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("trigger=api") && d.contains("blobs=1")),
        "{events}"
    );
    assert_eq!(metric(&app, "berth_gc_runs_total").await, 1.0);
    assert_eq!(metric(&app, "berth_gc_blobs_deleted_total").await, 1.0);
    assert_eq!(metric(&app, "berth_gc_freed_bytes_total").await, 10_000.0);
}

#[tokio::test]
async fn collections_run_on_their_schedule() {
    let app = TestApp::start_with(|c| {
        c.gc.interval_secs = 1;
        c.gc.grace_secs = 0;
    })
    .await;
    let loose = app.push_blob("gc/scheduled", &noise(5, 5_000)).await;
    let path = format!("/v2/gc/scheduled/blobs/{loose}");
    assert!(
        within_10s(|| async { status(&app, Method::HEAD, &path).await == StatusCode::NOT_FOUND })
            .await,
        "no scheduled collection took the loose blob within 10 s"
    );
    // The blob answers 404 once its row is gone; the collection counts it when it has also
    // deleted the object and finished (on S3 a moment later).
    assert!(
        within_10s(|| async { metric(&app, "berth_gc_blobs_deleted_total").await >= 1.0 }).await,
        "the collection that took the blob never counted it"
    );
    assert!(metric(&app, "berth_gc_last_success_timestamp_seconds").await > 0.0);
}
