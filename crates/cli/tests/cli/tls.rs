//! `berth serve --tls-cert --tls-key`: real clients trust berth through a throw-away CA and
//! verify its certificate (skopeo with certificate checks on, the berth client with `ca_file`),
//! token auth sends them to an `https://` realm, and bad certificate or key files stop the
//! server at startup with the file named.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::KeyPair;
use serde_json::Value;

use crate::common::*;
use crate::harness::*;

/// skopeo with certificate checks explicitly on, whatever registries.conf says.
fn skopeo_run(policy: &Path, args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("skopeo not runnable ({e}); ./scripts/test installs it"))
}

/// An OCI layout holding one image tagged `v1`; returns (layout dir, manifest digest).
fn layout_image(dir: &Path, seed: u64) -> (PathBuf, String) {
    let src = dir.join(format!("layout-{seed}"));
    let mut layout = Layout::new(&src);
    let image = layout.image(seed, 2, 50_000);
    layout.tag(&image, "v1");
    let digest = image["digest"].as_str().expect("digest").to_string();
    (src, digest)
}

#[test]
fn skopeo_verifies_berth_with_the_ca_and_refuses_it_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    let server = start_tls(dir.path(), &pki, &[]);
    let policy = policy(dir.path());
    let cert_dir = pki.cert_dir.display().to_string();
    let (src, digest) = layout_image(dir.path(), 91);
    let dest = format!("docker://{}/tls/image:v1", server.addr);

    let out = skopeo_run(
        &policy,
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            &cert_dir,
            &format!("oci:{}:v1", src.display()),
            &dest,
        ],
    );
    assert!(out.status.success(), "skopeo copy: {}", text(&out));

    // Both names of the certificate: the IP SAN and the DNS SAN.
    let port = server.addr.rsplit(':').next().expect("port");
    for host in [server.addr.clone(), format!("localhost:{port}")] {
        let out = skopeo_run(
            &policy,
            &[
                "inspect",
                "--tls-verify=true",
                "--cert-dir",
                &cert_dir,
                &format!("docker://{host}/tls/image:v1"),
            ],
        );
        assert!(
            out.status.success(),
            "skopeo inspect {host}: {}",
            text(&out)
        );
        let info: Value = serde_json::from_slice(&out.stdout).expect("inspect json");
        assert_eq!(info["Digest"], digest.as_str(), "{info}");
    }

    // Without the CA, the same certificate is not trusted.
    let out = skopeo_run(&policy, &["inspect", "--tls-verify=true", &dest]);
    assert!(!out.status.success(), "trusted without the CA?");
    let msg = text(&out);
    assert!(
        msg.contains("certificate") && msg.contains("unknown authority"),
        "{msg}"
    );
}

#[test]
fn berth_pulls_and_pushes_over_https_with_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    let server = start_tls(dir.path(), &pki, &[]);
    let (src, digest) = layout_image(dir.path(), 92);
    let out = skopeo_run(
        &policy(dir.path()),
        &[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            &pki.cert_dir.display().to_string(),
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{}/https-registry:v1", server.addr),
        ],
    );
    assert!(out.status.success(), "skopeo copy: {}", text(&out));

    let home = ClientHome::new(&dir.path().join("home"));
    home.trust_ca(&pki.ca);
    // The server speaks only TLS, so a pull that works went over https.
    let image = format!("{}/https-registry:v1", server.addr);
    let out = home.ok(&["pull", &image]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let copy = format!("{}/team/copy:v2", server.addr);
    home.ok(&["tag", &image, &copy]);
    let out = home.ok(&["push", &copy]);
    assert!(out.contains(&format!("v2: digest: {digest}")), "{out}");
}

#[test]
fn token_auth_over_tls_names_an_https_realm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    let server = start_tls(
        dir.path(),
        &pki,
        &[
            ("BERTH_AUTH_ENABLED", "true"),
            ("BERTH_AUTH_AUTO_CREATE_PROJECTS", "true"),
            ("BERTH_ADMIN_PASSWORD", "admin-pw-tls"),
        ],
    );
    let addr = &server.addr;

    let challenge = v2_challenge(addr, &pki.ca);
    assert!(
        challenge.contains(&format!("realm=\"https://{addr}/auth/token\"")),
        "{challenge}"
    );

    // skopeo login + copy, following the realm with the CA trusted.
    let policy = policy(dir.path());
    let cert_dir = pki.cert_dir.display().to_string();
    let authfile = dir.path().join("auth.json").display().to_string();
    let out = skopeo_run(
        &policy,
        &[
            "login",
            "--authfile",
            &authfile,
            "--tls-verify=true",
            "--cert-dir",
            &cert_dir,
            "-u",
            "admin",
            "-p",
            "admin-pw-tls",
            addr,
        ],
    );
    assert!(out.status.success(), "skopeo login: {}", text(&out));
    let (src, digest) = layout_image(dir.path(), 93);
    let dest = format!("docker://{addr}/secure/image:v1");
    let out = skopeo_run(
        &policy,
        &[
            "copy",
            "--preserve-digests",
            "--authfile",
            &authfile,
            "--dest-tls-verify=true",
            "--dest-cert-dir",
            &cert_dir,
            &format!("oci:{}:v1", src.display()),
            &dest,
        ],
    );
    assert!(out.status.success(), "skopeo copy: {}", text(&out));

    // The berth client: login, then pull from the private project.
    let home = ClientHome::new(&dir.path().join("home"));
    home.trust_ca(&pki.ca);
    let image = format!("{addr}/secure/image:v1");
    let out = home.fails(&["pull", &image]);
    assert!(out.contains("unauthorized"), "{out}");
    let out = home.run_with_stdin(
        &["login", "-u", "admin", "--password-stdin", addr],
        "admin-pw-tls\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = home.ok(&["pull", &image]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
}

#[test]
fn alpn_offers_http2_and_http11() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    let server = start_tls(dir.path(), &pki, &[]);
    for (offered, chosen) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], b"h2".as_slice()),
        (vec![b"http/1.1".to_vec()], b"http/1.1".as_slice()),
    ] {
        let mut tls = connect(&server.addr, &pki.ca, offered);
        tls.flush().expect("handshake");
        assert_eq!(tls.conn.alpn_protocol(), Some(chosen));
    }
    // HTTP/1.1 over TLS answers as over plain HTTP.
    let mut tls = connect(&server.addr, &pki.ca, vec![b"http/1.1".to_vec()]);
    let response = http11_get(&mut tls, &server.addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\r\n\r\n3\r\nok\n"), "{response}");
}

#[test]
fn slow_handshakes_block_nobody_and_shutdown_closes_idle_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    // A grace period far longer than the wait below: the server must not need it.
    let mut server = start_tls(dir.path(), &pki, &[("BERTH_SHUTDOWN_GRACE_SECS", "60")]);
    // Connected, never says hello.
    let _silent = std::net::TcpStream::connect(&server.addr).expect("connect");
    // Handshake done, no request yet.
    let mut idle = connect(&server.addr, &pki.ca, vec![b"h2".to_vec()]);
    idle.flush().expect("handshake");
    let mut tls = connect(&server.addr, &pki.ca, vec![b"http/1.1".to_vec()]);
    let response = http11_get(&mut tls, &server.addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "berth serve kept waiting for idle connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// The `WWW-Authenticate` header of an anonymous `GET /v2/`.
fn v2_challenge(addr: &str, ca: &Path) -> String {
    let mut tls = connect(addr, ca, vec![b"http/1.1".to_vec()]);
    let response = http11_get(&mut tls, addr, "/v2/");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    response
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no challenge in {response}"))
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS connection to `addr` (as `127.0.0.1`) that trusts only `ca`.
fn connect(addr: &str, ca: &Path, alpn: Vec<Vec<u8>>) -> TlsStream {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_file(ca).expect("CA pem");
    roots.add(ca).expect("add CA");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

fn http11_get(tls: &mut TlsStream, host: &str, path: &str) -> String {
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = Vec::new();
    // The server closes without close_notify on some paths; what was read is what counts.
    let _ = tls.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Runs `berth serve` expecting it to exit with an error at startup; returns its stderr.
fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("berth serve {args:?} kept running: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !out.status.success(),
        "berth serve {args:?} should fail: {}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificate_or_key_files_stop_serve_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&dir.path().join("pki"));
    let cert = pki.cert.display().to_string();
    let key = pki.key.display().to_string();

    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "this is not a key\n").expect("write");
    let garbage = garbage.display().to_string();
    let err = serve_fails(dir.path(), &["--tls-cert", &cert, "--tls-key", &garbage]);
    assert!(
        err.contains(&garbage) && err.contains("no PEM private key"),
        "{err}"
    );

    let missing = dir.path().join("missing.key").display().to_string();
    let err = serve_fails(dir.path(), &["--tls-cert", &cert, "--tls-key", &missing]);
    assert!(
        err.contains(&format!("cannot read TLS key file {missing}")),
        "{err}"
    );

    // A PEM key section whose contents are no key.
    let broken = dir.path().join("broken.key");
    std::fs::write(
        &broken,
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let broken = broken.display().to_string();
    let err = serve_fails(dir.path(), &["--tls-cert", &cert, "--tls-key", &broken]);
    assert!(err.contains(&broken), "{err}");

    // A valid key of another certificate.
    let other = dir.path().join("other.key");
    std::fs::write(&other, KeyPair::generate().expect("key").serialize_pem()).expect("write");
    let other = other.display().to_string();
    let err = serve_fails(dir.path(), &["--tls-cert", &cert, "--tls-key", &other]);
    assert!(err.contains(&other) && err.contains(&cert), "{err}");

    // The certificate file holding a key, not a certificate.
    let err = serve_fails(dir.path(), &["--tls-cert", &key, "--tls-key", &key]);
    assert!(
        err.contains(&format!("TLS certificate file {key}")),
        "{err}"
    );

    let err = serve_fails(dir.path(), &["--tls-cert", &cert]);
    assert!(err.contains("--tls-key"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before TLS is set up"
    );
}
