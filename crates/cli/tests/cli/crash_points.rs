//! The crash harness: `berth serve` killed with SIGKILL at random points, again and again,
//! while 8 clients push and pull images that share layers, on each backend pair
//! (filesystem + SQLite; PostgreSQL + S3). After every kill:
//! - `berth fsck --verify-digests` on the dead server's data finds no fault (every recorded
//!   blob is there, whole, with its digest; project usage adds up);
//! - after the restart, every image whose manifest PUT was acknowledged (201) pulls back
//!   byte-identically from its repository, and every tag names one of the manifests pushed to
//!   it; no blob is ever served whose bytes do not match its digest;
//! - every upload session with an acknowledged chunk resumes from where the server says it
//!   stands and commits the right blob.
//!
//! At the end, the sessions the kills cut short are removed by upload expiry.
//!
//! `BERTH_CRASH_SEED` replays a run (the seed is printed); `BERTH_CRASH_POINTS` sets the
//! number of kills (default 50).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use berth_testkit::postgres::TestDatabase;
use berth_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::common::*;

const CLIENTS: usize = 8;
const REPOSITORIES: usize = 4;
const IMAGES: usize = 24;
const TAGS: usize = 6;
const MIB: usize = 1 << 20;
/// Chunk size of the layers pushed in chunks (S3 parts must be at least 5 MiB, so a 6 MiB
/// layer in two chunks makes a multipart upload with a staged tail).
const CHUNK: usize = 3 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_kill_9_on_filesystem_and_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    run(
        |env| Server::start_with_env(&data, env),
        vec!["--data-dir".into(), data_arg],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_kill_9_on_postgres_and_s3() {
    if !backends_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDatabase::create().await;
    let s3 = S3Server::start();
    let config = scaled_config(dir.path(), &db, &s3).display().to_string();
    let data = dir.path().join("data");
    let args = ["--config".to_string(), config.clone()];
    run(
        |env| Server::start_with_args(&data, &["--config", &config], env),
        args.to_vec(),
    )
    .await;
}

/// What the clients push: a pool of layers, each image a config and three of them.
struct Universe {
    layers: Vec<Vec<u8>>,
    images: Vec<Image>,
}

struct Image {
    config: Vec<u8>,
    /// Indexes into `Universe::layers`.
    layers: Vec<usize>,
    manifest: Vec<u8>,
    digest: String,
}

impl Universe {
    fn new() -> Universe {
        // Ten small layers and two of 6 MiB, pushed in chunks.
        let layers: Vec<Vec<u8>> = (0..12u64)
            .map(|i| {
                let len = if i >= 10 {
                    6 * MIB
                } else {
                    1024 * (1 + 7 * i as usize)
                };
                noise(1000 + i, len)
            })
            .collect();
        let images = (0..IMAGES)
            .map(|k| {
                let config = serde_json::to_vec(&json!({
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "config": {"Labels": {"berth.crash.image": k.to_string()}},
                }))
                .expect("config json");
                let picked: Vec<usize> = (0..3).map(|i| (k * 5 + i * 4) % layers.len()).collect();
                let manifest = serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
                    "layers": picked
                        .iter()
                        .map(|&l| descriptor("application/vnd.oci.image.layer.v1.tar", &layers[l]))
                        .collect::<Vec<_>>(),
                }))
                .expect("manifest json");
                Image {
                    digest: sha256(&manifest),
                    config,
                    layers: picked,
                    manifest,
                }
            })
            .collect();
        Universe { layers, images }
    }

    /// Every blob an image is made of: its config and its layers.
    fn blobs(&self, image: usize) -> Vec<&[u8]> {
        let image = &self.images[image];
        std::iter::once(image.config.as_slice())
            .chain(image.layers.iter().map(|&l| self.layers[l].as_slice()))
            .collect()
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

fn repository(r: usize) -> String {
    format!("crash/r{r}")
}

/// What the clients know: acknowledged pushes, what each tag was ever asked to name, and
/// the upload sessions with an acknowledged chunk.
#[derive(Default)]
struct Ledger {
    /// (repository, image) whose manifest PUT answered 201.
    acknowledged: BTreeSet<(usize, usize)>,
    /// (repository, tag) → images ever PUT to it (acknowledged or cut short).
    tag_attempts: BTreeMap<(usize, usize), BTreeSet<usize>>,
    /// Session URL → (repository, layer, bytes acknowledged).
    sessions: BTreeMap<String, (usize, usize, usize)>,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Shared {
    universe: Universe,
    ledger: Mutex<Ledger>,
    /// Set just before the kill: from then on, failed requests are the kill's doing.
    killing: AtomicBool,
    requests: AtomicU64,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a request that failed (transport error or unexpected status) may be the kill's
/// doing; otherwise the test fails with `what`.
fn expect_kill(shared: &Shared, what: String) {
    assert!(
        shared.killing.load(Ordering::SeqCst),
        "a request failed while the server was up: {what}"
    );
}

/// The kills leave upload sessions open on purpose (expiry removes them at the end): far more,
/// over 50 kills of 8 clients on one address, than `[limits] max_open_uploads_per_account`
/// lets one client hold.
const UNCAPPED_SESSIONS: (&str, &str) = ("BERTH_LIMITS_MAX_OPEN_UPLOADS_PER_ACCOUNT", "1000000");

async fn run(start: impl Fn(&[(&str, &str)]) -> Server, fsck_args: Vec<String>) {
    let start = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(UNCAPPED_SESSIONS);
        start(&env)
    };
    let seed = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let points: usize = std::env::var("BERTH_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    eprintln!("crash harness: seed {seed} (BERTH_CRASH_SEED replays it), {points} kill points");
    let mut rng = Rng(seed);
    let shared = Arc::new(Shared {
        universe: Universe::new(),
        ledger: Mutex::new(Ledger::default()),
        killing: AtomicBool::new(false),
        requests: AtomicU64::new(0),
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let started = Instant::now();
    let mut resumed = 0;
    for point in 0..points {
        let mut server = start(&[]);
        let base = server.base.clone();
        shared.killing.store(false, Ordering::SeqCst);
        if point > 0 {
            resumed += verify(&http, &base, &shared).await;
        }
        shared.killing.store(false, Ordering::SeqCst);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let shared = Arc::clone(&shared);
                let http = http.clone();
                let base = base.clone();
                let seed = rng.next();
                tokio::spawn(async move { client_loop(&http, &base, &shared, c, seed).await })
            })
            .collect();
        let delay = Duration::from_millis(20 + rng.below(600) as u64);
        tokio::time::sleep(delay).await;
        shared.killing.store(true, Ordering::SeqCst);
        server.kill9();
        for client in clients {
            if let Err(e) = client.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        fsck_clean(&fsck_args, point);
    }
    // After the last kill: everything once more, then upload expiry (every second, of
    // sessions idle for a second) removes the sessions the kills cut short.
    let server = start(&[]);
    shared.killing.store(false, Ordering::SeqCst);
    resumed += verify(&http, &server.base, &shared).await;
    drop(server);
    let server = start(&[
        ("BERTH_UPLOADS_EXPIRE_AFTER_SECS", "1"),
        ("BERTH_UPLOADS_EXPIRY_INTERVAL_SECS", "1"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = metric(&http, &server.base, "berth_uploads_in_progress").await as u64;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} upload sessions outlived expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    fsck_clean(&fsck_args, points);
    let ledger = shared.ledger();
    eprintln!(
        "crash harness: {points} kills survived in {:.0?}: {} requests, {} acknowledged \
         pushes checked after every restart, {resumed} interrupted sessions resumed",
        started.elapsed(),
        shared.requests.load(Ordering::SeqCst),
        ledger.acknowledged.len(),
    );
}

/// `berth fsck --verify-digests` on the stopped server's data: no fault.
fn fsck_clean(args: &[String], point: usize) {
    let mut all: Vec<&str> = vec!["fsck", "--verify-digests"];
    all.extend(args.iter().map(String::as_str));
    let (report, clean) = json_report(&all);
    assert!(
        clean && report["faults"] == json!([]) && report["usage_faults"] == json!([]),
        "fsck after kill {point}: {report}"
    );
}

/// One client until the kill: pushes (blobs as needed, monolithic or in chunks, then the
/// manifest by tag) and pulls of acknowledged images, checking every byte it gets.
async fn client_loop(
    http: &reqwest::Client,
    base: &str,
    shared: &Shared,
    client: usize,
    seed: u64,
) {
    let mut rng = Rng(seed);
    while !shared.killing.load(Ordering::SeqCst) {
        let repo = (client + rng.below(2)) % REPOSITORIES;
        let pull = {
            let ledger = shared.ledger();
            let acked: Vec<_> = ledger.acknowledged.iter().copied().collect();
            (rng.below(3) == 0 && !acked.is_empty()).then(|| acked[rng.below(acked.len())])
        };
        let done = match pull {
            Some((repo, image)) => pull_image(http, base, shared, repo, image).await,
            None => push_image(http, base, shared, repo, rng.below(IMAGES), &mut rng).await,
        };
        if let Err(what) = done {
            expect_kill(shared, what);
            return;
        }
    }
}

type Step = Result<(), String>;

async fn send(
    shared: &Shared,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    request.send().await.map_err(|e| format!("{e}"))
}

fn status(r: &reqwest::Response, expected: u16, what: &str) -> Step {
    if r.status().as_u16() == expected {
        Ok(())
    } else {
        Err(format!("{what}: {} (expected {expected})", r.status()))
    }
}

async fn push_image(
    http: &reqwest::Client,
    base: &str,
    shared: &Shared,
    repo: usize,
    image: usize,
    rng: &mut Rng,
) -> Step {
    let name = repository(repo);
    for blob in shared.universe.blobs(image) {
        let digest = sha256(blob);
        // Clients ask first, as docker does; a third of the time this one pushes anyway, as
        // a client racing another to the same blob would.
        if rng.below(3) > 0 {
            let r = send(
                shared,
                http.head(format!("{base}/v2/{name}/blobs/{digest}")),
            )
            .await?;
            if r.status() == 200 {
                continue;
            }
            status(&r, 404, "blob HEAD")?;
        }
        if blob.len() > CHUNK {
            let layer = shared
                .universe
                .layers
                .iter()
                .position(|l| l.as_slice() == blob)
                .unwrap_or(0);
            push_chunked(http, base, shared, repo, layer).await?;
        } else if rng.below(4) == 0 {
            // A mount from another repository; 202 when it does not hold the blob.
            let from = repository((repo + 1) % REPOSITORIES);
            let r = send(
                shared,
                http.post(format!(
                    "{base}/v2/{name}/blobs/uploads/?mount={digest}&from={from}"
                )),
            )
            .await?;
            match r.status().as_u16() {
                201 => {}
                202 => {
                    let location = location(&r)?;
                    let r = send(
                        shared,
                        http.put(format!("{base}{location}?digest={digest}"))
                            .body(blob.to_vec()),
                    )
                    .await?;
                    status(&r, 201, "closing PUT after a mount")?;
                }
                _ => status(&r, 201, "mount")?,
            }
        } else {
            let r = send(
                shared,
                http.post(format!("{base}/v2/{name}/blobs/uploads/?digest={digest}"))
                    .body(blob.to_vec()),
            )
            .await?;
            status(&r, 201, "monolithic POST")?;
        }
    }
    let tag = image % TAGS;
    shared
        .ledger()
        .tag_attempts
        .entry((repo, tag))
        .or_default()
        .insert(image);
    let manifest = &shared.universe.images[image].manifest;
    let r = send(
        shared,
        http.put(format!("{base}/v2/{name}/manifests/t{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone()),
    )
    .await?;
    status(&r, 201, "manifest PUT")?;
    shared.ledger().acknowledged.insert((repo, image));
    Ok(())
}

fn location(r: &reqwest::Response) -> Result<String, String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| "no Location".to_string())
}

/// POST, a PATCH per chunk (each acknowledged chunk recorded in the ledger), closing PUT.
async fn push_chunked(
    http: &reqwest::Client,
    base: &str,
    shared: &Shared,
    repo: usize,
    layer: usize,
) -> Step {
    let name = repository(repo);
    let r = send(
        shared,
        http.post(format!("{base}/v2/{name}/blobs/uploads/")),
    )
    .await?;
    status(&r, 202, "POST")?;
    let mut location = location(&r)?;
    let session = location.clone();
    finish_upload(http, base, shared, &mut location, &session, repo, layer, 0).await
}

/// Sends `layer` from `offset` on, chunk by chunk, and closes the session.
#[allow(clippy::too_many_arguments)]
async fn finish_upload(
    http: &reqwest::Client,
    base: &str,
    shared: &Shared,
    location: &mut String,
    session: &str,
    repo: usize,
    layer: usize,
    mut offset: usize,
) -> Step {
    let data = &shared.universe.layers[layer];
    while offset < data.len() {
        let end = (offset + CHUNK).min(data.len());
        let r = send(
            shared,
            http.patch(format!("{base}{location}"))
                .header("content-range", format!("{offset}-{}", end - 1))
                .header("content-type", "application/octet-stream")
                .body(data[offset..end].to_vec()),
        )
        .await?;
        status(&r, 202, "PATCH")?;
        *location = self::location(&r)?;
        offset = end;
        shared
            .ledger()
            .sessions
            .insert(session.to_string(), (repo, layer, offset));
    }
    let digest = sha256(data);
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = send(
        shared,
        http.put(format!("{base}{location}{separator}digest={digest}")),
    )
    .await?;
    status(&r, 201, "closing PUT")?;
    shared.ledger().sessions.remove(session);
    Ok(())
}

/// GETs the manifest by digest and every blob, comparing bytes.
async fn pull_image(
    http: &reqwest::Client,
    base: &str,
    shared: &Shared,
    repo: usize,
    image: usize,
) -> Step {
    let name = repository(repo);
    let expected = &shared.universe.images[image];
    let r = send(
        shared,
        http.get(format!("{base}/v2/{name}/manifests/{}", expected.digest))
            .header("accept", OCI_MANIFEST),
    )
    .await?;
    status(&r, 200, "manifest GET of an acknowledged push")?;
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    assert_eq!(
        body.as_ref(),
        expected.manifest.as_slice(),
        "manifest bytes of {name}"
    );
    for blob in shared.universe.blobs(image) {
        let digest = sha256(blob);
        let r = send(shared, http.get(format!("{base}/v2/{name}/blobs/{digest}"))).await?;
        status(&r, 200, "blob GET of an acknowledged push")?;
        // A body cut short by the kill is an error, never a 200 with other bytes.
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        assert_eq!(
            sha256(&body),
            digest,
            "{name} served other bytes for {digest}"
        );
    }
    Ok(())
}

/// After a restart: every acknowledged push pulls back whole, every tag names an image
/// pushed to it, no repository serves a blob with other bytes, and every session with an
/// acknowledged chunk resumes. Returns how many sessions it resumed.
async fn verify(http: &reqwest::Client, base: &str, shared: &Shared) -> usize {
    let (acknowledged, tags, sessions) = {
        let mut ledger = shared.ledger();
        (
            ledger.acknowledged.clone(),
            ledger.tag_attempts.clone(),
            std::mem::take(&mut ledger.sessions),
        )
    };
    let fail = |what: String| -> ! { panic!("after a restart: {what}") };
    for &(repo, image) in &acknowledged {
        let name = repository(repo);
        let expected = &shared.universe.images[image];
        let r = http
            .get(format!("{base}/v2/{name}/manifests/{}", expected.digest))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("{e}")));
        assert_eq!(
            r.status(),
            200,
            "acknowledged {name}@{} lost",
            expected.digest
        );
        let body = r.bytes().await.expect("manifest body");
        assert_eq!(body.as_ref(), expected.manifest.as_slice());
    }
    // Each repository's blobs, once each: present when an acknowledged image needs them, and
    // whole whenever served.
    for repo in 0..REPOSITORIES {
        let name = repository(repo);
        let needed: BTreeSet<String> = acknowledged
            .iter()
            .filter(|(r, _)| *r == repo)
            .flat_map(|&(_, image)| shared.universe.blobs(image))
            .map(sha256)
            .collect();
        let all: Vec<&[u8]> = (0..IMAGES).flat_map(|i| shared.universe.blobs(i)).collect();
        let mut seen = BTreeSet::new();
        for blob in all {
            let digest = sha256(blob);
            if !seen.insert(digest.clone()) {
                continue;
            }
            let r = http
                .get(format!("{base}/v2/{name}/blobs/{digest}"))
                .send()
                .await
                .unwrap_or_else(|e| fail(format!("{e}")));
            match r.status().as_u16() {
                200 => {
                    let body = r.bytes().await.expect("blob body");
                    assert_eq!(
                        sha256(&body),
                        digest,
                        "{name} served other bytes for {digest}"
                    );
                }
                404 => assert!(!needed.contains(&digest), "{name} lost {digest}"),
                other => fail(format!("blob GET {name} {digest}: {other}")),
            }
        }
    }
    for (&(repo, tag), images) in &tags {
        let name = repository(repo);
        let r = http
            .get(format!("{base}/v2/{name}/manifests/t{tag}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("{e}")));
        let acked = images.iter().any(|i| acknowledged.contains(&(repo, *i)));
        match r.status().as_u16() {
            200 => {
                let body = r.bytes().await.expect("manifest body");
                assert!(
                    images
                        .iter()
                        .any(|&i| shared.universe.images[i].manifest == body.as_ref()),
                    "{name}:t{tag} names a manifest nobody pushed to it"
                );
            }
            404 => assert!(!acked, "{name}:t{tag} lost after an acknowledged push"),
            other => fail(format!("GET {name}:t{tag}: {other}")),
        }
    }
    let resumed = sessions.len();
    for (session, (repo, layer, acknowledged)) in sessions {
        let r = http
            .get(format!("{base}{session}"))
            .send()
            .await
            .unwrap_or_else(|e| fail(format!("{e}")));
        let len = shared.universe.layers[layer].len();
        if r.status() == 404 {
            // Gone only if its closing PUT went through and its answer was lost to the kill:
            // every byte acknowledged, and the blob in the repository.
            let digest = sha256(&shared.universe.layers[layer]);
            let name = repository(repo);
            let blob = http
                .head(format!("{base}/v2/{name}/blobs/{digest}"))
                .send()
                .await
                .unwrap_or_else(|e| fail(format!("{e}")));
            assert!(
                acknowledged == len && blob.status() == 200,
                "session {session} lost with {acknowledged} of {len} bytes acknowledged \
                 (blob: {})",
                blob.status()
            );
            continue;
        }
        assert_eq!(
            r.status(),
            204,
            "session {session} with an acknowledged chunk"
        );
        let range = r.headers()["range"].to_str().expect("range").to_string();
        let offset: usize = range
            .strip_prefix("0-")
            .and_then(|end| end.parse::<usize>().ok())
            .map_or(0, |end| end + 1);
        assert!(
            offset >= acknowledged && offset <= len,
            "session {session} stands at {offset}, {acknowledged} were acknowledged"
        );
        let mut location = session.clone();
        if let Err(what) = finish_upload(
            http,
            base,
            shared,
            &mut location,
            &session,
            repo,
            layer,
            offset,
        )
        .await
        {
            fail(format!("resuming {session}: {what}"));
        }
    }
    resumed
}
