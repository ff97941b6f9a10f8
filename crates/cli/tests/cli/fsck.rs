//! `berth fsck` with the real binary, beside a running `berth serve`: clean after pushes; then
//! a blob with other bytes (found only with `--verify-digests`), a truncated one, a missing one,
//! and objects no row records (orphans, or recent ones within the grace period), each named in
//! the report and in the exit code. On the embedded backends, and on PostgreSQL + S3.

use std::process::Output;
use std::time::{Duration, SystemTime};

use berth_testkit::s3::http;
use serde_json::Value;

use crate::common::*;
use crate::harness::text;

fn fsck(args: &[&str]) -> Output {
    berth(&[&["fsck"], args].concat())
}

/// The JSON report, and whether the run exited 0.
fn report(args: &[&str]) -> (Value, bool) {
    json_report(&[&["fsck"], args].concat())
}

/// The problems reported for `digest`.
fn faults_of(report: &Value, digest: &str) -> Vec<String> {
    report["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .filter(|f| f["digest"] == digest)
        .map(|f| f["problem"].as_str().expect("problem").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_finds_damaged_missing_and_unrecorded_blobs_on_the_embedded_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let blobs: Vec<Vec<u8>> = (1..=4)
        .map(|seed| noise(seed, 100_000 + seed as usize))
        .collect();
    let mut digests = Vec::new();
    for blob in &blobs {
        digests.push(push_blob(&server.base, "fsck/app", blob).await);
    }
    let data_arg = data.display().to_string();
    let out = fsck(&["--data-dir", &data_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("blobs: 4 recorded"), "{}", text(&out));
    assert!(
        text(&out).contains("usage: 1 project(s) recounted, every one as reported"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("clean"), "{}", text(&out));

    // The blob's one file: its name is the digest, then the upload session.
    let file = |digest: &str| {
        let hex = &digest["sha256:".len()..];
        let dir = data.join("blobs/sha256").join(&hex[..2]);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("blob directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(hex))
            })
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names.remove(0)
    };
    // Other bytes of the same size: only re-hashing sees it.
    let mut bytes = blobs[0].clone();
    bytes[500] ^= 0xff;
    std::fs::write(file(&digests[0]), &bytes).expect("damage");
    let (r, clean) = report(&["--data-dir", &data_arg]);
    assert!(clean, "{r}");
    let (r, clean) = report(&["--data-dir", &data_arg, "--verify-digests"]);
    assert!(!clean);
    assert_eq!(r["verified"], 4, "{r}");
    let found = faults_of(&r, &digests[0]);
    assert!(found[0].contains("hash to sha256:"), "{found:?}");
    // Truncated, and gone.
    std::fs::write(file(&digests[1]), &blobs[1][..10]).expect("truncate");
    std::fs::remove_file(file(&digests[2])).expect("remove");
    // Files no row records: an old one is an orphan, a new one an upload being committed.
    let orphan = data.join("blobs/sha256/ab").join("ab".repeat(32));
    std::fs::create_dir_all(orphan.parent().expect("dir")).expect("mkdir");
    std::fs::write(&orphan, b"left behind").expect("orphan");
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3 * 3600)))
        .expect("age the orphan");
    let recent = data.join("blobs/sha256/cd").join("cd".repeat(32));
    std::fs::create_dir_all(recent.parent().expect("dir")).expect("mkdir");
    std::fs::write(&recent, b"being committed").expect("recent");

    let out = fsck(&["--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    for expected in [
        format!("{} at", digests[1]),
        "storage holds 10 bytes, the database records 100002".to_string(),
        format!("{} at", digests[2]),
        "missing from storage".to_string(),
        format!("orphan: blobs/sha256/ab/{}", "ab".repeat(32)),
        "1 unrecorded object(s) younger than".to_string(),
        "2 fault(s), 1 orphan(s)".to_string(),
    ] {
        assert!(said.contains(&expected), "{expected:?} not in:\n{said}");
    }
    let (r, _) = report(&["--data-dir", &data_arg, "--grace", "0s"]);
    assert_eq!(r["orphans"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["recent"], 0, "{r}");
    // The registry kept serving, and fsck changed nothing.
    let r = client()
        .get(format!("{}/v2/fsck/app/blobs/{}", server.base, digests[3]))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.bytes().await.expect("body"), blobs[3]);
    assert!(orphan.exists() && recent.exists());

    // --repair removes the orphans, but not an object that an open upload session is
    // committing (its row comes next).
    let r = client()
        .post(format!("{}/v2/fsck/app/blobs/uploads/", server.base))
        .send()
        .await
        .expect("POST");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let session = location
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .expect("session id")
        .to_ascii_lowercase();
    let committing = data
        .join("blobs/sha256/ef")
        .join(format!("{}-{session}", "ef".repeat(32)));
    std::fs::create_dir_all(committing.parent().expect("dir")).expect("mkdir");
    std::fs::write(&committing, b"being committed").expect("committing");
    let (r, clean) = report(&["--data-dir", &data_arg, "--grace", "0s", "--repair"]);
    assert!(!clean, "the damaged blobs are still there: {r}");
    assert_eq!(
        (r["removed"].as_u64(), r["kept"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert!(!orphan.exists() && !recent.exists() && committing.exists());
    let out = fsck(&["--data-dir", &data_arg, "--grace", "0s", "--repair"]);
    assert!(
        text(&out).contains("removed 0 orphan(s), kept 1"),
        "{}",
        text(&out)
    );
    assert_refuses_a_non_data_dir("fsck", dir.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_on_postgres_and_s3() {
    if !backends_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let scaled = ScaledServer::start(dir.path()).await;
    let (server, config, s3) = (&scaled.server, scaled.config.as_str(), &scaled.s3);
    let mut digests = Vec::new();
    for seed in 1..=3 {
        digests.push(push_blob(&server.base, "fsck/app", &noise(seed, 50_000)).await);
    }
    let (r, clean) = report(&["--config", config, "--verify-digests"]);
    assert!(clean, "{r}");
    assert_eq!(
        (r["blobs"].as_u64(), r["verified"].as_u64()),
        (Some(3), Some(3))
    );
    if !s3.is_local() {
        eprintln!("not damaging objects: the S3 server is shared (BERTH_TEST_S3_ENDPOINT)");
        return;
    }
    // One object deleted behind berth's back, one put there that no row records (moto takes
    // unsigned requests).
    let keys = s3.object_keys("blobs/");
    assert_eq!(keys.len(), 3, "{keys:?}");
    let (status, _) = http(
        s3.address(),
        "DELETE",
        &format!("/{}/{}", s3.bucket, keys[0]),
    );
    assert_eq!(status, 204);
    let (status, _) = http(s3.address(), "PUT", &format!("/{}/blobs/stray", s3.bucket));
    assert_eq!(status, 200);
    let (r, clean) = report(&["--config", config, "--grace", "0s"]);
    assert!(!clean);
    let faults = r["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{r}");
    assert_eq!(faults[0]["key"], keys[0].as_str());
    assert_eq!(faults[0]["problem"], "missing from storage");
    assert_eq!(r["orphans"][0]["key"], "blobs/stray", "{r}");
}
