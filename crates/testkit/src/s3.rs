//! An S3-compatible server for tests: moto's, started on an ephemeral 127.0.0.1 port and killed
//! when dropped, or the one at `BERTH_TEST_S3_ENDPOINT` (with `BERTH_TEST_S3_BUCKET`, which must
//! exist, and credentials in the `AWS_*` variables). moto enforces S3's 5 MiB minimum part size
//! at completion and checks part ETags; it checks credentials only when asked to
//! ([`S3Server::moto_checking_credentials`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The access key id and secret a local moto is used with (it takes any unless it checks).
const MOTO_CREDENTIALS: (&str, &str) = ("berth", "berth-secret");

/// An S3 endpoint and an existing bucket for one test; stops the server it started when
/// dropped.
pub struct S3Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` for a local moto.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
}

impl S3Server {
    /// The server `BERTH_TEST_S3_ENDPOINT` names, or a moto of its own.
    pub fn start() -> S3Server {
        if let Ok(endpoint) = std::env::var("BERTH_TEST_S3_ENDPOINT") {
            let bucket =
                std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into());
            return S3Server {
                child: None,
                endpoint,
                bucket,
            };
        }
        Self::moto()
    }

    /// A moto server of its own, whatever the environment says, with a bucket. It accepts
    /// any credentials.
    pub fn moto() -> S3Server {
        start_moto(false)
    }

    /// A moto server of its own that checks credentials as S3 does. It knows no access key,
    /// so every signed request is refused (403 `InvalidAccessKeyId`); its bucket was created
    /// before it began checking.
    pub fn moto_checking_credentials() -> S3Server {
        start_moto(true)
    }

    /// Whether this is a moto of its own (which takes unsigned requests, see [`http`]).
    pub fn is_local(&self) -> bool {
        self.child.is_some()
    }

    /// The access key id and secret to use; `None`: those of the `AWS_*` variables.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        self.is_local().then_some(MOTO_CREDENTIALS)
    }

    /// `host:port` of the endpoint.
    pub fn address(&self) -> &str {
        self.endpoint
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// The keys under `prefix` in the bucket, see [`object_keys`]: a moto of its own only.
    pub fn object_keys(&self, prefix: &str) -> Vec<String> {
        assert!(
            self.is_local(),
            "an unsigned listing needs a moto of its own"
        );
        object_keys(self.address(), &self.bucket, prefix)
    }

    /// The keys of the bucket's open multipart uploads, see [`multipart_uploads`].
    pub fn multipart_uploads(&self) -> Vec<String> {
        assert!(
            self.is_local(),
            "an unsigned listing needs a moto of its own"
        );
        multipart_uploads(self.address(), &self.bucket)
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

fn start_moto(check_credentials: bool) -> S3Server {
    let program = moto_server();
    // Through a watchdog that stops moto when its stdin closes, which also happens when this
    // process is killed (a test timeout) and Drop never runs.
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg(&program)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if check_credentials {
        // moto's IAM checks, from the second request on: the first creates the bucket.
        command.env("INITIAL_NO_AUTH_ACTION_COUNT", "1");
    } else {
        command.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
    }
    let mut child = command
        .spawn()
        .expect("cannot run python3 to start moto_server");
    // moto logs every request on stderr: keep draining it, or it blocks on a full pipe.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    // BERTH_TEST_MOTO_LOG=FILE keeps what moto says (its tracebacks explain a 500).
    let mut log = std::env::var_os("BERTH_TEST_MOTO_LOG").and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    std::thread::spawn(move || {
        let marker = "Running on http://";
        let mut said = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = log.as_mut() {
                use std::io::Write as _;
                let _ = writeln!(log, "{line}");
            }
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

/// One unsigned HTTP/1.0 request to `address` (`host:port`); returns status and body. A local
/// moto takes it (it does not check signatures unless it checks credentials).
pub fn http(address: &str, method: &str, target: &str) -> (u16, Vec<u8>) {
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

/// The keys under `prefix` (URL-safe) in `bucket` at `address` (`host:port`): one unsigned S3
/// `ListObjectsV2`, as a moto takes it. Panics on more than a page (1000 keys).
pub fn object_keys(address: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let listing = listing(address, &format!("/{bucket}?list-type=2&prefix={prefix}"));
    elements(&listing, "Key")
}

/// The keys of the multipart uploads open in `bucket` (begun, neither completed nor aborted):
/// one unsigned `ListMultipartUploads`, as [`object_keys`].
pub fn multipart_uploads(address: &str, bucket: &str) -> Vec<String> {
    let listing = listing(address, &format!("/{bucket}?uploads"));
    elements(&listing, "Key")
}

/// The XML an unsigned listing request answers; panics on an error or more than a page.
fn listing(address: &str, target: &str) -> String {
    let (status, body) = http(address, "GET", target);
    let listing = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{target}: {listing}");
    assert!(
        !listing.contains("<IsTruncated>true"),
        "more than a page: {listing}"
    );
    listing
}

/// The text of every `<tag>` element (flat, unescaped: keys as berth names them).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close))
        .map(|(text, _)| text.to_string())
        .collect()
}
