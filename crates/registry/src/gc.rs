//! Garbage collection, online: no read-only window, safe beside pushes on every replica.
//!
//! **Mark**, from one consistent snapshot of the database (never a walk of storage): a
//! manifest is live if a tag names it, if it is younger than the grace period, if it is the
//! subject of a referrer, if a live index lists it, or if its subject is live (a referrer of a
//! live image); without `delete_untagged` every manifest is live. A repository's link to a
//! blob is live if a surviving manifest of that repository references the blob, or if it is
//! younger than the grace period (an upload whose manifest has not come yet). A blob is live
//! while any link to it is.
//!
//! **Sweep**, in that order: manifests, links, blob rows, then blob objects. Every deletion
//! re-checks its conditions in the database, against concurrent writers
//! ([`berth_meta::Collector`]): a manifest PUT that references a blob being swept either
//! commits first (the link is then referenced and stays) or finds the link gone and fails with
//! `MANIFEST_BLOB_UNKNOWN`. Never a manifest pointing at a deleted blob. A blob's object is
//! deleted after its row (a crash in between leaves an orphan object, never a row without
//! bytes), by its own key, which no other upload shares.
//!
//! One collection at a time across every process sharing the database (its job lock).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use berth_meta::{BlobRecord, GcSnapshot, Job};
use berth_oci::Digest;
use berth_storage::BlobKey;

use crate::{Registry, Result};

/// Rows deleted per database transaction (and objects per storage batch).
const BATCH: usize = 200;

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Content younger than this is never collected (an upload not yet referenced by its
    /// manifest, a child manifest pushed before its index).
    pub grace: Duration,
    /// Also collect manifests no tag names (except those an index lists, a referrer names as
    /// its subject, or referrers of live images).
    pub delete_untagged: bool,
    /// Report what would go, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60 * 60),
            delete_untagged: false,
            dry_run: false,
        }
    }
}

/// A manifest collected, by repository and digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CollectedManifest {
    pub repository: String,
    pub digest: Digest,
}

/// What one collection found and did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// What the snapshot held.
    pub manifests_examined: u64,
    pub blobs_examined: u64,
    /// Manifests deleted (dry run: that would be).
    pub manifests: Vec<CollectedManifest>,
    /// Repository links to blobs removed.
    pub links_removed: u64,
    /// Blobs deleted, and their bytes.
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    /// Blobs deleted from the database whose object storage would not delete: orphans, for
    /// `berth fsck --repair`.
    pub objects_failed: u64,
    /// Marked garbage, but found in use again when swept (a concurrent push): kept.
    pub kept_in_use: u64,
    /// Seconds the whole collection took, and the sweep's pace.
    pub seconds: f64,
    pub blobs_per_second: f64,
    pub objects_per_second: f64,
}

/// What the mark phase decided.
struct Marked {
    /// Manifest ids to delete, parents (indexes, referrers) before what they name.
    manifests: Vec<i64>,
}

impl Registry {
    /// Collects garbage (see the module documentation). `None` when another process is
    /// collecting.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<Option<GcReport>> {
        let Some(lock) = self.meta.try_lock_job(Job::GarbageCollection).await? else {
            return Ok(None);
        };
        let report = self.collect(options).await;
        lock.release().await;
        report.map(Some)
    }

    /// What is dated before the returned second (and unreferenced) is collected.
    ///
    /// With a grace, that is the grace before now. A zero grace means whatever is unreferenced
    /// when the collection runs; dates are whole seconds, so the mark first waits for the
    /// clock's next second (at most one): everything dated before the collection was asked
    /// for is then older than the cutoff, and whatever is uploaded or dated again (pushed,
    /// mounted) from the mark on is not, so this collection never takes it and a push that
    /// lost a blob to it wins when it is tried again.
    async fn cutoff(&self, grace: Duration) -> i64 {
        if grace.is_zero() {
            let next = self.now().saturating_add(1);
            self.clock().wait_until(next).await;
            return next;
        }
        let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        self.now().saturating_sub(grace)
    }

    async fn collect(&self, options: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let cutoff = self.cutoff(options.grace).await;
        let snapshot = self.meta.gc_snapshot().await?;
        let mut report = GcReport {
            dry_run: options.dry_run,
            manifests_examined: snapshot.manifests.len() as u64,
            blobs_examined: snapshot.blobs.len() as u64,
            ..GcReport::default()
        };
        let names: HashMap<i64, &str> = snapshot
            .repositories
            .iter()
            .map(|(id, name)| (*id, name.as_str()))
            .collect();
        let marked = mark(&snapshot, cutoff, options.delete_untagged);

        // Manifests: a round deletes what nothing names any more; what it named may go in
        // the next round (the marked order makes one round the usual case).
        let mut deleted_manifests: HashSet<i64> = HashSet::new();
        if options.dry_run {
            deleted_manifests.extend(marked.manifests.iter().copied());
        } else {
            let mut pending = marked.manifests.clone();
            while !pending.is_empty() {
                let mut progress = false;
                for batch in pending.chunks(BATCH) {
                    let done = self.meta.sweep_manifests(batch, cutoff).await?;
                    progress |= !done.is_empty();
                    deleted_manifests.extend(done);
                }
                pending.retain(|id| !deleted_manifests.contains(id));
                if !progress {
                    break;
                }
            }
            report.kept_in_use += pending.len() as u64;
        }
        report.manifests = snapshot
            .manifests
            .iter()
            .filter(|m| deleted_manifests.contains(&m.id))
            .map(|m| CollectedManifest {
                repository: names.get(&m.repository_id).unwrap_or(&"?").to_string(),
                digest: m.digest.clone(),
            })
            .collect();

        // Links: referenced by a manifest of their repository that survives, or young.
        let surviving: HashMap<i64, i64> = snapshot
            .manifests
            .iter()
            .filter(|m| !deleted_manifests.contains(&m.id))
            .map(|m| (m.id, m.repository_id))
            .collect();
        let referenced: HashSet<(i64, &Digest)> = snapshot
            .references
            .iter()
            .filter(|r| !r.manifest)
            .filter_map(|r| surviving.get(&r.manifest_id).map(|repo| (*repo, &r.digest)))
            .collect();
        let dead_links: Vec<(i64, Digest)> = snapshot
            .links
            .iter()
            .filter(|l| {
                l.created_at < cutoff && !referenced.contains(&(l.repository_id, &l.digest))
            })
            .map(|l| (l.repository_id, l.digest.clone()))
            .collect();
        if options.dry_run {
            report.links_removed = dead_links.len() as u64;
        } else {
            for batch in dead_links.chunks(BATCH) {
                report.links_removed += self.meta.sweep_links(batch, cutoff).await?;
            }
            report.kept_in_use += dead_links.len() as u64 - report.links_removed;
        }

        // Blobs no link survives to, past the grace period.
        let dead: HashSet<(i64, &Digest)> = dead_links.iter().map(|(r, d)| (*r, d)).collect();
        let linked: HashSet<&Digest> = snapshot
            .links
            .iter()
            .filter(|l| !dead.contains(&(l.repository_id, &l.digest)))
            .map(|l| &l.digest)
            .collect();
        let dead_blobs: Vec<&BlobRecord> = snapshot
            .blobs
            .iter()
            .filter(|b| b.created_at < cutoff && !linked.contains(&b.record.digest))
            .map(|b| &b.record)
            .collect();
        let sweep_started = Instant::now();
        if options.dry_run {
            report.blobs_deleted = dead_blobs.len() as u64;
            report.bytes_freed = dead_blobs.iter().map(|b| b.size).sum();
        } else {
            let digests: Vec<Digest> = dead_blobs.iter().map(|b| b.digest.clone()).collect();
            for batch in digests.chunks(BATCH) {
                let rows = self.meta.sweep_blobs(batch, cutoff).await?;
                report.kept_in_use += (batch.len() - rows.len()) as u64;
                report.blobs_deleted += rows.len() as u64;
                report.bytes_freed += rows.iter().map(|b| b.size).sum::<u64>();
                report.objects_failed += self.delete_objects(rows).await;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let sweep_seconds = sweep_started.elapsed().as_secs_f64().max(1e-6);
        report.seconds = seconds;
        report.blobs_per_second = report.blobs_deleted as f64 / sweep_seconds;
        report.objects_per_second =
            (report.manifests.len() as u64 + report.links_removed + report.blobs_deleted) as f64
                / seconds.max(1e-6);
        Ok(report)
    }

    /// Deletes the objects of blob rows already deleted; returns how many storage refused.
    async fn delete_objects(&self, rows: Vec<BlobRecord>) -> u64 {
        let mut keys = Vec::with_capacity(rows.len());
        let mut failed = 0;
        for row in &rows {
            match BlobKey::parse(&row.storage_key) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(digest = %row.digest, key = row.storage_key, error = %e,
                        "garbage collection will not delete an object under a name berth would not write");
                }
            }
        }
        let errors = self.blobs.delete_many(&keys).await;
        for e in &errors {
            tracing::warn!(error = %e,
                "garbage collection could not delete a blob's object; `berth fsck --repair` will");
        }
        failed + errors.len() as u64
    }
}

/// The mark phase: which manifests are garbage, in an order that deletes what names others
/// first.
fn mark(snapshot: &GcSnapshot, cutoff: i64, delete_untagged: bool) -> Marked {
    if !delete_untagged {
        return Marked {
            manifests: Vec::new(),
        };
    }
    let index: HashMap<(i64, &Digest), usize> = snapshot
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.repository_id, &m.digest), i))
        .collect();
    let position: HashMap<i64, usize> = snapshot
        .manifests
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id, i))
        .collect();
    // Edges a live manifest keeps alive: its index entries, and its referrers.
    let mut keeps: Vec<Vec<usize>> = vec![Vec::new(); snapshot.manifests.len()];
    for r in snapshot.references.iter().filter(|r| r.manifest) {
        if let Some(&parent) = position.get(&r.manifest_id) {
            let repo = snapshot.manifests[parent].repository_id;
            if let Some(&child) = index.get(&(repo, &r.digest)) {
                keeps[parent].push(child);
            }
        }
    }
    let mut is_subject = vec![false; snapshot.manifests.len()];
    for (i, m) in snapshot.manifests.iter().enumerate() {
        if let Some(subject) = &m.subject
            && let Some(&s) = index.get(&(m.repository_id, subject))
        {
            is_subject[s] = true;
            keeps[s].push(i);
        }
    }
    let mut live = vec![false; snapshot.manifests.len()];
    let mut stack: Vec<usize> = snapshot
        .manifests
        .iter()
        .enumerate()
        .filter(|(i, m)| m.tags > 0 || m.created_at >= cutoff || is_subject[*i])
        .map(|(i, _)| i)
        .collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut live[i], true) {
            continue;
        }
        stack.extend(keeps[i].iter().copied().filter(|&j| !live[j]));
    }
    // Garbage that names other garbage goes first: order by how many edges lead out of it.
    let mut garbage: Vec<usize> = (0..live.len()).filter(|&i| !live[i]).collect();
    garbage.sort_by_key(|&i| std::cmp::Reverse(keeps[i].len()));
    Marked {
        manifests: garbage
            .into_iter()
            .map(|i| snapshot.manifests[i].id)
            .collect(),
    }
}
