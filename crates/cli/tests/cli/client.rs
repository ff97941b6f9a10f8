//! The client workflow end to end: the real `berth` binary in a temporary HOME against
//! `berth serve` and against CNCF distribution with htpasswd auth, with skopeo checking what
//! berth pushed and what its local store holds.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::harness::*;

/// Puts an image of `layers` layers into `registry` as `repo:tag` with skopeo; returns the
/// manifest descriptor.
fn seed_image(
    dir: &Path,
    registry: &str,
    repo_tag: &str,
    seed: u64,
    layers: usize,
    layer_size: usize,
    creds: Option<&str>,
) -> Value {
    let src = dir.join(format!("seed-{seed}"));
    let mut layout = Layout::new(&src);
    let image = layout.image(seed, layers, layer_size);
    layout.tag(&image, "seed");
    let from = format!("oci:{}:seed", src.display());
    let to = format!("docker://{registry}/{repo_tag}");
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([from.as_str(), to.as_str()]);
    skopeo(&args, &policy(dir));
    image
}

fn blob_files(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pull_tag_push_images_rm_save_load_against_berth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let home = ClientHome::new(&dir.path().join("home"));
    let addr = &server.addr;
    let image = seed_image(dir.path(), addr, "library/base:v1", 7, 3, 300_000, None);
    let digest = image["digest"].as_str().expect("digest");
    let base = format!("{addr}/library/base:v1");

    let out = home.ok(&["pull", &base]);
    assert!(out.contains("v1: Pulling from"), "{out}");
    assert!(out.contains("Download complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {base}")),
        "{out}"
    );
    let out = home.ok(&["pull", &base]);
    assert!(out.contains("Already exists"), "{out}");
    assert!(
        out.contains(&format!("Status: Image is up to date for {base}")),
        "{out}"
    );

    // A new name, no data copied; pushed to another repository of the same registry, where
    // every blob is mounted from the one it came from.
    let web = format!("{addr}/team/web:0.1");
    let blobs_before = blob_files(&home.store());
    home.ok(&["tag", &base, &web]);
    assert_eq!(blob_files(&home.store()), blobs_before);
    let out = home.ok(&["push", &web]);
    assert!(out.contains("Mounted from library/base"), "{out}");
    assert!(
        out.contains(&format!("0.1: digest: {digest} size: {}", image["size"])),
        "{out}"
    );

    // What berth pushed, skopeo pulls byte-identically.
    let copied = dir.path().join("copied");
    skopeo(
        &[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{web}"),
            &format!("oci:{}:web", copied.display()),
        ],
        &policy(dir.path()),
    );
    assert_eq!(tagged_digest(&copied, "web"), digest);
    // skopeo reads the local store as the OCI layout it is.
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{web}", home.store().display()))
        .output()
        .expect("skopeo inspect");
    assert!(raw.status.success(), "{}", text(&raw));
    assert_eq!(sha256(&raw.stdout), digest);

    let out = home.ok(&["images"]);
    assert!(out.starts_with("REPOSITORY"), "{out}");
    assert!(out.contains(&format!("{addr}/team/web")), "{out}");
    let json = home.ok(&["images", "--format", "json", "--digests"]);
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    assert!(rows.iter().all(|r| r["Digest"] == digest), "{json}");
    let inspect: Value = serde_json::from_str(&home.ok(&["inspect", &web])).expect("inspect json");
    assert_eq!(inspect[0]["ManifestDigest"], digest);
    assert_eq!(inspect[0]["Layers"].as_array().map(Vec::len), Some(3));
    let remote: Value =
        serde_json::from_str(&home.ok(&["inspect", "--remote", &web])).expect("remote json");
    assert_eq!(remote["Digest"], digest);
    assert_eq!(remote["Config"]["os"], "linux");

    // save, then remove everything, then load it back.
    let tar = dir.path().join("web.tar");
    home.ok(&["save", "-o", tar.to_str().expect("utf-8"), &web]);
    let out = home.ok(&["image", "rm", &web]);
    assert!(out.contains(&format!("Untagged: {web}")), "{out}");
    assert!(
        !out.contains("Deleted"),
        "another name still uses the blobs: {out}"
    );
    let out = home.ok(&["rmi", &base]);
    assert!(out.contains(&format!("Untagged: {base}")), "{out}");
    assert_eq!(
        out.matches("Deleted: sha256:").count(),
        5,
        "manifest, config, 3 layers: {out}"
    );
    assert!(
        blob_files(&home.store()).is_empty(),
        "image rm frees the blobs"
    );
    let out = home.fails(&["rmi", &base]);
    assert!(out.contains("No such image"), "{out}");

    let out = home.ok(&["load", "-i", tar.to_str().expect("utf-8")]);
    assert!(out.contains(&format!("Loaded image: {web}")), "{out}");
    let inspect: Value = serde_json::from_str(&home.ok(&["inspect", &web])).expect("inspect json");
    assert_eq!(inspect[0]["ManifestDigest"], digest);
}

#[test]
fn login_push_logout_against_distribution_with_htpasswd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Distribution::start(&dir.path().join("registry"), Some(("alice", "s3cret")));
    let home = ClientHome::new(&dir.path().join("home"));
    let addr = &registry.addr;
    let image = seed_image(
        dir.path(),
        addr,
        "library/base:v1",
        11,
        2,
        100_000,
        Some("alice:s3cret"),
    );
    let digest = image["digest"].as_str().expect("digest");
    let base = format!("{addr}/library/base:v1");

    let out = home.fails(&["pull", &base]);
    assert!(
        out.contains("unauthorized: authentication required"),
        "{out}"
    );

    // A wrong password: a clear message, nothing saved.
    let out = home.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", addr],
        "wrong\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("incorrect username or password"),
        "{}",
        text(&out)
    );
    assert!(
        !home.docker_config().exists(),
        "nothing saved on a failed login"
    );

    let out = home.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", addr],
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Login Succeeded"));
    assert!(text(&out).contains("WARNING! Your password will be stored unencrypted"));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.docker_config()).expect("config.json"))
            .expect("json");
    // base64("alice:s3cret")
    assert_eq!(config["auths"][addr.as_str()]["auth"], "YWxpY2U6czNjcmV0");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(home.docker_config())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = home.ok(&["pull", &base]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let web = format!("{addr}/team/web:0.1");
    home.ok(&["tag", &base, &web]);

    let out = home.ok(&["logout", addr]);
    assert!(
        out.contains(&format!("Removing login credentials for {addr}")),
        "{out}"
    );
    let out = home.fails(&["push", &web]);
    assert!(
        out.contains("unauthorized: authentication required"),
        "{out}"
    );
    assert!(out.contains(&format!("berth login {addr}")), "{out}");
    let out = home.ok(&["logout", addr]);
    assert!(out.contains("Not logged in"), "{out}");

    let out = home.run_with_stdin(
        &["login", "--username", "alice", "--password-stdin", addr],
        "s3cret",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = home.ok(&["push", &web]);
    assert!(out.contains(&format!("0.1: digest: {digest}")), "{out}");
    // distribution serves what berth pushed, byte for byte.
    let copied = dir.path().join("copied");
    skopeo(
        &[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            "alice:s3cret",
            &format!("docker://{web}"),
            &format!("oci:{}:web", copied.display()),
        ],
        &policy(dir.path()),
    );
    assert_eq!(tagged_digest(&copied, "web"), digest);
    home.ok(&["rmi", &web, &base]);
    assert!(blob_files(&home.store()).is_empty());
    let out = home.ok(&["pull", &web]);
    assert!(out.contains("Downloaded newer image"), "{out}");
}

#[test]
fn concurrent_pulls_share_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let home = ClientHome::new(&dir.path().join("home"));
    let addr = &server.addr;
    let image = seed_image(dir.path(), addr, "library/base:v1", 21, 6, 500_000, None);
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{addr}/library/base:v1"),
            &format!("docker://{addr}/library/base:v2"),
        ],
        &policy(dir.path()),
    );
    let names: Vec<String> = (0..6)
        .map(|i| format!("{addr}/library/base:v{}", 1 + i % 2))
        .collect();
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            home.command(&["pull", n])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn pull")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out));
    }
    let json = home.ok(&["images", "--format", "json", "--digests"]);
    assert_eq!(json.lines().count(), 2, "{json}");
    // Every blob in the store matches its digest.
    for name in blob_files(&home.store()) {
        let data = std::fs::read(home.store().join("blobs/sha256").join(&name)).expect("read");
        assert_eq!(sha256(&data), format!("sha256:{name}"));
    }
    assert_eq!(
        blob_files(&home.store()).len(),
        8,
        "manifest, config and 6 layers, once each"
    );
    let _ = image;
}

/// Bytes of partial downloads in the store (anything outside `blobs/` named after `hex`).
fn partial_bytes(store: &Path, hex: &str) -> u64 {
    fn walk(dir: &Path, hex: &str, total: &mut u64) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("blobs") {
                    walk(&p, hex, total);
                }
            } else if e.file_name().to_string_lossy().contains(hex) {
                *total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut total = 0;
    walk(store, hex, &mut total);
    total
}

#[test]
fn interrupted_pull_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let home = ClientHome::new(&dir.path().join("home"));
    let proxy = SlowProxy::start(&server.addr, 8 << 20);
    let size = 48 << 20;
    let image = seed_image(
        dir.path(),
        &server.addr,
        "library/big:v1",
        31,
        1,
        size,
        None,
    );
    let src = dir.path().join("seed-31");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            src.join("blobs/sha256").join(
                image["digest"]
                    .as_str()
                    .expect("digest")
                    .trim_start_matches("sha256:"),
            ),
        )
        .expect("manifest"),
    )
    .expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .trim_start_matches("sha256:")
        .to_string();
    let name = format!("{}/library/big:v1", proxy.addr);

    let mut child = home
        .command(&["pull", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pull");
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_bytes(&home.store(), &layer) < 8 << 20 {
        assert!(Instant::now() < deadline, "the download never started");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "pull ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9 the pull");
    child.wait().expect("wait");
    let kept = partial_bytes(&home.store(), &layer);
    assert!(
        kept >= 8 << 20 && kept < size as u64,
        "partial file of {kept} bytes"
    );
    assert!(
        !blob_files(&home.store()).contains(&layer),
        "no unverified blob is visible"
    );

    proxy
        .throttled
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let before = proxy
        .downstream_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let out = home.ok(&["pull", &name]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let sent = proxy
        .downstream_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(
        sent < size as u64 - (kept - (1 << 20)),
        "the second pull fetched {sent} bytes: it did not resume from {kept}"
    );
    let data = std::fs::read(home.store().join("blobs/sha256").join(&layer)).expect("layer");
    assert_eq!(sha256(&data), format!("sha256:{layer}"));
}

#[test]
fn multi_platform_images_by_platform_or_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let home = ClientHome::new(&dir.path().join("home"));
    let addr = &server.addr;
    let src = dir.path().join("multi");
    let mut layout = Layout::new(&src);
    let amd = layout.image(41, 2, 20_000);
    let arm = layout.image(42, 2, 20_000);
    let mut index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]});
    index["manifests"][0]["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    index["manifests"][1]["platform"] =
        serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = layout.blob(OCI_INDEX, &serde_json::to_vec(&index).expect("json"));
    layout.tag(&index, "multi");
    skopeo(
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:multi", src.display()),
            &format!("docker://{addr}/multi/app:v1"),
        ],
        &policy(dir.path()),
    );
    let name = format!("{addr}/multi/app:v1");

    // One platform, chosen like docker (arm64 without a variant means arm64/v8). The registry
    // is the client config's default one, so the short name is enough.
    std::fs::write(
        home.home.join("client.toml"),
        format!("default_registry = \"{addr}\"\n"),
    )
    .expect("write client.toml");
    let out = home.ok(&["pull", "--platform", "linux/arm64", "multi/app:v1"]);
    assert!(
        out.contains(&format!("Digest: {}", index["digest"].as_str().expect("d"))),
        "{out}"
    );
    let inspect: Value = serde_json::from_str(&home.ok(&["inspect", &name])).expect("json");
    assert_eq!(inspect[0]["ManifestDigest"], arm["digest"]);
    assert_eq!(
        inspect[0]["Descriptor"]["platform"]["architecture"],
        "arm64"
    );
    let out = home.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(out.contains("no image for platform linux/s390x"), "{out}");

    // The whole index, kept as pulled, and pushed elsewhere unchanged.
    home.ok(&["pull", "--all-platforms", &name]);
    let inspect: Value = serde_json::from_str(&home.ok(&["inspect", &name])).expect("json");
    assert_eq!(inspect[0]["ManifestDigest"], index["digest"]);
    assert_eq!(inspect[0]["Platforms"].as_array().map(Vec::len), Some(2));
    let copy = format!("{addr}/mirror/app:v1");
    home.ok(&["tag", &name, &copy]);
    let out = home.ok(&["push", &copy]);
    assert!(
        out.contains(&format!(
            "v1: digest: {}",
            index["digest"].as_str().expect("d")
        )),
        "{out}"
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{copy}"))
        .output()
        .expect("skopeo inspect");
    assert_eq!(sha256(&raw.stdout), index["digest"].as_str().expect("d"));
}

/// A `docker-credential-keep` helper: one file per server under `<bin>/../secrets`.
const KEEP_HELPER: &str = r#"#!/bin/sh
store="$(dirname "$0")/../secrets"; mkdir -p "$store"
request=$(cat)
case "$1" in
  store) server=$(printf '%s' "$request" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         printf '%s' "$request" > "$store/$server" ;;
  get)   [ -f "$store/$request" ] || { echo "credentials not found in native keychain"; exit 1; }
         cat "$store/$request" ;;
  erase) [ -f "$store/$request" ] || { echo "credentials not found in native keychain"; exit 1; }
         rm "$store/$request" ;;
esac
"#;

#[test]
fn login_through_a_credential_helper() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Distribution::start(&dir.path().join("registry"), Some(("bob", "hunter2")));
    let home = ClientHome::new(&dir.path().join("home"));
    let addr = &registry.addr;
    let image = seed_image(
        dir.path(),
        addr,
        "team/app:v1",
        51,
        1,
        50_000,
        Some("bob:hunter2"),
    );
    let bin = home.home.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-keep");
    std::fs::write(&helper, KEEP_HELPER).expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir_all(home.docker_config().parent().expect("dir")).expect("mkdir");
    std::fs::write(
        home.docker_config(),
        r#"{"credsStore":"keep","proxies":{"default":{"noProxy":"*.local"}}}"#,
    )
    .expect("write config");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let berth = |args: &[&str], input: Option<&str>| {
        let mut cmd = home.command(args);
        cmd.env("PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if input.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn");
        if let Some(text) = input {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
        }
        child.wait_with_output().expect("wait")
    };

    let out = berth(
        &["login", "-u", "bob", "--password-stdin", addr],
        Some("hunter2\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Login Succeeded"));
    assert!(
        !text(&out).contains("WARNING"),
        "no plaintext warning with a helper"
    );
    let secret =
        std::fs::read_to_string(home.home.join("secrets").join(addr)).expect("helper kept it");
    assert!(secret.contains("\"Secret\":\"hunter2\""), "{secret}");
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.docker_config()).expect("config"))
            .expect("json");
    assert_eq!(
        config["auths"][addr.as_str()],
        serde_json::json!({}),
        "{config}"
    );
    assert_eq!(
        config["proxies"]["default"]["noProxy"], "*.local",
        "other keys kept"
    );

    let out = berth(&["pull", &format!("{addr}/team/app:v1")], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(image["digest"].as_str().expect("digest")));

    let out = berth(&["logout", addr], None);
    assert!(
        text(&out).contains(&format!("Removing login credentials for {addr}")),
        "{}",
        text(&out)
    );
    assert!(
        !home.home.join("secrets").join(addr).exists(),
        "erased from the helper"
    );
}

#[test]
fn login_and_push_through_berth_token_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_AUTH_ENABLED", "true"),
            ("BERTH_AUTH_AUTO_CREATE_PROJECTS", "true"),
            ("BERTH_AUTH_ALLOW_SIGNUP", "true"),
            ("BERTH_ADMIN_PASSWORD", "admin-pw-1"),
        ],
    );
    let addr = &server.addr;
    let home = ClientHome::new(&dir.path().join("home"));
    let image = seed_image(
        dir.path(),
        addr,
        "team/base:v1",
        61,
        2,
        40_000,
        Some("admin:admin-pw-1"),
    );
    let digest = image["digest"].as_str().expect("digest");
    let base = format!("{addr}/team/base:v1");

    // Private project: nothing without a login.
    let out = home.fails(&["pull", &base]);
    assert!(
        out.contains("unauthorized: authentication required"),
        "{out}"
    );
    let out = home.run_with_stdin(
        &["login", "-u", "admin", "--password-stdin", addr],
        "nope\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("incorrect username or password"),
        "{}",
        text(&out)
    );

    // The token server hands out a refresh token at login: stored as docker's identitytoken.
    let out = home.run_with_stdin(
        &["login", "-u", "admin", "--password-stdin", addr],
        "admin-pw-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.docker_config()).expect("config"))
            .expect("json");
    assert!(
        config["auths"][addr.as_str()]["identitytoken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{config}"
    );
    let out = home.ok(&["pull", &base]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let web = format!("{addr}/apps/web:1");
    home.ok(&["tag", &base, &web]);
    let out = home.ok(&["push", &web]);
    assert!(out.contains(&format!("1: digest: {digest}")), "{out}");
    assert!(
        out.contains("Mounted from team/base"),
        "the token covered the mount source: {out}"
    );

    // Docker Hub style: anyone signs up and gets a public namespace.
    let alice = ClientHome::new(&dir.path().join("alice"));
    let out = alice.run_with_stdin(
        &["signup", addr, "-u", "alice", "--password-stdin"],
        "alice-pw-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("your namespace {addr}/alice is public")),
        "{}",
        text(&out)
    );
    let out = alice.run_with_stdin(
        &["signup", addr, "-u", "library", "--password-stdin"],
        "whatever-1\n",
    );
    assert!(
        !out.status.success() && text(&out).contains("reserved"),
        "{}",
        text(&out)
    );
    let out = alice.run_with_stdin(
        &["login", "-u", "alice", "--password-stdin", addr],
        "alice-pw-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = alice.fails(&["pull", &base]);
    assert!(out.contains("denied"), "team is private: {out}");
    seed_image(
        dir.path(),
        addr,
        "alice/app:v1",
        62,
        1,
        10_000,
        Some("alice:alice-pw-1"),
    );
    let anonymous = ClientHome::new(&dir.path().join("anonymous"));
    let out = anonymous.ok(&["pull", &format!("{addr}/alice/app:v1")]);
    assert!(
        out.contains("Downloaded newer image"),
        "a public namespace: {out}"
    );
}

#[test]
fn admin_commands_roles_and_a_denied_push() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_AUTH_ENABLED", "true"),
            ("BERTH_ADMIN_PASSWORD", "admin-pw-1"),
        ],
    );
    let addr = server.addr.as_str();
    let admin = ClientHome::new(&dir.path().join("admin"));
    let login = |home: &ClientHome, user: &str, password: &str| {
        let out = home.run_with_stdin(&["login", "-u", user, "--password-stdin", addr], password);
        assert!(out.status.success(), "login {user}: {}", text(&out));
    };
    login(&admin, "admin", "admin-pw-1");
    let admin_cmd = |args: &[&str]| {
        let mut all = vec!["admin", "--registry", addr];
        all.extend_from_slice(args);
        admin.ok(&all)
    };
    assert!(admin_cmd(&["project", "create", "team"]).contains("Created private project team"));
    admin_cmd(&["project", "create", "ops"]);
    let out = admin.run_with_stdin(
        &[
            "admin",
            "--registry",
            addr,
            "user",
            "add",
            "bob",
            "--password-stdin",
        ],
        "bob-pw-12\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    admin_cmd(&["member", "add", "team", "bob", "--role", "developer"]);
    let robot = admin_cmd(&[
        "robot",
        "create",
        "ci",
        "--project",
        "team",
        "--actions",
        "pull",
    ]);
    let secret = robot
        .lines()
        .find_map(|l| l.strip_prefix("Secret (shown once): "))
        .expect("secret line")
        .to_string();
    let members = admin_cmd(&["member", "list", "team"]);
    assert!(members.starts_with("USER"), "{members}");
    assert!(
        members.contains("bob") && members.contains("developer"),
        "{members}"
    );
    let projects = admin_cmd(&["--format", "json", "project", "list"]);
    assert_eq!(
        projects.lines().count(),
        3,
        "team, ops and bob's namespace: {projects}"
    );

    // An image for bob to push: seeded by the admin into team/base.
    let image = seed_image(
        dir.path(),
        addr,
        "team/base:v1",
        71,
        1,
        30_000,
        Some("admin:admin-pw-1"),
    );
    let digest = image["digest"].as_str().expect("digest");

    let bob = ClientHome::new(&dir.path().join("bob"));
    login(&bob, "bob", "bob-pw-12");
    bob.ok(&["pull", &format!("{addr}/team/base:v1")]);
    bob.ok(&[
        "tag",
        &format!("{addr}/team/base:v1"),
        &format!("{addr}/team/web:1"),
    ]);
    let out = bob.ok(&["push", &format!("{addr}/team/web:1")]);
    assert!(out.contains(&format!("1: digest: {digest}")), "{out}");
    // Logged in, but not a member of ops: refused for lack of permission, not of login.
    bob.ok(&[
        "tag",
        &format!("{addr}/team/base:v1"),
        &format!("{addr}/ops/web:1"),
    ]);
    let out = bob.fails(&["push", &format!("{addr}/ops/web:1")]);
    assert!(
        out.contains("denied: requested access to the resource is denied"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "You are logged in to {addr} but may not push to ops/web"
        )),
        "{out}"
    );
    assert!(!out.contains("berth login"), "not a login problem: {out}");
    // bob is no system administrator.
    let out = bob.fails(&["admin", "--registry", addr, "user", "list"]);
    assert!(out.contains("denied"), "{out}");
    // A password change revokes bob's saved login (a refresh token) at once, and says so.
    let out = admin.run_with_stdin(
        &[
            "admin",
            "--registry",
            addr,
            "user",
            "passwd",
            "bob",
            "--password-stdin",
        ],
        "bob-pw-34\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = bob.fails(&["pull", &format!("{addr}/team/web:1")]);
    assert!(
        out.contains("revoked") && out.contains(&format!("berth login {addr}")),
        "{out}"
    );
    login(&bob, "bob", "bob-pw-34");

    // The robot pulls with its secret and may not push.
    let ci = ClientHome::new(&dir.path().join("ci"));
    login(&ci, "robot$ci", &secret);
    ci.ok(&["pull", &format!("{addr}/team/web:1")]);
    ci.ok(&[
        "tag",
        &format!("{addr}/team/web:1"),
        &format!("{addr}/team/robot:1"),
    ]);
    let out = ci.fails(&["push", &format!("{addr}/team/robot:1")]);
    assert!(out.contains("denied"), "{out}");
    admin_cmd(&["robot", "disable", "ci"]);
    let out = ci.fails(&["pull", &format!("{addr}/team/web:1")]);
    assert!(
        out.contains("unauthorized") || out.contains("incorrect"),
        "{out}"
    );

    // A failed login whose name holds a newline and an escape sequence (an attempt to forge a
    // row and to clear the administrator's screen): the table shows them written out.
    let forged = "x\nadmin delete.manifest secret/app\u{1b}[2J";
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let r = client()
                .get(format!("http://{addr}/v2/"))
                .basic_auth(forged, Some("not-the-password"))
                .send()
                .await
                .expect("GET /v2/");
            assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
        });

    // The audit log saw it all: bob's push, the disabled robot's failed login, the changes.
    let log = admin_cmd(&["audit", "--since", "1h"]);
    assert!(
        !log.contains('\u{1b}') && !log.lines().any(|l| l.starts_with("admin delete")),
        "{log}"
    );
    assert!(log.starts_with("TIME"), "{log}");
    let line = |needle: &[&str]| log.lines().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        line(&[
            "x\\nadmin delete.manifest secret/app\\x1b[2J",
            "login.failed"
        ]),
        "{log}"
    );
    assert!(
        line(&["bob", "127.0.0.1", "push", "team", "team/web:1@"]),
        "{log}"
    );
    assert!(line(&["robot$ci", "login.failed"]), "{log}");
    assert!(line(&["admin", "robot.disable", "robot$ci"]), "{log}");
    assert!(
        line(&["admin", "member.set", "team", "bob", "role=developer"]),
        "{log}"
    );
    let json = admin_cmd(&[
        "--format", "json", "audit", "--actor", "bob", "--action", "push",
    ]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{json}");
    assert_eq!(events[0]["resource"], format!("team/web:1@{digest}"));
    // A project admin reads its own project's log, not the whole one.
    let out = bob.fails(&["admin", "--registry", addr, "audit"]);
    assert!(out.contains("denied"), "{out}");
    let own = bob.ok(&["admin", "--registry", addr, "audit", "--project", "bob"]);
    assert_eq!(own.lines().count(), 1, "only the header: {own}");
}
