use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sha2::{Digest as _, Sha256};

/// `berth serve` running as a child process on 127.0.0.1, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
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
        // "berth registry listening on http://127.0.0.1:PORT, data in DIR"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"))
            .to_string();
        assert!(line.contains(&data_dir.display().to_string()), "{line}");
        Server {
            child,
            base: format!("http://{addr}"),
            addr,
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

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
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
