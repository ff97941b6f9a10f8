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
