//! `berth serve` starts, prints where it listens, and stops cleanly on SIGTERM and SIGINT.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn signal_and_wait(server: &mut Server, signal: &str) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args([signal, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "berth serve did not stop on {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_then_exits_zero_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fresh/data");
    for signal in ["-TERM", "-INT"] {
        let mut server = Server::start(&data);
        assert!(data.join("meta.db").exists(), "data dir created");
        let r = client()
            .get(format!("{}/v2/", server.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let r = client()
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
        let ready: serde_json::Value = r.json().await.expect("JSON");
        assert_eq!(ready["status"], "ready", "{ready}");
        let status = signal_and_wait(&mut server, signal);
        assert_eq!(status.code(), Some(0), "{signal}");
        // The database was closed: its log checkpointed into meta.db, which alone is whole.
        let wal = data.join("meta.db-wal");
        assert!(
            std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
            "{} left behind after {signal}",
            wal.display()
        );
    }
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "listen = \"nowhere\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
}
