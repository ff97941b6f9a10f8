//! What PostgreSQL does its own way: row locks where SQLite's one writer needed none (see the
//! module documentation of `postgres`), a repository id found before it is inserted, a
//! manifest PUT over arrays, advisory locks.

use std::collections::BTreeSet;

use berth_oci::{Digest, Repository, Tag};
use sqlx::{PgConnection, Postgres, Transaction};

use super::{PostgresDialect, unavailable};
use crate::jobs::{self, Job, JobLock};
use crate::sql::{Dialect, SweepLocks};
use crate::{MetaError, NewManifest, Result};

/// Every write transaction starts with this; see the module documentation.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

fn strings(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_string).collect()
}

impl Dialect for PostgresDialect {
    type DB = Postgres;

    fn read(&self) -> &sqlx::PgPool {
        &self.pool
    }

    fn write(&self) -> &sqlx::PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin_with(BEGIN).await?)
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }

    /// SQLite: one upsert (`DO UPDATE ... RETURNING id`), serialized by its single writer.
    /// Here that no-op update would write a row version and lock the repository row on every
    /// push, serializing all writes to a repository for nothing: repositories are never
    /// deleted, so a found id stays valid. Instead: look it up; if missing, insert with DO
    /// NOTHING (a replica creating it at the same moment makes this wait for its commit); if
    /// that inserted nothing, the next statement, with a fresh READ COMMITTED snapshot, sees
    /// the other replica's row.
    async fn repository_id(
        conn: &mut PgConnection,
        repository: &Repository,
        now: i64,
    ) -> Result<i64> {
        let select = "SELECT id FROM repositories WHERE name = $1";
        let found: Option<i64> = sqlx::query_scalar(select)
            .bind(repository.as_str())
            .fetch_optional(&mut *conn)
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
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        Ok(sqlx::query_scalar(select)
            .bind(repository.as_str())
            .fetch_one(&mut *conn)
            .await?)
    }

    async fn store_manifest(
        conn: &mut PgConnection,
        repository: &Repository,
        m: &NewManifest,
        now: i64,
    ) -> Result<Vec<String>> {
        let repo = Self::repository_id(&mut *conn, repository, now).await?;
        if !m.tags.is_empty()
            && let Some(lock) = Self::LOCK_TAG_LIST
        {
            sqlx::query(lock)
                .bind(repository.as_str())
                .execute(&mut *conn)
                .await?;
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
        .fetch_all(&mut *conn)
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
        .fetch_all(&mut *conn)
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
        .bind(now)
        .fetch_one(&mut *conn)
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
        .execute(&mut *conn)
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
        // tag).
        let immutable: Vec<&str> = m.immutable_tags.iter().map(Tag::as_str).collect();
        Ok(sqlx::query_scalar(
            "INSERT INTO tags (repository_id, name, manifest_id, updated_at)
             SELECT $1, name, $2, $3 FROM unnest($4::TEXT[]) AS t(name)
             ON CONFLICT (repository_id, name)
             DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at
             WHERE tags.manifest_id = excluded.manifest_id OR NOT (tags.name = ANY($5))
             RETURNING name",
        )
        .bind(repo)
        .bind(manifest_id)
        .bind(now)
        .bind(&tags)
        .bind(immutable)
        .fetch_all(&mut *conn)
        .await?)
    }

    /// (SQLite's `substr(action, 1, bytes)` would count characters here.)
    fn push_action_prefix(sql: &mut sqlx::QueryBuilder<Postgres>, prefix: &str) {
        sql.push(" AND starts_with(action, ")
            .push_bind(prefix)
            .push(")");
    }

    /// The triggers of migration 0009 raise the repository's `tag_list_version` (an update of
    /// its row) in every transaction that adds or removes a tag. Each such transaction takes
    /// this row lock before any other, so that two of them never hold each other's rows. `FOR
    /// NO KEY UPDATE` leaves the foreign key checks of other writes (FOR KEY SHARE) unblocked.
    const LOCK_TAG_LIST: Option<&'static str> =
        Some("SELECT id FROM repositories WHERE name = $1 FOR NO KEY UPDATE");
    /// SQLite checks, then links, with no writer in between. Here the check locks the blob row
    /// (FOR KEY SHARE: blocks only its deletion), so it still exists when linked.
    const BLOB_TO_LINK: &'static str = "SELECT 1 FROM blobs WHERE digest = $1 FOR KEY SHARE";
    /// SQLite finds the id, then deletes. Here two replicas could both find it and both
    /// report a delete: FOR UPDATE makes the second wait and then find nothing.
    const MANIFEST_TO_DELETE: &'static str =
        "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = $1 AND m.digest = $2 FOR UPDATE OF m";
    /// The manifest's tags are locked in name order, the order put_manifest's upsert takes
    /// them: the cascade would take them in storage order, and a put moving these tags to
    /// another manifest meanwhile would deadlock with it. Then ON DELETE CASCADE removes the
    /// tags and references.
    const DELETE_MANIFEST: &'static [&'static str] = &[
        "SELECT 1 FROM tags WHERE manifest_id = $1 ORDER BY name FOR UPDATE",
        "DELETE FROM manifests WHERE id = $1",
    ];
    /// `FOR UPDATE SKIP LOCKED`: a row a writer depends on (held `FOR KEY SHARE`) is skipped.
    const SWEEP_LOCKS: SweepLocks = SweepLocks {
        manifest: Some("SELECT 1 FROM manifests WHERE id = $1 FOR UPDATE SKIP LOCKED"),
        link: Some(
            "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2
             FOR UPDATE SKIP LOCKED",
        ),
        blob: Some("SELECT 1 FROM blobs WHERE digest = $1 FOR UPDATE SKIP LOCKED"),
    };
    /// A transaction advisory lock on the owner's hash, in a key space of its own (class
    /// "upld").
    const SERIALIZE_UPLOAD_OWNER: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(1970302052, hashtext($1))");
    /// A transaction advisory lock on the key's hash, in a key space of its own (class
    /// "bert").
    const SERIALIZE_THROTTLE_KEY: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(1650553460, hashtext($1))");

    /// A session advisory lock.
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        jobs::advisory_job(&self.pool, job).await
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
