//! Project lifecycle rules on the push path, and their management: storage quotas (checked
//! before a blob or manifest is accepted), immutable tags (a matching tag, once pushed, cannot
//! move or be deleted), and storage usage reports.
//!
//! Usage comes from the database's rows in one statement ([`berth_meta::Lifecycle`]), so the
//! number a quota is checked against is always the exact one. Two pushes checked at the same
//! moment may both fit alone and together pass the limit by the smaller of them: a quota is
//! a ceiling on what a push may start from, not a reservation.

use berth_meta::{ProjectSettings, ProjectUsage, RepositoryUsage};
use berth_oci::{Digest, Repository, Tag};

use crate::admin::require_system_admin;
use crate::{Error, Principal, Registry, Result};

/// A project's usage report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageReport {
    pub project: String,
    /// Bytes counted against the quota: each blob and manifest once.
    pub bytes: u64,
    pub quota_bytes: Option<u64>,
    #[serde(flatten)]
    pub usage: ProjectUsage,
    pub repositories: Vec<RepositoryUsage>,
}

/// Whether `tag` matches the glob `pattern`: `*` any run of characters, `?` one character,
/// everything else itself.
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), tag.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The tags among `tags` that one of the immutable-tag `patterns` matches.
pub(crate) fn immutable_among(patterns: &[String], tags: &[Tag]) -> Vec<Tag> {
    tags.iter()
        .filter(|t| patterns.iter().any(|p| tag_matches(p, t.as_str())))
        .cloned()
        .collect()
}

/// A pattern is a tag with `*` and `?` allowed.
fn validate_pattern(pattern: &str) -> Result<()> {
    let ok = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-*?".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid tag pattern {:?}: letters, digits, '.', '_', '-' and the wildcards '*' and \
             '?', at most 128 characters",
            pattern.chars().take(140).collect::<String>()
        )))
    }
}

impl Registry {
    /// Refuses (`DENIED`) a push that would take `repository`'s project past its quota:
    /// `growth` more bytes, unless `blob` is one the project holds already.
    pub(crate) async fn check_quota(
        &self,
        repository: &Repository,
        growth: u64,
        blob: Option<&Digest>,
    ) -> Result<()> {
        let limit = self
            .meta
            .project_settings(repository.project())
            .await?
            .quota_bytes;
        self.check_quota_of(repository, limit, growth, blob).await
    }

    /// [`check_quota`](Self::check_quota) with the project's quota already read.
    pub(crate) async fn check_quota_of(
        &self,
        repository: &Repository,
        limit: Option<u64>,
        growth: u64,
        blob: Option<&Digest>,
    ) -> Result<()> {
        let project = repository.project();
        let Some(limit) = limit else {
            return Ok(());
        };
        if let Some(digest) = blob
            && self.meta.project_has_blob(project, digest).await?
        {
            return Ok(());
        }
        let used = self.meta.project_usage(project).await?.bytes();
        if used.saturating_add(growth.max(1)) > limit {
            let needs = if growth == 0 {
                "no room is left for new content".to_string()
            } else {
                format!("this push needs {growth} more")
            };
            return Err(Error::QuotaExceeded(format!(
                "project {project} is over its storage quota: limit {limit} bytes, usage {used} \
                 bytes, {needs}"
            )));
        }
        Ok(())
    }

    /// The tags among `tags` that `repository`'s project keeps immutable.
    pub(crate) async fn immutable_tags(
        &self,
        repository: &Repository,
        tags: &[Tag],
    ) -> Result<Vec<Tag>> {
        let patterns = self
            .meta
            .project_settings(repository.project())
            .await?
            .immutable_tags;
        Ok(immutable_among(&patterns, tags))
    }

    /// The immutable tags naming the manifest `digest` (deleting a manifest deletes its
    /// tags). Reads the repository's tags only when the project has rules.
    pub(crate) async fn immutable_tags_of(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        let patterns = self
            .meta
            .project_settings(repository.project())
            .await?
            .immutable_tags;
        if patterns.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .meta
                .tag_targets(repository, last.as_deref(), 1000)
                .await?;
            found.extend(
                page.items
                    .iter()
                    .filter(|(t, d)| {
                        d == digest && patterns.iter().any(|p| tag_matches(p, t.as_str()))
                    })
                    .map(|(t, _)| t.clone()),
            );
            last = page.items.last().map(|(t, _)| t.as_str().to_string());
            if !page.more {
                return Ok(found);
            }
        }
    }

    /// The `DENIED` error for an immutable tag.
    pub(crate) fn immutable_error(repository: &Repository, tag: &Tag) -> Error {
        Error::TagImmutable(format!(
            "tag {tag} of {repository} is immutable (a rule of project {}): it cannot be \
             overwritten or deleted; a system administrator can lift the rule",
            repository.project()
        ))
    }

    /// A project's settings, for its admins and system administrators.
    pub async fn project_settings(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<ProjectSettings> {
        self.require_project_admin(who, project).await?;
        Ok(self.meta.project_settings(project).await?)
    }

    /// Sets or removes (`None`) a project's quota: system administrators.
    pub async fn set_project_quota(
        &self,
        who: &Principal,
        project: &str,
        quota_bytes: Option<u64>,
    ) -> Result<()> {
        require_system_admin(who)?;
        Ok(self.meta.set_quota(project, quota_bytes).await?)
    }

    /// Replaces a project's immutable tag patterns (empty: none): system administrators, the
    /// only ones who may lift a rule.
    pub async fn set_immutable_tags(
        &self,
        who: &Principal,
        project: &str,
        patterns: &[String],
    ) -> Result<()> {
        require_system_admin(who)?;
        for p in patterns {
            validate_pattern(p)?;
        }
        Ok(self.meta.set_immutable_tags(project, patterns).await?)
    }

    /// What a project holds, in total and per repository: its admins and system
    /// administrators.
    pub async fn project_usage(&self, who: &Principal, project: &str) -> Result<UsageReport> {
        self.require_project_admin(who, project).await?;
        self.usage_of(project).await
    }

    /// What a project holds, unchecked (for tools with the data directory).
    pub async fn usage_of(&self, project: &str) -> Result<UsageReport> {
        let usage = self.meta.project_usage(project).await?;
        Ok(UsageReport {
            project: project.to_string(),
            bytes: usage.bytes(),
            quota_bytes: self.meta.project_settings(project).await?.quota_bytes,
            usage,
            repositories: self.meta.repository_usage(project).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tag_matches;

    #[test]
    fn patterns_match_like_globs() {
        for (pattern, tag, expected) in [
            ("v*", "v1.2.3", true),
            ("v*", "v", true),
            ("v*", "latest", false),
            ("release-*", "release-2024", true),
            ("release-*", "prerelease-1", false),
            ("*-stable", "1.0-stable", true),
            ("*-stable", "1.0-stable-rc", false),
            ("v?", "v1", true),
            ("v?", "v10", false),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("latest", "latest", true),
            ("latest", "Latest", false),
        ] {
            assert_eq!(tag_matches(pattern, tag), expected, "{pattern} ~ {tag}");
        }
    }
}
