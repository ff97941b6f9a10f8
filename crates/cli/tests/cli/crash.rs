//! kill -9 in the middle of concurrent uploads: no partial blob ever becomes visible, the
//! server starts again on the same data directory, and acknowledged chunks can be resumed.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::common::*;

const MIB: usize = 1 << 20;

/// Every file under blobs/ holds exactly the content its name says (`<hex>-<session id>`).
fn assert_blob_files_are_whole(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_blob_files_are_whole(&path);
        } else {
            let data = std::fs::read(&path).expect("read blob");
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            let hex = name.split('-').next().unwrap_or(name);
            assert_eq!(
                hex::encode(Sha256::digest(&data)),
                hex,
                "partial blob at {path:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut server = Server::start(&data_dir);
    let http = client();
    let kept = noise(1, 3 * MIB);
    let kept_digest = push_blob(&server.base, "crash/kept", &kept).await;

    // One session with an acknowledged first chunk, to resume after the restart.
    let resumable = noise(2, 3 * MIB);
    let resumable_digest = sha256(&resumable);
    let r = http
        .post(format!("{}/v2/crash/resume/blobs/uploads/", server.base))
        .send()
        .await
        .expect("POST");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let r = http
        .patch(format!("{}{location}", server.base))
        .header("content-range", format!("0-{}", MIB - 1))
        .body(resumable[..MIB].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), 202);

    // Several slow uploads in flight: streamed PATCH, chunked PATCH, monolithic POST, and a
    // closing PUT with a body, each 64 MiB sent a megabyte at a time.
    let mut in_flight = Vec::new();
    for i in 0..4u64 {
        let content = noise(10 + i, 64 * MIB);
        let digest = sha256(&content);
        let stream = futures_util::stream::unfold(0usize, move |at| {
            let content = content.clone();
            async move {
                if at >= content.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let end = (at + MIB).min(content.len());
                Some((Ok::<_, std::io::Error>(content[at..end].to_vec()), end))
            }
        });
        let body = reqwest::Body::wrap_stream(stream);
        let base = server.base.clone();
        let repo = format!("crash/inflight{i}");
        let http = http.clone();
        let d = digest.clone();
        in_flight.push((
            digest,
            tokio::spawn(async move {
                let request = match i {
                    0 => http.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")),
                    _ => {
                        let r = http
                            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                            .send()
                            .await?;
                        let loc = r.headers()["location"]
                            .to_str()
                            .unwrap_or_default()
                            .to_string();
                        match i {
                            1 => http.patch(format!("{base}{loc}")),
                            2 => http
                                .patch(format!("{base}{loc}"))
                                .header("content-range", format!("0-{}", 64 * MIB - 1)),
                            _ => http.put(format!("{base}{loc}?digest={d}")),
                        }
                    }
                };
                request.body(body).send().await
            }),
        ));
    }
    // Killed once all four are inside the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&http, &server.base, "berth_upload_requests_running").await < 4.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the four uploads were not all running after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    for (_, task) in &mut in_flight {
        let result = task.await.expect("join");
        assert!(
            result.is_err(),
            "an upload finished before the kill: make it slower"
        );
    }

    // Restart on the same data directory.
    let server = Server::start(&data_dir);
    assert_blob_files_are_whole(&data_dir.join("blobs"));
    for (i, (digest, _)) in in_flight.iter().enumerate() {
        let r = http
            .head(format!(
                "{}/v2/crash/inflight{i}/blobs/{digest}",
                server.base
            ))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(r.status(), 404, "partial upload {i} visible");
    }
    let r = http
        .get(format!("{}/v2/crash/kept/blobs/{kept_digest}", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), kept);

    // The acknowledged chunk survived: resume where it stopped.
    let r = http
        .get(format!("{}{location}", server.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], format!("0-{}", MIB - 1).as_str());
    let r = http
        .patch(format!("{}{location}", server.base))
        .header("content-range", format!("{MIB}-{}", resumable.len() - 1))
        .body(resumable[MIB..].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), 202);
    let r = http
        .put(format!(
            "{}{location}?digest={resumable_digest}",
            server.base
        ))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), 201);
    let r = http
        .get(format!(
            "{}/v2/crash/resume/blobs/{resumable_digest}",
            server.base
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.bytes().await.expect("body").to_vec(), resumable);

    // New pushes work.
    push_blob(&server.base, "crash/after", &noise(3, MIB)).await;
    assert_blob_files_are_whole(&data_dir.join("blobs"));
}
