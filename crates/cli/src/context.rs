//! What every client command needs: the client settings, the local store, credentials, a
//! way to parse names, and a connected registry client.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use berth_client::credentials::{Credential, CredentialStore, registry_key};
use berth_client::progress::{Progress, Silent};
use berth_client::registry::{Login, RegistryClient};
use berth_client::settings::Settings;
use berth_oci::Reference;
use berth_store::Store;

use crate::progress_bars::LayerBars;

pub struct ClientContext {
    pub settings: Settings,
    store_root: Option<PathBuf>,
}

impl ClientContext {
    /// Loads `client.toml` (see `Settings::default_path`).
    pub fn load() -> anyhow::Result<Self> {
        let settings = match Settings::default_path() {
            Some(path) => Settings::load(&path)?,
            None => Settings::default(),
        };
        Ok(ClientContext {
            settings,
            store_root: None,
        })
    }

    /// The local image store, created on first use.
    pub fn store(&mut self) -> anyhow::Result<Store> {
        let root = match &self.store_root {
            Some(r) => r.clone(),
            None => {
                let r = Store::default_root()?;
                self.store_root = Some(r.clone());
                r
            }
        };
        Store::open(&root).with_context(|| format!("opening the image store {}", root.display()))
    }

    /// Parses a name the way docker does, with the configured default registry.
    pub fn reference(&self, name: &str) -> anyhow::Result<Reference> {
        Ok(Reference::parse_normalized_with_domain(
            name,
            &self.settings.default_registry,
        )?)
    }

    pub fn credentials(&self) -> anyhow::Result<CredentialStore> {
        Ok(CredentialStore::open_default()?)
    }

    /// Connects to `domain` with the login stored for it, if any. `insecure` allows plain
    /// HTTP to it for this command (`--insecure`).
    pub async fn connect(&self, domain: &str, insecure: bool) -> anyhow::Result<RegistryClient> {
        // A credential helper is a subprocess: keep it off the async workers.
        let key = registry_key(domain);
        let found = tokio::task::block_in_place(|| anyhow::Ok(self.credentials()?.get(&key)?))?;
        let login = found.map(login_of);
        let mut settings = self.settings.clone();
        if insecure {
            settings
                .insecure_registries
                .push(berth_oci::registry_host(domain).to_string());
        }
        Ok(RegistryClient::connect(domain, &settings, login).await?)
    }
}

pub fn login_of(c: Credential) -> Login {
    match c.identity_token {
        Some(token) => Login::IdentityToken {
            username: c.username,
            token,
        },
        None => Login::Password {
            username: c.username,
            password: c.password,
        },
    }
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Which registry an offline command (`berth fsck`, `berth gc`) works on: its configuration
/// file, or the data directory of an embedded one.
#[derive(clap::Args)]
pub struct RegistryLocation {
    /// The registry's configuration file (BERTH_* variables apply, as for `berth serve`)
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// The embedded registry (filesystem + SQLite) in this data directory
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    data_dir: Option<std::path::PathBuf>,
}

impl RegistryLocation {
    /// The configuration `berth serve` would run this registry with.
    pub fn config(self) -> anyhow::Result<berth_server::Config> {
        let mut config = berth_server::Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        Ok(config)
    }
}

/// The flags `pull` and `push` share.
#[derive(clap::Args)]
pub struct TransferFlags {
    /// Blobs moved at once [default: 3 for pull, 5 for push, or the client config]
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// Print only the result: the name for pull, the digest for push
    #[arg(short, long)]
    pub quiet: bool,
    /// Allow plain HTTP and unverified TLS to this registry
    #[arg(long)]
    pub insecure: bool,
}

impl TransferFlags {
    /// The bars to draw (and finish), and the progress sink to hand the engine: silent with
    /// `--quiet`.
    pub fn progress(&self) -> (Arc<LayerBars>, Arc<dyn Progress>) {
        self.progress_on(false)
    }

    /// The same, drawn on stderr when `on_stderr`.
    pub fn progress_on(&self, on_stderr: bool) -> (Arc<LayerBars>, Arc<dyn Progress>) {
        let bars = Arc::new(LayerBars::on(on_stderr));
        let progress: Arc<dyn Progress> = if self.quiet {
            Arc::new(Silent)
        } else {
            bars.clone()
        };
        (bars, progress)
    }
}
