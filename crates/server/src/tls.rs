//! HTTPS for `berth serve`: the certificate chain and key from PEM files (`tls_cert`,
//! `tls_key`), and an accept loop that does the TLS handshake of each connection in its own
//! task before handing it to hyper (HTTP/1.1 or HTTP/2, as ALPN says).
//!
//! `axum::serve` only takes a plain `TcpListener`, so this loop does what it does for plain
//! HTTP: one task per connection, and on shutdown no new connections, a graceful close of the
//! open ones, and a wait until all are gone (the caller bounds that wait).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::Config;

/// A client that has connected but not finished its handshake by then is dropped, so a
/// half-open connection cannot hold a task (and a file descriptor) for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS: one certificate chain and its key, ALPN `h2` and `http/1.1`.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

/// Each names the file at fault; the cause is the `source` (shown by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS needs both a certificate and a key: {missing} is not set")]
    Incomplete { missing: &'static str },
    #[error("cannot read TLS certificate file {path}")]
    ReadCert { path: PathBuf, source: io::Error },
    #[error("TLS certificate file {path}: {message}")]
    BadCert { path: PathBuf, message: String },
    #[error("cannot read TLS key file {path}")]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("TLS key file {path}: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
    #[error("TLS certificate file {cert} and key file {key} do not go together")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl ServerTls {
    /// TLS as `tls_cert` and `tls_key` say: `None` when both are empty (plain HTTP), an error
    /// when only one is set.
    pub fn from_config(config: &Config) -> Result<Option<ServerTls>, TlsError> {
        match (config.tls_cert.is_empty(), config.tls_key.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => {
                Self::from_pem_files(Path::new(&config.tls_cert), Path::new(&config.tls_key))
                    .map(Some)
            }
            (false, true) => Err(TlsError::Incomplete {
                missing: "the key (tls_key, --tls-key)",
            }),
            (true, false) => Err(TlsError::Incomplete {
                missing: "the certificate (tls_cert, --tls-cert)",
            }),
        }
    }

    /// `cert`: the chain, leaf first, as PEM `CERTIFICATE` sections. `key`: its private key
    /// as PEM PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = read_chain(cert)?;
        let private_key = read_key(key)?;
        let provider = Arc::new(ring::default_provider());
        // Checked on its own first, so that an unusable key is blamed on the key file alone.
        provider
            .key_provider
            .load_private_key(private_key.clone_key())
            .map_err(|e| TlsError::BadKey {
                path: key.to_path_buf(),
                message: format!("unusable private key: {e}"),
            })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|source| TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::ReadCert {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: String| TlsError::BadCert {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("holds no PEM CERTIFICATE section".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey {
        path: path.to_path_buf(),
        message: match e {
            pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8, RSA or EC PRIVATE KEY section)".into()
            }
            e => format!("not valid PEM: {e}"),
        },
    })
}

/// Accepts TLS connections on `listener` and serves `router` on them until `signal`
/// resolves; then stops accepting, asks every connection to close after its current
/// request, and returns when all have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: ServerTls,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls.config);
    let (stop_tx, stop_rx) = watch::channel(());
    // Every connection task holds a receiver; `closed()` resolves when the last is dropped.
    let (open_tx, open_rx) = watch::channel(());
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
            acceptor: acceptor.clone(),
            router: router.clone(),
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
    acceptor: TlsAcceptor,
    router: Router,
    peer: SocketAddr,
    stop: watch::Receiver<()>,
    _open: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream) {
        let peer = self.peer;
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp));
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
        let service = self
            .router
            .map_request(move |mut request: http::Request<Incoming>| {
                // What `into_make_service_with_connect_info` gives handlers on plain HTTP.
                request.extensions_mut().insert(ConnectInfo(peer));
                // HTTP/2 clients name the host in `:authority`, not `Host`; copy it as an
                // HTTP/1.1 gateway must (RFC 9113, 8.3.1), so handlers that build URLs from
                // `Host` (the token realm) see it whatever the protocol.
                if !request.headers().contains_key(http::header::HOST)
                    && let Some(host) = request
                        .uri()
                        .authority()
                        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
                {
                    request.headers_mut().insert(http::header::HOST, host);
                }
                request
            });
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        );
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
