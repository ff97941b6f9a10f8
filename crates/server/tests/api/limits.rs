//! `[limits]`: request heads too large or too slow, stalled bodies, concurrent uploads per
//! client and overall, and a full disk (a small tmpfs).
//!
//! Limits are per process: with replicas these tests speak to the first replica directly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Reads what the server sends until it closes the connection or `limit` passes; returns
/// the bytes and when the connection closed (`None`: still open at `limit`).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (out, Some(Instant::now())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, None),
        }
    }
}

fn first_replica(app: &TestApp) -> SocketAddr {
    app.replicas[0]
}

/// An upload `location` with `?digest=` (or `&digest=`) for its closing PUT.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// `repo` serves `data` as a blob.
async fn assert_blob(app: &TestApp, repo: &str, data: &[u8]) {
    let r = app.get(&format!("/v2/{repo}/blobs/{}", sha256(data))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("blob").as_ref(), data);
}

/// A blob pushed in one `POST ?digest=`.
async fn post_blob(app: &TestApp, repo: &str, data: &[u8]) -> reqwest::Response {
    app.req(
        reqwest::Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
    )
    .body(data.to_vec())
    .send()
    .await
    .expect("POST")
}

#[tokio::test]
async fn request_heads_over_the_limit_are_refused_with_431() {
    let app = TestApp::start_with(|c| c.limits.max_header_bytes = 16 << 10).await;
    let base = format!("http://{}", first_replica(&app));
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/v2/"))
        .header("x-padding", "a".repeat(8 << 10))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "a head within the limit");
    let r = http
        .get(format!("{base}/v2/"))
        .header("x-padding", "a".repeat(32 << 10))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Many small headers count too.
    let mut request = http.get(format!("{base}/v2/"));
    for i in 0..2000 {
        request = request.header(format!("x-h{i}"), "0123456789");
    }
    match request.send().await {
        Ok(r) => assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        // hyper may close before the client has written them all.
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    let r = http.get(format!("{base}/v2/")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK, "the server goes on serving");
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_disconnected() {
    let app = TestApp::start_with(|c| c.limits.header_timeout_secs = 1).await;
    // Many slow clients at once: each is cut off on time, none holds the server.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(first_replica(&app))
            .await
            .expect("connect");
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    let started = Instant::now();
    let trickle = async {
        // One header byte every 100 ms from each: never a whole head.
        for _ in 0..30 {
            for s in &mut slow {
                let _ = s.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    trickle.await;
    for mut s in slow {
        let (said, closed) = read_until_closed(&mut s, Duration::from_secs(2)).await;
        let closed = closed.expect("the server keeps a trickling client beyond its time limit");
        assert!(
            closed.duration_since(started) < Duration::from_secs(5),
            "closed after {:?}",
            closed.duration_since(started)
        );
        let said = String::from_utf8_lossy(&said);
        assert!(
            said.is_empty() || said.starts_with("HTTP/1.1 408"),
            "{said}"
        );
    }
    let r = app.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK, "the server goes on serving");
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let app = TestApp::start_with(|c| c.limits.header_timeout_secs = 1).await;
    // Connected, never a byte.
    let mut silent = TcpStream::connect(first_replica(&app))
        .await
        .expect("connect");
    // One request, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(first_replica(&app))
        .await
        .expect("connect");
    idle.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    for (what, s) in [("silent", &mut silent), ("idle", &mut idle)] {
        let (_, closed) = read_until_closed(s, Duration::from_secs(4)).await;
        let closed = closed.unwrap_or_else(|| panic!("a {what} connection stays open"));
        assert!(
            closed.duration_since(started) < Duration::from_secs(3),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_stalled_body_fails_and_the_upload_keeps_what_was_acknowledged() {
    let app = TestApp::start_with(|c| c.limits.body_idle_timeout_secs = 1).await;
    let base = format!("http://{}", first_replica(&app));
    let blob = berth_testkit::noise(7, 3000);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v2/limits/stall/blobs/uploads/"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").to_string();
    let r = http
        .patch(format!("{base}{location}"))
        .header("content-range", "0-999")
        .body(blob[..1000].to_vec())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").to_string();

    // A PATCH that promises 2000 bytes, sends 100 and then nothing.
    let mut s = TcpStream::connect(first_replica(&app))
        .await
        .expect("connect");
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 1000-2999\r\nContent-Length: 2000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&blob[1000..1100]).await.expect("write some");
    let started = Instant::now();
    let (said, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.starts_with("HTTP/1.1 400") && said.contains("BLOB_UPLOAD_INVALID"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // The session still holds what was acknowledged, and finishes.
    let r = http
        .get(format!("{base}{location}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-999");
    let r = http
        .put(format!("{base}{}", with_digest(&location, &sha256(&blob))))
        .header("content-range", "1000-2999")
        .body(blob[1000..].to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_blob(&app, "limits/stall", &blob).await;
}

/// Reads one response from a kept-alive connection: (head in lower case, body; a chunked
/// body with its chunk lines).
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let body = &got[end + 4..];
            if head.contains("transfer-encoding: chunked") {
                if body.ends_with(b"\r\n0\r\n\r\n") {
                    return (head, body.to_vec());
                }
            } else {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no length: {head}"));
                if body.len() >= length {
                    return (head, body[..length].to_vec());
                }
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// An answer given before the request body was read says `Connection: close` (RFC 9112,
/// 9.6) and the server closes: the unread rest of the body cannot be taken for the next
/// request, and the client knows not to send one. An answer to a body that was read keeps
/// the connection.
#[tokio::test]
async fn a_body_refused_unread_closes_the_connection_and_says_so() {
    let app = TestApp::start().await;
    let mut s = TcpStream::connect(first_replica(&app))
        .await
        .expect("connect");
    // Read, then refused: the connection is kept.
    let manifest = b"{ not json";
    let head = format!(
        "PUT /v2/limits/keep/manifests/v1 HTTP/1.1\r\nHost: registry\r\n\
         Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
         Content-Length: {}\r\n\r\n",
        manifest.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(manifest).await.expect("write body");
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_INVALID"));
    assert!(!head.contains("connection: close"), "{head}");

    // Refused for its name before its 1 MB body, of which 1000 bytes are sent.
    let head = "PUT /v2/limits/keep/manifests/-bad-tag HTTP/1.1\r\nHost: registry\r\n\
                Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                Content-Length: 1000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&[b' '; 1000]).await.expect("write some");
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("TAG_INVALID"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        rest.is_empty() && closed.is_some(),
        "the connection stays open"
    );
}

/// A PATCH whose body the test sends when it likes: (the request in flight, the sender).
fn streaming_patch(
    http: &reqwest::Client,
    url: String,
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let request = http
        .patch(url)
        .header("content-type", "application/octet-stream")
        .body(body);
    (tokio::spawn(request.send()), tx)
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A client that connects from `ip` (any 127.0.0.0/8 address reaches loopback).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

async fn start_upload(http: &reqwest::Client, base: &str, repo: &str) -> reqwest::Response {
    http.post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("POST")
}

/// The `berth_upload_requests_running` gauge reaches `n` (within 10 s); only the first
/// replica runs uploads here.
async fn wait_for_running_uploads(app: &TestApp, n: u64) {
    let ok =
        within_10s(|| async { metric(app, "berth_upload_requests_running").await == n as f64 })
            .await;
    assert!(ok, "{n} upload requests never ran at once");
}

/// An upload started by `client`, with a PATCH whose body stays open until the sender drops.
async fn open_upload(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let r = start_upload(client, base, repo).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let url = format!("{base}{}", header(&r, "location"));
    let (request, tx) = streaming_patch(client, url);
    tx.send(Ok(Bytes::from_static(b"first bytes")))
        .await
        .expect("send");
    (request, tx)
}

async fn assert_refused(client: &reqwest::Client, base: &str, repo: &str, words: &str) {
    let r = start_upload(client, base, repo).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "1");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_are_capped_per_client_and_overall() {
    let app = TestApp::start_with(|c| {
        c.limits.max_uploads_per_client = 2;
        c.limits.max_uploads = 3;
        c.limits.body_idle_timeout_secs = 30;
    })
    .await;
    let base = format!("http://{}", first_replica(&app));
    let a = client_from([127, 0, 0, 1]);
    let b = client_from([127, 0, 0, 2]);
    let mut running = vec![
        open_upload(&a, &base, "caps/a1").await,
        open_upload(&a, &base, "caps/a2").await,
    ];
    wait_for_running_uploads(&app, 2).await;
    assert_refused(&a, &base, "caps/a3", "from this client").await;
    running.push(open_upload(&b, &base, "caps/b1").await);
    wait_for_running_uploads(&app, 3).await;
    assert_refused(&b, &base, "caps/b2", "on this registry").await;
    assert_refused(&a, &base, "caps/a3", "from this client").await;
    // Reads are not uploads: served as ever.
    let r = a.get(format!("{base}/v2/")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::OK);

    // The uploads end; their slots come back.
    for (request, tx) in running {
        drop(tx);
        let r = request.await.expect("join").expect("PATCH");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    wait_for_running_uploads(&app, 0).await;
    let r = start_upload(&a, &base, "caps/a3").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = start_upload(&b, &base, "caps/b2").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with a file of its own; returns its path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn assert_storage_full(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = r.json().await.expect("error JSON");
    assert_eq!(body["errors"][0]["code"], "UNKNOWN", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("storage is full"), "{message}");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_keeps_serving_reads_and_recovers() {
    if scaled_out() {
        // PostgreSQL and S3 run out of space in their own ways; the filesystem backend is the
        // one whose disk berth owns.
        return;
    }
    let outer = tempfile::tempdir().expect("tempdir");
    let disk = outer.path().join("disk");
    let Some(_tmpfs) = Tmpfs::mount(&disk, "24m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CAP_SYS_ADMIN)");
        return;
    };
    let data = disk.join("data");
    let app = TestApp::start_with(|c| c.data_dir = data.clone()).await;
    let (manifest, digest) = app.push_image("full/app", "v1", "before").await;
    let session = app.open_session("full/app").await;
    let filler = fill(&disk);

    // Writes: a clear 507, nothing stored.
    let blob = berth_testkit::noise(9, 256 << 10);
    assert_storage_full(post_blob(&app, "full/app", &blob).await).await;
    let r = app
        .head(&format!("/v2/full/app/blobs/{}", sha256(&blob)))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let chunk = berth_testkit::noise(10, 256 << 10);
    let patch = |body: Vec<u8>| {
        app.req(reqwest::Method::PATCH, &session)
            .header("content-range", format!("0-{}", body.len() - 1))
            .body(body)
            .send()
    };
    assert_storage_full(patch(chunk.clone()).await.expect("PATCH")).await;
    let r = app.get(&session).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the session outlives the failed chunk"
    );
    assert_eq!(header(&r, "range"), "0-0");
    // A manifest needs only the database; it is stored or refused the same clear way.
    let r = app
        .put_manifest("full/app", "v1-again", OCI_MANIFEST, &manifest)
        .await;
    assert!(
        [StatusCode::CREATED, StatusCode::INSUFFICIENT_STORAGE].contains(&r.status()),
        "{}",
        r.status()
    );

    // Reads go on.
    let r = app.get("/v2/full/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body").as_ref(), manifest.as_slice());
    let r = app.get(&format!("/v2/full/app/manifests/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/v2/full/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);

    // Space freed: writes work again.
    std::fs::remove_file(&filler).expect("free space");
    let r = post_blob(&app, "full/app", &blob).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    assert_blob(&app, "full/app", &blob).await;
    let r = patch(chunk.clone()).await.expect("PATCH");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the session goes on");
    let location = header(&r, "location").to_string();
    let r = app
        .req(
            reqwest::Method::PUT,
            &with_digest(&location, &sha256(&chunk)),
        )
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_blob(&app, "full/app", &chunk).await;
    app.push_image("full/app", "v2", "after").await;
    drop(app);
}

/// A `POST` that opens an upload session (or is refused), as `user`.
async fn post_as(app: &TestApp, user: &str, path: &str) -> reqwest::Response {
    app.req(reqwest::Method::POST, path)
        .header("authorization", basic(user, &format!("{user}-password-1")))
        .send()
        .await
        .expect("POST")
}

/// A `429 TOOMANYREQUESTS` for open upload sessions: how many, whose, and what frees them.
async fn assert_too_many_open(r: reqwest::Response, whose: &str, open: u64) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers().get("retry-after").is_none(),
        "waiting a second does not free a session"
    );
    let body: Value = r.json().await.expect("json");
    let error = &body["errors"][0];
    assert_eq!(error["code"], "TOOMANYREQUESTS", "{body}");
    assert_eq!(error["detail"]["open"], open, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    for words in [
        whose,
        &format!("has {open} upload sessions open"),
        "max_open_uploads_per_account",
        "finish or cancel (DELETE)",
        "expire",
    ] {
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
}

/// `[limits] max_open_uploads_per_account`: one account's open sessions are counted in the
/// database, so the cap holds whichever replica a request reaches (scaled out, requests
/// alternate between two). Every way of opening a session counts; another account is not
/// affected; a cancelled or finished session frees its place.
#[tokio::test(flavor = "multi_thread")]
async fn open_upload_sessions_are_capped_per_account() {
    let app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = "admin-password-1".into();
        c.limits.max_open_uploads_per_account = 3;
    })
    .await;
    for user in ["alice", "bob"] {
        app.app
            .services()
            .create_account(user, &format!("{user}-password-1"), false, false)
            .await
            .expect("account");
    }
    let mut sessions = Vec::new();
    for repo in ["alice/app", "alice/app", "alice/other"] {
        let r = post_as(&app, "alice", &format!("/v2/{repo}/blobs/uploads/")).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        sessions.push(header(&r, "location").to_string());
    }
    // The fourth, in any repository and by any of the ways a POST opens a session.
    let r = post_as(&app, "alice", "/v2/alice/app/blobs/uploads/").await;
    assert_too_many_open(r, "account alice", 3).await;
    let blob = b"refused while at the cap";
    let digest = sha256(blob);
    let r = app
        .req(
            reqwest::Method::POST,
            &format!("/v2/alice/third/blobs/uploads/?digest={digest}"),
        )
        .header("authorization", basic("alice", "alice-password-1"))
        .body(blob.to_vec())
        .send()
        .await
        .expect("POST ?digest=");
    assert_too_many_open(r, "account alice", 3).await;
    // A mount of a blob the registry does not have falls back to a session: refused too.
    let r = post_as(
        &app,
        "alice",
        &format!("/v2/alice/app/blobs/uploads/?mount={digest}&from=alice/other"),
    )
    .await;
    assert_too_many_open(r, "account alice", 3).await;
    assert_eq!(metric(&app, "berth_open_upload_refusals_total").await, 3.0);
    // The refusals left nothing behind: three sessions, each with its data.
    let meta = app.meta().await;
    assert_eq!(meta.count_uploads_of("alice").await.expect("count"), 3);
    assert_eq!(meta.count_uploads().await.expect("count"), 3);

    // Another account is not affected.
    let r = post_as(&app, "bob", "/v2/bob/app/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Cancelling one frees its place, for one more.
    let cancelled = sessions.remove(0);
    let r = app
        .req(reqwest::Method::DELETE, &cancelled)
        .header("authorization", basic("alice", "alice-password-1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post_as(&app, "alice", "/v2/alice/app/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = post_as(&app, "alice", "/v2/alice/app/blobs/uploads/").await;
    assert_too_many_open(r, "account alice", 3).await;

    // So does finishing one.
    let finished = sessions.remove(0);
    let r = app
        .req(reqwest::Method::PUT, &with_digest(&finished, &digest))
        .header("authorization", basic("alice", "alice-password-1"))
        .body(blob.to_vec())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    let blob_again = b"a whole blob in one POST";
    let r = app
        .req(
            reqwest::Method::POST,
            &format!("/v2/alice/app/blobs/uploads/?digest={}", sha256(blob_again)),
        )
        .header("authorization", basic("alice", "alice-password-1"))
        .body(blob_again.to_vec())
        .send()
        .await
        .expect("POST ?digest=");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "a monolithic upload ends its session"
    );
    assert_eq!(meta.count_uploads_of("alice").await.expect("count"), 2);
    assert_eq!(meta.count_uploads_of("bob").await.expect("count"), 1);
}

/// Without accounts everyone is anonymous: the cap counts per client address.
#[tokio::test]
async fn anonymous_upload_sessions_are_capped_per_client_address() {
    let app = TestApp::start_with(|c| c.limits.max_open_uploads_per_account = 2).await;
    let base = format!("http://{}", first_replica(&app));
    let a = client_from([127, 0, 0, 1]);
    let b = client_from([127, 0, 0, 2]);
    for _ in 0..2 {
        let r = start_upload(&a, &base, "anon/app").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    assert_too_many_open(
        start_upload(&a, &base, "anon/other").await,
        "anonymous client 127.0.0.1",
        2,
    )
    .await;
    let r = start_upload(&b, &base, "anon/app").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "another address");
    let meta = app.meta().await;
    assert_eq!(
        meta.count_uploads_of("anonymous@127.0.0.1")
            .await
            .expect("count"),
        2
    );
}
