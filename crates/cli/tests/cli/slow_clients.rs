//! Slow clients against the real binary: many connections trickling their headers or bodies
//! are cut off on time and hold neither memory nor file descriptors afterwards.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// `VmRSS` of `pid`, in KiB, and its open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count();
    (rss, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_time_out_without_holding_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_LIMITS_HEADER_TIMEOUT_SECS", "2"),
            ("BERTH_LIMITS_BODY_IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    let pid = server.child.id();
    let mut sessions = Vec::new();
    for _ in 0..60 {
        let r = client()
            .post(format!("{}/v2/slow/app/blobs/uploads/", server.base))
            .send()
            .await
            .expect("POST");
        assert_eq!(r.status(), 202);
        sessions.push(
            r.headers()["location"]
                .to_str()
                .expect("location")
                .to_string(),
        );
    }
    let before = footprint(pid);

    // 400 clients trickling a request head, 60 trickling an upload body (within the
    // per-client cap of 64), one byte every 200 ms each.
    let mut slow = Vec::new();
    for i in 0..460 {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        let head = if i < 400 {
            "GET /v2/ HTTP/1.1\r\nHost: registry\r\n".to_string()
        } else {
            format!(
                "PATCH {} HTTP/1.1\r\nHost: registry\r\nContent-Length: 1000000\r\n\r\n",
                sessions[i - 400]
            )
        };
        s.write_all(head.as_bytes()).await.expect("write");
        slow.push(s);
    }
    let started = Instant::now();
    let mut during = before;
    while started.elapsed() < Duration::from_secs(4) {
        for s in &mut slow {
            let _ = s.write_all(b"x").await;
        }
        let now = footprint(pid);
        during = (during.0.max(now.0), during.1.max(now.1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // All of them cut off by now.
    for mut s in slow {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => panic!("a slow client was still connected after its time limit"),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = footprint(pid);
    eprintln!(
        "slow clients: RSS {} KiB before, {} KiB at most during, {} KiB after; fds {} / {} / {}",
        before.0, during.0, after.0, before.1, during.1, after.1
    );
    // 460 connections cost their socket buffers and a task each while open: a few MiB, not
    // the megabyte each of them promised to send.
    assert!(
        during.0 < before.0 + 32 * 1024,
        "RSS grew by {} KiB",
        during.0 - before.0
    );
    assert!(
        after.1 <= before.1 + 2,
        "fds: {} before, {} after",
        before.1,
        after.1
    );
    for session in &sessions {
        let r = client()
            .get(format!("{}{session}", server.base))
            .send()
            .await
            .expect("GET session");
        assert_eq!(r.status(), 204, "a session survives its stalled PATCH");
    }
}
