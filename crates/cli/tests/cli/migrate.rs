//! `berth migrate` with the real binary: an embedded registry (images with shared layers, an
//! index, a referrer; users, projects, members, a robot) copied to PostgreSQL + S3 (a
//! throw-away cluster and moto, or the servers `BERTH_TEST_POSTGRES_URL` /
//! `BERTH_TEST_S3_ENDPOINT` name), served from there, copied back to a fresh embedded
//! directory, served again: every manifest and blob byte-identical, logins and issued tokens
//! still good, a second run copying nothing. And a run killed part way, finished by the next.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use berth_testkit::postgres::TestDatabase;
use berth_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::common::*;
use crate::harness::{ClientHome, text};

const ADMIN: (&str, &str) = ("admin", "admin-pw-1");
const AUTH_ON: [(&str, &str); 2] = [
    ("BERTH_AUTH_ENABLED", "true"),
    ("BERTH_ADMIN_PASSWORD", "admin-pw-1"),
];

/// What was pushed: (repository, reference, manifest media type, manifest bytes), and blobs.
#[derive(Default)]
struct Pushed {
    manifests: Vec<(String, String, String, Vec<u8>)>,
    blobs: Vec<(String, Vec<u8>)>,
}

fn request(
    method: reqwest::Method,
    url: String,
    auth: Option<(&str, &str)>,
) -> reqwest::RequestBuilder {
    let r = client().request(method, url);
    match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    }
}

async fn put_blob(base: &str, repo: &str, data: &[u8], pushed: &mut Pushed) -> Value {
    let digest = sha256(data);
    let r = request(
        reqwest::Method::POST,
        format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"),
        Some(ADMIN),
    )
    .body(data.to_vec())
    .send()
    .await
    .expect("POST blob");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    pushed.blobs.push((repo.to_string(), data.to_vec()));
    json!({"mediaType": "application/octet-stream", "digest": digest, "size": data.len()})
}

async fn put_manifest(
    base: &str,
    repo: &str,
    reference: Option<&str>,
    media_type: &str,
    body: &Value,
    pushed: &mut Pushed,
) -> Value {
    let bytes = serde_json::to_vec(body).expect("json");
    let digest = sha256(&bytes);
    let reference = reference.unwrap_or(&digest).to_string();
    let r = request(
        reqwest::Method::PUT,
        format!("{base}/v2/{repo}/manifests/{reference}"),
        Some(ADMIN),
    )
    .header("content-type", media_type)
    .body(bytes.clone())
    .send()
    .await
    .expect("PUT manifest");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    pushed
        .manifests
        .push((repo.into(), reference, media_type.into(), bytes.clone()));
    pushed.manifests.push((
        repo.into(),
        digest.clone(),
        media_type.into(),
        bytes.clone(),
    ));
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

async fn image(
    base: &str,
    repo: &str,
    tag: Option<&str>,
    layers: &[Vec<u8>],
    extra: Value,
    pushed: &mut Pushed,
) -> Value {
    let config = put_blob(
        base,
        repo,
        format!("{{\"config\":\"{repo}{tag:?}\"}}").as_bytes(),
        pushed,
    )
    .await;
    let mut descriptors = Vec::new();
    for layer in layers {
        descriptors.push(put_blob(base, repo, layer, pushed).await);
    }
    let mut body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    put_manifest(base, repo, tag, OCI_MANIFEST, &body, pushed).await
}

/// Images in `team/app` and `team/other`: a layer shared by both, a 6 MiB layer (several S3
/// parts), an index, a referrer.
async fn push_images(base: &str) -> Pushed {
    let mut pushed = Pushed::default();
    let shared = noise(1, 300_000);
    let v1 = image(
        base,
        "team/app",
        Some("v1"),
        &[shared.clone(), noise(2, 6 << 20)],
        json!({}),
        &mut pushed,
    )
    .await;
    let v2 = image(
        base,
        "team/app",
        Some("v2"),
        &[shared.clone(), noise(3, 70_000)],
        json!({}),
        &mut pushed,
    )
    .await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [v1, v2]});
    put_manifest(
        base,
        "team/app",
        Some("multi"),
        OCI_INDEX,
        &index,
        &mut pushed,
    )
    .await;
    image(
        base,
        "team/app",
        None,
        &[b"a signature".to_vec()],
        json!({"artifactType": "application/vnd.example.sig", "subject": v1}),
        &mut pushed,
    )
    .await;
    image(
        base,
        "team/other",
        Some("latest"),
        &[shared, noise(4, 1000)],
        json!({}),
        &mut pushed,
    )
    .await;
    pushed
}

/// Every manifest (by tag and digest) and blob reads back byte for byte, the referrer is
/// listed, bob can log in and pull, a token the source issued is accepted.
async fn check_registry(base: &str, pushed: &Pushed, source_token: &str) {
    for (repo, reference, media_type, bytes) in &pushed.manifests {
        let r = request(
            reqwest::Method::GET,
            format!("{base}/v2/{repo}/manifests/{reference}"),
            Some(ADMIN),
        )
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .expect("GET manifest");
        assert_eq!(r.status(), 200, "{repo}:{reference}");
        assert_eq!(r.headers()["content-type"], media_type.as_str());
        assert_eq!(
            &r.bytes().await.expect("body")[..],
            &bytes[..],
            "{repo}:{reference}"
        );
    }
    for (repo, data) in &pushed.blobs {
        let digest = sha256(data);
        let r = request(
            reqwest::Method::GET,
            format!("{base}/v2/{repo}/blobs/{digest}"),
            Some(ADMIN),
        )
        .send()
        .await
        .expect("GET blob");
        assert_eq!(r.status(), 200, "{repo}@{digest}");
        let body = r.bytes().await.expect("body");
        assert!(body[..] == data[..], "{repo}@{digest} differs");
    }
    let v1 = &pushed.manifests[0];
    let r = request(
        reqwest::Method::GET,
        format!("{base}/v2/team/app/referrers/{}", sha256(&v1.3)),
        Some(ADMIN),
    )
    .send()
    .await
    .expect("referrers");
    let referrers: Value = r.json().await.expect("json");
    assert_eq!(
        referrers["manifests"].as_array().map(Vec::len),
        Some(1),
        "{referrers}"
    );
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    let tags: Value = request(
        reqwest::Method::GET,
        format!("{base}/v2/team/app/tags/list"),
        Some(ADMIN),
    )
    .send()
    .await
    .expect("tags")
    .json()
    .await
    .expect("json");
    assert_eq!(tags["tags"], json!(["multi", "v1", "v2"]));

    // bob, with his migrated password and membership; the source's token.
    let token = bob_token(base).await;
    for token in [token.as_str(), source_token] {
        let r = client()
            .get(format!("{base}/v2/team/app/manifests/v1"))
            .bearer_auth(token)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
    }
    // The robot's secret hash came along too: a wrong secret is refused, as before.
    let r = request(
        reqwest::Method::GET,
        format!("{base}/auth/token?service=berth&scope=repository:team/app:pull"),
        Some(("robot$ci", "wrong")),
    )
    .send()
    .await
    .expect("token");
    assert_eq!(r.status(), 401);
}

async fn bob_token(base: &str) -> String {
    token_for(base, "repository:team/app:pull", "bob", "bob-pw-12").await
}

fn migrate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("migrate")
        .args(args)
        .args(["--json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run berth migrate")
}

/// The JSON report of a successful run.
fn report(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn copied(report: &Value, step: &str) -> u64 {
    report[step]["copied"].as_u64().expect("count")
}

fn present(report: &Value, step: &str) -> u64 {
    report[step]["present"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_embedded_to_postgres_s3_and_back() {
    if !backends_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = dir.path().join("embedded");
    let server = Server::start_with_env(&embedded, &AUTH_ON);
    let admin = ClientHome::new(&dir.path().join("admin"));
    let out = admin.run_with_stdin(
        &["login", "-u", "admin", "--password-stdin", &server.addr],
        "admin-pw-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let admin_cmd = |args: &[&str], input: &str| {
        let mut all = vec!["admin", "--registry", server.addr.as_str()];
        all.extend_from_slice(args);
        let out = admin.run_with_stdin(&all, input);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    admin_cmd(&["project", "create", "team"], "");
    admin_cmd(&["user", "add", "bob", "--password-stdin"], "bob-pw-12\n");
    admin_cmd(&["member", "add", "team", "bob", "--role", "developer"], "");
    admin_cmd(
        &[
            "robot",
            "create",
            "ci",
            "--project",
            "team",
            "--actions",
            "pull",
        ],
        "",
    );
    let pushed = push_images(&server.base).await;
    let source_token = bob_token(&server.base).await;
    check_registry(&server.base, &pushed, &source_token).await;
    drop(server);

    let db = TestDatabase::create().await;
    let s3 = S3Server::start();
    let scaled = scaled_config(dir.path(), &db, &s3);
    let scaled_arg = scaled.display().to_string();
    let embedded_arg = embedded.display().to_string();

    let source_before = files(&embedded);
    let started = std::time::Instant::now();
    let first = report(&migrate(&[
        "--from-data-dir",
        &embedded_arg,
        "--to",
        &scaled_arg,
    ]));
    // The source is read, never written: no file created, changed or removed (SQLite's
    // shared-memory index aside, which readers maintain).
    assert_eq!(
        files(&embedded),
        source_before,
        "berth migrate changed its source"
    );
    eprintln!(
        "embedded -> PostgreSQL + S3 in {:?}: {first}",
        started.elapsed()
    );
    // admin, bob; team and bob's namespace; admin and bob members; the robot.
    assert_eq!(copied(&first, "users"), 2, "{first}");
    assert!(copied(&first, "projects") >= 2, "{first}");
    assert_eq!(copied(&first, "robots"), 1, "{first}");
    assert_eq!(first["signing_key"], "copied");
    let distinct: std::collections::BTreeSet<String> =
        pushed.blobs.iter().map(|(_, d)| sha256(d)).collect();
    assert_eq!(copied(&first, "blobs"), distinct.len() as u64, "{first}");
    assert_eq!(copied(&first, "manifests"), 5, "{first}");
    assert_eq!(copied(&first, "tags"), 4, "{first}");

    let again = report(&migrate(&[
        "--from-data-dir",
        &embedded_arg,
        "--to",
        &scaled_arg,
    ]));
    for step in [
        "users",
        "projects",
        "members",
        "robots",
        "blobs",
        "links",
        "manifests",
        "tags",
    ] {
        assert_eq!(copied(&again, step), 0, "{step}: {again}");
        assert_eq!(
            present(&again, step),
            first[step]["copied"].as_u64().unwrap_or(0)
                + first[step]["present"].as_u64().unwrap_or(0),
            "{step}: {again}"
        );
    }
    assert_eq!(again["signing_key"], "present");

    let scaled_server = Server::start_with_args(
        &dir.path().join("scaled-data"),
        &["--config", &scaled_arg],
        &AUTH_ON,
    );
    check_registry(&scaled_server.base, &pushed, &source_token).await;
    drop(scaled_server);

    // And back, into a fresh embedded directory.
    let back = dir.path().join("back");
    let back_arg = back.display().to_string();
    let started = std::time::Instant::now();
    let returned = report(&migrate(&[
        "--from",
        &scaled_arg,
        "--to-data-dir",
        &back_arg,
    ]));
    eprintln!(
        "PostgreSQL + S3 -> embedded in {:?}: {returned}",
        started.elapsed()
    );
    assert_eq!(
        copied(&returned, "blobs"),
        distinct.len() as u64,
        "{returned}"
    );
    let back_server = Server::start_with_env(&back, &AUTH_ON);
    check_registry(&back_server.base, &pushed, &source_token).await;
    drop(back_server);
    drop(s3);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    let server = Server::start(&source);
    const BLOBS: usize = 300;
    let mut blobs = Vec::new();
    for i in 0..BLOBS {
        let data = noise(1000 + i as u64, 2000 + i);
        push_blob(&server.base, "many/blobs", &data).await;
        blobs.push(data);
    }
    drop(server);
    let target = dir.path().join("target");
    let (source_arg, target_arg) = (source.display().to_string(), target.display().to_string());

    // Killed once a few blobs are across.
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "migrate",
            "--from-data-dir",
            &source_arg,
            "--to-data-dir",
            &target_arg,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth migrate");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = 0;
    for line in stderr.lines() {
        if line.expect("line").starts_with("copied blob ") {
            seen += 1;
            if seen == 20 {
                break;
            }
        }
    }
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "the first run finished before it was killed"
    );

    let finished = report(&migrate(&[
        "--from-data-dir",
        &source_arg,
        "--to-data-dir",
        &target_arg,
    ]));
    let (copied_now, already) = (copied(&finished, "blobs"), present(&finished, "blobs"));
    assert_eq!(copied_now + already, BLOBS as u64, "{finished}");
    assert!(
        already >= 20,
        "the killed run's blobs were kept: {finished}"
    );
    assert!(
        copied_now > 0,
        "the killed run had not finished: {finished}"
    );
    let server = Server::start(&target);
    for data in &blobs {
        let r = client()
            .get(format!(
                "{}/v2/many/blobs/blobs/{}",
                server.base,
                sha256(data)
            ))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.expect("body")[..] == data[..]);
    }
    drop(server);
    let nothing = report(&migrate(&[
        "--from-data-dir",
        &source_arg,
        "--to-data-dir",
        &target_arg,
    ]));
    assert_eq!(copied(&nothing, "blobs"), 0, "{nothing}");
    assert_eq!(copied(&nothing, "links"), 0, "{nothing}");
}

/// Every file under `dir` with a digest of its bytes, SQLite's `-shm` index left out.
fn files(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    let mut found = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.insert(path.clone(), "dir".to_string());
                todo.push(path);
            } else if !path.to_string_lossy().ends_with("-shm") {
                found.insert(path.clone(), sha256(&std::fs::read(&path).expect("read")));
            }
        }
    }
    found
}
