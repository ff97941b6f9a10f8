use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_testkit::postgres::TestDatabase;
use berth_testkit::s3::S3Server;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// `berth serve` running as a child process on 127.0.0.1, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with_env(data_dir, &[])
    }

    /// With extra environment variables (`BERTH_AUTH_ENABLED`, ...).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_with_args(data_dir, &[], env)
    }

    /// With extra flags (`--tls-cert FILE`, ...) and environment variables; `base` is
    /// `https://...` when the server says it serves HTTPS.
    pub fn start_with_args(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            // An open registry unless the test turns accounts on.
            .env("BERTH_AUTH_ENABLED", "false")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn berth serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read start line");
        // "berth registry listening on http://127.0.0.1:PORT, data in DIR" (or https://)
        let (scheme, addr) = line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_once("://"))
            .and_then(|(scheme, rest)| Some((scheme, rest.split(',').next()?)))
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"));
        // Replicas on S3 + PostgreSQL name their bucket and database instead.
        assert!(
            line.contains(&data_dir.display().to_string()) || line.contains("data in bucket "),
            "{line}"
        );
        Server {
            base: format!("{scheme}://{addr}"),
            addr: addr.to_string(),
            child,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether PostgreSQL and an S3 server (moto) are there for the scaled-out tests; otherwise
/// the test says so and passes.
pub fn backends_installed() -> bool {
    let postgres = std::env::var_os("BERTH_TEST_POSTGRES_URL").is_some()
        || std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("bin/initdb").is_file());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let moto = std::env::var_os("BERTH_TEST_S3_ENDPOINT").is_some()
        || std::env::var_os("BERTH_TEST_MOTO_SERVER").is_some()
        || home
            .join(".cache/berth-test/moto/bin/moto_server")
            .is_file();
    if !(postgres && moto) {
        eprintln!(
            "SKIPPED: berth on PostgreSQL + S3 needs PostgreSQL ({postgres}) and moto ({moto}); \
             scripts/test installs both"
        );
    }
    postgres && moto
}

/// `dir/scaled.toml`: a registry on `db` and `s3` (5 MiB parts), `data_dir` `dir/scaled-data`.
pub fn scaled_config(dir: &Path, db: &TestDatabase, s3: &S3Server) -> PathBuf {
    let (key, secret) = s3.credentials().unwrap_or(("", ""));
    let file = dir.join("scaled.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {data:?}\n\n[storage]\nbackend = \"s3\"\nbucket = {bucket:?}\n\
             endpoint = {endpoint:?}\npath_style = true\naccess_key_id = {key:?}\n\
             secret_access_key = {secret:?}\npart_size_mib = 5\n\n[database]\nurl = {url:?}\n",
            data = dir.join("scaled-data").display().to_string(),
            bucket = s3.bucket,
            endpoint = s3.endpoint,
            url = db.url(),
        ),
    )
    .expect("write config");
    file
}

/// `berth serve` on PostgreSQL and S3 (a fresh database and bucket), with the configuration
/// file that names them (for offline commands: `berth fsck --config`, `berth gc --config`).
pub struct ScaledServer {
    pub server: Server,
    /// The configuration file's path.
    pub config: String,
    pub s3: S3Server,
    _db: TestDatabase,
}

impl ScaledServer {
    pub async fn start(dir: &Path) -> ScaledServer {
        let db = TestDatabase::create().await;
        let s3 = S3Server::start();
        let config = scaled_config(dir, &db, &s3).display().to_string();
        let server = Server::start_with_args(&dir.join("data"), &["--config", &config], &[]);
        ScaledServer {
            server,
            config,
            s3,
            _db: db,
        }
    }
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed by it, as PEM files.
pub struct TestPki {
    /// The CA certificate, alone: what clients are told to trust.
    pub ca: PathBuf,
    /// skopeo's `--cert-dir` layout: `ca.crt` is a trusted root.
    pub cert_dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir.join("certs.d")).expect("mkdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "berth test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("self-signed CA");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "berth test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");

        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert_dir: dir.join("certs.d"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&pki.ca, ca.pem()).expect("write CA");
        std::fs::write(pki.cert_dir.join("ca.crt"), ca.pem()).expect("write ca.crt");
        // The chain as servers send it: leaf first, then the CA.
        std::fs::write(&pki.cert, format!("{}{}", cert.pem(), ca.pem())).expect("write cert");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }

    pub fn serve_args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// `berth serve --tls-cert --tls-key` with data in `dir/data`; `env` as for
/// [`Server::start_with_env`].
pub fn start_tls(dir: &Path, pki: &TestPki, env: &[(&str, &str)]) -> Server {
    let args = pki.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with_args(&dir.join("data"), &args, env);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    server
}

/// Runs `berth <args>` (an offline command such as `fsck` or `gc`) to its end.
pub fn berth(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run berth")
}

/// `berth <command> --data-dir <not a data directory>` exits 1 and says so.
pub fn assert_refuses_a_non_data_dir(command: &str, dir: &Path) {
    let nowhere = dir.join("nowhere").display().to_string();
    let out = berth(&[command, "--data-dir", &nowhere]);
    assert_eq!(out.status.code(), Some(1));
    let said = crate::harness::text(&out);
    assert!(said.contains("no registry database at"), "{said}");
}

/// Runs `berth <args> --json`: its JSON report, and whether it exited 0.
pub fn json_report(args: &[&str]) -> (serde_json::Value, bool) {
    let out = berth(&[args, &["--json"]].concat());
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", crate::harness::text(&out)));
    (report, out.status.success())
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub use berth_testkit::noise;

pub fn client() -> reqwest::Client {
    // The berth client links reqwest without a default TLS crypto provider; tests share that
    // build of reqwest, so they install the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An access token from `base`'s token endpoint for `scope` (`repository:team/app:pull`),
/// asked with Basic credentials.
pub async fn token_for(base: &str, scope: &str, user: &str, password: &str) -> String {
    let r = client()
        .get(format!("{base}/auth/token?service=berth&scope={scope}"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200, "token for {user}");
    let body: Value = r.json().await.expect("token json");
    body["token"].as_str().expect("token").to_string()
}

/// Pushes a blob in one request.
pub async fn push_blob(base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    digest
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image layout being written (image-spec `image-layout.md`).
pub struct Layout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
        Layout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        }
    }

    /// An index of two small images (seeds `seed` and `seed + 1`), linux/amd64 and
    /// linux/arm64.
    pub fn two_platform_index(&self, seed: u64) -> Value {
        let amd = self.image(seed, 2, 50_000);
        let arm = self.image(seed + 1, 2, 50_000);
        let mut index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]});
        index["manifests"][0]["platform"] = json!({"architecture": "amd64", "os": "linux"});
        index["manifests"][1]["platform"] = json!({"architecture": "arm64", "os": "linux"});
        self.blob(OCI_INDEX, &serde_json::to_vec(&index).expect("json"))
    }

    /// An SPDX SBOM artifact (an OCI manifest with an empty config) whose subject is `subject`.
    pub fn sbom_for(&self, subject: &Value) -> Value {
        let empty = self.blob("application/vnd.oci.empty.v1+json", b"{}");
        let sbom = self.blob("application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#);
        let artifact = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/spdx+json",
            "config": empty, "layers": [sbom], "subject": subject,
            "annotations": {"org.example": "sbom"}
        });
        self.blob(OCI_MANIFEST, &serde_json::to_vec(&artifact).expect("json"))
    }

    pub fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let digest = sha256(data);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), data).expect("write blob");
        json!({"mediaType": media_type, "digest": digest, "size": data.len()})
    }

    /// An image of `layers` layers of noise; returns its manifest descriptor.
    pub fn image(&self, seed: u64, layers: usize, layer_size: usize) -> Value {
        let layers: Vec<Vec<u8>> = (0..layers)
            .map(|i| noise(seed * 1000 + i as u64, layer_size))
            .collect();
        self.image_of(seed, &layers)
    }

    /// An image of the given uncompressed layers, real tar files (see [`tar_layer`]) for
    /// clients that unpack them, like podman; returns its manifest descriptor.
    pub fn image_of(&self, seed: u64, layers: &[Vec<u8>]) -> Value {
        let layers: Vec<Value> = layers
            .iter()
            .map(|data| self.blob("application/vnd.oci.image.layer.v1.tar", data))
            .collect();
        let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Labels": {"seed": seed.to_string()}}
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).expect("json"),
        );
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
        self.blob(
            OCI_MANIFEST,
            &serde_json::to_vec_pretty(&manifest).expect("json"),
        )
    }

    pub fn tag(&mut self, descriptor: &Value, tag: &str) {
        let mut d = descriptor.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs.push(d);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
    }
}

/// A tar file holding `files` (path, contents), as an image layer.
pub fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, *data)
            .expect("tar entry");
    }
    tar.into_inner().expect("tar")
}

/// The digest that `tag` points at in a layout's index.json.
pub fn tagged_digest(dir: &Path, tag: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("{tag} not in {index}"))
        .to_string()
}

pub fn skopeo(args: &[&str], policy: &Path) {
    let out = Command::new("skopeo")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("skopeo not runnable ({e}); ./scripts/test installs it"));
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A containers-policy.json accepting anything, for skopeo's `--policy`.
pub fn policy(dir: &Path) -> PathBuf {
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("write policy");
    policy
}

/// The value of metric `name` on the server at `base` (`GET /metrics`).
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}
