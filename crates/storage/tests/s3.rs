//! The S3 backend against a real S3-compatible server: moto's, started by each test on an
//! ephemeral 127.0.0.1 port and killed when the test ends, or the one at
//! `BERTH_TEST_S3_ENDPOINT` (with `BERTH_TEST_S3_BUCKET`, which must exist, and credentials in
//! the `AWS_*` variables). moto enforces S3's 5 MiB minimum part size at completion and checks
//! part ETags, so a wrong part layout fails here as it would on AWS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_oci::{Digest, DigestHasher};
use berth_storage::{
    BlobReader, BlobStore, ByteRange, S3Config, S3Store, StorageError, UploadState, UploadStore,
    testsuite,
};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;

const MIB: usize = 1 << 20;
const PART: u64 = 5 << 20;

/// An S3 endpoint and a bucket for one test; stops the server it started when dropped.
struct S3Server {
    child: Option<Child>,
    endpoint: String,
    bucket: String,
}

impl S3Server {
    fn start() -> S3Server {
        if let Ok(endpoint) = std::env::var("BERTH_TEST_S3_ENDPOINT") {
            let bucket =
                std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into());
            return S3Server {
                child: None,
                endpoint,
                bucket,
            };
        }
        let program = moto_server();
        // Through a watchdog that stops moto when its stdin closes, which also happens when this
        // process is killed (a test timeout) and Drop never runs.
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&program)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run python3 to start moto_server");
        // moto logs every request on stderr: keep draining it, or it blocks on a full pipe.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let marker = "Running on http://";
            let mut said = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(marker) {
                    let _ = tx.send(Ok(line[at + marker.len()..].trim().to_string()));
                } else if said.len() < 4096 {
                    said.push_str(&line);
                    said.push('\n');
                }
            }
            let _ = tx.send(Err(said));
        });
        let mut server = S3Server {
            child: Some(child),
            endpoint: String::new(),
            bucket: format!("berth-{}", std::process::id()),
        };
        let address = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(address)) => address,
            Ok(Err(said)) => panic!(
                "{} stopped: {said}\nscripts/test installs moto; or set BERTH_TEST_MOTO_SERVER, \
                 or BERTH_TEST_S3_ENDPOINT for another S3 server",
                program.display()
            ),
            Err(_) => panic!("moto_server did not say where it listens within 60 s"),
        };
        server.endpoint = format!("http://{address}");
        let (status, body) = http(&address, "PUT", &format!("/{}", server.bucket));
        assert_eq!(status, 200, "creating the bucket: {body:?}");
        server
    }

    fn config(&self) -> S3Config {
        let local = self.child.is_some();
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            access_key_id: local.then(|| "berth".into()),
            secret_access_key: local.then(|| "berth-secret".into()),
            part_size: PART,
            allow_http: self.endpoint.starts_with("http://"),
            ..S3Config::new(&self.bucket, "us-east-1")
        }
    }

    /// Another replica: a new client with nothing in common but the bucket.
    fn store(&self) -> S3Store {
        S3Store::new(&self.config()).expect("S3 store")
    }

    /// A plain object_store client, to look at the bucket behind the backend's back.
    fn raw(&self) -> AmazonS3 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = self.config();
        let builder = match (config.access_key_id, config.secret_access_key) {
            (Some(id), Some(secret)) => AmazonS3Builder::new()
                .with_access_key_id(id)
                .with_secret_access_key(secret),
            _ => AmazonS3Builder::from_env(),
        };
        builder
            .with_bucket_name(&self.bucket)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(config.allow_http)
            .build()
            .expect("raw S3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Closing stdin makes the watchdog kill moto and exit.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Runs `moto_server` (argv[1]) on an ephemeral 127.0.0.1 port until stdin closes.
const WATCHDOG: &str = r#"
import subprocess, sys
server = subprocess.Popen([sys.argv[1], "-H", "127.0.0.1", "-p", "0"], stdin=subprocess.DEVNULL)
try:
    sys.stdin.read()
finally:
    server.kill()
    server.wait()
"#;

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_TEST_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cached) = cache.map(|c| c.join("berth-test/moto/bin/moto_server"))
        && cached.exists()
    {
        return cached;
    }
    PathBuf::from("moto_server")
}

/// One unsigned HTTP/1.0 request (moto does not check signatures); returns status and body.
fn http(address: &str, method: &str, target: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "{method} {target} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("receive");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, response[head_end + 4..].to_vec())
}

/// Bytes without a short period, so a part stored at the wrong place cannot go unnoticed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

async fn read(store: &S3Store, key: &berth_storage::BlobKey, range: Option<ByteRange>) -> Vec<u8> {
    let mut stream = store.open(key, range).await.expect("open");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// Appends `bytes` in one request through `store`, in uneven pieces.
async fn append(
    store: &S3Store,
    id: &str,
    state: &UploadState,
    offset: u64,
    bytes: &[u8],
) -> UploadState {
    let mut w = store.writer(id, state, offset).await.expect("writer");
    for piece in bytes.chunks(300_007) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    w.finish().await.expect("finish")
}

fn state_field(state: &UploadState, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&state.0).expect("state is JSON");
    v[field].as_str().expect("field").to_string()
}

/// Objects left under the session's staging prefix.
async fn staged(s3: &AmazonS3, id: &str) -> Vec<Path> {
    let prefix = Path::from(format!("uploads/{id}"));
    s3.list(Some(&prefix))
        .map(|m| m.expect("list").location)
        .collect()
        .await
}

/// Whether the multipart upload still exists. moto answers a part upload to a gone upload with
/// 500 (S3: 404 `NoSuchUpload`), so there the upload listing is asked instead.
async fn upload_is_open(server: &S3Server, path: &Path, upload: &str) -> bool {
    if server.child.is_some() {
        let address = server.endpoint.trim_start_matches("http://");
        let (status, body) = http(address, "GET", &format!("/{}?uploads", server.bucket));
        assert_eq!(status, 200);
        return String::from_utf8_lossy(&body).contains(upload);
    }
    match server
        .raw()
        .put_part(
            path,
            &upload.to_string(),
            9_999,
            Bytes::from_static(b"x").into(),
        )
        .await
    {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("probing upload {upload}: {e}"),
    }
}

#[tokio::test]
async fn s3_passes_the_suite() {
    let server = S3Server::start();
    testsuite::run(&server.store()).await;
}

#[tokio::test]
async fn chunked_upload_continues_on_any_replica() {
    let server = S3Server::start();
    let blob = data(20 * MIB, 7);
    let id = new_id();
    let mut state = server.store().create_upload(&id).await.expect("create");
    let mut offset = 0usize;
    for len in [3 * MIB, 7 * MIB, 1, 20 * MIB - 10 * MIB - 1] {
        // Each chunk on a new replica, from nothing but the saved state and offset.
        let chunk = &blob[offset..offset + len];
        state = append(&server.store(), &id, &state, offset as u64, chunk).await;
        offset += len;
        assert!(state.0.len() < 1024, "the state stays small");
        // The saved tail and the one before it, which the next request deletes.
        assert!(staged(&server.raw(), &id).await.len() <= 2);
    }
    let digest = Digest::sha256_of(&blob);
    let store = server.store();
    let key = store
        .commit(&id, &state, &digest, offset as u64)
        .await
        .expect("commit");
    assert!(key.as_str().starts_with("blobs/"));

    let reader = server.store();
    assert!(
        read(&reader, &key, None).await == blob,
        "the blob reads back whole"
    );
    let part = PART as usize;
    for (start, end) in [
        (0, 0),
        (part - 10, part + 10),
        (2 * part - 1, 3 * part),
        (blob.len() - 1, blob.len() - 1),
    ] {
        let range = ByteRange {
            start: start as u64,
            end: end as u64,
        };
        assert!(
            read(&reader, &key, Some(range)).await == blob[start..=end],
            "range {start}-{end}"
        );
    }

    // Nothing is left of the session: no staged tail, no multipart upload.
    let raw = server.raw();
    assert!(staged(&raw, &id).await.is_empty());
    let upload = state_field(&state, "upload");
    assert!(!upload_is_open(&server, &Path::from(key.as_str()), &upload).await);
    assert!(store.writer(&id, &state, offset as u64).await.is_err());
}

#[tokio::test]
async fn requests_that_die_leave_the_saved_state_valid() {
    let server = S3Server::start();
    let blob = data(12 * MIB, 11);
    let id = new_id();
    let store = server.store();
    let created = store.create_upload(&id).await.expect("create");
    let saved = append(&store, &id, &created, 0, &blob[..3 * MIB]).await;

    // Dies mid-request, after uploading a full part of other bytes.
    let mut w = store
        .writer(&id, &saved, 3 * MIB as u64)
        .await
        .expect("writer");
    w.write(Bytes::from(data(7 * MIB, 99)))
        .await
        .expect("write");
    drop(w);
    // Finishes, but its state is never saved (the database write failed).
    let lost = append(&store, &id, &saved, 3 * MIB as u64, &data(MIB, 98)).await;
    assert_ne!(lost, saved);

    // The next request starts again from the saved state, on another replica.
    let other = server.store();
    let state = append(&other, &id, &saved, 3 * MIB as u64, &blob[3 * MIB..]).await;
    let key = other
        .commit(&id, &state, &Digest::sha256_of(&blob), blob.len() as u64)
        .await
        .expect("commit");
    assert!(read(&other, &key, None).await == blob);
    assert!(staged(&server.raw(), &id).await.is_empty());

    // A commit retried after it went through (its answer was lost) finds the blob.
    let again = store
        .commit(&id, &state, &Digest::sha256_of(&blob), blob.len() as u64)
        .await
        .expect("commit again");
    assert_eq!(again, key);
}

#[tokio::test]
async fn abort_removes_the_multipart_upload_and_the_tail() {
    let server = S3Server::start();
    let store = server.store();
    let raw = server.raw();
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    // One full part and a 1 MiB tail.
    let state = append(&store, &id, &created, 0, &data(6 * MIB, 5)).await;
    assert!(!staged(&raw, &id).await.is_empty());

    let path = Path::from(state_field(&state, "key").as_str());
    let upload = state_field(&state, "upload");
    assert!(upload_is_open(&server, &path, &upload).await);

    server.store().abort(&id, &state).await.expect("abort");
    assert!(staged(&raw, &id).await.is_empty(), "the tail is gone");
    assert!(!upload_is_open(&server, &path, &upload).await);
    store.abort(&id, &state).await.expect("abort twice");
    assert!(matches!(
        store.writer(&id, &state, 6 * MIB as u64).await.err(),
        Some(StorageError::UploadNotFound(_))
    ));
    assert!(
        store
            .commit(&id, &state, &Digest::sha256_of(b""), 6 * MIB as u64)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn presigned_url_serves_the_blob() {
    let server = S3Server::start();
    let store = server.store();
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let state = append(&store, &id, &created, 0, b"presigned bytes").await;
    let mut h = DigestHasher::new();
    h.update(b"presigned bytes");
    let key = store
        .commit(&id, &state, &h.finish(), 15)
        .await
        .expect("commit");
    let url = store
        .presigned_get(&key, Duration::from_secs(60))
        .await
        .expect("a signed URL");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    if let Some(rest) = url.strip_prefix("http://")
        && server.child.is_some()
    {
        let (address, target) = rest.split_at(rest.find('/').expect("path"));
        let (status, body) = http(address, "GET", target);
        assert_eq!(status, 200);
        assert_eq!(body, b"presigned bytes");
    }
}

/// The tests above mean something only if the server, like S3, refuses parts below 5 MiB
/// before the last one.
#[tokio::test]
async fn the_server_enforces_the_part_minimum() {
    let server = S3Server::start();
    let raw = server.raw();
    let path = Path::from(format!("blobs/{}", new_id().to_lowercase()));
    let upload = raw.create_multipart(&path).await.expect("create");
    let mut parts = Vec::new();
    for i in 0..2 {
        let part = raw
            .put_part(&path, &upload, i, Bytes::from(data(MIB, 3)).into())
            .await
            .expect("part");
        parts.push(part);
    }
    let completed = raw.complete_multipart(&path, &upload, parts).await;
    assert!(completed.is_err(), "1 MiB parts were accepted");
    raw.abort_multipart(&path, &upload).await.expect("abort");
}

#[tokio::test]
async fn check_fails_without_the_bucket() {
    let server = S3Server::start();
    server.store().check().await.expect("check");
    let missing = S3Config {
        bucket: "no-such-bucket-here".into(),
        ..server.config()
    };
    assert!(
        S3Store::new(&missing)
            .expect("store")
            .check()
            .await
            .is_err()
    );
}
