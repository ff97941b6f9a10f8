//! The embedded backend: SQLite in WAL mode, one file in the data directory.
//!
//! Writes go through a pool of one connection, so they queue in-process instead of failing
//! with SQLITE_BUSY; other processes on the same file (`berth gc`, `berth fsck`) wait on the
//! busy timeout. Reads use their own pool and never block on writes (WAL).

mod dialect;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::Result;
use crate::probe::{self, Probe};
use crate::sql::SqlMeta;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The metadata store on SQLite: the shared SQL (`sql::SqlMeta`) in SQLite's dialect.
pub type SqliteMeta = SqlMeta<SqliteDialect>;

/// SQLite's pools, and where its job locks go.
#[derive(Clone, Debug)]
pub struct SqliteDialect {
    read: SqlitePool,
    write: SqlitePool,
    /// The database file: job locks are files beside it.
    path: PathBuf,
}

impl SqliteMeta {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = Self::options(path).create_if_missing(true);
        let write = pool_options(1).connect_with(options.clone()).await?;
        MIGRATOR.run(&write).await?;
        let read = pool_options(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self::new(SqliteDialect {
            read,
            write,
            path: path.to_path_buf(),
        }))
    }

    /// Opens an existing database that is up to date, read-only: nothing is created, migrated
    /// or written (every write fails). For reading a registry that may be serving, as the
    /// source of `berth migrate`.
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        probe::require_current(Self::probe(path).await?)?;
        let options = Self::options(path).read_only(true);
        let read = pool_options(8).connect_with(options.clone()).await?;
        let write = pool_options(1).connect_with(options).await?;
        Ok(Self::new(SqliteDialect {
            read,
            write,
            path: path.to_path_buf(),
        }))
    }

    fn options(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a transaction the client was told about survives power loss, not only a
            // process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
    }

    /// Opens the existing database file read-only, runs a query and compares its migrations
    /// with this berth's, changing nothing: no file is created, no migration applied.
    pub async fn probe(path: &Path) -> Result<Probe> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let applied = applied_migrations(&mut conn).await;
        conn.close().await.ok();
        probe::compare(&MIGRATOR, &applied?)
    }
}

/// Versions of the migrations applied to the database (none if it has never been migrated).
async fn applied_migrations(conn: &mut SqliteConnection) -> sqlx::Result<Vec<i64>> {
    // sqlx's table, which the migrator creates on its first run.
    let exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
}

/// A pool of at most `max` connections that never hands out one still inside a transaction.
///
/// When SQLite rolls a transaction back by itself (a `COMMIT` failing with `SQLITE_FULL` on
/// a full disk, an I/O error), sqlx still counts it as open and its `ROLLBACK` then fails, so
/// every later `BEGIN` on that connection would fail too ("non-zero transaction depth") and
/// the single write connection would refuse every write until a restart. Such a connection
/// is closed instead and the pool opens a fresh one. (A connection whose rollback is merely
/// still queued is closed too: a reconnect, on an error path only.)
fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
}

#[cfg(test)]
mod tests {
    use crate::MetaStore;

    /// A new database file in a directory of its own, for one case of the suite.
    struct Fresh {
        meta: super::SqliteMeta,
        clock: std::sync::Arc<crate::ManualClock>,
        _dir: tempfile::TempDir,
    }

    impl crate::testsuite::Fresh for Fresh {
        fn meta(&self) -> &dyn MetaStore {
            &self.meta
        }

        fn clock(&self) -> &crate::ManualClock {
            &self.clock
        }

        async fn finish(self) {
            self.meta.close().await;
        }
    }

    async fn fresh() -> Fresh {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = crate::ManualClock::starting_now();
        let meta = super::SqliteMeta::open(&dir.path().join("meta.db"))
            .await
            .expect("open")
            .with_clock(clock.clone());
        Fresh {
            meta,
            clock,
            _dir: dir,
        }
    }

    /// The shared suite, one test per case: `sqlite::tests::suite::<case>`.
    mod suite {
        crate::suite_tests!(super::fresh);
    }

    #[tokio::test]
    async fn probe_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        assert!(super::SqliteMeta::probe(&path).await.is_err(), "no file");
        assert!(!path.exists(), "the probe created the file");
        let meta = super::SqliteMeta::open(&path).await.expect("open");
        let probe = super::SqliteMeta::probe(&path).await.expect("probe");
        assert_eq!(probe.pending_migrations, 0);
        drop(meta);
    }
}
