//! [`Lifecycle`]: project settings, usage summed from the rows, and the tags retention judges.
//!
//! "Repository `r` is in the project" is written `(r.name = $1 OR (r.name >= $2 AND r.name <
//! $3))` with the bounds of [`project_bounds`]: its name is the project, or starts with the
//! project and `/`, as a range the repository name index answers.

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value};
use crate::lifecycle::{ProjectSettings, ProjectUsage, RepositoryUsage, TagRecord};
use crate::rows::{missing, parse, size};
use crate::{Lifecycle, Result};

/// What the project condition binds as `$1`, `$2` and `$3`: the project, the project and
/// `/`, and the project and `0` (the character after `/`).
fn project_bounds(project: &str) -> (String, String, String) {
    (
        project.to_string(),
        format!("{project}/"),
        format!("{project}0"),
    )
}

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    for<'r> &'r str: Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
{
    /// Sets one column of a project's settings row (creating the row) with `upsert`, which
    /// binds the project, the value and the time. `NotFound` when the project does not exist.
    async fn set_setting<'v, T>(&self, upsert: &'static str, project: &str, value: T) -> Result<()>
    where
        T: Encode<'v, D::DB> + Type<D::DB> + Send + 'v,
    {
        sqlx::query(upsert)
            .bind(project)
            .bind(value)
            .bind(self.now())
            .execute(self.dialect.write())
            .await
            .map_err(missing(format!("project {project:?}")))?;
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> Lifecycle for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,
    for<'r> Option<i64>: Encode<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
    for<'r> Option<&'r str>: Encode<'r, D::DB>,
{
    async fn project_settings(&self, project: &str) -> Result<ProjectSettings> {
        let row = sqlx::query(
            "SELECT quota_bytes, immutable_tags, retention FROM project_settings
             WHERE project = $1",
        )
        .bind(project)
        .fetch_optional(self.dialect.read())
        .await?;
        let Some(row) = row else {
            return Ok(Default::default());
        };
        let quota: Option<i64> = row.try_get("quota_bytes")?;
        let patterns: &str = row.try_get("immutable_tags")?;
        Ok(ProjectSettings {
            quota_bytes: quota.map(size).transpose()?,
            immutable_tags: patterns
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            retention: row.try_get("retention")?,
        })
    }

    async fn set_quota(&self, project: &str, quota_bytes: Option<u64>) -> Result<()> {
        let quota = quota_bytes.map(|q| i64::try_from(q).unwrap_or(i64::MAX));
        self.set_setting(
            "INSERT INTO project_settings (project, quota_bytes, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET quota_bytes = excluded.quota_bytes,
                                                 updated_at = excluded.updated_at",
            project,
            quota,
        )
        .await
    }

    async fn set_immutable_tags(&self, project: &str, patterns: &[String]) -> Result<()> {
        self.set_setting(
            "INSERT INTO project_settings (project, immutable_tags, updated_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET immutable_tags = excluded.immutable_tags,
                                                 updated_at = excluded.updated_at",
            project,
            patterns.join("\n"),
        )
        .await
    }

    async fn project_usage(&self, project: &str) -> Result<ProjectUsage> {
        let (p, low, high) = project_bounds(project);
        let blobs = sqlx::query(
            "SELECT count(*) AS n, CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS bytes FROM blobs b
             WHERE b.digest IN (SELECT rb.digest FROM repository_blobs rb
                                JOIN repositories r ON r.id = rb.repository_id
                                WHERE (r.name = $1 OR (r.name >= $2 AND r.name < $3)))",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .fetch_one(self.dialect.read())
        .await?;
        let manifests = sqlx::query(
            "SELECT count(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM (
                 SELECT m.digest, MAX(CAST(length(m.content) AS BIGINT)) AS size
                 FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE (r.name = $1 OR (r.name >= $2 AND r.name < $3))
                 GROUP BY m.digest) x",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .fetch_one(self.dialect.read())
        .await?;
        Ok(ProjectUsage {
            blobs: size(blobs.try_get("n")?)?,
            blob_bytes: size(blobs.try_get("bytes")?)?,
            manifests: size(manifests.try_get("n")?)?,
            manifest_bytes: size(manifests.try_get("bytes")?)?,
        })
    }

    async fn repository_usage(&self, project: &str) -> Result<Vec<RepositoryUsage>> {
        let (p, low, high) = project_bounds(project);
        // Per repository: its blobs, and those no other repository of the project links.
        let blobs = sqlx::query(
            "SELECT r.name, count(*) AS n,
                    CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS bytes,
                    CAST(COALESCE(SUM(CASE WHEN EXISTS (
                        SELECT 1 FROM repository_blobs o
                        JOIN repositories ro ON ro.id = o.repository_id
                        WHERE o.digest = rb.digest AND o.repository_id <> rb.repository_id
                          AND (ro.name = $1 OR (ro.name >= $2 AND ro.name < $3))
                    ) THEN 0 ELSE b.size END), 0) AS BIGINT) AS unique_bytes
             FROM repositories r JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE (r.name = $1 OR (r.name >= $2 AND r.name < $3))
             GROUP BY r.name",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .fetch_all(self.dialect.read())
        .await?;
        let manifests = sqlx::query(
            "SELECT r.name,
                    CAST(COALESCE(SUM(CAST(length(m.content) AS BIGINT)), 0) AS BIGINT) AS bytes,
                    CAST(COALESCE(SUM(CASE WHEN EXISTS (
                        SELECT 1 FROM manifests o JOIN repositories ro ON ro.id = o.repository_id
                        WHERE o.digest = m.digest AND o.repository_id <> m.repository_id
                          AND (ro.name = $1 OR (ro.name >= $2 AND ro.name < $3))
                    ) THEN 0 ELSE CAST(length(m.content) AS BIGINT) END), 0) AS BIGINT)
                      AS unique_bytes
             FROM repositories r JOIN manifests m ON m.repository_id = r.id
             WHERE (r.name = $1 OR (r.name >= $2 AND r.name < $3))
             GROUP BY r.name",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .fetch_all(self.dialect.read())
        .await?;
        let mut usage: BTreeMap<String, RepositoryUsage> = BTreeMap::new();
        for row in &blobs {
            let name: String = row.try_get("name")?;
            let u = usage.entry(name.clone()).or_default();
            u.repository = name;
            u.blobs = size(row.try_get("n")?)?;
            u.bytes += size(row.try_get("bytes")?)?;
            u.unique_bytes += size(row.try_get("unique_bytes")?)?;
        }
        for row in &manifests {
            let name: String = row.try_get("name")?;
            let u = usage.entry(name.clone()).or_default();
            u.repository = name;
            u.bytes += size(row.try_get("bytes")?)?;
            u.unique_bytes += size(row.try_get("unique_bytes")?)?;
        }
        Ok(usage
            .into_values()
            .map(|mut u| {
                u.shared_bytes = u.bytes - u.unique_bytes;
                u
            })
            .collect())
    }

    async fn project_has_blob(&self, project: &str, digest: &Digest) -> Result<bool> {
        let (p, low, high) = project_bounds(project);
        let found = sqlx::query(
            "SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $4 AND (r.name = $1 OR (r.name >= $2 AND r.name < $3)) LIMIT 1",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .bind(digest.to_string())
        .fetch_optional(self.dialect.read())
        .await?;
        Ok(found.is_some())
    }

    async fn set_retention(&self, project: &str, policy: &str) -> Result<()> {
        self.set_setting(
            "INSERT INTO project_settings (project, retention, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET retention = excluded.retention,
                                                 updated_at = excluded.updated_at",
            project,
            policy,
        )
        .await
    }

    async fn projects_with_retention(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT project FROM project_settings WHERE retention <> '' ORDER BY project",
        )
        .fetch_all(self.dialect.read())
        .await?)
    }

    async fn project_tags(&self, project: &str) -> Result<Vec<TagRecord>> {
        let (p, low, high) = project_bounds(project);
        let rows = sqlx::query(
            "SELECT r.name AS repository, t.name AS tag, m.digest, t.updated_at, t.pulled_at
             FROM tags t JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.id = t.manifest_id
             WHERE (r.name = $1 OR (r.name >= $2 AND r.name < $3))
             ORDER BY r.name, t.name",
        )
        .bind(&p)
        .bind(&low)
        .bind(&high)
        .fetch_all(self.dialect.read())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TagRecord {
                    repository: parse(row.try_get::<&str, _>("repository")?)?,
                    tag: parse(row.try_get::<&str, _>("tag")?)?,
                    digest: parse(row.try_get::<&str, _>("digest")?)?,
                    pushed_at: row.try_get("updated_at")?,
                    pulled_at: row.try_get("pulled_at")?,
                })
            })
            .collect()
    }

    /// One statement: a PUT moving the tag either committed before (the tag names another
    /// manifest now: kept) or waits for this delete and recreates it. After the tag list's
    /// lock, which every change of the list takes first.
    async fn delete_tag_naming(
        &self,
        repository: &Repository,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool> {
        let mut tx = self.dialect.begin_write().await?;
        Self::lock_tag_list(&mut tx, repository.as_str()).await?;
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)
             AND manifest_id = (SELECT m.id FROM manifests m
                                JOIN repositories r ON r.id = m.repository_id
                                WHERE r.name = $2 AND m.digest = $3)",
        )
        .bind(tag.as_str())
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_pull(
        &self,
        repository: &Repository,
        tag: &Tag,
        now: i64,
        since: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE tags SET pulled_at = $1 WHERE name = $2
             AND repository_id = (SELECT id FROM repositories WHERE name = $3)
             AND (pulled_at IS NULL OR pulled_at < $4)",
        )
        .bind(now)
        .bind(tag.as_str())
        .bind(repository.as_str())
        .bind(since)
        .execute(self.dialect.write())
        .await?;
        Ok(())
    }
}
