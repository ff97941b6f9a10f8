//! `berth gc` with the real binary, beside a running `berth serve`: a dry run reports and
//! deletes nothing; a run deletes the blob nothing references and keeps the image; an
//! untagged image goes with `--delete-untagged`; `berth fsck` is clean after. On the embedded
//! backends, and on PostgreSQL + S3.

use berth_testkit::noise;
use serde_json::json;

use crate::common::*;
use crate::harness::text;

async fn status(url: String) -> u16 {
    client()
        .get(url)
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// Pushes a config and a layer, then a manifest tagged `tag`; returns its digest.
async fn push_image(base: &str, repo: &str, tag: &str, seed: u64) -> String {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = noise(seed, 30_000);
    let c = push_blob(base, repo, &config).await;
    let l = push_blob(base, repo, &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
    }))
    .expect("manifest");
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 201);
    sha256(&manifest)
}

/// The whole scenario against the registry `location` names (`--data-dir D` or `--config F`).
async fn collect_beside_a_server(base: &str, location: &[&str]) {
    let kept = push_image(base, "gc/app", "kept", 1).await;
    let dropped = push_image(base, "gc/app", "dropped", 2).await;
    let loose = push_blob(base, "gc/app", &noise(3, 20_000)).await;
    let r = client()
        .delete(format!("{base}/v2/gc/app/manifests/dropped"))
        .send()
        .await
        .expect("DELETE tag");
    assert_eq!(r.status().as_u16(), 202);
    // At once: a zero grace means whatever is unreferenced when the collection runs.
    fn gc<'a>(location: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [&["gc", "--grace", "0s"], location, extra].concat()
    }

    let (r, ok) = json_report(&gc(location, &["--dry-run"]));
    assert!(ok, "{r}");
    assert_eq!(
        (r["dry_run"].as_bool(), r["blobs_deleted"].as_u64()),
        (Some(true), Some(1)),
        "{r}"
    );
    assert_eq!(status(format!("{base}/v2/gc/app/blobs/{loose}")).await, 200);

    let out = berth(&gc(location, &[]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deleted 0 manifest(s), 1 blob link(s), 1 blob(s) (20kB)"),
        "{}",
        text(&out)
    );
    assert_eq!(status(format!("{base}/v2/gc/app/blobs/{loose}")).await, 404);
    assert_eq!(
        status(format!("{base}/v2/gc/app/manifests/{dropped}")).await,
        200
    );

    let (r, ok) = json_report(&gc(location, &["--delete-untagged"]));
    assert!(ok, "{r}");
    assert_eq!(r["manifests"][0]["digest"], dropped.as_str(), "{r}");
    assert_eq!(r["blobs_deleted"], 2, "{r}");
    assert_eq!(
        status(format!("{base}/v2/gc/app/manifests/{dropped}")).await,
        404
    );
    assert_eq!(
        status(format!("{base}/v2/gc/app/manifests/kept")).await,
        200
    );
    assert_eq!(
        status(format!("{base}/v2/gc/app/manifests/{kept}")).await,
        200
    );

    let out = berth(&[&["fsck", "--grace", "0s", "--verify-digests"], location].concat());
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_on_the_embedded_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let data_arg = data.display().to_string();
    collect_beside_a_server(&server.base, &["--data-dir", &data_arg]).await;
    // Another collection holds the lock (as `berth serve`'s schedule would): exit 2, said so.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.join("meta.db.garbage-collection.lock"))
        .expect("lock file");
    lock.try_lock().expect("take the lock");
    let out = berth(&["gc", "--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("another garbage collection is running"),
        "{}",
        text(&out)
    );
    drop(lock);
    let out = berth(&["gc", "--data-dir", &data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert_refuses_a_non_data_dir("gc", dir.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_on_postgres_and_s3() {
    if !backends_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scaled = ScaledServer::start(dir.path()).await;
    collect_beside_a_server(&scaled.server.base, &["--config", &scaled.config]).await;
}
