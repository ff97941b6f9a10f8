//! What SQLite does its own way: one writer, so no row locks; a repository-id upsert; a
//! manifest PUT in few statements over JSON arrays (`json_each`) instead of arrays.

use berth_oci::Repository;
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};

use super::SqliteDialect;
use crate::jobs::{self, Job, JobLock};
use crate::rows::parse;
use crate::sql::{Dialect, SweepLocks};
use crate::{MetaError, NewManifest, Result};

impl Dialect for SqliteDialect {
    type DB = Sqlite;

    fn read(&self) -> &sqlx::SqlitePool {
        &self.read
    }

    fn write(&self) -> &sqlx::SqlitePool {
        &self.write
    }

    /// Takes the database's write lock at once, so the transaction's reads and writes cannot
    /// interleave with any other writer, in this process or another.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.read.begin().await?)
    }

    /// One upsert, serialized by the one writer.
    async fn repository_id(
        conn: &mut SqliteConnection,
        repository: &Repository,
        now: i64,
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        )
        .bind(repository.as_str())
        .bind(now)
        .fetch_one(conn)
        .await?;
        Ok(id)
    }

    /// Few statements, each a round trip to SQLite's thread: the references are checked and
    /// written, and the tags upserted, a statement each over a JSON array (`json_each`); a
    /// repository that exists is not written to.
    async fn store_manifest(
        conn: &mut SqliteConnection,
        repository: &Repository,
        m: &NewManifest,
        now: i64,
    ) -> Result<Vec<String>> {
        let json = |items: Vec<String>| serde_json::Value::from(items).to_string();
        let blobs = json(m.blobs.iter().map(ToString::to_string).collect());
        let children = json(m.manifests.iter().map(ToString::to_string).collect());
        // One statement finds the repository, the first reference it lacks, and the manifest
        // if stored already.
        let found = sqlx::query(
            "SELECT r.id,
                (SELECT j.value FROM json_each($2) j WHERE NOT EXISTS (SELECT 1 FROM repository_blobs b
                    WHERE b.repository_id = r.id AND b.digest = j.value) LIMIT 1) AS missing_blob,
                (SELECT j.value FROM json_each($3) j WHERE NOT EXISTS (SELECT 1 FROM manifests c
                    WHERE c.repository_id = r.id AND c.digest = j.value) LIMIT 1) AS missing_child,
                (SELECT m.id FROM manifests m WHERE m.repository_id = r.id AND m.digest = $4) AS existing
             FROM repositories r WHERE r.name = $1",
        )
        .bind(repository.as_str())
        .bind(&blobs)
        .bind(&children)
        .bind(m.digest.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (repo, existing) = match found {
            Some(row) => {
                if let Some(missing) = row.try_get::<Option<&str>, _>("missing_blob")? {
                    return Err(MetaError::BlobUnknown(parse(missing)?));
                }
                if let Some(missing) = row.try_get::<Option<&str>, _>("missing_child")? {
                    return Err(MetaError::ManifestUnknown(parse(missing)?));
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
                    Self::repository_id(&mut *conn, repository, now).await?,
                    None,
                )
            }
        };
        // Same digest, same bytes, same references: a repeated PUT only adds tags, and dates
        // the manifest again (garbage collection's grace counts from the last push).
        let manifest_id = match existing {
            Some(id) => {
                sqlx::query("UPDATE manifests SET created_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                id
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO manifests (repository_id, digest, media_type, content, subject,
                                            artifact_type, annotations, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(repo)
                .bind(m.digest.to_string())
                .bind(&m.media_type)
                .bind(&m.content)
                .bind(m.subject.as_ref().map(|d| d.to_string()))
                .bind(&m.artifact_type)
                .bind(&m.annotations)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                if !m.blobs.is_empty() || !m.manifests.is_empty() {
                    sqlx::query(
                        "INSERT INTO manifest_references (manifest_id, kind, digest)
                         SELECT $1, 'blob', value FROM json_each($2)
                         UNION ALL SELECT $1, 'manifest', value FROM json_each($3)
                         WHERE true ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(&blobs)
                    .bind(&children)
                    .execute(&mut *conn)
                    .await?;
                }
                id
            }
        };
        if m.tags.is_empty() {
            return Ok(Vec::new());
        }
        let tags = json(m.tags.iter().map(ToString::to_string).collect());
        let immutable = json(m.immutable_tags.iter().map(ToString::to_string).collect());
        // An immutable tag that names another manifest is left alone (the DO UPDATE's WHERE).
        Ok(sqlx::query_scalar(
            "INSERT INTO tags (repository_id, name, manifest_id, updated_at)
             SELECT $1, value, $2, $3 FROM json_each($4) WHERE true
             ON CONFLICT (repository_id, name)
             DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at
             WHERE tags.manifest_id = excluded.manifest_id
                OR tags.name NOT IN (SELECT value FROM json_each($5))
             RETURNING name",
        )
        .bind(repo)
        .bind(manifest_id)
        .bind(now)
        .bind(&tags)
        .bind(&immutable)
        .fetch_all(&mut *conn)
        .await?)
    }

    fn push_action_prefix(sql: &mut sqlx::QueryBuilder<Sqlite>, prefix: &str) {
        sql.push(" AND substr(action, 1, ")
            .push_bind(prefix.len() as i64)
            .push(") = ")
            .push_bind(prefix);
    }

    const LOCK_TAG_LIST: Option<&'static str> = None;
    const BLOB_TO_LINK: &'static str = "SELECT 1 FROM blobs WHERE digest = $1";
    const MANIFEST_TO_DELETE: &'static str =
        "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = $1 AND m.digest = $2";
    /// Tags and references one by one: each tag's delete fires the trigger that raises its
    /// repository's tag list version.
    const DELETE_MANIFEST: &'static [&'static str] = &[
        "DELETE FROM tags WHERE manifest_id = $1",
        "DELETE FROM manifest_references WHERE manifest_id = $1",
        "DELETE FROM manifests WHERE id = $1",
    ];
    const SWEEP_LOCKS: SweepLocks = SweepLocks {
        manifest: None,
        link: None,
        blob: None,
    };
    const SERIALIZE_UPLOAD_OWNER: Option<&'static str> = None;
    const SERIALIZE_THROTTLE_KEY: Option<&'static str> = None;

    /// A `flock` on a file beside the database.
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        jobs::lock_file_job(jobs::lock_file(&self.path, job), job).await
    }

    async fn check(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Readers first: the last connection to close checkpoints the WAL into the database file
    /// and removes it, so `meta.db` alone is the whole database.
    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
