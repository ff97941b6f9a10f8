//! Real registry clients against a scaled-out deployment: two `berth serve` processes sharing
//! one PostgreSQL database and one S3 bucket, with token auth on, behind a round-robin TCP
//! balancer (each new connection goes to the next replica). skopeo, oras and the berth client
//! push through one replica or the balancer and pull through the other replica: every byte
//! identical, tokens issued by one replica accepted by the other, concurrent pushes of the
//! same blobs keeping one object each. Without PostgreSQL and moto the tests say SKIPPED and
//! pass (as `migrate.rs`); a missing skopeo or oras fails them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use berth_testkit::balancer::Balancer;
use berth_testkit::postgres::TestDatabase;
use berth_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::common::*;
use crate::harness::{ClientHome, text};

const ADMIN_PASSWORD: &str = "admin-pw-1";
const CREDS: &str = "admin:admin-pw-1";
const REPLICA_ENV: [(&str, &str); 3] = [
    ("BERTH_AUTH_ENABLED", "true"),
    ("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD),
    // The `team` project comes with the first push, from whichever replica gets it.
    ("BERTH_AUTH_AUTO_CREATE_PROJECTS", "true"),
];

/// Two replicas on one database and one bucket, and a balancer in front of them. Fields drop
/// in order: the balancer, the replicas, then the backends.
struct Deployment {
    balancer: Balancer,
    a: Server,
    b: Server,
    s3: S3Server,
    db: TestDatabase,
}

impl Deployment {
    /// `None` (after saying SKIPPED) without PostgreSQL and moto.
    async fn start(dir: &Path) -> Option<Deployment> {
        if !backends_installed() {
            return None;
        }
        let s3 = tokio::task::spawn_blocking(S3Server::start);
        let db = TestDatabase::create().await;
        let s3 = s3.await.expect("start the S3 server");
        let config = scaled_config(dir, &db, &s3).display().to_string();
        // Both at once, as an orchestrator starts them: they set up the empty database
        // (migrations, the administrator, the token signing key) side by side.
        let (a, b) = std::thread::scope(|scope| {
            let start = |name: &str| {
                let data = dir.join(name);
                let config = config.as_str();
                scope.spawn(move || {
                    Server::start_with_args(&data, &["--config", config], &REPLICA_ENV)
                })
            };
            let (a, b) = (start("replica-a"), start("replica-b"));
            (
                a.join().expect("replica A started"),
                b.join().expect("replica B started"),
            )
        });
        let balancer = Balancer::start(vec![socket(&a), socket(&b)]).await;
        Some(Deployment {
            balancer,
            a,
            b,
            s3,
            db,
        })
    }

    /// `127.0.0.1:PORT` of the balancer.
    fn addr(&self) -> String {
        self.balancer.addr().to_string()
    }

    /// Stops everything; drops the database when it lives on a shared server.
    async fn stop(self) {
        let Deployment {
            balancer,
            a,
            b,
            s3,
            db,
        } = self;
        drop((balancer, a, b, s3));
        db.drop_database().await;
    }
}

fn socket(server: &Server) -> SocketAddr {
    server.addr.parse().expect("replica address")
}

/// A pull token for `repository` from `server`'s token endpoint.
async fn pull_token(server: &Server, repository: &str) -> String {
    let scope = format!("repository:{repository}:pull");
    token_for(&server.base, &scope, "admin", ADMIN_PASSWORD).await
}

/// `method` requests on `route` (`upload_start`, `upload`, ...) that `server` answered with
/// 2xx, from its metrics.
async fn answered(server: &Server, route: &str, method: &str) -> u64 {
    let metrics = client()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    let labels = [format!("route=\"{route}\""), format!("method=\"{method}\"")];
    metrics
        .lines()
        .filter(|l| l.starts_with("berth_http_requests_total{"))
        .filter(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .filter(|l| l.contains("status=\"2"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `skopeo copy --preserve-digests` (with `--all` for an index), signed in as the
/// administrator on the registry side.
fn skopeo_copy(from: &str, to: &str, all: bool, policy: &Path) {
    let mut args = vec!["copy", "--preserve-digests"];
    if all {
        args.push("--all");
    }
    if from.starts_with("docker://") {
        args.extend(["--src-creds", CREDS, "--src-tls-verify=false"]);
    }
    if to.starts_with("docker://") {
        args.extend(["--dest-creds", CREDS, "--dest-tls-verify=false"]);
    }
    args.extend([from, to]);
    skopeo(&args, policy);
}

/// The blob files (named by digest) of an OCI layout.
fn layout_blobs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("layout blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `out` holds the blobs of `src`, no more, byte for byte.
fn assert_same_blobs(src: &Path, out: &Path) {
    let names = layout_blobs(out);
    assert_eq!(
        names,
        layout_blobs(src),
        "{} has other blobs",
        out.display()
    );
    for name in names {
        let path = |dir: &Path| dir.join("blobs/sha256").join(&name);
        let same =
            std::fs::read(path(out)).expect("read") == std::fs::read(path(src)).expect("read");
        assert!(same, "{name} differs in {}", out.display());
    }
}

/// An image whose first two layers are larger than a part (5 MiB): multipart uploads with
/// several parts and a tail.
fn large_image(layout: &Layout, seed: u64) -> Value {
    layout.image_of(
        seed,
        &[
            noise(seed * 10 + 1, 12 << 20),
            noise(seed * 10 + 2, (6 << 20) + 123),
            noise(seed * 10 + 3, 300_000),
        ],
    )
}

/// A deployment in `dir`, a skopeo policy, and an OCI layout in `dir/src` holding the large
/// image of `seed`, tagged `image`. `None` (after saying SKIPPED) without the backends.
async fn scene(
    dir: &Path,
    seed: u64,
) -> Option<(
    Deployment,
    std::path::PathBuf,
    std::path::PathBuf,
    Layout,
    Value,
)> {
    let deployment = Deployment::start(dir).await?;
    let policy = policy(dir);
    let src = dir.join("src");
    let mut layout = Layout::new(&src);
    let image = large_image(&layout, seed);
    layout.tag(&image, "image");
    Some((deployment, policy, src, layout, image))
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_through_the_balancer_and_pulls_from_each_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((deployment, policy, src, mut layout, image)) = scene(dir.path(), 1).await else {
        return;
    };
    let index = layout.two_platform_index(2);
    layout.tag(&index, "multi");
    let artifact = layout.sbom_for(&image);
    layout.tag(&artifact, "sbom");

    let started = std::time::Instant::now();
    let tags = [("image", false), ("multi", true), ("sbom", false)];
    for (tag, all) in tags {
        let remote = format!("docker://{}/team/app:{tag}", deployment.addr());
        skopeo_copy(
            &format!("oci:{}:{tag}", src.display()),
            &remote,
            all,
            &policy,
        );
    }
    eprintln!("pushed through the balancer in {:?}", started.elapsed());
    for (name, replica) in [("a", &deployment.a), ("b", &deployment.b)] {
        let out = dir.path().join(format!("out-{name}"));
        for (tag, all) in tags {
            let remote = format!("docker://{}/team/app:{tag}", replica.addr);
            skopeo_copy(
                &remote,
                &format!("oci:{}:{tag}", out.display()),
                all,
                &policy,
            );
            assert_eq!(
                tagged_digest(&out, tag),
                tagged_digest(&src, tag),
                "{tag} through replica {name}"
            );
        }
        assert_same_blobs(&src, &out);
    }

    // A token from replica A is good on replica B, which lists the artifact as a referrer.
    let token = pull_token(&deployment.a, "team/app").await;
    let subject = image["digest"].as_str().expect("digest");
    let r = client()
        .get(format!(
            "{}/v2/team/app/referrers/{subject}",
            deployment.b.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET referrers");
    assert_eq!(r.status(), 200);
    let referrers: Value = r.json().await.expect("json");
    assert_eq!(
        referrers["manifests"].as_array().map(Vec::len),
        Some(1),
        "{referrers}"
    );
    assert_eq!(referrers["manifests"][0]["digest"], artifact["digest"]);
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oras_pushes_through_one_replica_and_pulls_through_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(deployment) = Deployment::start(dir.path()).await else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/scripts/oras_roundtrip.py");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let out = Command::new("python3")
        .arg(&script)
        .args([&deployment.a.addr, "team/artifact", &deployment.b.addr])
        .current_dir(&work)
        // No docker config of the user's: the credentials are these.
        .env("HOME", &work)
        .env("ORAS_USER", "admin")
        .env("ORAS_PASS", ADMIN_PASSWORD)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "oras round trip failed (./scripts/test installs the oras package):\n{}",
        text(&out)
    );
    // The script pulled through B what it pushed through A; B lists the same tags.
    let tags: Value = client()
        .get(format!("{}/v2/team/artifact/tags/list", deployment.b.base))
        .bearer_auth(pull_token(&deployment.a, "team/artifact").await)
        .send()
        .await
        .expect("GET tags")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["tags"], json!(["chunked", "v1"]));
    // oras_roundtrip.py pushes no subject: the referrers API is covered by the skopeo test.
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_pushes_through_the_balancer_and_pulls_through_one_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(deployment) = Deployment::start(dir.path()).await else {
        return;
    };
    let balanced = deployment.addr();
    let name = format!("{balanced}/team/app:v1");
    let src = dir.path().join("src");
    let mut layout = Layout::new(&src);
    let mut layers = vec![noise(41, 12 << 20), noise(42, (6 << 20) + 5)];
    layers.extend((0..6).map(|i| noise(43 + i, 200_000 + i as usize)));
    let image = layout.image_of(40, &layers);
    layout.tag(&image, &name);
    let digest = image["digest"].as_str().expect("digest");
    let archive = dir.path().join("app.tar");
    skopeo(
        &[
            "copy",
            "--preserve-digests",
            &format!("oci:{}:{name}", src.display()),
            &format!("oci-archive:{}:{name}", archive.display()),
        ],
        &policy(dir.path()),
    );

    let pusher = ClientHome::new(&dir.path().join("pusher"));
    let out = pusher.ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    let login = |home: &ClientHome, registry: &str| {
        let out = home.run_with_stdin(
            &["login", "-u", "admin", "--password-stdin", registry],
            ADMIN_PASSWORD,
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    login(&pusher, &balanced);
    let before = [
        answered(&deployment.a, "upload_start", "POST").await,
        answered(&deployment.b, "upload_start", "POST").await,
    ];
    let started = std::time::Instant::now();
    let out = pusher.ok(&["push", &name]);
    eprintln!("berth push through the balancer in {:?}", started.elapsed());
    assert!(out.contains(&format!("v1: digest: {digest}")), "{out}");
    // The parallel uploads went to both replicas.
    let after = [
        answered(&deployment.a, "upload_start", "POST").await,
        answered(&deployment.b, "upload_start", "POST").await,
    ];
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "uploads started on A: {before:?} -> {after:?} (A, B)"
    );

    let puller = ClientHome::new(&dir.path().join("puller"));
    login(&puller, &deployment.b.addr);
    let from_b = format!("{}/team/app:v1", deployment.b.addr);
    let out = puller.ok(&["pull", &from_b]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let inspect = |home: &ClientHome, name: &str| -> Value {
        serde_json::from_str(&home.ok(&["inspect", name])).expect("inspect json")
    };
    let pulled = inspect(&puller, &from_b);
    let pushed = inspect(&pusher, &name);
    assert_eq!(pulled[0]["ManifestDigest"], digest);
    assert_eq!(pushed[0]["ManifestDigest"], digest);
    assert_eq!(pulled[0]["Layers"], pushed[0]["Layers"]);
    // Every layer the puller stored has the bytes that were pushed.
    let store = puller.store();
    for layer in &layers {
        let path = store
            .join("blobs/sha256")
            .join(&sha256(layer)["sha256:".len()..]);
        let same = std::fs::read(&path).expect("pulled layer") == *layer;
        assert!(same, "{} differs", path.display());
    }
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_of_one_image_through_both_replicas_keep_one_object_per_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((deployment, policy, src, _, image)) = scene(dir.path(), 5).await else {
        return;
    };
    let from = format!("oci:{}:image", src.display());
    let one = format!("docker://{}/team/one:v1", deployment.a.addr);
    let two = format!("docker://{}/team/two:v1", deployment.b.addr);

    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        let pushes = [&one, &two].map(|to| scope.spawn(|| skopeo_copy(&from, to, false, &policy)));
        for push in pushes {
            push.join().expect("skopeo push");
        }
    });
    eprintln!("two concurrent pushes in {:?}", started.elapsed());
    // The config and the layers.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            src.join("blobs/sha256")
                .join(&tagged_digest(&src, "image")[7..]),
        )
        .expect("manifest"),
    )
    .expect("json");
    let blobs = 1 + manifest["layers"].as_array().map_or(0, Vec::len);
    // The pushes raced: some blob was uploaded in full by both (skopeo uploads what a HEAD
    // did not find), else there was nothing to keep one copy of.
    let completed = answered(&deployment.a, "upload", "PUT").await
        + answered(&deployment.b, "upload", "PUT").await;
    assert!(
        completed > blobs as u64,
        "{completed} uploads of {blobs} blobs"
    );

    // Each pulled back through the replica that did not take it.
    for (repo, replica) in [("one", &deployment.b), ("two", &deployment.a)] {
        let out = dir.path().join(format!("out-{repo}"));
        let remote = format!("docker://{}/team/{repo}:v1", replica.addr);
        skopeo_copy(
            &remote,
            &format!("oci:{}:image", out.display()),
            false,
            &policy,
        );
        assert_eq!(tagged_digest(&out, "image"), image["digest"], "team/{repo}");
        assert_same_blobs(&src, &out);
    }

    if !deployment.s3.is_local() {
        eprintln!("not counting objects: the S3 server is shared (BERTH_TEST_S3_ENDPOINT)");
    } else {
        // One object per blob, however many uploads raced.
        let objects = deployment.s3.object_keys("blobs/");
        assert_eq!(objects.len(), blobs, "{objects:?}");
        let staged = deployment.s3.object_keys("uploads/");
        assert!(staged.is_empty(), "staged tails left behind: {staged:?}");
        let open = deployment.s3.multipart_uploads();
        assert!(open.is_empty(), "multipart uploads left open: {open:?}");
    }
    deployment.stop().await;
}
