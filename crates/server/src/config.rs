//! Server configuration: a TOML file, overridden by `BERTH_...` environment variables,
//! overridden by command-line flags (applied by the caller).
//!
//! Every key has an environment variable named after its path: `listen` is `BERTH_LISTEN`,
//! a future `[storage] backend` is `BERTH_STORAGE_BACKEND`. The list is derived from the
//! defaults, so a new option gets its variable without further code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backends::Backends;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding blobs, upload sessions and the SQLite database.
    pub data_dir: PathBuf,
    /// Log filter, `tracing` env-filter syntax (`info`, `berth_server=debug`, ...).
    pub log: String,
    /// How long in-flight requests may run after SIGINT/SIGTERM before they are dropped.
    pub shutdown_grace_secs: u64,
    /// Largest manifest accepted, in bytes (distribution-spec: at least 4 MiB).
    pub max_manifest_bytes: usize,
    /// Proxies (addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For` names the client:
    /// the load balancers in front of berth. Empty: the connection's peer is the client.
    pub trusted_proxies: Vec<String>,
    /// PEM file with the server certificate chain (leaf first). Empty, together with
    /// `tls_key`: plain HTTP.
    pub tls_cert: String,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: String,
    /// Who may do what: accounts, projects, Docker token auth.
    pub auth: AuthConfig,
    /// Where blob bytes live.
    pub storage: StorageConfig,
    /// Where metadata lives.
    pub database: DatabaseConfig,
    /// Upload sessions.
    pub uploads: UploadsConfig,
    /// Scheduled garbage collection.
    pub gc: GcConfig,
    /// Scheduled retention policies.
    pub retention: RetentionConfig,
    /// Bounds on what one client or one connection may hold: header sizes and times, body
    /// stalls, concurrent uploads, open upload sessions.
    pub limits: LimitsConfig,
    /// What the audit log records beyond changes and failed logins.
    pub audit: AuditConfig,
}

/// `[audit]`: optional events of the audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every successful manifest `GET` (a pull, by tag or digest; not `HEAD`, not blob
    /// reads) as action `pull`. Written in batches off the request path: a pull costs no
    /// transaction of its own.
    pub pulls: bool,
}

/// `[limits]`: what a slow, greedy or hostile client can hold of the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A request's line and headers must arrive within this many seconds of its first byte
    /// (a client trickling headers, "slow loris", is disconnected); HTTP/1.1.
    pub header_timeout_secs: u64,
    /// Largest request head (request line and headers; HTTP/2: the decoded header list), in
    /// bytes. A larger one is refused (HTTP/1.1: `431`) before any handler runs.
    pub max_header_bytes: usize,
    /// A request body that sends nothing for this many seconds fails (the upload keeps what
    /// it had acknowledged) and its connection is closed.
    pub body_idle_timeout_secs: u64,
    /// Blob-upload requests (POST, PATCH, PUT of `/blobs/uploads/`) running at once, over all
    /// clients. One more is refused with `429 TOOMANYREQUESTS` and `Retry-After`.
    pub max_uploads: usize,
    /// Blob-upload requests running at once from one client address.
    pub max_uploads_per_client: usize,
    /// Upload sessions one account may have open at once (anonymous callers: one client
    /// address), counted in the database across replicas; a session is open from its `POST`
    /// until it is finished, cancelled or expired. One more `POST` is refused with
    /// `429 TOOMANYREQUESTS`.
    pub max_open_uploads_per_account: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            max_header_bytes: 64 << 10,
            body_idle_timeout_secs: 60,
            max_uploads: 1024,
            max_uploads_per_client: 64,
            max_open_uploads_per_account: 100,
        }
    }
}

/// `[retention]`: applying the projects' retention policies on a schedule (the API runs one
/// project's at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Seconds between runs (every replica keeps the schedule; one at a time applies).
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 24 * 60 * 60,
        }
    }
}

/// `[gc]`: garbage collection on a schedule (`berth gc` and `POST /api/v1/gc` run it at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Run on a schedule at all.
    pub enabled: bool,
    /// Seconds between runs (every replica keeps the schedule; one at a time collects).
    pub interval_secs: u64,
    /// Content younger than this is never collected.
    pub grace_secs: u64,
    /// Also collect manifests no tag names (not those an index lists or a referrer names).
    pub delete_untagged: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 24 * 60 * 60,
            grace_secs: 60 * 60,
            delete_untagged: false,
        }
    }
}

/// `[uploads]`: blob upload sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// A session that no request has advanced for this long is removed with its partial data
    /// (S3: the multipart upload is aborted). Longer than the slowest single request a client
    /// may make: a request still streaming when its session expires fails.
    pub expire_after_secs: u64,
    /// How often each replica looks for expired sessions (one at a time across replicas runs
    /// the job; the others skip that turn).
    pub expiry_interval_secs: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            expire_after_secs: 24 * 60 * 60,
            expiry_interval_secs: 10 * 60,
        }
    }
}

/// `[storage]`: the blob backend. `filesystem` keeps blobs under `data_dir`; `s3` in a bucket of
/// any S3-compatible store, shared by every replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `filesystem` (the default) or `s3`.
    pub backend: String,
    /// The bucket (s3).
    pub bucket: String,
    /// The store's URL, e.g. `http://127.0.0.1:9000`; empty for AWS itself.
    pub endpoint: String,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which MinIO, Ceph and most self-hosted
    /// stores want; off: virtual-hosted style (`bucket.endpoint/key`), as AWS prefers.
    pub path_style: bool,
    /// Credentials; empty: from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Size of multipart upload parts, in MiB (S3: at least 5).
    pub part_size_mib: u64,
    /// Answer blob GETs with a redirect to a presigned URL of the store instead of streaming
    /// the bytes through berth.
    pub redirect: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: "filesystem".into(),
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            path_style: false,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            part_size_mib: 8,
            redirect: false,
        }
    }
}

/// `[database]`: the metadata backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`, or `sqlite://PATH`; empty: SQLite in
    /// `data_dir/meta.db`.
    pub url: String,
    /// Connections in the pool (PostgreSQL).
    pub max_connections: u32,
}

impl DatabaseConfig {
    /// `url` without its password, for messages: `postgres://user:secret@host/db` becomes
    /// `postgres://user@host/db` (a `password=` query parameter goes too).
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `url` without its password, for messages (see [`DatabaseConfig::redacted_url`]).
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    format!("{user}@{host}")
                }
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    let kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("password="))
        .collect();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
        }
    }
}

/// `[auth]`: accounts and Docker token auth (distribution's `docs/spec/auth/token.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require credentials as the project rules say (the default). Off, everyone may do
    /// everything: a throw-away development registry.
    pub enabled: bool,
    /// The token service name: the `service` of challenges and the `aud` of tokens.
    pub service: String,
    /// Lifetime of access tokens, in seconds (token.md: at least 60).
    pub token_lifetime_secs: u64,
    /// A push to a project that does not exist creates it (private, the pusher its admin)
    /// instead of being refused.
    pub auto_create_projects: bool,
    /// The first administrator's password, used only when the registry has no account yet
    /// (`BERTH_ADMIN_PASSWORD`). Empty: one is generated and logged once.
    pub admin_password: String,
    /// Anyone may create an account (`POST /api/v1/signup`, `berth signup`), Docker Hub style;
    /// it gets a personal namespace, public unless asked otherwise.
    pub allow_signup: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            service: "berth".into(),
            token_lifetime_secs: 300,
            auto_create_projects: false,
            admin_password: String::new(),
            allow_signup: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            data_dir: PathBuf::from("./berth-data"),
            log: "info".into(),
            shutdown_grace_secs: 30,
            max_manifest_bytes: 4 << 20,
            trusted_proxies: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            auth: AuthConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            uploads: UploadsConfig::default(),
            gc: GcConfig::default(),
            retention: RetentionConfig::default(),
            limits: LimitsConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Checks what the types cannot: known backends and their required keys (as
    /// [`Backends::resolve`] finds them), bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        Backends::resolve(self)?;
        crate::client_addr::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(ConfigError::Invalid)?;
        if self.retention.interval_secs == 0 {
            return invalid(
                "[retention] interval_secs must be at least 1 (enabled = false turns it off)"
                    .into(),
            );
        }
        if self.gc.interval_secs == 0 {
            return invalid(
                "[gc] interval_secs must be at least 1 (enabled = false turns the schedule off)"
                    .into(),
            );
        }
        if self.uploads.expire_after_secs == 0 || self.uploads.expiry_interval_secs == 0 {
            return invalid(
                "[uploads] expire_after_secs and expiry_interval_secs must be at least 1".into(),
            );
        }
        let l = &self.limits;
        if l.header_timeout_secs == 0
            || l.body_idle_timeout_secs == 0
            || l.max_uploads == 0
            || l.max_uploads_per_client == 0
            || l.max_open_uploads_per_account == 0
        {
            return invalid(
                "[limits] header_timeout_secs, body_idle_timeout_secs, max_uploads, \
                 max_uploads_per_client and max_open_uploads_per_account must be at least 1"
                    .into(),
            );
        }
        if !(8192..=1 << 20).contains(&l.max_header_bytes) {
            return invalid(format!(
                "[limits] max_header_bytes = {}: between 8192 and 1048576",
                l.max_header_bytes
            ));
        }
        Ok(())
    }

    /// `https` when `berth serve` speaks TLS (it refuses to start with only one of `tls_cert`
    /// and `tls_key` set), else `http`: the scheme of the URLs it hands out.
    pub fn url_scheme(&self) -> &'static str {
        if self.tls_cert.is_empty() {
            "http"
        } else {
            "https"
        }
    }

    /// Reads `file` (if any), then applies `BERTH_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => toml::Table::new(),
        };
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("BERTH_"))
            .collect();
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        overlay_env(&mut table, &defaults, "BERTH", &env);
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

/// For every leaf key of `defaults`, sets the value from its environment variable, if any.
fn overlay_env(
    table: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    env: &std::collections::HashMap<String, String>,
) {
    for (key, default) in defaults {
        let var = format!("{prefix}_{}", key.to_ascii_uppercase());
        match default {
            toml::Value::Table(sub_defaults) => {
                let entry = table
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(sub) = entry {
                    overlay_env(sub, sub_defaults, &var, env);
                }
            }
            _ => {
                if let Some(raw) = env.get(&var) {
                    table.insert(key.clone(), env_value(raw, default));
                }
            }
        }
    }
}

/// An environment string typed like the default it replaces.
fn env_value(raw: &str, default: &toml::Value) -> toml::Value {
    let parsed = match default {
        toml::Value::Integer(_) => raw.trim().parse().ok().map(toml::Value::Integer),
        toml::Value::Float(_) => raw.trim().parse().ok().map(toml::Value::Float),
        toml::Value::Boolean(_) => raw.trim().parse().ok().map(toml::Value::Boolean),
        // A list: comma-separated (`BERTH_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.7`).
        toml::Value::Array(_) => Some(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )),
        _ => None,
    };
    // A value of the wrong type stays a string, so deserialization reports it clearly.
    parsed.unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests;
