//! The S3 backend against a real S3-compatible server: moto's, started by each test on an
//! ephemeral 127.0.0.1 port and killed when the test ends, or the one at
//! `BERTH_TEST_S3_ENDPOINT` (see `berth_testkit::s3`). moto enforces S3's 5 MiB minimum part
//! size at completion and checks part ETags, so a wrong part layout fails here as it would on
//! AWS.

use std::time::Duration;

use berth_oci::{Digest, DigestHasher};
use berth_storage::{
    BlobReader, BlobStore, ByteRange, S3Config, S3Store, StorageError, UploadState, UploadStore,
    testsuite,
};
use berth_testkit::s3::{S3Server, http};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;

const MIB: usize = 1 << 20;
const PART: u64 = 5 << 20;

/// The backend's view of the test server.
trait Backend {
    fn config(&self) -> S3Config;
    /// Another replica: a new client with nothing in common but the bucket.
    fn store(&self) -> S3Store;
    /// A plain object_store client, to look at the bucket behind the backend's back.
    fn raw(&self) -> AmazonS3;
}

impl Backend for S3Server {
    fn config(&self) -> S3Config {
        let credentials = self.credentials();
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            path_style: true,
            access_key_id: credentials.map(|(id, _)| id.into()),
            secret_access_key: credentials.map(|(_, secret)| secret.into()),
            part_size: PART,
            allow_http: self.endpoint.starts_with("http://"),
            ..S3Config::new(&self.bucket, "us-east-1")
        }
    }

    fn store(&self) -> S3Store {
        S3Store::new(&self.config()).expect("S3 store")
    }

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

/// Bytes without a short period, so a part stored at the wrong place cannot go unnoticed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    berth_testkit::noise(seed, len)
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
    if server.is_local() {
        let address = server.address();
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
async fn the_last_request_uploads_the_last_part() {
    let server = S3Server::start();
    let blob = data(7 * MIB, 13);
    let id = new_id();
    let store = server.store();
    let created = store.create_upload(&id).await.expect("create");
    let saved = append(&store, &id, &created, 0, &blob[..3 * MIB]).await;
    // The closing request: the 3 MiB tail and its 4 MiB make a full part and a 2 MiB last one.
    let mut w = store
        .writer(&id, &saved, 3 * MIB as u64)
        .await
        .expect("writer");
    w.write(Bytes::copy_from_slice(&blob[3 * MIB..]))
        .await
        .expect("write");
    let closed = w.finish_last().await.expect("finish_last");
    let progress: serde_json::Value = serde_json::from_slice(&closed.0).expect("state");
    assert_eq!(progress["parts"].as_array().expect("parts").len(), 2);
    assert_eq!(progress["parts_len"], blob.len() as u64);
    assert_eq!(progress["tail_len"], 0);
    assert_eq!(progress["closed"], true);

    // Nothing can follow the short last part.
    assert!(matches!(
        store.writer(&id, &closed, blob.len() as u64).await.err(),
        Some(StorageError::UploadStateInvalid { .. })
    ));
    assert!(
        store
            .commit(&id, &closed, &Digest::sha256_of(&blob), 5 * MIB as u64)
            .await
            .is_err(),
        "a size other than the parts'"
    );

    let other = server.store();
    let key = other
        .commit(&id, &closed, &Digest::sha256_of(&blob), blob.len() as u64)
        .await
        .expect("commit");
    assert!(read(&other, &key, None).await == blob);
    assert!(staged(&server.raw(), &id).await.is_empty());
    let upload = state_field(&closed, "upload");
    assert!(!upload_is_open(&server, &Path::from(key.as_str()), &upload).await);
    let again = store
        .commit(&id, &closed, &Digest::sha256_of(&blob), blob.len() as u64)
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
        && server.is_local()
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

/// `check` says in words what is wrong: the bucket is missing, the credentials are refused,
/// nothing listens at the endpoint.
#[tokio::test]
async fn check_explains_failures() {
    let server = S3Server::start();
    server.store().check().await.expect("check");
    let unavailable = |config: S3Config| async move {
        match S3Store::new(&config).expect("store").check().await {
            Err(StorageError::Unavailable(why)) => why,
            other => panic!("{other:?}"),
        }
    };
    let why = unavailable(S3Config {
        bucket: "no-such-bucket-here".into(),
        ..server.config()
    })
    .await;
    assert_eq!(
        why,
        "bucket \"no-such-bucket-here\" does not exist: create it, or correct [storage] bucket"
    );

    let checking = S3Server::moto_checking_credentials();
    let why = unavailable(checking.config()).await;
    assert!(
        why.starts_with("access denied: the store does not know the access key id"),
        "{why}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let endpoint = format!("http://{closed}");
    let started = std::time::Instant::now();
    let why = unavailable(S3Config {
        endpoint: Some(endpoint.clone()),
        allow_http: true,
        ..server.config()
    })
    .await;
    assert!(
        why.starts_with(&format!("connection refused by {endpoint}")),
        "{why}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "check retried");
}

// Request accounting: what a pushed blob costs in S3 requests and bytes, counted by a proxy
// between the backend and moto.

/// S3 operations, told apart as S3 does: by method, query and headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum S3Op {
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    PutObject,
    /// `CopyObject` or `UploadPartCopy` (an `x-amz-copy-source` header): a server-side copy.
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    DeleteObjects,
    ListObjects,
    ListParts,
    Other,
}

impl S3Op {
    fn of(method: &str, target: &str, copy_source: bool) -> S3Op {
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let has = |name: &str| {
            query
                .split('&')
                .any(|p| p.split_once('=').map_or(p, |(n, _)| n) == name)
        };
        match method {
            "PUT" if copy_source => S3Op::CopyObject,
            "PUT" if has("partNumber") => S3Op::UploadPart,
            "PUT" => S3Op::PutObject,
            "POST" if has("uploads") => S3Op::CreateMultipartUpload,
            "POST" if has("uploadId") => S3Op::CompleteMultipartUpload,
            "POST" if has("delete") => S3Op::DeleteObjects,
            "GET" if has("uploadId") => S3Op::ListParts,
            "GET" if has("list-type") || has("uploads") || object_key(target).is_empty() => {
                S3Op::ListObjects
            }
            "GET" => S3Op::GetObject,
            "HEAD" => S3Op::HeadObject,
            "DELETE" if has("uploadId") => S3Op::AbortMultipartUpload,
            "DELETE" => S3Op::DeleteObject,
            _ => S3Op::Other,
        }
    }
}

/// The key in a path-style target: `/<bucket>/<key>?<query>`.
fn object_key(target: &str) -> &str {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    path.trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, key)| key)
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
struct S3Request {
    op: S3Op,
    key: String,
    /// Request body bytes.
    sent: u64,
    /// Response body bytes.
    received: u64,
}

/// A plain HTTP/1.1 proxy on 127.0.0.1 in front of an S3 server on 127.0.0.1, recording every
/// request. Each client connection carries one request: the proxy answers with
/// `Connection: close`, and asks the server for the same, so a body ends where the connection
/// does.
struct CountingProxy {
    endpoint: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<S3Request>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: &str) -> CountingProxy {
        let upstream: std::net::SocketAddr = upstream.parse().expect("upstream address");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only talks to loopback"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let log = std::sync::Arc::default();
        let shared = std::sync::Arc::clone(&log);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = relay(client, upstream, &log).await {
                        eprintln!("counting proxy: {e}");
                    }
                });
            }
        });
        CountingProxy {
            endpoint,
            log,
            accept,
        }
    }

    /// The requests recorded since the last call.
    fn take(&self) -> Vec<S3Request> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads an HTTP head up to its empty line; `None` if the peer closed before sending one.
async fn read_head<R>(from: &mut R) -> std::io::Result<Option<Vec<String>>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if from.read_until(b'\n', &mut line).await? == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head[1..].iter().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A head without the headers that frame the connection, ending in `Connection: close`.
fn closing_head(head: &[String], content_length: Option<u64>) -> Vec<u8> {
    let mut out = String::new();
    for (i, line) in head.iter().enumerate() {
        let name = line.split_once(':').map_or("", |(n, _)| n.trim());
        let framing = ["connection", "keep-alive", "transfer-encoding"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
            || (content_length.is_some() && name.eq_ignore_ascii_case("content-length"));
        if i == 0 || !framing {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if let Some(len) = content_length {
        out.push_str(&format!("Content-Length: {len}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Decodes a `Transfer-Encoding: chunked` body.
async fn read_chunked<R>(from: &mut R) -> std::io::Result<Vec<u8>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        from.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut line = String::new();
                if from.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        from.read_exact(&mut body[start..]).await?;
        let mut crlf = [0; 2];
        from.read_exact(&mut crlf).await?;
    }
}

/// Relays the one request of a client connection and records it.
async fn relay(
    client: tokio::net::TcpStream,
    upstream: std::net::SocketAddr,
    log: &std::sync::Mutex<Vec<S3Request>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut client = tokio::io::BufReader::new(client);
    let Some(head) = read_head(&mut client).await? else {
        return Ok(());
    };
    let mut words = head[0].split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    let op = S3Op::of(
        &method,
        &target,
        header(&head, "x-amz-copy-source").is_some(),
    );

    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let sent = if chunked {
        // Sent on with a length: the body is at most a part.
        let body = read_chunked(&mut client).await?;
        server
            .write_all(&closing_head(&head, Some(body.len() as u64)))
            .await?;
        server.write_all(&body).await?;
        body.len() as u64
    } else {
        let len: u64 = header(&head, "content-length")
            .map_or(Ok(0), str::parse)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "content-length"))?;
        server.write_all(&closing_head(&head, None)).await?;
        let copied = tokio::io::copy(&mut (&mut client).take(len), &mut server).await?;
        if copied != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        copied
    };

    // The response is read whole (at most a tail: blobs are read back around the proxy) and
    // recorded before the client sees it, so the log is complete when a call returns.
    let mut server = tokio::io::BufReader::new(server);
    let response = read_head(&mut server)
        .await?
        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
    let mut body = Vec::new();
    server.read_to_end(&mut body).await?;
    log.lock().expect("log").push(S3Request {
        op,
        key: object_key(&target).to_string(),
        sent,
        received: body.len() as u64,
    });
    let client = client.get_mut();
    client.write_all(&closing_head(&response, None)).await?;
    client.write_all(&body).await?;
    client.shutdown().await
}

/// How the request that carries a blob's last bytes ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// `finish`: the remainder is staged as a tail; the commit reads it back and uploads it.
    Staged,
    /// `finish_last`: the remainder is uploaded as the last part at once.
    LastPart,
}

impl Closing {
    fn describe(self) -> &'static str {
        match self {
            Closing::Staged => "finish (staged tail)",
            Closing::LastPart => "finish_last (last part)",
        }
    }
}

/// One way to push a blob, as the registry drives the storage for it.
struct Push {
    name: &'static str,
    /// Body length of each request; the last one closes the upload unless `bodiless_put`.
    requests: Vec<usize>,
    /// The closing `PUT` carries no body: every request with bytes is a `PATCH` (`finish`).
    bodiless_put: bool,
}

/// What one push cost.
struct Cost {
    push: String,
    closing: &'static str,
    size: u64,
    requests: Vec<S3Request>,
}

impl Cost {
    fn count(&self, op: S3Op) -> usize {
        self.requests.iter().filter(|r| r.op == op).count()
    }

    fn sent(&self, op: S3Op) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.op == op)
            .map(|r| r.sent)
            .sum()
    }

    fn received(&self, op: S3Op) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.op == op)
            .map(|r| r.received)
            .sum()
    }
}

/// Pushes `blob` through `store` the way the registry does: `create_upload` (POST), one writer
/// per request with a body (`PATCH`, or the closing `PUT`/`POST ?digest=`), then `commit`.
/// Returns the blob's key and the bytes each request left staged in its tail.
async fn push(
    store: &S3Store,
    push: &Push,
    closing: Closing,
    blob: &Bytes,
) -> (berth_storage::BlobKey, Vec<u64>) {
    let id = new_id();
    let mut state = store.create_upload(&id).await.expect("create");
    let mut offset = 0usize;
    let mut tails = Vec::new();
    for (i, &len) in push.requests.iter().enumerate() {
        let closes = i + 1 == push.requests.len() && !push.bodiless_put;
        let mut w = store
            .writer(&id, &state, offset as u64)
            .await
            .expect("writer");
        // In pieces of the size hyper hands the registry.
        let body = blob.slice(offset..offset + len);
        for start in (0..len).step_by(64 << 10) {
            w.write(body.slice(start..len.min(start + (64 << 10))))
                .await
                .expect("write");
        }
        state = if closes && closing == Closing::LastPart {
            w.finish_last().await.expect("finish_last")
        } else {
            w.finish().await.expect("finish")
        };
        offset += len;
        let progress: serde_json::Value = serde_json::from_slice(&state.0).expect("state");
        tails.push(progress["tail_len"].as_u64().expect("tail_len"));
    }
    assert_eq!(offset, blob.len());
    let blob_key = state_field(&state, "key");
    let key = store
        .commit(&id, &state, &Digest::sha256_of(blob), blob.len() as u64)
        .await
        .expect("commit");
    assert_eq!(key.as_str(), blob_key);
    (key, tails)
}

fn mib(bytes: u64) -> String {
    if bytes >= MIB as u64 && bytes.is_multiple_of(MIB as u64 / 4) {
        format!("{} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}

fn print_costs(part_size: u64, costs: &[Cost]) {
    use std::fmt::Write as _;
    let mut table = format!(
        "\nS3 requests per pushed blob, part size {}\n\
         | push | closing request | blob | S3 requests | UploadPart bytes | PutObject (tail) bytes | GetObject (tail) bytes | bytes written / blob | all bodies sent / received | requests by kind |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        mib(part_size)
    );
    for c in costs {
        let parts = c.sent(S3Op::UploadPart);
        let tails = c.sent(S3Op::PutObject);
        let mut kinds: Vec<S3Op> = c.requests.iter().map(|r| r.op).collect();
        kinds.sort();
        kinds.dedup();
        let kinds: Vec<String> = kinds
            .iter()
            .map(|&op| format!("{op:?} {}", c.count(op)))
            .collect();
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {:.4} | {} / {} | {} |",
            c.push,
            c.closing,
            mib(c.size),
            c.requests.len(),
            parts,
            tails,
            c.received(S3Op::GetObject),
            (parts + tails) as f64 / c.size as f64,
            c.requests.iter().map(|r| r.sent).sum::<u64>(),
            c.requests.iter().map(|r| r.received).sum::<u64>(),
            kinds.join(", ")
        )
        .expect("format");
    }
    eprintln!("{table}");
}

/// What a pushed blob costs in S3 requests and bytes, counted between the backend and moto:
/// every byte goes to S3 once as part of the blob, plus the staged tails (each below a part);
/// no server-side copy; the blob's own key is never read. Prints the table (`--no-capture`).
#[tokio::test]
async fn a_pushed_blob_is_written_once_and_never_copied_or_read() {
    let server = S3Server::start();
    if !server.is_local() {
        eprintln!("skipped: the counting proxy speaks plain HTTP to a local moto only");
        return;
    }
    let proxy = CountingProxy::start(server.address()).await;
    let biggest = Bytes::from(data(64 * MIB, 17));
    let pushes = [
        Push {
            name: "monolithic POST ?digest=",
            requests: vec![1],
            bodiless_put: false,
        },
        Push {
            name: "monolithic POST ?digest=",
            requests: vec![MIB],
            bodiless_put: false,
        },
        Push {
            name: "monolithic POST ?digest=",
            requests: vec![20 * MIB],
            bodiless_put: false,
        },
        Push {
            name: "monolithic POST ?digest=",
            requests: vec![64 * MIB],
            bodiless_put: false,
        },
        Push {
            name: "chunked: 3 PATCH + PUT with the last chunk",
            requests: vec![16 * MIB; 4],
            bodiless_put: false,
        },
        Push {
            name: "docker: 1 PATCH + PUT without body",
            requests: vec![64 * MIB],
            bodiless_put: true,
        },
        Push {
            name: "chunked: 4 PATCH + PUT without body",
            requests: vec![16 * MIB; 4],
            bodiless_put: true,
        },
    ];
    for part_size in [PART, berth_storage::DEFAULT_PART_SIZE] {
        let config = S3Config {
            endpoint: Some(proxy.endpoint.clone()),
            part_size,
            ..server.config()
        };
        let store = S3Store::new(&config).expect("store");
        let direct = S3Store::new(&S3Config {
            part_size,
            ..server.config()
        })
        .expect("store");
        let mut costs = Vec::new();
        for p in &pushes {
            let size: usize = p.requests.iter().sum();
            let blob = biggest.slice(..size);
            let mut before = None;
            for closing in [Closing::Staged, Closing::LastPart] {
                if p.bodiless_put && closing != Closing::Staged {
                    continue; // no closing writer: nothing to compare
                }
                proxy.take();
                let (key, tails) = push(&store, p, closing, &blob).await;
                let cost = Cost {
                    push: p.name.to_string(),
                    closing: if p.bodiless_put {
                        "no body"
                    } else {
                        closing.describe()
                    },
                    size: size as u64,
                    requests: proxy.take(),
                };
                let what = format!("{} {} ({:?})", p.name, mib(cost.size), closing);
                assert_eq!(
                    cost.count(S3Op::CopyObject),
                    0,
                    "{what}: a server-side copy"
                );
                assert_eq!(cost.count(S3Op::Other), 0, "{what}: {:?}", cost.requests);
                assert!(
                    !cost.requests.iter().any(|r| r.key == key.as_str()
                        && matches!(r.op, S3Op::GetObject | S3Op::HeadObject)),
                    "{what}: the blob was read back"
                );
                // Each byte is in exactly one part; the only other bytes written are the staged
                // tails, each below a part, and those are read back once.
                let staged: u64 = tails.iter().sum();
                assert_eq!(cost.sent(S3Op::UploadPart), cost.size, "{what}");
                assert_eq!(cost.sent(S3Op::PutObject), staged, "{what}");
                assert_eq!(cost.received(S3Op::GetObject), staged, "{what}");
                assert!(
                    cost.sent(S3Op::UploadPart) + cost.sent(S3Op::PutObject)
                        <= cost.size + p.requests.len() as u64 * (part_size - 1),
                    "{what}"
                );
                assert!(read(&direct, &key, None).await == blob, "{what}: read back");
                // Uploading the last part at once saves at least the staged tail's PUT.
                if let (Closing::LastPart, Some(staged)) =
                    (closing, before.replace(cost.requests.len()))
                {
                    assert!(cost.requests.len() < staged, "{what}");
                }
                costs.push(cost);
            }
        }
        print_costs(part_size, &costs);
    }
}
