//! HTTPS for `berth serve`: the certificate chain and key from PEM files (`tls_cert`,
//! `tls_key`), ALPN `h2` and `http/1.1`. The accept loop (`connections.rs`) does each
//! connection's handshake in its own task.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Config;

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

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
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
