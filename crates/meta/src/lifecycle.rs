//! Project lifecycle settings (quota, immutable tag patterns) and storage usage.
//!
//! Usage is not a counter kept beside the data: it is summed from the rows that say what a
//! project holds (blob links and manifests), in one statement, so it cannot drift from them
//! whatever happens: pushes, mounts, deletes, garbage collection, crashes, replicas racing.
//! A project's usage counts each blob once, however many of its repositories or images use
//! it, and each manifest once.

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};

use crate::Result;

/// A project's lifecycle settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectSettings {
    /// Bytes the project may hold; `None`: no limit.
    pub quota_bytes: Option<u64>,
    /// Tag patterns (`v*`, `release-*`) whose tags, once pushed, cannot move or go.
    pub immutable_tags: Vec<String>,
    /// The retention policy, as JSON (the registry parses it); empty: none.
    pub retention: String,
}

/// A tag as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRecord {
    pub repository: Repository,
    pub tag: Tag,
    pub digest: Digest,
    /// When the tag was last set (Unix seconds).
    pub pushed_at: i64,
    /// When it was last pulled, if recorded.
    pub pulled_at: Option<i64>,
}

/// What a project holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProjectUsage {
    /// Distinct blobs readable in the project, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Distinct manifests (by digest), and their bytes.
    pub manifests: u64,
    pub manifest_bytes: u64,
}

impl ProjectUsage {
    /// What counts against the quota.
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.manifest_bytes
    }
}

/// What one repository of a project holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepositoryUsage {
    pub repository: String,
    pub blobs: u64,
    /// Bytes of its blobs and manifests.
    pub bytes: u64,
    /// Of those, bytes no other repository of the project holds (what deleting this
    /// repository would free in the project).
    pub unique_bytes: u64,
    /// The rest: bytes shared with other repositories of the project.
    pub shared_bytes: u64,
}

#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// The project's settings; defaults when none were set.
    async fn project_settings(&self, project: &str) -> Result<ProjectSettings>;
    /// Sets the quota (`None`: no limit). `NotFound` if the project does not exist.
    async fn set_quota(&self, project: &str, quota_bytes: Option<u64>) -> Result<()>;
    /// Replaces the immutable tag patterns. `NotFound` if the project does not exist.
    async fn set_immutable_tags(&self, project: &str, patterns: &[String]) -> Result<()>;
    async fn project_usage(&self, project: &str) -> Result<ProjectUsage>;
    /// Each repository of the project with what it holds, by name.
    async fn repository_usage(&self, project: &str) -> Result<Vec<RepositoryUsage>>;
    /// Whether a repository of the project may read the blob already (adding it elsewhere in
    /// the project costs nothing).
    async fn project_has_blob(&self, project: &str, digest: &Digest) -> Result<bool>;
    /// Replaces the retention policy (JSON; empty: none). `NotFound` without the project.
    async fn set_retention(&self, project: &str, policy: &str) -> Result<()>;
    /// Projects with a retention policy.
    async fn projects_with_retention(&self) -> Result<Vec<String>>;
    /// Every tag of the project's repositories, with its manifest and times.
    async fn project_tags(&self, project: &str) -> Result<Vec<TagRecord>>;
    /// Deletes the tag only if it still names `digest` (a tag pushed again since it was
    /// judged is not deleted). `false` if nothing was deleted.
    async fn delete_tag_naming(
        &self,
        repository: &Repository,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<bool>;
    /// Records a pull of the tag at `now`, unless one at or after `since` is recorded already
    /// (so a busy tag costs one write an interval, not one a pull).
    async fn record_pull(
        &self,
        repository: &Repository,
        tag: &Tag,
        now: i64,
        since: i64,
    ) -> Result<()>;
}

/// The SQL condition "repository `r` is in the project": its name is the project, or starts
/// with the project and `/`; bound as `$1` (project), `$2` (project + `/`) and `$3` (project +
/// `0`, the character after `/`), so the repository name index answers it as a range.
macro_rules! in_project {
    ($r:literal) => {
        concat!(
            "(",
            $r,
            ".name = $1 OR (",
            $r,
            ".name >= $2 AND ",
            $r,
            ".name < $3))"
        )
    };
}
pub(crate) use in_project;

/// Sets one column of a project's settings row (creating the row), in one upsert.
/// `NotFound` when the project does not exist.
macro_rules! set_setting {
    ($pool:expr, $now:expr, $project:expr, $column:literal, $value:expr) => {{
        sqlx::query(concat!(
            "INSERT INTO project_settings (project, ",
            $column,
            ", updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET ",
            $column,
            " = excluded.",
            $column,
            ",
                                                 updated_at = excluded.updated_at"
        ))
        .bind($project)
        .bind($value)
        .bind($now)
        .execute($pool)
        .await
        .map_err($crate::rows::missing(format!("project {:?}", $project)))?;
        Ok(())
    }};
}
pub(crate) use set_setting;

/// The bounds `in_project!` binds.
pub(crate) fn project_bounds(project: &str) -> (String, String, String) {
    (
        project.to_string(),
        format!("{project}/"),
        format!("{project}0"),
    )
}

/// The one implementation of [`Lifecycle`], expanded for each backend (the statements are
/// the same on SQLite and PostgreSQL).
macro_rules! impl_lifecycle {
    ($meta:ty, read = $read:ident, write = $write:ident, begin = $begin:ident, lock_tag_list = $lock_tag_list:expr) => {
        #[async_trait::async_trait]
        impl $crate::lifecycle::Lifecycle for $meta {
            async fn project_settings(
                &self,
                project: &str,
            ) -> $crate::Result<$crate::lifecycle::ProjectSettings> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT quota_bytes, immutable_tags, retention FROM project_settings WHERE project = $1",
                )
                .bind(project)
                .fetch_optional(&self.$read)
                .await?;
                let Some(row) = row else {
                    return Ok(Default::default());
                };
                let quota: Option<i64> = row.try_get("quota_bytes")?;
                let patterns: String = row.try_get("immutable_tags")?;
                Ok($crate::lifecycle::ProjectSettings {
                    quota_bytes: quota.map($crate::rows::size).transpose()?,
                    immutable_tags: patterns
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect(),
                    retention: row.try_get("retention")?,
                })
            }

            async fn set_quota(&self, project: &str, quota_bytes: Option<u64>) -> $crate::Result<()> {
                let quota = quota_bytes.map(|q| i64::try_from(q).unwrap_or(i64::MAX));
                $crate::lifecycle::set_setting!(&self.$write, self.now(), project, "quota_bytes", quota)
            }

            async fn set_immutable_tags(&self, project: &str, patterns: &[String]) -> $crate::Result<()> {
                $crate::lifecycle::set_setting!(&self.$write, self.now(), project, "immutable_tags", patterns.join("\n"))
            }

            async fn project_usage(&self, project: &str) -> $crate::Result<$crate::lifecycle::ProjectUsage> {
                use sqlx::Row;
                use $crate::rows::size;
                let (p, low, high) = $crate::lifecycle::project_bounds(project);
                let blobs = sqlx::query(concat!(
                    "SELECT count(*) AS n, CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS bytes FROM blobs b
                     WHERE b.digest IN (SELECT rb.digest FROM repository_blobs rb
                                        JOIN repositories r ON r.id = rb.repository_id WHERE ",
                    $crate::lifecycle::in_project!("r"),
                    ")"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .fetch_one(&self.$read)
                .await?;
                let manifests = sqlx::query(concat!(
                    "SELECT count(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM (
                         SELECT m.digest, MAX(CAST(length(m.content) AS BIGINT)) AS size
                         FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE ",
                    $crate::lifecycle::in_project!("r"),
                    " GROUP BY m.digest) x"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .fetch_one(&self.$read)
                .await?;
                Ok($crate::lifecycle::ProjectUsage {
                    blobs: size(blobs.try_get("n")?)?,
                    blob_bytes: size(blobs.try_get("bytes")?)?,
                    manifests: size(manifests.try_get("n")?)?,
                    manifest_bytes: size(manifests.try_get("bytes")?)?,
                })
            }

            async fn repository_usage(
                &self,
                project: &str,
            ) -> $crate::Result<Vec<$crate::lifecycle::RepositoryUsage>> {
                use sqlx::Row;
                use $crate::rows::size;
                let (p, low, high) = $crate::lifecycle::project_bounds(project);
                // Per repository: its blobs, and those no other repository of the project links.
                let blobs = sqlx::query(concat!(
                    "SELECT r.name, count(*) AS n,
                            CAST(COALESCE(SUM(b.size), 0) AS BIGINT) AS bytes,
                            CAST(COALESCE(SUM(CASE WHEN EXISTS (
                                SELECT 1 FROM repository_blobs o JOIN repositories ro ON ro.id = o.repository_id
                                WHERE o.digest = rb.digest AND o.repository_id <> rb.repository_id AND ",
                    $crate::lifecycle::in_project!("ro"),
                    ") THEN 0 ELSE b.size END), 0) AS BIGINT) AS unique_bytes
                     FROM repositories r JOIN repository_blobs rb ON rb.repository_id = r.id
                     JOIN blobs b ON b.digest = rb.digest WHERE ",
                    $crate::lifecycle::in_project!("r"),
                    " GROUP BY r.name"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .fetch_all(&self.$read)
                .await?;
                let manifests = sqlx::query(concat!(
                    "SELECT r.name,
                            CAST(COALESCE(SUM(CAST(length(m.content) AS BIGINT)), 0) AS BIGINT) AS bytes,
                            CAST(COALESCE(SUM(CASE WHEN EXISTS (
                                SELECT 1 FROM manifests o JOIN repositories ro ON ro.id = o.repository_id
                                WHERE o.digest = m.digest AND o.repository_id <> m.repository_id AND ",
                    $crate::lifecycle::in_project!("ro"),
                    ") THEN 0 ELSE CAST(length(m.content) AS BIGINT) END), 0) AS BIGINT) AS unique_bytes
                     FROM repositories r JOIN manifests m ON m.repository_id = r.id WHERE ",
                    $crate::lifecycle::in_project!("r"),
                    " GROUP BY r.name"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .fetch_all(&self.$read)
                .await?;
                let mut usage: std::collections::BTreeMap<String, $crate::lifecycle::RepositoryUsage> =
                    Default::default();
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

            async fn set_retention(&self, project: &str, policy: &str) -> $crate::Result<()> {
                $crate::lifecycle::set_setting!(&self.$write, self.now(), project, "retention", policy)
            }

            async fn projects_with_retention(&self) -> $crate::Result<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT project FROM project_settings WHERE retention <> '' ORDER BY project",
                )
                .fetch_all(&self.$read)
                .await?)
            }

            async fn project_tags(&self, project: &str) -> $crate::Result<Vec<$crate::lifecycle::TagRecord>> {
                use sqlx::Row;
                use $crate::rows::parse;
                let (p, low, high) = $crate::lifecycle::project_bounds(project);
                let rows = sqlx::query(concat!(
                    "SELECT r.name AS repository, t.name AS tag, m.digest, t.updated_at, t.pulled_at
                     FROM tags t JOIN repositories r ON r.id = t.repository_id
                     JOIN manifests m ON m.id = t.manifest_id WHERE ",
                    $crate::lifecycle::in_project!("r"),
                    " ORDER BY r.name, t.name"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .fetch_all(&self.$read)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::lifecycle::TagRecord {
                            repository: parse(row.try_get::<&str, _>("repository")?)?,
                            tag: parse(row.try_get::<&str, _>("tag")?)?,
                            digest: parse(row.try_get::<&str, _>("digest")?)?,
                            pushed_at: row.try_get("updated_at")?,
                            pulled_at: row.try_get("pulled_at")?,
                        })
                    })
                    .collect()
            }

            async fn delete_tag_naming(
                &self,
                repository: &berth_oci::Repository,
                tag: &berth_oci::Tag,
                digest: &berth_oci::Digest,
            ) -> $crate::Result<bool> {
                // One statement: a PUT moving the tag either committed before (the tag names
                // another manifest now: kept) or waits for this delete and recreates it.
                // PostgreSQL: after the tag list's lock, which every change of the list takes
                // first.
                let mut tx = self.$begin().await?;
                if !$lock_tag_list.is_empty() {
                    sqlx::query($lock_tag_list)
                        .bind(repository.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                let done = sqlx::query(
                    "DELETE FROM tags WHERE name = $1
                     AND repository_id = (SELECT id FROM repositories WHERE name = $2)
                     AND manifest_id = (SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id
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
                repository: &berth_oci::Repository,
                tag: &berth_oci::Tag,
                now: i64,
                since: i64,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE tags SET pulled_at = $1 WHERE name = $2
                     AND repository_id = (SELECT id FROM repositories WHERE name = $3)
                     AND (pulled_at IS NULL OR pulled_at < $4)",
                )
                .bind(now)
                .bind(tag.as_str())
                .bind(repository.as_str())
                .bind(since)
                .execute(&self.$write)
                .await?;
                Ok(())
            }

            async fn project_has_blob(&self, project: &str, digest: &berth_oci::Digest) -> $crate::Result<bool> {
                let (p, low, high) = $crate::lifecycle::project_bounds(project);
                let found: Option<i32> = sqlx::query_scalar(concat!(
                    "SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
                     WHERE rb.digest = $4 AND ",
                    $crate::lifecycle::in_project!("r"),
                    " LIMIT 1"
                ))
                .bind(&p)
                .bind(&low)
                .bind(&high)
                .bind(digest.to_string())
                .fetch_optional(&self.$read)
                .await?;
                Ok(found.is_some())
            }
        }
    };
}
pub(crate) use impl_lifecycle;
