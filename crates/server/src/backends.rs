//! The backends a configuration names, resolved once into typed values: the blob storage
//! ([`StorageBackend`]: the filesystem under `data_dir`, or an S3 bucket) and the metadata
//! database ([`MetaBackend`]: SQLite, or PostgreSQL). `[storage]` and `[database]` are read
//! here and nowhere else; `berth serve`, `--check-config`, `berth migrate`, `berth gc` and
//! `berth fsck` all open (or probe) what [`Backends::resolve`] made of them.
//!
//! Three ways to reach a backend: `open` as `berth serve` does (folders created, migrations
//! applied); `open_read_only` changing nothing, for a registry that may be serving (`berth
//! fsck`, the source of `berth migrate`); `probe`, one question with a time limit and the
//! answer in words, for `--check-config`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_meta::{DatabaseUrl, MetaStore, PostgresMeta, Probe, SharedClock, SqliteMeta};
use berth_storage::{BlobStore, FilesystemProbe, FilesystemStore, S3Config, S3Store};

use crate::StartError;
use crate::check::ConfigCheck;
use crate::config::{Config, ConfigError, DatabaseConfig, StorageConfig, redact_url};

/// How long a probe waits for its backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where blob bytes live: `[storage]`.
#[derive(Clone, Debug)]
pub enum StorageBackend {
    /// `backend = "filesystem"`: `uploads/` and `blobs/` under `root`, the data directory.
    Filesystem { root: PathBuf },
    /// `backend = "s3"`: a bucket of any S3-compatible store.
    S3(S3Config),
}

/// Where metadata lives: `[database]`.
#[derive(Clone, Debug)]
pub enum MetaBackend {
    /// `sqlite://PATH`, or an empty URL: `data_dir/meta.db`.
    Sqlite { path: PathBuf },
    /// `postgres://...`, shared by any number of replicas.
    Postgres { url: String, max_connections: u32 },
}

/// Both backends of a configuration.
#[derive(Clone, Debug)]
pub struct Backends {
    pub storage: StorageBackend,
    pub meta: MetaBackend,
    /// The data directory: created by [`Backends::open`] when a backend lives in it.
    data_dir: PathBuf,
}

/// The opened backends, as the registry takes them.
pub struct Opened {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
}

impl StorageBackend {
    /// `[storage]`, checked: a known backend with the keys it needs.
    pub fn resolve(c: &StorageConfig, data_dir: &Path) -> Result<StorageBackend, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match c.backend.as_str() {
            "filesystem" => Ok(StorageBackend::Filesystem {
                root: data_dir.to_path_buf(),
            }),
            "s3" => {
                if c.bucket.is_empty() {
                    return invalid("[storage] backend = \"s3\" needs a bucket".into());
                }
                if c.part_size_mib < 5 {
                    return invalid(format!(
                        "[storage] part_size_mib = {} is below the S3 minimum of 5",
                        c.part_size_mib
                    ));
                }
                let some = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
                Ok(StorageBackend::S3(S3Config {
                    endpoint: some(&c.endpoint),
                    path_style: c.path_style,
                    access_key_id: some(&c.access_key_id),
                    secret_access_key: some(&c.secret_access_key),
                    part_size: c.part_size_mib.saturating_mul(1 << 20),
                    allow_http: c.endpoint.starts_with("http://"),
                    ..S3Config::new(&c.bucket, &c.region)
                }))
            }
            other => invalid(format!(
                "[storage] backend = {other:?}: one of \"filesystem\", \"s3\""
            )),
        }
    }

    /// Opens the store for `berth serve`: the filesystem store creates its folders.
    pub async fn open(&self) -> Result<Arc<dyn BlobStore>, berth_storage::StorageError> {
        Ok(match self {
            StorageBackend::Filesystem { root } => Arc::new(FilesystemStore::open(root).await?),
            StorageBackend::S3(config) => Arc::new(S3Store::new(config)?),
        })
    }

    /// The store as it is, creating nothing.
    pub fn open_read_only(&self) -> Result<Arc<dyn BlobStore>, berth_storage::StorageError> {
        Ok(match self {
            StorageBackend::Filesystem { root } => Arc::new(FilesystemStore::existing(root)),
            StorageBackend::S3(config) => Arc::new(S3Store::new(config)?),
        })
    }

    /// What `--check-config` prints of the store: `filesystem in DIR`, `s3 bucket "b" at URL`.
    pub fn target(&self) -> String {
        match self {
            StorageBackend::Filesystem { root } => format!("filesystem in {}", root.display()),
            StorageBackend::S3(c) => match &c.endpoint {
                Some(endpoint) => format!("s3 bucket {:?} at {endpoint}", c.bucket),
                None => format!("s3 bucket {:?} in AWS region {}", c.bucket, c.region),
            },
        }
    }

    /// Whether the store answers, changing nothing; where the filesystem store is not set up
    /// yet, whether `berth serve` could set it up.
    pub async fn probe(&self) -> ConfigCheck {
        let outcome = match self {
            StorageBackend::S3(config) => match S3Store::new(config) {
                Ok(store) => within(PROBE_TIMEOUT, store.check()).await.map(|()| None),
                Err(e) => Err(e.to_string()),
            },
            StorageBackend::Filesystem { root } => {
                match within(PROBE_TIMEOUT, FilesystemStore::probe(root)).await {
                    Ok(FilesystemProbe::Ready) => Ok(None),
                    Ok(FilesystemProbe::FoldersMissing(folders)) => {
                        creatable(root).map(|()| Some(format!("{folders} created at start")))
                    }
                    Ok(FilesystemProbe::RootMissing) => {
                        creatable(root).map(|()| Some("created at start".into()))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        ConfigCheck {
            name: "storage",
            target: self.target(),
            outcome,
        }
    }

    /// Whether both name the same blobs: one directory, or one bucket at one endpoint.
    fn same_place(&self, other: &StorageBackend) -> bool {
        match (self, other) {
            (StorageBackend::Filesystem { root: a }, StorageBackend::Filesystem { root: b }) => {
                a.display().to_string() == b.display().to_string()
            }
            (StorageBackend::S3(a), StorageBackend::S3(b)) => {
                a.endpoint == b.endpoint && a.bucket == b.bucket
            }
            _ => false,
        }
    }
}

impl MetaBackend {
    /// `[database]`, checked: a URL of a known backend, a pool of at least one connection.
    pub fn resolve(c: &DatabaseConfig, data_dir: &Path) -> Result<MetaBackend, ConfigError> {
        let Some(url) = DatabaseUrl::parse(&c.url) else {
            return Err(ConfigError::Invalid(
                "[database] url: postgres://... or sqlite://... (empty: SQLite in data_dir)".into(),
            ));
        };
        if c.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "[database] max_connections must be at least 1".into(),
            ));
        }
        Ok(match url {
            DatabaseUrl::Postgres(url) => MetaBackend::Postgres {
                url: url.to_string(),
                max_connections: c.max_connections,
            },
            DatabaseUrl::Sqlite(path) => MetaBackend::Sqlite {
                path: path.map_or_else(|| data_dir.join("meta.db"), Path::to_path_buf),
            },
        })
    }

    /// Opens the database for `berth serve`: SQLite's file created, migrations applied; rows
    /// dated by `clock`.
    pub async fn open(
        &self,
        clock: SharedClock,
    ) -> Result<Arc<dyn MetaStore>, berth_meta::MetaError> {
        Ok(match self {
            MetaBackend::Sqlite { path } => {
                Arc::new(SqliteMeta::open(path).await?.with_clock(clock))
            }
            MetaBackend::Postgres {
                url,
                max_connections,
            } => Arc::new(
                PostgresMeta::connect(url, *max_connections)
                    .await?
                    .with_clock(clock),
            ),
        })
    }

    /// Opens an up-to-date database whose every write is refused, creating and migrating
    /// nothing.
    pub async fn open_read_only(&self) -> Result<Arc<dyn MetaStore>, berth_meta::MetaError> {
        Ok(match self {
            MetaBackend::Sqlite { path } => Arc::new(SqliteMeta::open_read_only(path).await?),
            MetaBackend::Postgres {
                url,
                max_connections,
            } => Arc::new(PostgresMeta::connect_read_only(url, *max_connections).await?),
        })
    }

    /// The SQLite file when it does not exist: there is no registry to collect, check or
    /// copy from. PostgreSQL: `None` (connecting says whether the database exists).
    pub fn missing_database(&self) -> Option<&Path> {
        match self {
            MetaBackend::Sqlite { path } if !path.is_file() => Some(path),
            _ => None,
        }
    }

    /// What `--check-config` prints of the database: `sqlite PATH`, or the URL without its
    /// password.
    pub fn target(&self) -> String {
        match self {
            MetaBackend::Sqlite { path } => format!("sqlite {}", path.display()),
            MetaBackend::Postgres { url, .. } => redact_url(url),
        }
    }

    /// Whether the database answers and how many migrations `berth serve` would apply,
    /// changing nothing; where the SQLite file does not exist yet, whether `berth serve` could
    /// create it.
    pub async fn probe(&self) -> ConfigCheck {
        let outcome = match self {
            MetaBackend::Postgres { url, .. } => within(PROBE_TIMEOUT, PostgresMeta::probe(url))
                .await
                .map(migrations_note),
            MetaBackend::Sqlite { path } if path.exists() => {
                within(PROBE_TIMEOUT, SqliteMeta::probe(path))
                    .await
                    .map(migrations_note)
            }
            MetaBackend::Sqlite { path } => {
                let dir = path.parent().unwrap_or(Path::new("."));
                creatable(dir).map(|()| Some("created at start".into()))
            }
        };
        ConfigCheck {
            name: "database",
            target: self.target(),
            outcome,
        }
    }

    /// Whether both name the same database: one URL, or one SQLite file.
    fn same_place(&self, other: &MetaBackend) -> bool {
        match (self, other) {
            (MetaBackend::Sqlite { path: a }, MetaBackend::Sqlite { path: b }) => {
                a.display().to_string() == b.display().to_string()
            }
            (MetaBackend::Postgres { url: a, .. }, MetaBackend::Postgres { url: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Backends {
    /// The backends `config` names, its `[storage]` and `[database]` checked
    /// ([`Config::validate`] reports the same errors).
    pub fn resolve(config: &Config) -> Result<Backends, ConfigError> {
        Ok(Backends {
            storage: StorageBackend::resolve(&config.storage, &config.data_dir)?,
            meta: MetaBackend::resolve(&config.database, &config.data_dir)?,
            data_dir: config.data_dir.clone(),
        })
    }

    /// Whether anything lives in the data directory: the filesystem blob store or the SQLite
    /// database. Replicas on S3 and PostgreSQL keep nothing locally.
    pub fn uses_data_dir(&self) -> bool {
        matches!(self.storage, StorageBackend::Filesystem { .. })
            || matches!(self.meta, MetaBackend::Sqlite { .. })
    }

    /// Opens both as `berth serve` does: the data directory created where one is used, the
    /// filesystem store's folders and the SQLite file created, migrations applied; the
    /// database's rows dated by `clock`.
    pub async fn open(&self, clock: SharedClock) -> Result<Opened, StartError> {
        if self.uses_data_dir() {
            std::fs::create_dir_all(&self.data_dir).map_err(|source| StartError::DataDir {
                path: self.data_dir.clone(),
                source,
            })?;
        }
        self.open_existing(clock).await
    }

    /// Opens both as [`open`](Self::open) does, without creating the data directory first:
    /// for a registry that is there (`berth gc`).
    pub async fn open_existing(&self, clock: SharedClock) -> Result<Opened, StartError> {
        let blobs = self.storage.open().await?;
        let meta = self.meta.open(clock).await?;
        Ok(Opened { blobs, meta })
    }

    /// Opens both for reading only, changing nothing: no directory created, no migration
    /// applied, every database write refused. For a registry that may be serving (`berth
    /// fsck`, the source of `berth migrate`).
    pub async fn open_read_only(&self) -> Result<Opened, StartError> {
        let blobs = self.storage.open_read_only()?;
        let meta = self.meta.open_read_only().await?;
        Ok(Opened { blobs, meta })
    }

    /// Both probes at once: the database's line, then the storage's.
    pub async fn probe(&self) -> [ConfigCheck; 2] {
        let (database, storage) = tokio::join!(self.meta.probe(), self.storage.probe());
        [database, storage]
    }

    /// Whether the two share a database or a blob store.
    pub fn overlap(&self, other: &Backends) -> bool {
        self.meta.same_place(&other.meta) || self.storage.same_place(&other.storage)
    }
}

fn migrations_note(probe: Probe) -> Option<String> {
    match probe.pending_migrations {
        0 => None,
        1 => Some("1 migration to apply at start".into()),
        n => Some(format!("{n} migrations to apply at start")),
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
pub(crate) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_path(config: &Config) -> PathBuf {
        match MetaBackend::resolve(&config.database, &config.data_dir) {
            Ok(MetaBackend::Sqlite { path }) => path,
            other => panic!("not SQLite: {other:?}"),
        }
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
    fn s3_settings() {
        let config = Config {
            storage: StorageConfig {
                backend: "s3".into(),
                bucket: "b".into(),
                endpoint: "http://127.0.0.1:9000".into(),
                part_size_mib: 16,
                ..StorageConfig::default()
            },
            ..Config::default()
        };
        let Ok(backends) = Backends::resolve(&config) else {
            panic!("resolve")
        };
        let StorageBackend::S3(s3) = &backends.storage else {
            panic!("not S3: {:?}", backends.storage)
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s3.access_key_id.as_deref(), s3.part_size),
            (None, 16 << 20)
        );
        assert!(s3.allow_http && !s3.path_style);
        assert_eq!(
            backends.storage.target(),
            "s3 bucket \"b\" at http://127.0.0.1:9000"
        );
        assert!(backends.uses_data_dir(), "SQLite is in the data directory");
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
