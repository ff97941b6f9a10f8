//! Real clients against berth as it is deployed: HTTPS with a certificate from a throw-away CA,
//! token auth on, a private project `team` with one developer. skopeo and podman log in, push
//! and pull trusting only that CA (`--cert-dir`), the berth client with `ca_file` in
//! client.toml; none of them with an insecure flag.
//!
//! skopeo and podman read every configuration file from the test's directory, never the
//! host's. `scripts/test` installs both; a missing skopeo fails the test, a missing podman
//! skips it loudly (a podman that is there but fails, fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::harness::*;

const ADMIN_PASSWORD: &str = "admin-pw-real-clients";
const DEV: &str = "dana";
const DEV_PASSWORD: &str = "dana-pw-1234";

/// `berth serve` over HTTPS with token auth on, where the administrator has made the private
/// project `team` and the user `dana`, its developer, through `berth admin`.
struct PrivateRegistry {
    pki: TestPki,
    server: Server,
}

impl PrivateRegistry {
    fn start(dir: &Path) -> PrivateRegistry {
        let pki = TestPki::new(&dir.join("pki"));
        let server = start_tls(
            dir,
            &pki,
            &[
                ("BERTH_AUTH_ENABLED", "true"),
                ("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ],
        );
        let addr = server.addr.as_str();
        let admin = ClientHome::new(&dir.join("admin"));
        admin.trust_ca(&pki.ca);
        let out = admin.run_with_stdin(
            &["login", "-u", "admin", "--password-stdin", addr],
            ADMIN_PASSWORD,
        );
        assert!(out.status.success(), "admin login: {}", text(&out));
        let out = admin.ok(&["admin", "--registry", addr, "project", "create", "team"]);
        assert!(out.contains("Created private project team"), "{out}");
        let out = admin.run_with_stdin(
            &[
                "admin",
                "--registry",
                addr,
                "user",
                "add",
                DEV,
                "--password-stdin",
            ],
            DEV_PASSWORD,
        );
        assert!(out.status.success(), "user add: {}", text(&out));
        admin.ok(&[
            "admin",
            "--registry",
            addr,
            "member",
            "add",
            "team",
            DEV,
            "--role",
            "developer",
        ]);
        PrivateRegistry { pki, server }
    }
}

/// skopeo and podman with everything they read or write under one directory: registries.conf,
/// containers.conf, storage.conf, the signature policy, the auth file (shared by both, as on a
/// real host), HOME (no `~/.docker/config.json` of the host) and podman's image storage.
struct Containers {
    dir: PathBuf,
    authfile: PathBuf,
    policy: String,
    /// The CA as `ca.crt`: the only thing that makes them trust berth.
    cert_dir: String,
}

impl Containers {
    fn new(dir: &Path, cert_dir: &Path) -> Containers {
        for sub in ["home", "run", "storage", "storage-run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        let write = |name: &str, contents: String| {
            std::fs::write(dir.join(name), contents).expect("write containers config");
        };
        // No search registries, no insecure ones, no mirrors.
        write(
            "registries.conf",
            "unqualified-search-registries = []\n".into(),
        );
        // podman runs no container here: no cgroups, no journal.
        write(
            "containers.conf",
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n".into(),
        );
        // vfs works on any filesystem and without privileges; the images are tiny.
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {:?}\nrunroot = {:?}\n",
                dir.join("storage").display().to_string(),
                dir.join("storage-run").display().to_string(),
            ),
        );
        // Present and empty: podman refuses to push when REGISTRY_AUTH_FILE names no file.
        write("auth.json", "{\"auths\":{}}\n".into());
        Containers {
            dir: dir.to_path_buf(),
            authfile: dir.join("auth.json"),
            policy: policy(dir).display().to_string(),
            cert_dir: cert_dir.display().to_string(),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", self.dir.join("home"))
            .env("XDG_CONFIG_HOME", self.dir.join("home/.config"))
            .env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("DOCKER_CONFIG", self.dir.join("home/.docker"))
            .env("REGISTRY_AUTH_FILE", &self.authfile)
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    fn skopeo_command(&self) -> Command {
        let mut cmd = self.command("skopeo");
        cmd.args(["--policy", &self.policy]);
        cmd
    }

    fn skopeo(&self, args: &[&str]) -> Output {
        self.skopeo_command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("skopeo not runnable ({e}); ./scripts/test installs it"))
    }

    fn skopeo_with_stdin(&self, args: &[&str], input: &str) -> Output {
        output_with_stdin(self.skopeo_command().args(args), input)
    }

    fn podman_command(&self) -> Command {
        let mut cmd = self.command("podman");
        cmd.arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("storage-run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.podman_command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("podman not runnable ({e}); ./scripts/test installs it"))
    }

    fn podman_with_stdin(&self, args: &[&str], input: &str) -> Output {
        output_with_stdin(self.podman_command().args(args), input)
    }

    /// The auth file's `auths` entry for `addr`.
    fn login_entry(&self, addr: &str) -> Value {
        let auth: Value =
            serde_json::from_slice(&std::fs::read(&self.authfile).expect("auth file"))
                .expect("auth json");
        auth["auths"][addr].clone()
    }
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{what} failed: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(what: &str, out: &Output) -> String {
    assert!(!out.status.success(), "{what} should fail: {}", text(out));
    text(out)
}

/// What containers/image says when berth answers 401 `insufficient_scope`: no token granted
/// the action.
const DENIED: &str = "requested access to the resource is denied";

#[test]
fn skopeo_logs_in_and_copies_through_a_private_project_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = PrivateRegistry::start(dir.path());
    let addr = registry.server.addr.as_str();
    let tools = Containers::new(&dir.path().join("containers"), &registry.pki.cert_dir);
    let cert_dir = tools.cert_dir.as_str();

    let src = dir.path().join("src");
    let mut layout = Layout::new(&src);
    let image = layout.image(31, 3, 60_000);
    layout.tag(&image, "v1");
    let digest = image["digest"].as_str().expect("digest");
    let from = format!("oci:{}:v1", src.display());
    let remote = format!("docker://{addr}/team/app:v1");
    let copy_in = [
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        cert_dir,
        &from,
        &remote,
    ];
    let login = [
        "login",
        "--tls-verify=true",
        "--cert-dir",
        cert_dir,
        "-u",
        DEV,
        "--password-stdin",
        addr,
    ];

    let out = failed("anonymous skopeo copy", &tools.skopeo(&copy_in));
    assert!(out.contains(DENIED), "{out}");
    let out = failed(
        "skopeo login with a wrong password",
        &tools.skopeo_with_stdin(&login, "not-the-password\n"),
    );
    assert!(out.contains("invalid username/password"), "{out}");
    assert!(tools.login_entry(addr).is_null(), "saved a failed login");

    let out = succeeded(
        "skopeo login",
        &tools.skopeo_with_stdin(&login, DEV_PASSWORD),
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    assert!(tools.login_entry(addr)["auth"].is_string());
    succeeded("skopeo copy into berth", &tools.skopeo(&copy_in));

    let back = dir.path().join("back");
    let to = format!("oci:{}:v1", back.display());
    succeeded(
        "skopeo copy out of berth",
        &tools.skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=true",
            "--src-cert-dir",
            cert_dir,
            &remote,
            &to,
        ]),
    );
    assert_eq!(tagged_digest(&back, "v1"), digest);
    for blob in std::fs::read_dir(src.join("blobs/sha256")).expect("blobs") {
        let name = blob.expect("entry").file_name();
        assert_eq!(
            std::fs::read(back.join("blobs/sha256").join(&name)).expect("blob came back"),
            std::fs::read(src.join("blobs/sha256").join(&name)).expect("blob"),
        );
    }
    let inspect = [
        "inspect",
        "--tls-verify=true",
        "--cert-dir",
        cert_dir,
        &remote,
    ];
    let info: Value = serde_json::from_str(&succeeded("skopeo inspect", &tools.skopeo(&inspect)))
        .expect("inspect json");
    assert_eq!(info["Digest"], digest, "{info}");
    // The refused anonymous copy left nothing behind.
    let tags: Value = serde_json::from_str(&succeeded(
        "skopeo list-tags",
        &tools.skopeo(&[
            "list-tags",
            "--tls-verify=true",
            "--cert-dir",
            cert_dir,
            &format!("docker://{addr}/team/app"),
        ]),
    ))
    .expect("tags json");
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]), "{tags}");

    succeeded("skopeo logout", &tools.skopeo(&["logout", addr]));
    let out = failed("skopeo inspect after logout", &tools.skopeo(&inspect));
    assert!(out.contains(DENIED), "{out}");
}

/// Whether `podman` can be started at all; a podman that starts and then fails is a failure.
fn podman_installed() -> bool {
    !matches!(
        Command::new("podman").arg("--version").output(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    )
}

#[test]
fn podman_logs_in_pushes_and_pulls_through_a_private_project_over_tls() {
    if !podman_installed() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: podman is not installed (./scripts/test installs it): \
             podman login/push/pull against berth NOT tested !!!!!!!!\n"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = PrivateRegistry::start(dir.path());
    let addr = registry.server.addr.as_str();
    let tools = Containers::new(&dir.path().join("containers"), &registry.pki.cert_dir);
    let cert_dir = tools.cert_dir.as_str();
    let policy = tools.policy.as_str();

    // podman unpacks layers into its storage, so this image's layer is a real tar.
    let src = dir.path().join("src");
    let mut layout = Layout::new(&src);
    let image = layout.image_of(
        41,
        &[tar_layer(&[
            ("etc/motd", b"hello from berth\n"),
            ("data.bin", &noise(41, 100_000)),
        ])],
    );
    layout.tag(&image, "v1");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            src.join("blobs/sha256").join(
                image["digest"]
                    .as_str()
                    .and_then(|d| d.strip_prefix("sha256:"))
                    .expect("digest"),
            ),
        )
        .expect("manifest"),
    )
    .expect("manifest json");
    // podman's image id is the config's digest, whatever it does to the manifest.
    let image_id = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("config digest")
        .to_string();
    // podman names what it pulls from a layout after the layout's path, which must therefore be
    // lowercase: relative to the (mixed-case) temporary directory.
    let out = succeeded(
        "podman pull from the OCI layout",
        &tools
            .podman_command()
            .current_dir(dir.path())
            .args(["pull", "--signature-policy", policy, "oci:src:v1"])
            .output()
            .expect("run podman"),
    );
    assert_eq!(out.lines().last(), Some(image_id.as_str()), "{out}");
    let name = format!("{addr}/team/hello:v1");
    succeeded("podman tag", &tools.podman(&["tag", &image_id, &name]));

    let digest_file = dir.path().join("pushed-digest");
    let push = [
        "push",
        "--signature-policy",
        policy,
        "--tls-verify=true",
        "--cert-dir",
        cert_dir,
        "--digestfile",
        digest_file.to_str().expect("utf-8"),
        &name,
    ];
    let login = [
        "login",
        "--tls-verify=true",
        "--cert-dir",
        cert_dir,
        "-u",
        DEV,
        "--password-stdin",
        addr,
    ];
    let out = failed("anonymous podman push", &tools.podman(&push));
    assert!(out.contains(DENIED), "{out}");
    let out = failed(
        "podman login with a wrong password",
        &tools.podman_with_stdin(&login, "not-the-password\n"),
    );
    assert!(out.contains("invalid username/password"), "{out}");
    let out = succeeded(
        "podman login",
        &tools.podman_with_stdin(&login, DEV_PASSWORD),
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    succeeded("podman push", &tools.podman(&push));
    let pushed = std::fs::read_to_string(&digest_file).expect("digest file");
    assert!(pushed.starts_with("sha256:"), "{pushed:?}");

    // podman's login is in the shared auth file: skopeo sees the same manifest.
    let info: Value = serde_json::from_str(&succeeded(
        "skopeo inspect",
        &tools.skopeo(&[
            "inspect",
            "--tls-verify=true",
            "--cert-dir",
            cert_dir,
            &format!("docker://{name}"),
        ]),
    ))
    .expect("inspect json");
    assert_eq!(info["Digest"], pushed.as_str(), "{info}");

    // Into empty storage, from berth.
    succeeded("podman rmi", &tools.podman(&["rmi", "--all", "--force"]));
    let out = succeeded("podman images", &tools.podman(&["images", "--quiet"]));
    assert!(out.trim().is_empty(), "{out}");
    let pull = [
        "pull",
        "--signature-policy",
        policy,
        "--tls-verify=true",
        "--cert-dir",
        cert_dir,
        &name,
    ];
    let out = succeeded("podman pull", &tools.podman(&pull));
    assert_eq!(out.lines().last(), Some(image_id.as_str()), "{out}");
    let out = succeeded(
        "podman image inspect",
        &tools.podman(&["image", "inspect", "--format", "{{.Digest}}", &name]),
    );
    assert_eq!(out.trim(), pushed);

    // The CA is what podman trusts berth by.
    let out = failed(
        "podman pull without the CA",
        &tools.podman(&[
            "pull",
            "--signature-policy",
            policy,
            "--tls-verify=true",
            &name,
        ]),
    );
    assert!(
        out.contains("certificate signed by unknown authority"),
        "{out}"
    );
}

/// The layout in `dir` as an OCI archive (`skopeo copy ... oci-archive:FILE` makes the same).
fn oci_archive(dir: &Path, file: &Path) {
    let mut tar = tar::Builder::new(std::fs::File::create(file).expect("create archive"));
    for name in ["oci-layout", "index.json"] {
        tar.append_path_with_name(dir.join(name), name)
            .expect("append");
    }
    for blob in std::fs::read_dir(dir.join("blobs/sha256")).expect("blobs") {
        let path = blob.expect("entry").path();
        let name = format!(
            "blobs/sha256/{}",
            path.file_name().expect("name").to_string_lossy()
        );
        tar.append_path_with_name(&path, name).expect("append");
    }
    tar.finish().expect("finish archive");
}

#[test]
fn berth_logs_in_pushes_and_pulls_trusting_the_ca_through_client_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = PrivateRegistry::start(dir.path());
    // Like docker, the berth client takes any certificate from a loopback registry (localhost,
    // 127.0.0.0/8). `127.1` is 127.0.0.1 to the URL parser but not a name the client knows
    // as loopback, so the certificate is checked as any other registry's would be.
    let port = registry.server.addr.rsplit(':').next().expect("port");
    let host = format!("127.1:{port}");
    let login = ["login", "-u", DEV, "--password-stdin", host.as_str()];

    let untrusting = ClientHome::new(&dir.path().join("no-ca"));
    let out = untrusting.run_with_stdin(&login, DEV_PASSWORD);
    assert!(!out.status.success(), "trusted without the CA?");
    assert!(
        text(&out).contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        text(&out)
    );
    assert!(!untrusting.docker_config().exists());

    let home = ClientHome::new(&dir.path().join("home"));
    home.trust_ca(&registry.pki.ca);
    let name = format!("{host}/team/app:v1");
    let src = dir.path().join("src");
    let mut layout = Layout::new(&src);
    let image = layout.image(51, 2, 80_000);
    layout.tag(&image, &name);
    let digest = image["digest"].as_str().expect("digest");
    let archive = dir.path().join("app.tar");
    oci_archive(&src, &archive);
    let out = home.ok(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");

    let out = home.fails(&["push", &name]);
    assert!(out.contains("unauthorized"), "{out}");
    let out = home.run_with_stdin(&login, DEV_PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Login Succeeded"), "{}", text(&out));
    let out = home.ok(&["push", &name]);
    assert!(out.contains(&format!("v1: digest: {digest}")), "{out}");

    home.ok(&["rmi", &name]);
    let out = home.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
}
