//! Published ports without a bridge: berth listens on the host address, and connects to the
//! container's port on the container's own loopback, from a thread that has entered the
//! container's network namespace (`setns`). A socket belongs to the namespace it was created
//! in, so the connection is made there and then used from anywhere.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::error::{Result, RuntimeError};

/// `-p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp]`: host port 0 means any free port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
}

impl FromStr for PortMap {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<PortMap> {
        let invalid = |why: &str| RuntimeError::InvalidPort(s.to_string(), why.to_string());
        let spec = match s.rsplit_once('/') {
            Some((spec, "tcp")) => spec,
            Some((_, proto)) => {
                return Err(invalid(&format!(
                    "only tcp ports can be published, not {proto}"
                )));
            }
            None => s,
        };
        // An IPv6 host address is written in brackets: [::1]:8080:80.
        let (host_ip, rest) = match spec.strip_prefix('[') {
            Some(v6) => {
                let (ip, rest) = v6
                    .split_once("]:")
                    .ok_or_else(|| invalid("an IPv6 address is written [ADDRESS]:PORT:PORT"))?;
                let ip: Ipv6Addr = ip.parse().map_err(|_| invalid("bad IPv6 address"))?;
                (Some(IpAddr::V6(ip)), rest)
            }
            None => (None, spec),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let port = |p: &str, what: &str| -> Result<u16> {
            p.parse::<u16>()
                .map_err(|_| invalid(&format!("{what} {p:?} is not a port number")))
        };
        let (ip, host_port, container_port) = match (host_ip, parts.as_slice()) {
            (None, [c]) => (None, 0, port(c, "container port")?),
            (None, [h, c]) => (None, port(h, "host port")?, port(c, "container port")?),
            (None, [ip, h, c]) => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| invalid("bad host address"))?;
                let h = if h.is_empty() {
                    0
                } else {
                    port(h, "host port")?
                };
                (Some(IpAddr::V4(ip)), h, port(c, "container port")?)
            }
            (Some(ip), [h, c]) => {
                let h = if h.is_empty() {
                    0
                } else {
                    port(h, "host port")?
                };
                (Some(ip), h, port(c, "container port")?)
            }
            _ => return Err(invalid("use [HOST_IP:][HOST_PORT:]CONTAINER_PORT")),
        };
        if container_port == 0 {
            return Err(invalid("the container port cannot be 0"));
        }
        Ok(PortMap {
            host_ip: ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host_port,
            container_port,
        })
    }
}

impl fmt::Display for PortMap {
    /// As `docker ps` shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = SocketAddr::new(self.host_ip, self.host_port);
        write!(f, "{host}->{}/tcp", self.container_port)
    }
}

/// Binds the host side of each port; a port in use is reported here, before the container
/// starts. Host port 0 is replaced by the port the system chose.
pub fn bind(ports: &mut [PortMap]) -> Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    for p in ports.iter_mut() {
        let address = SocketAddr::new(p.host_ip, p.host_port);
        let listener =
            std::net::TcpListener::bind(address).map_err(|source| RuntimeError::PortTaken {
                address: address.to_string(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(RuntimeError::io("configure", address.to_string()))?;
        if p.host_port == 0 {
            p.host_port = listener
                .local_addr()
                .map_err(RuntimeError::io("read", address.to_string()))?
                .port();
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

type DialRequest = (u16, oneshot::Sender<io::Result<std::net::TcpStream>>);

/// Opens connections inside one network namespace, from a thread that lives there.
#[derive(Clone)]
pub struct NetnsDialer {
    requests: mpsc::Sender<DialRequest>,
}

impl NetnsDialer {
    /// A dialer for the network namespace of process `pid`.
    pub fn new(pid: u32) -> Result<NetnsDialer> {
        let path = format!("/proc/{pid}/ns/net");
        let ns = File::open(&path).map_err(RuntimeError::io("open", &path))?;
        let (requests, incoming) = mpsc::channel::<DialRequest>();
        let (entered_tx, entered) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || {
                let joined = move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(LinkNameSpaceType::Network),
                );
                let ok = joined.is_ok();
                let _ = entered_tx.send(joined);
                if !ok {
                    return;
                }
                // Ends when every sender is gone.
                for (port, reply) in incoming {
                    let _ = reply.send(connect_loopback(port));
                }
            })
            .map_err(|e| RuntimeError::Other(format!("cannot start a thread: {e}")))?;
        match entered.recv() {
            Ok(Ok(())) => Ok(NetnsDialer { requests }),
            Ok(Err(e)) => Err(RuntimeError::io("enter the network namespace", &path)(
                e.into(),
            )),
            Err(_) => Err(RuntimeError::Other(
                "the network namespace thread ended".into(),
            )),
        }
    }

    /// A connection to `port` on the namespace's loopback (IPv4, then IPv6).
    pub async fn dial(&self, port: u16) -> io::Result<TcpStream> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((port, reply))
            .map_err(|_| io::Error::other("the network namespace is gone"))?;
        let stream = answer
            .await
            .map_err(|_| io::Error::other("the network namespace is gone"))??;
        stream.set_nonblocking(true)?;
        TcpStream::from_std(stream)
    }
}

fn connect_loopback(port: u16) -> io::Result<std::net::TcpStream> {
    let timeout = Duration::from_secs(5);
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    std::net::TcpStream::connect_timeout(&v4, timeout).or_else(|e| {
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e)
    })
}

/// Forwards every connection to the listeners into the container until the future is dropped
/// (the connections in flight are closed with it).
pub async fn forward(listeners: Vec<(std::net::TcpListener, PortMap)>, dialer: NetnsDialer) {
    let mut tasks = JoinSet::new();
    for (listener, map) in listeners {
        let dialer = dialer.clone();
        tasks.spawn(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%map, error = %e, "cannot listen");
                    return;
                }
            };
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (mut client, peer) = match accepted {
                            Ok(pair) => pair,
                            Err(e) => {
                                // Out of descriptors, say: accepting again at once would spin.
                                tracing::warn!(%map, error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                        let dialer = dialer.clone();
                        connections.spawn(async move {
                            match dialer.dial(map.container_port).await {
                                Ok(mut inside) => {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut inside).await;
                                }
                                Err(e) => {
                                    tracing::info!(%map, %peer, error = %e, "container port not reachable");
                                }
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortMap {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn publications_parse_like_dockers() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            p("8080:80"),
            PortMap {
                host_ip: any,
                host_port: 8080,
                container_port: 80
            }
        );
        assert_eq!(
            p("127.0.0.1:8080:80/tcp"),
            PortMap {
                host_ip: lo,
                host_port: 8080,
                container_port: 80
            }
        );
        assert_eq!(p("127.0.0.1::80").host_port, 0);
        assert_eq!(p("80").host_port, 0);
        assert_eq!(p("[::1]:9000:90").host_ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(p("127.0.0.1:8080:80").to_string(), "127.0.0.1:8080->80/tcp");
        for bad in [
            "",
            "80/udp",
            "x:80",
            "8080:x",
            "1.2.3:80:80",
            "70000:80",
            "8080:0",
            "a:b:c:d",
        ] {
            assert!(bad.parse::<PortMap>().is_err(), "{bad}");
        }
    }
}
