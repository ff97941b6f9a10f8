//! The accept loop of `berth serve`, for plain HTTP and HTTPS alike: one task per connection
//! (HTTPS: the TLS handshake first, in that task), hyper's HTTP/1.1 or HTTP/2 on it with the
//! `[limits]` on headers and bodies, and on shutdown no new connections, a graceful close of
//! the open ones and a wait until all are gone (the caller bounds that wait).
//!
//! `axum::serve` would do the same for plain HTTP but offers no header limits or timeouts,
//! so both schemes go through here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::LimitsConfig;
use crate::limits::IdleTimeout;

/// A client that has connected but not finished its TLS handshake by then is dropped, so a
/// half-open connection cannot hold a task (and a file descriptor) for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` (TLS ones when `tls` is given) and serves `router` on
/// them until `signal` resolves; then stops accepting, asks every connection to close after
/// its current request, and returns when all have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: &LimitsConfig,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver; `closed()` resolves when the last is dropped.
    let (open_tx, open_rx) = watch::channel(());
    let http = builder(limits);
    let header_timeout = Duration::from_secs(limits.header_timeout_secs);
    let body_idle = Duration::from_secs(limits.body_idle_timeout_secs);
    tokio::pin!(signal);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            tls: tls.clone(),
            http: http.clone(),
            router: router.clone(),
            header_timeout,
            body_idle,
            peer,
            stop: stop_rx.clone(),
            _open: open_rx.clone(),
        };
        tokio::spawn(connection.run(tcp));
    }
    drop(listener);
    drop(open_rx);
    let _ = stop_tx.send(());
    open_tx.closed().await;
    Ok(())
}

/// hyper with the `[limits]`: the request head must arrive within `header_timeout_secs` and
/// fit in `max_header_bytes` (HTTP/1.1 answers `431` past it; HTTP/2 refuses the stream).
fn builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Errors of `accept` concern one connection, except running out of file descriptors or
/// memory, where accepting again at once would spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

struct Connection {
    tls: Option<TlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
    router: Router,
    header_timeout: Duration,
    body_idle: Duration,
    peer: SocketAddr,
    stop: watch::Receiver<()>,
    _open: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream) {
        let Some(acceptor) = self.tls.take() else {
            // hyper times a request head from its first byte: a client that connects and
            // sends nothing gets the same time to start (TLS: the handshake's).
            let mut first = [0u8; 1];
            let started = tokio::select! {
                peeked = tokio::time::timeout(self.header_timeout, tcp.peek(&mut first)) => {
                    matches!(peeked, Ok(Ok(n)) if n > 0)
                }
                _ = self.stop.changed() => false,
            };
            if started {
                self.serve(tcp).await;
            }
            return;
        };
        let peer = self.peer;
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.stop.changed() => return,
        };
        self.serve(stream).await;
    }

    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let body_idle = self.body_idle;
        let router = self.router.clone();
        let service = tower::service_fn(move |request: http::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            // What `into_make_service_with_connect_info` gives handlers.
            parts.extensions.insert(ConnectInfo(peer));
            // HTTP/2 clients name the host in `:authority`, not `Host`; copy it as an
            // HTTP/1.1 gateway must (RFC 9113, 8.3.1), so handlers that build URLs from
            // `Host` (the token realm) see it whatever the protocol.
            if !parts.headers.contains_key(http::header::HOST)
                && let Some(host) = parts
                    .uri
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, host);
            }
            let http1 = parts.version < http::Version::HTTP_2;
            let (body, read) = IdleTimeout::new(body, body_idle);
            let response = router
                .clone()
                .oneshot(http::Request::from_parts(parts, body));
            async move {
                let mut response = response.await?;
                // An answer given before the body was read (a bad name, a refused range):
                // hyper reads no further and closes once the answer is out, since the rest
                // of the body cannot be told from a next request. Saying so lets a client
                // that keeps connections alive know before it sends one (RFC 9112, 9.6).
                // HTTP/2 resets the stream instead and keeps the connection.
                if http1 && !read.to_the_end() {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = self.stop.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
