//! A round-robin TCP balancer on 127.0.0.1 in front of registry replicas: each accepted
//! connection is relayed to the next replica in turn, so a client that opens several
//! connections (parallel uploads, a token fetch, then the request) spreads over all of them.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The balancer's task on the current tokio runtime; it stops, and every connection it relays
/// is cut, when this value is dropped.
pub struct Balancer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on a new loopback port and relays to `replicas` in turn.
    pub async fn start(replicas: Vec<SocketAddr>) -> Balancer {
        assert!(!replicas.is_empty(), "a balancer needs a replica");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the balancer");
        let addr = listener.local_addr().expect("balancer address");
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts every relay.
            let mut relays = JoinSet::new();
            let mut targets = replicas.into_iter().cycle();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                while relays.try_join_next().is_some() {}
                let Some(target) = targets.next() else { break };
                relays.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer { addr, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
