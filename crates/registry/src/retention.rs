//! Retention policies (Harbor's tag retention): per project, rules that say which tags to
//! keep; every other tag of a repository the rules cover is deleted. Rules:
//!
//! - `keep_last: N`: the N tags of each repository pushed most recently;
//! - `keep_pushed_within_days: D`: tags pushed in the last D days;
//! - `keep_pulled_within_days: D`: tags pulled in the last D days (pulls are recorded per tag,
//!   at most once an hour);
//! - `keep_always: true`: every tag the rule's pattern matches.
//!
//! Each rule applies to the repositories its `repositories` pattern matches (the full name,
//! default `*`: all) and the tags its `tags` pattern matches (default `*`). A tag is kept if
//! any rule keeps it; a repository no rule applies to is left alone, and a project without
//! rules loses nothing. Immutable tags are never deleted.
//!
//! Retention deletes tags, never manifests or blobs directly: the manifests left untagged are
//! garbage collection's (`delete_untagged`), with its checks for indexes and referrers. Each
//! deletion is an audit event (`retention.delete`), and a deletion happens only if the tag
//! still names the manifest it was judged by.

use std::collections::{BTreeMap, BTreeSet};

use berth_meta::{Job, TagRecord};
use berth_oci::{Digest, Repository, Tag};
use serde::{Deserialize, Serialize};

use crate::lifecycle::tag_matches;
use crate::{Audit, AuditAction, Error, Principal, Registry, Result};

const DAY: i64 = 24 * 60 * 60;

/// A project's retention policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    pub rules: Vec<RetentionRule>,
}

/// One rule: which repositories and tags it looks at, and which of those it keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    #[serde(default = "everything")]
    pub repositories: String,
    #[serde(default = "everything")]
    pub tags: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pushed_within_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_pulled_within_days: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_always: bool,
}

fn everything() -> String {
    "*".into()
}

impl RetentionPolicy {
    /// Parses and checks a policy: each rule says exactly one way to keep.
    pub fn parse(json: &str) -> Result<RetentionPolicy> {
        let policy: RetentionPolicy = serde_json::from_str(json)
            .map_err(|e| Error::Invalid(format!("invalid retention policy: {e}")))?;
        for (i, r) in policy.rules.iter().enumerate() {
            let ways = [
                r.keep_last.is_some(),
                r.keep_pushed_within_days.is_some(),
                r.keep_pulled_within_days.is_some(),
                r.keep_always,
            ]
            .iter()
            .filter(|w| **w)
            .count();
            if ways != 1 {
                return Err(Error::Invalid(format!(
                    "retention rule {}: say exactly one of keep_last, keep_pushed_within_days, \
                     keep_pulled_within_days, keep_always",
                    i + 1
                )));
            }
            for pattern in [&r.repositories, &r.tags] {
                if pattern.is_empty() || pattern.len() > 256 {
                    return Err(Error::Invalid(format!(
                        "retention rule {}: patterns are 1 to 256 characters",
                        i + 1
                    )));
                }
            }
        }
        Ok(policy)
    }

    /// The tags of one repository to delete (`tags` all belong to it), judged at `now`.
    fn judge<'a>(
        &self,
        repository: &Repository,
        tags: &'a [TagRecord],
        now: i64,
    ) -> Vec<&'a TagRecord> {
        let rules: Vec<&RetentionRule> = self
            .rules
            .iter()
            .filter(|r| tag_matches(&r.repositories, repository.as_str()))
            .collect();
        if rules.is_empty() {
            return Vec::new();
        }
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        for rule in rules {
            let mut matching: Vec<&TagRecord> = tags
                .iter()
                .filter(|t| tag_matches(&rule.tags, t.tag.as_str()))
                .collect();
            if let Some(n) = rule.keep_last {
                // Newest first; among tags pushed in the same second, by name, last first.
                matching.sort_by(|a, b| {
                    (b.pushed_at, b.tag.as_str()).cmp(&(a.pushed_at, a.tag.as_str()))
                });
                matching.truncate(n as usize);
            } else if let Some(days) = rule.keep_pushed_within_days {
                matching.retain(|t| t.pushed_at >= now - i64::from(days) * DAY);
            } else if let Some(days) = rule.keep_pulled_within_days {
                matching.retain(|t| {
                    t.pulled_at
                        .is_some_and(|p| p >= now - i64::from(days) * DAY)
                });
            }
            kept.extend(matching.iter().map(|t| t.tag.as_str()));
        }
        tags.iter()
            .filter(|t| !kept.contains(t.tag.as_str()))
            .collect()
    }
}

/// A tag retention removed (or, in a dry run, would).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetainedOut {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
}

/// What one application of a project's policy did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub project: String,
    pub dry_run: bool,
    /// Tags looked at.
    pub tags: u64,
    /// Tags deleted (dry run: that would be).
    pub deleted: Vec<RetainedOut>,
    /// Tags the rules would delete but an immutable rule keeps.
    pub immutable: u64,
    /// Tags pushed again since they were judged: kept.
    pub moved: u64,
}

impl Registry {
    /// The project's policy (its admins and system administrators).
    pub async fn retention_policy(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<RetentionPolicy> {
        self.require_project_admin(who, project).await?;
        self.policy_of(project).await
    }

    async fn policy_of(&self, project: &str) -> Result<RetentionPolicy> {
        let text = self.meta.project_settings(project).await?.retention;
        if text.is_empty() {
            Ok(RetentionPolicy::default())
        } else {
            RetentionPolicy::parse(&text)
        }
    }

    /// Replaces the project's policy (its admins and system administrators); no rules: none.
    pub async fn set_retention_policy(
        &self,
        who: &Principal,
        project: &str,
        policy: &RetentionPolicy,
    ) -> Result<()> {
        self.require_project_admin(who, project).await?;
        let text = if policy.rules.is_empty() {
            String::new()
        } else {
            serde_json::to_string(policy).map_err(|e| Error::Internal(e.to_string()))?
        };
        Ok(self.meta.set_retention(project, &text).await?)
    }

    /// Applies the project's policy now, as `who` (its admins and system administrators).
    pub async fn run_retention(
        &self,
        who: &Principal,
        project: &str,
        dry_run: bool,
        actor: &str,
    ) -> Result<RetentionReport> {
        self.require_project_admin(who, project).await?;
        self.apply_retention(project, dry_run, actor).await
    }

    /// Applies every project's policy: the schedule. `None` when another process is at it.
    pub async fn apply_all_retention(&self) -> Result<Option<Vec<RetentionReport>>> {
        let Some(lock) = self.meta.try_lock_job(Job::Retention).await? else {
            return Ok(None);
        };
        let mut reports = Vec::new();
        let mut outcome = Ok(());
        for project in self.meta.projects_with_retention().await? {
            match self.apply_retention(&project, false, "retention").await {
                Ok(report) => reports.push(report),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        lock.release().await;
        outcome.map(|()| Some(reports))
    }

    /// Judges every tag of the project and deletes those no rule keeps.
    pub async fn apply_retention(
        &self,
        project: &str,
        dry_run: bool,
        actor: &str,
    ) -> Result<RetentionReport> {
        let policy = self.policy_of(project).await?;
        let patterns = self.meta.project_settings(project).await?.immutable_tags;
        let now = self.now();
        let mut by_repository: BTreeMap<Repository, Vec<TagRecord>> = BTreeMap::new();
        for t in self.meta.project_tags(project).await? {
            by_repository
                .entry(t.repository.clone())
                .or_default()
                .push(t);
        }
        let mut report = RetentionReport {
            project: project.to_string(),
            dry_run,
            ..RetentionReport::default()
        };
        for (repository, tags) in &by_repository {
            report.tags += tags.len() as u64;
            for t in policy.judge(repository, tags, now) {
                if patterns.iter().any(|p| tag_matches(p, t.tag.as_str())) {
                    report.immutable += 1;
                    continue;
                }
                if !dry_run {
                    if !self
                        .meta
                        .delete_tag_naming(repository, &t.tag, &t.digest)
                        .await?
                    {
                        report.moved += 1;
                        continue;
                    }
                    let event = Audit::on_repository(
                        AuditAction::RetentionDelete,
                        repository,
                        format!("{repository}:{}@{}", t.tag, t.digest),
                    );
                    self.record(actor, None, event).await;
                }
                report.deleted.push(RetainedOut {
                    repository: repository.to_string(),
                    tag: t.tag.to_string(),
                    digest: t.digest.clone(),
                });
            }
        }
        Ok(report)
    }

    /// Records that `tag` was pulled, at most once an hour per tag; off the request's path
    /// (a failure is logged, the pull is not affected).
    pub(crate) fn note_pull(&self, repository: &Repository, tag: &Tag) {
        let meta = std::sync::Arc::clone(&self.meta);
        let (repository, tag) = (repository.clone(), tag.clone());
        let now = self.now();
        {
            let Ok(mut recent) = self.recent_pulls.lock() else {
                return;
            };
            let key = (repository.as_str().to_string(), tag.as_str().to_string());
            if recent.get(&key).is_some_and(|at| *at > now - 3600) {
                return;
            }
            if recent.len() >= 100_000 {
                recent.clear();
            }
            recent.insert(key, now);
        }
        tokio::spawn(async move {
            if let Err(e) = meta.record_pull(&repository, &tag, now, now - 3600).await {
                tracing::warn!(%repository, %tag, error = %e, "could not record a pull");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(
        repository: &str,
        name: &str,
        pushed_days_ago: i64,
        pulled_days_ago: Option<i64>,
    ) -> TagRecord {
        let now = 100 * DAY;
        TagRecord {
            repository: repository.parse().expect("repository"),
            tag: name.parse().expect("tag"),
            digest: Digest::sha256_of(name.as_bytes()),
            pushed_at: now - pushed_days_ago * DAY,
            pulled_at: pulled_days_ago.map(|d| now - d * DAY),
        }
    }

    fn deleted(policy: &str, tags: &[TagRecord]) -> Vec<String> {
        let policy = RetentionPolicy::parse(policy).expect("policy");
        let repository = tags[0].repository.clone();
        policy
            .judge(&repository, tags, 100 * DAY)
            .iter()
            .map(|t| t.tag.as_str().to_string())
            .collect()
    }

    #[test]
    fn rules_keep_what_any_of_them_keeps() {
        let tags = [
            tag("team/app", "1.0", 40, None),
            tag("team/app", "1.1", 30, Some(1)),
            tag("team/app", "1.2", 20, None),
            tag("team/app", "1.3", 10, None),
            tag("team/app", "release-1", 50, None),
        ];
        assert_eq!(
            deleted(r#"{"rules":[{"keep_last":2}]}"#, &tags),
            ["1.0", "1.1", "release-1"]
        );
        assert_eq!(
            deleted(r#"{"rules":[{"keep_pushed_within_days":25}]}"#, &tags),
            ["1.0", "1.1", "release-1"]
        );
        assert_eq!(
            deleted(r#"{"rules":[{"keep_pulled_within_days":7}]}"#, &tags),
            ["1.0", "1.2", "1.3", "release-1"]
        );
        assert_eq!(
            deleted(
                r#"{"rules":[{"keep_last":1},{"tags":"release-*","keep_always":true},{"keep_pulled_within_days":7}]}"#,
                &tags
            ),
            ["1.0", "1.2"]
        );
        // keep_last counts among the tags its pattern matches.
        assert_eq!(
            deleted(r#"{"rules":[{"tags":"1.*","keep_last":3}]}"#, &tags),
            ["1.0", "release-1"]
        );
        // A repository no rule covers loses nothing; no rules, nothing.
        assert!(
            deleted(
                r#"{"rules":[{"repositories":"team/web*","keep_last":1}]}"#,
                &tags
            )
            .is_empty()
        );
        assert!(deleted(r#"{"rules":[]}"#, &tags).is_empty());
    }

    #[test]
    fn a_rule_says_exactly_one_way_to_keep() {
        for bad in [
            r#"{"rules":[{}]}"#,
            r#"{"rules":[{"keep_last":1,"keep_always":true}]}"#,
            r#"{"rules":[{"keep_lost":1}]}"#,
            r#"{"rules":[{"tags":"","keep_last":1}]}"#,
            "not json",
        ] {
            assert!(RetentionPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
