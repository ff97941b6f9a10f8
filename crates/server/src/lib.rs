//! The HTTP front of berth: the `/v2` API parsed into an [`endpoint::Endpoint`], the single
//! access check, the OCI error table, health and metrics endpoints, and [`serve`].

mod admin;
mod auth;
mod backends;
mod check;
mod client_addr;
mod config;
mod connections;
mod endpoint;
mod error;
pub mod fsck;
pub mod gc;
mod jobs;
mod limits;
mod metrics;
pub mod migrate;
mod observe;
mod tls;
mod v2;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_meta::MetaStore;
use berth_registry::access::Tokens;
use berth_registry::audit::{AuditBatcher, BatchOptions};
use berth_registry::{Access, AccessOptions, Limits, Registry};
use berth_storage::BlobStore;
use tokio::net::TcpListener;

pub use backends::{Backends, MetaBackend, Opened, StorageBackend};
pub use check::{ConfigCheck, check_config};
pub use config::{
    AuditConfig, AuthConfig, Config, ConfigError, DatabaseConfig, GcConfig, LimitsConfig,
    RetentionConfig, StorageConfig, UploadsConfig,
};
pub use endpoint::Endpoint;
pub use error::ApiError;
pub use tls::{ServerTls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open blob storage: {0}")]
    Storage(#[from] berth_storage::StorageError),
    #[error("cannot open the metadata database: {0}")]
    Meta(#[from] berth_meta::MetaError),
    #[error("cannot set up accounts and tokens: {0}")]
    Auth(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Everything a request handler needs, shared by all requests.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    registry: Registry,
    /// Who may do what: every `/v2`, token and management request asks it.
    access: Access,
    /// The registry's backends, also here so that `/readyz` can report on each.
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    /// What the configuration named, resolved.
    backends: Backends,
    /// `trusted_proxies`, parsed.
    trusted_proxies: client_addr::TrustedProxies,
    /// Upload requests running, against `[limits]`.
    upload_slots: Arc<limits::UploadSlots>,
    /// Pull events on their way to the audit log, when `[audit] pulls`.
    pull_audit: Option<AuditBatcher>,
    metrics: metrics::Metrics,
    config: Config,
}

impl App {
    /// Opens the backends `config` names ([`Backends::open`]): by default the embedded ones in
    /// `config.data_dir`, blobs on the filesystem and metadata in SQLite (`meta.db`).
    pub async fn open(config: Config) -> Result<App, StartError> {
        Self::open_with_clock(config, berth_meta::system_clock()).await
    }

    /// [`App::open`], going by `clock` instead of the system's (tests set time forward).
    pub async fn open_with_clock(
        config: Config,
        clock: berth_meta::SharedClock,
    ) -> Result<App, StartError> {
        let backends = Backends::resolve(&config)?;
        let Opened { blobs, meta } = backends.open(clock).await?;
        let registry = Registry::new(
            meta.clone(),
            blobs.clone(),
            Limits {
                max_manifest_bytes: config.max_manifest_bytes,
                max_open_uploads_per_account: config.limits.max_open_uploads_per_account,
            },
        );
        let tokens = if config.auth.enabled {
            Some(setup_auth(&registry, meta.as_ref(), &config).await?)
        } else {
            None
        };
        let trusted_proxies = client_addr::TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| StartError::Config(ConfigError::Invalid(e)))?;
        let access = Access::new(
            meta.clone(),
            tokens,
            AccessOptions {
                auto_create_projects: config.auth.auto_create_projects,
                allow_signup: config.auth.allow_signup,
            },
        );
        let pull_audit = config
            .audit
            .pulls
            .then(|| AuditBatcher::start(meta.clone(), BatchOptions::default()));
        Ok(App {
            inner: Arc::new(AppInner {
                registry,
                access,
                meta,
                blobs,
                backends,
                trusted_proxies,
                upload_slots: limits::UploadSlots::new(
                    config.limits.max_uploads,
                    config.limits.max_uploads_per_client,
                ),
                pull_audit,
                metrics: metrics::Metrics::default(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backends the configuration named, as [`Backends::resolve`] made them.
    pub fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// Writes the pull events still queued for the audit log, then closes the database
    /// connections (SQLite: checkpoints its log into `meta.db`). Call once the server has
    /// stopped.
    pub async fn close(&self) {
        if let Some(pulls) = &self.inner.pull_audit {
            pulls.close().await;
        }
        self.inner.meta.close().await;
    }

    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn trusted_proxies(&self) -> &client_addr::TrustedProxies {
        &self.inner.trusted_proxies
    }

    fn upload_slots(&self) -> &Arc<limits::UploadSlots> {
        &self.inner.upload_slots
    }

    fn pull_audit(&self) -> Option<&AuditBatcher> {
        self.inner.pull_audit.as_ref()
    }

    /// The registry services, for tools and tests that manage accounts in-process.
    pub fn services(&self) -> &Registry {
        &self.inner.registry
    }

    /// The access policy: who is calling, and what they may do.
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The HTTP application: `/v2/...`, `/healthz`, `/readyz`, `/metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .route("/auth/token", get(auth::token_get).post(auth::token_post))
            .merge(admin::routes())
            .fallback(v2::dispatch)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                observe::observe,
            ))
            .with_state(self.clone())
    }
}

/// The first administrator (on an empty registry) and the shared token signing key.
async fn setup_auth(
    registry: &Registry,
    meta: &dyn berth_meta::Accounts,
    config: &Config,
) -> Result<Tokens, StartError> {
    let password = Some(config.auth.admin_password.as_str()).filter(|p| !p.is_empty());
    match registry
        .bootstrap_admin(password)
        .await
        .map_err(|e| StartError::Auth(e.to_string()))?
    {
        berth_registry::accounts::AdminBootstrap::Generated(p) => {
            tracing::warn!(
                "created the administrator account `admin` with the generated password {p} \
                 (shown once; set BERTH_ADMIN_PASSWORD to choose it)"
            );
        }
        berth_registry::accounts::AdminBootstrap::Created => {
            tracing::info!("created the administrator account `admin`");
        }
        berth_registry::accounts::AdminBootstrap::Existing => {}
    }
    let candidate = berth_registry::token::SigningKey::generate()
        .map_err(|e| StartError::Auth(e.to_string()))?;
    let pkcs8 = meta.signing_key(candidate.pkcs8()).await?;
    Tokens::new(
        &pkcs8,
        &config.auth.service,
        Duration::from_secs(config.auth.token_lifetime_secs),
    )
    .map_err(StartError::Auth)
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when the database and the blob storage both answer, else 503; the body says which
/// failed and why (`check::Readiness`).
async fn readyz(State(app): State<App>) -> Response {
    let readiness = check::readiness(app.inner.meta.as_ref(), app.inner.blobs.as_ref()).await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}

async fn metrics_text(State(app): State<App>) -> Response {
    app.metrics()
        .upload_requests_running
        .set(i64::try_from(app.upload_slots().running()).unwrap_or(i64::MAX));
    if let Ok(n) = app.registry().open_uploads().await {
        app.metrics()
            .uploads_in_progress
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    match app.metrics().encode() {
        Ok(text) => (
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` resolves, then stops accepting
/// and lets in-flight requests finish for at most the configured grace period.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, None, shutdown).await
}

/// [`serve`] over HTTPS: each connection is a TLS handshake (at most 10 s, off the accept
/// loop), then HTTP/1.1 or HTTP/2 as ALPN says. Shutdown works as for plain HTTP.
pub async fn serve_tls(
    listener: TcpListener,
    app: App,
    tls: ServerTls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, Some(tls.acceptor()), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    app: App,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app.router();
    let _jobs = jobs::start(app.clone());
    let limits = app.config().limits.clone();
    with_grace_period(app.config(), shutdown, move |signal| async move {
        connections::serve(listener, router, tls, &limits, signal).await
    })
    .await
}

/// Runs `server`, which stops accepting when the signal it is given resolves and returns when
/// its connections are done; gives up on those connections `shutdown_grace_secs` later.
async fn with_grace_period<S, F>(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    server: S,
) -> std::io::Result<()>
where
    S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    F: Future<Output = std::io::Result<()>>,
{
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = Box::pin(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let server = server(signal);
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; stopping anyway");
            Ok(())
        }
    }
}
