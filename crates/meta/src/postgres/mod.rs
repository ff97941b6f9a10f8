//! The distributed backend: PostgreSQL, shared by any number of `berth serve` replicas.
//!
//! SQLite serializes every write through one connection (`BEGIN IMMEDIATE`), so a check
//! followed by a write inside one of its transactions cannot be interleaved with anything.
//! Here transactions from many replicas run at once, so every such read-then-write is made safe
//! by one of:
//! - a unique constraint with `INSERT ... ON CONFLICT`, which PostgreSQL resolves atomically
//!   (a second inserter waits for the first to commit, then takes the conflict branch);
//! - a row lock: rows a write depends on are read `FOR KEY SHARE`, so a concurrent delete of
//!   them waits until the write commits, and a delete locks what it removes `FOR UPDATE`;
//! - a compare-and-swap `UPDATE ... WHERE`, which PostgreSQL re-checks against the newest
//!   row version after waiting for a concurrent writer.
//!
//! Transactions run at READ COMMITTED (requested explicitly, whatever the server default):
//! each statement sees rows committed before it started, which is what lets a statement that
//! follows `ON CONFLICT DO NOTHING` read the row another replica just committed. No path needs
//! SERIALIZABLE, so none needs a retry loop. Writes that lock several rows of a kind take
//! them in one order (tags by name, a manifest before its tags), so they do not deadlock;
//! `replicas_race_on_one_database` in tests/postgres.rs runs them against each other.

mod accounts;
mod audit;
mod inventory;
mod shared;

use std::collections::BTreeSet;
use std::str::FromStr;

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row, Transaction};

use crate::jobs::{self, Job, JobLock, Jobs};
use crate::probe::{self, Probe};
use crate::rows::{page, parse, size};
use crate::{
    BlobIndex, BlobRecord, Catalog, ManifestIndex, ManifestRecord, MetaError, MetaStore,
    NewManifest, Page, Referrer, Result,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Every transaction starts with this; see the module documentation.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

#[derive(Clone, Debug)]
pub struct PostgresMeta {
    pool: PgPool,
    /// What rows are dated by.
    clock: crate::SharedClock,
}

fn strings(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_string).collect()
}

impl PostgresMeta {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with a
    /// pool of at most `max_connections`, and applies pending migrations.
    ///
    /// Replicas starting at once are safe: the migrator holds a PostgreSQL advisory lock while
    /// it works, so one applies the migrations and the others find them applied.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        // The migrator's advisory lock belongs to the session; on a connection of its own,
        // closed afterwards, it cannot stay held in the serving pool if a migration fails.
        let migrate = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable(e, &options))?;
        let migrated = MIGRATOR.run(&migrate).await;
        migrate.close().await;
        migrated?;
        Self::pool(options, max_connections).await
    }

    /// Connects to an up-to-date database without migrating it, for reading a registry that
    /// may be serving (the source of `berth migrate`).
    pub async fn connect_read_only(url: &str, max_connections: u32) -> Result<Self> {
        probe::require_current(Self::probe(url).await?)?;
        let options =
            PgConnectOptions::from_str(url)?.options([("default_transaction_read_only", "on")]);
        Self::pool(options, max_connections).await
    }

    async fn pool(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable(e, &options))?;
        Ok(Self {
            pool,
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

    /// Connects once to the database at `url`, runs a query and compares its migrations with
    /// this berth's, changing nothing: no migration is applied, no pool is kept.
    pub async fn probe(url: &str) -> Result<Probe> {
        let options = PgConnectOptions::from_str(url)?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| unavailable(e, &options))?;
        let applied = applied_migrations(&mut conn).await;
        conn.close().await.ok();
        probe::compare(&MIGRATOR, &applied.map_err(|e| unavailable(e, &options))?)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin_with(BEGIN).await?)
    }

    /// A read-only transaction whose statements all see one snapshot.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }

    /// The repository's id, creating the repository if needed.
    ///
    /// SQLite: one upsert (`DO UPDATE ... RETURNING id`), serialized by its single writer.
    /// Here that no-op update would write a row version and lock the repository row on every
    /// push, serializing all writes to a repository for nothing: repositories are never
    /// deleted, so a found id stays valid. Instead: look it up; if missing, insert with DO
    /// NOTHING (a replica creating it at the same moment makes this wait for its commit); if
    /// that inserted nothing, the next statement, with a fresh READ COMMITTED snapshot, sees
    /// the other replica's row.
    async fn repository_id(
        tx: &mut sqlx::PgConnection,
        repository: &Repository,
        now: i64,
    ) -> Result<i64> {
        let select = "SELECT id FROM repositories WHERE name = $1";
        let found: Option<i64> = sqlx::query_scalar(select)
            .bind(repository.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = found {
            return Ok(id);
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(repository.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        Ok(sqlx::query_scalar(select)
            .bind(repository.as_str())
            .fetch_one(&mut *tx)
            .await?)
    }

    /// Takes the lock that orders the changes to a repository's tag list: the triggers of
    /// migration 0009 raise its `tag_list_version` (an update of the repository row) in every
    /// transaction that adds or removes a tag. Each such transaction takes this row lock
    /// before any other, so that two of them never hold each other's rows. `FOR NO KEY
    /// UPDATE` leaves the foreign key checks of other writes (FOR KEY SHARE) unblocked.
    async fn lock_tag_list(tx: &mut sqlx::PgConnection, repository: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1 FOR NO KEY UPDATE")
                .bind(repository)
                .fetch_optional(&mut *tx)
                .await?,
        )
    }

    /// Lets repository `repo` read blob `digest`. Its foreign key check locks the blob row
    /// (FOR KEY SHARE) until the transaction ends, so the blob cannot vanish under the link.
    /// A link that exists is dated again: its blob was just pushed or mounted, and garbage
    /// collection's grace counts from then.
    async fn grant(
        tx: &mut sqlx::PgConnection,
        repo: i64,
        digest: &Digest,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3)
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

fn manifest_record(row: &PgRow) -> Result<ManifestRecord> {
    let subject: Option<String> = row.try_get("subject")?;
    Ok(ManifestRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        media_type: row.try_get("media_type")?,
        content: row.try_get("content")?,
        subject: subject.as_deref().map(parse).transpose()?,
    })
}

fn blob_record(row: &PgRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        size: size(row.try_get("size")?)?,
        storage_key: row.try_get("storage_key")?,
    })
}

#[async_trait]
impl BlobIndex for PostgresMeta {
    async fn repository_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        let row = sqlx::query(
            "SELECT b.digest, b.size, b.storage_key FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let row = sqlx::query("SELECT digest, size, storage_key FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(blob_record).transpose()
    }

    async fn add_blob(&self, repository: &Repository, blob: &BlobRecord) -> Result<BlobRecord> {
        let mut tx = self.begin().await?;
        let repo = Self::repository_id(&mut tx, repository, self.now()).await?;
        // Replicas adding the same digest at once: the unique key makes the later ones wait
        // for the first insert and then take the conflict branch, which returns the winner's
        // row, so every caller returns the one record in force (SQLite: no concurrent insert
        // was possible). The no-op update locks that row until the link below is in: garbage
        // collection, which deletes a blob row only when no link names it, skips a locked row,
        // and one it deleted first is simply inserted again here.
        let row = sqlx::query(
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (digest) DO UPDATE SET size = blobs.size
             RETURNING digest, size, storage_key",
        )
        .bind(blob.digest.to_string())
        .bind(blob.size as i64)
        .bind(&blob.storage_key)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        Self::grant(&mut tx, repo, &blob.digest, self.now()).await?;
        let record = blob_record(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn link_blob(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin().await?;
        // SQLite checks, then links, with no writer in between. Here the check locks the blob
        // row (FOR KEY SHARE: blocks only its deletion), so it still exists when linked.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1 FOR KEY SHARE")
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
        // One statement: of two concurrent unlinks, the second finds the row gone.
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.to_string())
        .bind(repository.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn blob_repositories(&self, digest: &Digest, limit: u32) -> Result<Vec<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        names.iter().map(|n| parse(n)).collect()
    }
}

#[async_trait]
impl ManifestIndex for PostgresMeta {
    async fn put_manifest(&self, repository: &Repository, m: &NewManifest) -> Result<()> {
        let mut tx = self.begin().await?;
        let repo = Self::repository_id(&mut tx, repository, self.now()).await?;
        if !m.tags.is_empty() {
            Self::lock_tag_list(&mut tx, repository.as_str()).await?;
        }
        // The checks lock what they find (FOR KEY SHARE), so a concurrent unlink_blob or
        // delete_manifest of a referenced blob link or child manifest waits until this
        // manifest is stored; SQLite's single writer gave the same order for free.
        let linked: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest = ANY($2)
             FOR KEY SHARE",
        )
        .bind(repo)
        .bind(strings(&m.blobs))
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = m.blobs.iter().find(|b| !linked.contains(&b.to_string())) {
            return Err(MetaError::BlobUnknown(missing.clone()));
        }
        let children: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2)
             FOR KEY SHARE",
        )
        .bind(repo)
        .bind(strings(&m.manifests))
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = m
            .manifests
            .iter()
            .find(|c| !children.contains(&c.to_string()))
        {
            return Err(MetaError::ManifestUnknown(missing.clone()));
        }
        // Same digest, same bytes: a repeated PUT only adds tags, and dates the manifest
        // again (garbage collection's grace counts from the last push). SQLite looks the id
        // up first; here a delete_manifest could commit between a lookup and a write. The
        // DO UPDATE returns the id and locks the row in one statement, so the manifest stays
        // until its references and tags are in.
        let manifest_id: i64 = sqlx::query_scalar(
            "INSERT INTO manifests (repository_id, digest, media_type, content, subject,
                                    artifact_type, annotations, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at
             RETURNING id",
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
        let (kinds, digests): (Vec<&str>, Vec<String>) = m
            .blobs
            .iter()
            .map(|d| ("blob", d.to_string()))
            .chain(m.manifests.iter().map(|d| ("manifest", d.to_string())))
            .unzip();
        sqlx::query(
            "INSERT INTO manifest_references (manifest_id, kind, digest)
             SELECT $1, kind, digest FROM unnest($2::TEXT[], $3::TEXT[]) AS r(kind, digest)
             ON CONFLICT DO NOTHING",
        )
        .bind(manifest_id)
        .bind(kinds)
        .bind(digests)
        .execute(&mut *tx)
        .await?;
        // One upsert for all tags, locking them in name order, the order delete_manifest
        // locks them in (SQLite's single writer needed no order). A set, since DO UPDATE may
        // touch a row only once per statement; upserting a repeated tag twice ends the same.
        let tags: Vec<&str> = m
            .tags
            .iter()
            .map(Tag::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // An immutable tag that names another manifest is left alone (the conflict branch's
        // WHERE, evaluated on the newest row after waiting for a concurrent pusher of the same
        // tag), and the whole PUT is refused: the transaction is dropped, rolled back.
        let immutable: Vec<&str> = m.immutable_tags.iter().map(Tag::as_str).collect();
        let written: Vec<String> = sqlx::query_scalar(
            "INSERT INTO tags (repository_id, name, manifest_id, updated_at)
             SELECT $1, name, $2, $3 FROM unnest($4::TEXT[]) AS t(name)
             ON CONFLICT (repository_id, name)
             DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at
             WHERE tags.manifest_id = excluded.manifest_id OR NOT (tags.name = ANY($5))
             RETURNING name",
        )
        .bind(repo)
        .bind(manifest_id)
        .bind(self.now())
        .bind(&tags)
        .bind(immutable)
        .fetch_all(&mut *tx)
        .await?;
        crate::rows::all_tags_written(m, &written)?;
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
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
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
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(manifest_record).transpose()
    }

    async fn delete_manifest(&self, repository: &Repository, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Its tags go with it: the tag list's lock first, as put_manifest takes it.
        if Self::lock_tag_list(&mut tx, repository.as_str())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        // SQLite finds the id, then deletes. Here two replicas could both find it and both
        // report a delete: FOR UPDATE makes the second wait and then find nothing.
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.digest = $2 FOR UPDATE OF m",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(false);
        };
        // Lock the manifest's tags in name order, the order put_manifest's upsert takes them:
        // the cascade below would take them in storage order, and a put moving these tags
        // to another manifest meanwhile would deadlock with it.
        sqlx::query("SELECT 1 FROM tags WHERE manifest_id = $1 ORDER BY name FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // ON DELETE CASCADE removes the tags and references.
        sqlx::query("DELETE FROM manifests WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tag(&self, repository: &Repository, tag: &Tag) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(repo) = Self::lock_tag_list(&mut tx, repository.as_str()).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(repo)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn tag_list_version(&self, repository: &Repository) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT tag_list_version FROM repositories WHERE name = $1")
                .bind(repository.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn tags(
        &self,
        repository: &Repository,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page<Tag>>> {
        let repo: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(repo) = repo else {
            return Ok(None);
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
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
            "SELECT m.digest, m.media_type, octet_length(m.content)::BIGINT AS size,
                    m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = $1 AND m.subject = $2
               AND ($3::TEXT IS NULL OR m.artifact_type = $3)
             ORDER BY m.created_at, m.id",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .bind(artifact_type)
        .fetch_all(&self.pool)
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
impl Catalog for PostgresMeta {
    async fn repositories(&self, last: Option<&str>, limit: u32) -> Result<Page<Repository>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        page(&names, limit)
    }

    async fn repository_exists(&self, repository: &Repository) -> Result<bool> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.is_some())
    }
}

#[async_trait]
impl Jobs for PostgresMeta {
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        jobs::advisory_job(&self.pool, job).await
    }
}

#[async_trait]
impl MetaStore for PostgresMeta {
    fn clock(&self) -> &crate::SharedClock {
        &self.clock
    }

    async fn check(&self) -> Result<()> {
        match sqlx::query("SELECT 1").execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(e) => Err(unavailable(e, &self.pool.connect_options())),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Versions of the migrations applied to the database (none if it has never been migrated).
async fn applied_migrations(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    // sqlx's table, which the migrator creates on its first run.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
}

/// `e`, met while connecting to or querying the server `options` names, in words for the
/// operator where it is one of the usual mistakes; otherwise as sqlx says it.
fn unavailable(e: sqlx::Error, options: &PgConnectOptions) -> MetaError {
    let server = match options.get_socket() {
        Some(dir) => format!("the socket in {}", dir.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username();
    // PostgreSQL's default database is the user's name.
    let database = options.get_database().unwrap_or(user);
    let why = match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => format!(
                "password authentication failed for user \"{user}\": the password is wrong, or \
                 the user does not exist"
            ),
            Some("28000") => format!("{server} refused the login: {}", db.message()),
            Some("3D000") => format!(
                "database \"{database}\" does not exist on {server}: create it (`createdb -O \
                 {user} {database}`) or correct the URL"
            ),
            Some("53300") => format!(
                "{server} has no free connection slot ({}): lower [database] max_connections \
                 or raise the server's max_connections",
                db.message()
            ),
            Some("57P03") => format!(
                "{server} does not accept connections now (starting up, shutting down or in \
                 recovery): {}",
                db.message()
            ),
            Some("42501") => format!("user \"{user}\" lacks a privilege: {}", db.message()),
            _ => return MetaError::Database(e),
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {server}: is PostgreSQL running and listening there?")
        }
        sqlx::Error::Io(io) => format!("cannot reach {server}: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS with {server} failed: {tls}"),
        sqlx::Error::PoolTimedOut => format!(
            "no connection to {server} within the pool's timeout: PostgreSQL refuses \
             connections or does not answer"
        ),
        _ => return MetaError::Database(e),
    };
    MetaError::Unavailable(why)
}
