//! Whether the backends answer: `berth serve --check-config` ([`check_config`]) and `/readyz`
//! ([`readiness`]). Each check is one small request with a time limit, and a failure is said in
//! words: the backends turn their usual errors (bucket missing, access denied, connection
//! refused, password rejected, no such database) into [`StorageError::Unavailable`] and
//! [`MetaError::Unavailable`]. The backends' own probes are in `backends.rs`.
//!
//! `--check-config` changes nothing: it neither migrates nor creates the database, nor creates
//! the data directory (where one is missing, it checks that `berth serve` could create it).
//!
//! [`StorageError::Unavailable`]: berth_storage::StorageError::Unavailable
//! [`MetaError::Unavailable`]: berth_meta::MetaError::Unavailable

use std::fmt;
use std::time::Duration;

use berth_meta::MetaStore;
use berth_storage::BlobStore;
use serde::Serialize;

use crate::backends::{Backends, within};
use crate::config::Config;
use crate::tls::ServerTls;

/// How long `/readyz` waits for each backend: a probe that waits longer than its caller does
/// only piles up.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of `berth serve --check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigCheck {
    /// `database`, `storage` or `tls` (`config` when the backends named cannot be resolved).
    pub name: &'static str,
    /// What was checked, without secrets: `postgres://berth@db:5432/berth`,
    /// `s3 bucket "b" at http://127.0.0.1:9000`, `sqlite ./berth-data/meta.db`.
    pub target: String,
    /// Fine, with an optional note; or what is wrong.
    pub outcome: Result<Option<String>, String>,
}

impl ConfigCheck {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// `database: ok (target)`, `database: ok (target; note)` or `database: error (target): why`.
impl fmt::Display for ConfigCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, target) = (self.name, &self.target);
        match &self.outcome {
            Ok(None) => write!(f, "{name}: ok ({target})"),
            Ok(Some(note)) => write!(f, "{name}: ok ({target}; {note})"),
            Err(why) => write!(f, "{name}: error ({target}): {why}"),
        }
    }
}

/// Checks what `config` names, as `berth serve` would open it but without changing anything:
/// the database (connect and query, count the migrations to apply), the blob storage (its
/// `check`), and the TLS files when set. Binds nothing and creates no account.
pub async fn check_config(config: &Config) -> Vec<ConfigCheck> {
    let mut checks = match Backends::resolve(config) {
        Ok(backends) => backends.probe().await.to_vec(),
        // `Config::load` refuses such a configuration before anything is checked.
        Err(e) => vec![ConfigCheck {
            name: "config",
            target: "[storage] and [database]".into(),
            outcome: Err(e.to_string()),
        }],
    };
    if !(config.tls_cert.is_empty() && config.tls_key.is_empty()) {
        checks.push(ConfigCheck {
            name: "tls",
            target: format!("certificate {}, key {}", config.tls_cert, config.tls_key),
            outcome: ServerTls::from_config(config)
                .map(|_| None)
                .map_err(|e| e.to_string()),
        });
    }
    checks
}

/// The body of `/readyz`: `{"status":"ready","checks":{"database":{"status":"ok"},...}}`; what
/// is wrong with a backend goes to the log (warn), with the same words `--check-config` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    status: &'static str,
    checks: ReadinessChecks,
}

#[derive(Debug, Serialize)]
struct ReadinessChecks {
    database: BackendStatus,
    storage: BackendStatus,
}

#[derive(Debug, Serialize)]
struct BackendStatus {
    /// `ok` or `error`.
    status: &'static str,
    /// What is wrong (only with `error`). Logged, not answered: `/readyz` needs no login, and
    /// the message names hosts, buckets and database users.
    #[serde(skip)]
    message: Option<String>,
}

impl BackendStatus {
    fn of(name: &str, result: Result<(), String>) -> BackendStatus {
        match result {
            Ok(()) => BackendStatus {
                status: "ok",
                message: None,
            },
            Err(message) => {
                tracing::warn!(backend = name, error = %message, "not ready");
                BackendStatus {
                    status: "error",
                    message: Some(message),
                }
            }
        }
    }
}

impl Readiness {
    pub(crate) fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// One small request to each backend at once (`SELECT 1`; a LIST of one key, or a probe file).
pub(crate) async fn readiness(meta: &dyn MetaStore, blobs: &dyn BlobStore) -> Readiness {
    let (database, storage) = tokio::join!(
        within(READY_TIMEOUT, meta.check()),
        within(READY_TIMEOUT, blobs.check()),
    );
    let checks = ReadinessChecks {
        database: BackendStatus::of("database", database),
        storage: BackendStatus::of("storage", storage),
    };
    let ready = checks.database.message.is_none() && checks.storage.message.is_none();
    Readiness {
        status: if ready { "ready" } else { "unavailable" },
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let check = |outcome| ConfigCheck {
            name: "database",
            target: "postgres://berth@db:5432/berth".into(),
            outcome,
        };
        assert_eq!(
            check(Ok(None)).to_string(),
            "database: ok (postgres://berth@db:5432/berth)"
        );
        assert_eq!(
            check(Ok(Some("3 migrations to apply at start".into()))).to_string(),
            "database: ok (postgres://berth@db:5432/berth; 3 migrations to apply at start)"
        );
        assert_eq!(
            check(Err("connection refused".into())).to_string(),
            "database: error (postgres://berth@db:5432/berth): connection refused"
        );
    }
}
