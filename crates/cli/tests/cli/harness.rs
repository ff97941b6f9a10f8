//! What the client tests run against and with: the `berth` client in a temporary HOME, CNCF
//! distribution (`docker-registry`) with htpasswd auth, and a throttling TCP proxy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The berth client with its own HOME, docker config, store and client config.
pub struct ClientHome {
    pub home: PathBuf,
}

impl ClientHome {
    pub fn new(dir: &Path) -> ClientHome {
        std::fs::create_dir_all(dir).expect("mkdir home");
        ClientHome {
            home: dir.to_path_buf(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.home.join("store")
    }

    pub fn docker_config(&self) -> PathBuf {
        self.home.join(".docker/config.json")
    }

    /// Trusts the CA certificates in `ca` (PEM) through `client.toml`'s `ca_file`.
    pub fn trust_ca(&self, ca: &Path) {
        std::fs::write(
            self.home.join("client.toml"),
            format!("ca_file = {:?}\n", ca.display().to_string()),
        )
        .expect("write client.toml");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args)
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", self.home.join(".docker"))
            .env("BERTH_STORE", self.store())
            .env("BERTH_CLIENT_CONFIG", self.home.join("client.toml"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run berth")
    }

    /// Runs with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        output_with_stdin(&mut self.command(args), input)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text(&out)
    }
}

/// Runs `cmd` with `input` on stdin (`--password-stdin`).
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A free port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CNCF distribution (Debian's `docker-registry`), on 127.0.0.1, with htpasswd Basic auth when
/// `user` is given. Killed when dropped.
pub struct Distribution {
    child: Child,
    pub addr: String,
}

impl Distribution {
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> Distribution {
        std::fs::create_dir_all(dir).expect("mkdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .unwrap_or_else(|e| {
                    panic!("htpasswd not runnable ({e}); ./scripts/test installs apache2-utils")
                });
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.join("htpasswd"), &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).expect("write config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry not runnable ({e}); ./scripts/test installs it")
            });
        wait_for_port(&addr);
        Distribution { child, addr }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 that can slow the server-to-client direction down and counts the
/// bytes it forwards that way. It runs on its own runtime thread and stops when dropped.
pub struct SlowProxy {
    pub addr: String,
    pub throttled: Arc<AtomicBool>,
    pub downstream_bytes: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowProxy {
    /// `bytes_per_sec` applies while `throttled` is set.
    pub fn start(upstream: &str, bytes_per_sec: u64) -> SlowProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let throttled = Arc::new(AtomicBool::new(true));
        let downstream_bytes = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let upstream = upstream.to_string();
        let (t, n) = (throttled.clone(), downstream_bytes.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let upstream = upstream.clone();
                            let (t, n) = (t.clone(), n.clone());
                            tokio::spawn(async move {
                                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                                    return;
                                };
                                let (mut cr, mut cw) = client.into_split();
                                let (mut sr, mut sw) = server.into_split();
                                let up = tokio::spawn(async move {
                                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                                    let _ = sw.shutdown().await;
                                });
                                let mut buf = vec![0u8; 16 << 10];
                                while let Ok(k) = sr.read(&mut buf).await {
                                    if k == 0 {
                                        break;
                                    }
                                    if cw.write_all(&buf[..k]).await.is_err() {
                                        break;
                                    }
                                    n.fetch_add(k as u64, Ordering::Relaxed);
                                    if t.load(Ordering::Relaxed) {
                                        let wait = k as f64 / bytes_per_sec as f64;
                                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                                    }
                                }
                                let _ = cw.shutdown().await;
                                up.abort();
                            });
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        SlowProxy {
            addr,
            throttled,
            downstream_bytes,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
