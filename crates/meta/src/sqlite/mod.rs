//! The embedded backend: SQLite in WAL mode, one file in the data directory.
//!
//! Writes go through a pool of one connection, so they queue in-process instead of failing
//! with SQLITE_BUSY; other processes on the same file (`berth gc`, `berth fsck`) wait on the
//! busy timeout. Reads use their own pool and never block on writes (WAL).

mod accounts;
mod audit;
mod inventory;
mod shared;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};

use crate::jobs::{self, Job, JobLock, Jobs};
use crate::probe::{self, Probe};
use crate::rows::{page, parse, size};
use crate::{
    BlobIndex, BlobRecord, Catalog, ManifestIndex, ManifestRecord, MetaError, MetaStore,
    NewManifest, Page, Referrer, Result,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteMeta {
    read: SqlitePool,
    write: SqlitePool,
    /// The database file: job locks are files beside it.
    path: std::path::PathBuf,
    /// What rows are dated by.
    clock: crate::SharedClock,
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
        Ok(Self {
            read,
            write,
            path: path.to_path_buf(),
            clock: crate::system_clock(),
        })
    }

    /// Opens an existing database that is up to date, read-only: nothing is created, migrated
    /// or written (every write fails). For reading a registry that may be serving, as the
    /// source of `berth migrate`.
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        probe::require_current(Self::probe(path).await?)?;
        let options = Self::options(path).read_only(true);
        let read = pool_options(8).connect_with(options.clone()).await?;
        let write = pool_options(1).connect_with(options).await?;
        Ok(Self {
            read,
            write,
            path: path.to_path_buf(),
            clock: crate::system_clock(),
        })
    }

    /// Dates rows by `clock` instead of the system's.
    pub fn with_clock(mut self, clock: crate::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        self.clock.now()
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

    /// A write transaction: takes the database's write lock at once, so its reads and writes
    /// cannot interleave with any other writer, in this process or another.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A read transaction: every statement in it sees the database as of its first read.
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.read.begin().await?)
    }

    async fn repository_id(
        tx: &mut sqlx::SqliteConnection,
        repository: &Repository,
        now: i64,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )
        .bind(repository.as_str())
        .bind(now)
        .fetch_one(tx)
        .await?;
        Ok(id)
    }
    /// Lets repository `repo` read blob `digest`. A link that exists is dated again: its
    /// blob was just pushed or mounted, and garbage collection's grace counts from then.
    async fn grant(
        tx: &mut sqlx::SqliteConnection,
        repo: i64,
        digest: &Digest,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)
             ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(repo)
        .bind(digest.to_string())
        .bind(now)
        .execute(tx)
        .await?;
        Ok(())
    }
}

fn manifest_record(row: &sqlx::sqlite::SqliteRow) -> Result<ManifestRecord> {
    let subject: Option<String> = row.try_get("subject")?;
    Ok(ManifestRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        media_type: row.try_get("media_type")?,
        content: row.try_get("content")?,
        subject: subject.as_deref().map(parse).transpose()?,
    })
}

fn blob_record(row: &sqlx::sqlite::SqliteRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        size: size(row.try_get("size")?)?,
        storage_key: row.try_get("storage_key")?,
    })
}

#[async_trait]
impl BlobIndex for SqliteMeta {
    async fn repository_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = ? AND b.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn add_blob(&self, repository: &Repository, blob: &BlobRecord) -> Result<BlobRecord> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let repo = Self::repository_id(&mut tx, repository, self.now()).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(blob.digest.to_string())
        .bind(blob.size as i64)
        .bind(&blob.storage_key)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        Self::grant(&mut tx, repo, &blob.digest, self.now()).await?;
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = ?")
            .bind(blob.digest.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let record = blob_record(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn link_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let repo = Self::repository_id(&mut tx, repository, self.now()).await?;
        Self::grant(&mut tx, repo, digest, self.now()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn unlink_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn blob_repositories(&self, digest: &Digest, limit: u32) -> Result<Vec<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = ? ORDER BY r.name LIMIT ?",
        )
        .bind(digest.to_string())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        names.iter().map(|n| parse(n)).collect()
    }
}

#[async_trait]
impl ManifestIndex for SqliteMeta {
    /// Few statements, each a round trip to SQLite's thread: the references are checked and
    /// written, and the tags upserted, a statement each over a JSON array (`json_each`); the
    /// audit event goes into the same transaction, so one commit (one WAL sync) does it all.
    async fn put_manifest(&self, repository: &Repository, m: &NewManifest) -> Result<()> {
        let json = |items: Vec<String>| serde_json::Value::from(items).to_string();
        let blobs = json(m.blobs.iter().map(ToString::to_string).collect());
        let children = json(m.manifests.iter().map(ToString::to_string).collect());
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        // One statement finds the repository, the first reference it lacks, and the manifest
        // if stored already.
        let found = sqlx::query(
            "SELECT r.id,
                (SELECT j.value FROM json_each(?2) j WHERE NOT EXISTS (SELECT 1 FROM repository_blobs b
                    WHERE b.repository_id = r.id AND b.digest = j.value) LIMIT 1) AS missing_blob,
                (SELECT j.value FROM json_each(?3) j WHERE NOT EXISTS (SELECT 1 FROM manifests c
                    WHERE c.repository_id = r.id AND c.digest = j.value) LIMIT 1) AS missing_child,
                (SELECT m.id FROM manifests m WHERE m.repository_id = r.id AND m.digest = ?4) AS existing
             FROM repositories r WHERE r.name = ?1",
        )
        .bind(repository.as_str())
        .bind(&blobs)
        .bind(&children)
        .bind(m.digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (repo, existing) = match found {
            Some(row) => {
                if let Some(missing) = row.try_get::<Option<String>, _>("missing_blob")? {
                    return Err(MetaError::BlobUnknown(parse(&missing)?));
                }
                if let Some(missing) = row.try_get::<Option<String>, _>("missing_child")? {
                    return Err(MetaError::ManifestUnknown(parse(&missing)?));
                }
                (
                    row.try_get::<i64, _>("id")?,
                    row.try_get::<Option<i64>, _>("existing")?,
                )
            }
            // A new repository holds nothing a manifest could reference.
            None => {
                if let Some(missing) = m.blobs.first() {
                    return Err(MetaError::BlobUnknown(missing.clone()));
                }
                if let Some(missing) = m.manifests.first() {
                    return Err(MetaError::ManifestUnknown(missing.clone()));
                }
                (
                    Self::repository_id(&mut tx, repository, self.now()).await?,
                    None,
                )
            }
        };
        // Same digest, same bytes, same references: a repeated PUT only adds tags, and dates
        // the manifest again (garbage collection's grace counts from the last push).
        let manifest_id = match existing {
            Some(id) => {
                sqlx::query("UPDATE manifests SET created_at = ? WHERE id = ?")
                    .bind(self.now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO manifests (repository_id, digest, media_type, content, subject,
                                            artifact_type, annotations, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(repo)
                .bind(m.digest.to_string())
                .bind(&m.media_type)
                .bind(&m.content)
                .bind(m.subject.as_ref().map(|d| d.to_string()))
                .bind(&m.artifact_type)
                .bind(&m.annotations)
                .bind(self.now())
                .fetch_one(&mut *tx)
                .await?;
                if !m.blobs.is_empty() || !m.manifests.is_empty() {
                    sqlx::query(
                        "INSERT INTO manifest_references (manifest_id, kind, digest)
                         SELECT ?1, 'blob', value FROM json_each(?2)
                         UNION ALL SELECT ?1, 'manifest', value FROM json_each(?3)
                         WHERE true ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(&blobs)
                    .bind(&children)
                    .execute(&mut *tx)
                    .await?;
                }
                id
            }
        };
        if !m.tags.is_empty() {
            let tags = json(m.tags.iter().map(ToString::to_string).collect());
            let immutable = json(m.immutable_tags.iter().map(ToString::to_string).collect());
            // An immutable tag that names another manifest is left alone (the DO UPDATE's
            // WHERE), and the whole PUT refused: the transaction is dropped, rolled back.
            let written: Vec<String> = sqlx::query_scalar(
                "INSERT INTO tags (repository_id, name, manifest_id, updated_at)
                 SELECT ?1, value, ?2, ?3 FROM json_each(?4) WHERE true
                 ON CONFLICT (repository_id, name)
                 DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at
                 WHERE tags.manifest_id = excluded.manifest_id
                    OR tags.name NOT IN (SELECT value FROM json_each(?5))
                 RETURNING name",
            )
            .bind(repo)
            .bind(manifest_id)
            .bind(self.now())
            .bind(&tags)
            .bind(&immutable)
            .fetch_all(&mut *tx)
            .await?;
            crate::rows::all_tags_written(m, &written)?;
        }
        if let Some(event) = &m.audit {
            audit::insert_event(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM manifests m
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(manifest_record).transpose()
    }

    async fn tagged_manifest(
        &self,
        repository: &Repository,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content, m.subject FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.id = t.manifest_id
             WHERE r.name = ? AND t.name = ?",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(manifest_record).transpose()
    }

    async fn delete_manifest(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM tags WHERE manifest_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM manifest_references WHERE manifest_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM manifests WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tag(&self, repository: &Repository, tag: &Tag) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = ?
             AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(tag.as_str())
        .bind(repository.as_str())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn tag_list_version(&self, repository: &Repository) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT tag_list_version FROM repositories WHERE name = ?")
                .bind(repository.as_str())
                .fetch_optional(&self.read)
                .await?,
        )
    }

    async fn tags(
        &self,
        repository: &Repository,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page<Tag>>> {
        let repo: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.read)
            .await?;
        let Some(repo) = repo else {
            return Ok(None);
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.read)
        .await?;
        Ok(Some(page(&names, limit)?))
    }

    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, length(m.content) AS size, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.subject = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.created_at, m.id",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse(row.try_get::<&str, _>("digest")?)?,
                    media_type: row.try_get("media_type")?,
                    size: size(row.try_get("size")?)?,
                    artifact_type: row.try_get("artifact_type")?,
                    annotations: row.try_get("annotations")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Catalog for SqliteMeta {
    async fn repositories(&self, last: Option<&str>, limit: u32) -> Result<Page<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.read)
        .await?;
        page(&names, limit)
    }

    async fn repository_exists(&self, repository: &Repository) -> Result<bool> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(id.is_some())
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

#[async_trait]
impl Jobs for SqliteMeta {
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        jobs::lock_file_job(jobs::lock_file(&self.path, job), job).await
    }
}

#[async_trait]
impl MetaStore for SqliteMeta {
    fn clock(&self) -> &crate::SharedClock {
        &self.clock
    }

    async fn check(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Closes the pools, readers first: the last connection to close checkpoints the WAL into
    /// the database file and removes it, so `meta.db` alone is the whole database.
    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
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
