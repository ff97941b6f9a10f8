//! Whether the backends answer: `berth serve --check-config` ([`check_config`]) and `/readyz`
//! ([`readiness`]). Each check is one small request with a time limit, and a failure is said in
//! words: the backends turn their usual errors (bucket missing, access denied, connection
//! refused, password rejected, no such database) into [`StorageError::Unavailable`] and
//! [`MetaError::Unavailable`].
//!
//! `--check-config` changes nothing: it neither migrates nor creates the database, nor creates
//! the data directory (where one is missing, it checks that `berth serve` could create it).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_meta::{MetaStore, PostgresMeta, Probe, SqliteMeta};
use berth_storage::{BlobStore, FilesystemStore, S3Store};
use serde::Serialize;

use crate::config::Config;
use crate::tls::ServerTls;

/// How long `--check-config` waits for each backend.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/readyz` waits for each backend: a probe that waits longer than its caller does
/// only piles up.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// One line of `berth serve --check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigCheck {
    /// `database`, `storage` or `tls`.
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
    let (database, storage) = tokio::join!(check_database(config), check_storage(config));
    let mut checks = vec![database, storage];
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

async fn check_database(config: &Config) -> ConfigCheck {
    let url = config.database.url.as_str();
    if is_postgres(url) {
        return ConfigCheck {
            name: "database",
            target: config.database.redacted_url(),
            outcome: within(CHECK_TIMEOUT, PostgresMeta::probe(url))
                .await
                .map(migrations_note),
        };
    }
    let path = sqlite_path(config);
    let outcome = if path.exists() {
        within(CHECK_TIMEOUT, SqliteMeta::probe(&path))
            .await
            .map(migrations_note)
    } else {
        let dir = path.parent().unwrap_or(Path::new("."));
        creatable(dir).map(|()| Some("created at start".into()))
    };
    ConfigCheck {
        name: "database",
        target: format!("sqlite {}", path.display()),
        outcome,
    }
}

fn migrations_note(probe: Probe) -> Option<String> {
    match probe.pending_migrations {
        0 => None,
        1 => Some("1 migration to apply at start".into()),
        n => Some(format!("{n} migrations to apply at start")),
    }
}

async fn check_storage(config: &Config) -> ConfigCheck {
    let c = &config.storage;
    if c.backend == "s3" {
        let place = if c.endpoint.is_empty() {
            format!("in AWS region {}", c.region)
        } else {
            format!("at {}", c.endpoint)
        };
        let outcome = match S3Store::new(&crate::s3_config(c)) {
            Ok(store) => within(CHECK_TIMEOUT, store.check()).await.map(|()| None),
            Err(e) => Err(e.to_string()),
        };
        return ConfigCheck {
            name: "storage",
            target: format!("s3 bucket {:?} {place}", c.bucket),
            outcome,
        };
    }
    let dir = &config.data_dir;
    let outcome = if dir.join("uploads").is_dir() && dir.join("blobs").is_dir() {
        match FilesystemStore::open(dir).await {
            Ok(store) => within(CHECK_TIMEOUT, store.check()).await.map(|()| None),
            Err(e) => Err(e.to_string()),
        }
    } else {
        let note = if dir.exists() {
            "uploads/ and blobs/ created at start"
        } else {
            "created at start"
        };
        creatable(dir).map(|()| Some(note.into()))
    };
    ConfigCheck {
        name: "storage",
        target: format!("filesystem in {}", dir.display()),
        outcome,
    }
}

/// Whether `berth serve` could create `dir` (or, if it exists, write in it): the nearest
/// directory that exists takes a file, created and removed at once.
fn creatable(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".berth-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(format!("cannot write in {}: {e}", dir.display())),
        Err(e) => Err(format!(
            "cannot create {}: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )),
    }
}

/// `fut`'s error as text, or a time-out after `limit`.
async fn within<T, E: fmt::Display>(
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite file `[database] url` names (`sqlite://PATH` or `sqlite:PATH`), by default
/// `data_dir/meta.db`.
pub(crate) fn sqlite_path(config: &Config) -> PathBuf {
    let url = config.database.url.as_str();
    match url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => config.data_dir.join("meta.db"),
    }
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

    #[test]
    fn sqlite_paths() {
        let mut config = Config {
            data_dir: "/srv/berth".into(),
            ..Config::default()
        };
        assert_eq!(sqlite_path(&config), Path::new("/srv/berth/meta.db"));
        config.database.url = "sqlite:///var/lib/berth.db".into();
        assert_eq!(sqlite_path(&config), Path::new("/var/lib/berth.db"));
        config.database.url = "sqlite:meta/berth.db".into();
        assert_eq!(sqlite_path(&config), Path::new("meta/berth.db"));
    }

    #[test]
    fn creatable_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(creatable(dir.path()), Ok(()));
        assert_eq!(creatable(&dir.path().join("a/b/c")), Ok(()));
        assert!(!dir.path().join("a").exists(), "created");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(creatable(&file.join("sub")).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            1,
            "a probe file was left behind"
        );
    }
}
