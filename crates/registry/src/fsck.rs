//! `berth fsck`: does storage hold what the database says, byte for byte? Every blob the
//! database records must exist in storage with its size (and, with `verify_digests`, hash to
//! its digest); every blob object in storage should be recorded. It reads and never writes
//! (except orphans, with `repair`), so it is safe while `berth serve` runs on the same
//! backends.
//!
//! Orphans come from a crash between an upload's commit and its row, or a garbage collection
//! whose object delete failed after its row went. `repair` removes an orphan only after
//! asking again, at that moment: is an upload session committing to this key still open (its
//! row is deleted only after the blob row is in), and does a blob row name it now?
//!
//! Why a serving registry gives no false alarms: a blob's object is written before its row is
//! committed (filesystem: rename, then insert; S3: complete, then insert), and rows are read
//! before objects are listed, so every row read has its object by the time of the listing. The
//! other way, an object whose row is about to be committed looks unrecorded: objects written
//! within `grace` are therefore only counted (`recent`), not reported as orphans.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use berth_meta::MetaStore;
use berth_oci::{Digest, DigestHasher};
use berth_storage::{BlobKey, BlobStore};
use futures_util::{StreamExt, TryStreamExt};

use crate::Result;

/// Rows read from the database per query.
const PAGE: u32 = 1000;

#[derive(Clone, Debug)]
pub struct FsckOptions {
    /// Re-hash every blob (reads all the bytes).
    pub verify_digests: bool,
    /// Unrecorded objects younger than this are uploads being committed, not orphans.
    pub grace: Duration,
    /// Remove the orphans.
    pub repair: bool,
}

impl Default for FsckOptions {
    fn default() -> Self {
        Self {
            verify_digests: false,
            grace: Duration::from_secs(60 * 60),
            repair: false,
        }
    }
}

/// A recorded blob that storage does not hold as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlobFault {
    pub digest: Digest,
    pub key: String,
    /// The size the database records.
    pub size: u64,
    /// What is wrong, in words.
    pub problem: String,
}

/// An object in storage that no blob row names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Orphan {
    pub key: String,
    pub size: u64,
}

/// What [`fsck`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckReport {
    /// Blob rows checked, and the bytes they record.
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs re-hashed (with `verify_digests`).
    pub verified: u64,
    /// Rows whose object is missing, has another size, or (verified) other bytes.
    pub faults: Vec<BlobFault>,
    /// Unrecorded objects older than the grace period.
    pub orphans: Vec<Orphan>,
    /// Unrecorded objects within the grace period (uploads being committed), not faults.
    pub recent: u64,
    /// Orphans removed (with `repair`).
    pub removed: u64,
    /// Orphans `repair` left: an upload committing to them, a row naming them by now, or a
    /// failed delete (logged).
    pub kept: u64,
    /// Projects whose storage usage (what quotas are checked against) was recounted.
    pub projects: u64,
    /// Projects whose reported usage differs from the recount.
    pub usage_faults: Vec<UsageFault>,
}

/// A project whose reported usage is not what its repositories hold.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageFault {
    pub project: String,
    /// What the database reports (and quotas are checked against).
    pub reported: u64,
    /// The recount, repository by repository.
    pub recount: u64,
}

impl FsckReport {
    /// Nothing is wrong (any more): every blob is whole and every object recorded, or the
    /// orphans were removed.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
            && self.usage_faults.is_empty()
            && self.orphans.len() as u64 == self.removed
    }
}

/// Compares the blob rows of `meta` with the objects of `blobs`; see the module documentation.
pub async fn fsck(
    meta: &dyn MetaStore,
    blobs: &dyn BlobStore,
    options: &FsckOptions,
) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    // Rows first (see the module documentation), by storage key.
    let mut recorded: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut sizes: HashMap<Digest, u64> = HashMap::new();
    let mut last: Option<Digest> = None;
    loop {
        let page = meta.all_blobs(last.as_ref(), PAGE).await?;
        for blob in &page.items {
            report.blobs += 1;
            report.bytes += blob.size;
            recorded.insert(blob.storage_key.clone(), (blob.digest.clone(), blob.size));
            sizes.insert(blob.digest.clone(), blob.size);
        }
        last = page.items.last().map(|b| b.digest.clone());
        if !page.more {
            break;
        }
    }
    let recent_since = SystemTime::now()
        .checked_sub(options.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut objects = blobs.list_blobs().await?;
    while let Some(object) = objects.try_next().await? {
        let Some((digest, size)) = recorded.remove(object.key.as_str()) else {
            if object.modified >= recent_since {
                report.recent += 1;
            } else {
                report.orphans.push(Orphan {
                    key: object.key.as_str().to_string(),
                    size: object.size,
                });
            }
            continue;
        };
        let fault = |problem: String| BlobFault {
            digest: digest.clone(),
            key: object.key.as_str().to_string(),
            size,
            problem,
        };
        if object.size != size {
            report.faults.push(fault(format!(
                "storage holds {} bytes, the database records {size}",
                object.size
            )));
        } else if options.verify_digests {
            report.verified += 1;
            let actual = hash(blobs, &object.key).await?;
            if actual != digest {
                report
                    .faults
                    .push(fault(format!("the stored bytes hash to {actual}")));
            }
        }
    }
    for (key, (digest, size)) in recorded {
        report.faults.push(BlobFault {
            digest,
            key,
            size,
            problem: "missing from storage".into(),
        });
    }
    report.faults.sort_by_key(|f| f.digest.to_string());
    report.orphans.sort_by(|a, b| a.key.cmp(&b.key));
    recount_usage(meta, &sizes, &mut report).await?;
    if options.repair {
        for orphan in &report.orphans {
            if remove_orphan(meta, blobs, &orphan.key).await {
                report.removed += 1;
            } else {
                report.kept += 1;
            }
        }
    }
    Ok(report)
}

/// Removes an orphan object if it still is one (see the module documentation). `false` if it
/// was kept.
async fn remove_orphan(meta: &dyn MetaStore, blobs: &dyn BlobStore, key: &str) -> bool {
    let Ok(key) = BlobKey::parse(key) else {
        // Not a name berth writes: someone else's file, not ours to remove.
        tracing::warn!(
            key,
            "not removing an object whose name berth would not write"
        );
        return false;
    };
    // The session first: its row goes only after the blob row is in, so a commit that ends
    // between the two questions is seen by the second.
    if let Some(session) = blobs.session_of(&key) {
        match meta.upload(&session.to_ascii_uppercase()).await {
            Ok(None) => {}
            Ok(Some(_)) => return false,
            Err(e) => {
                tracing::warn!(key = key.as_str(), error = %e, "cannot check the upload session");
                return false;
            }
        }
    }
    match meta.blob_by_storage_key(key.as_str()).await {
        Ok(None) => {}
        Ok(Some(_)) => return false,
        Err(e) => {
            tracing::warn!(key = key.as_str(), error = %e, "cannot check the blob rows");
            return false;
        }
    }
    match blobs.delete(&key).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(key = key.as_str(), error = %e, "cannot remove an orphan");
            false
        }
    }
}

/// The digest of the stored bytes, streamed.
async fn hash(blobs: &dyn BlobStore, key: &BlobKey) -> Result<Digest> {
    let mut hasher = DigestHasher::new();
    let mut stream = blobs.open(key, None).await?;
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk.map_err(berth_storage::StorageError::Io)?);
    }
    Ok(hasher.finish())
}

/// Recounts every project's usage from its repositories' links and manifests, one by one,
/// and compares it with what the database reports (one SQL statement, what quotas use). A
/// push landing between the two counts can make them differ: a project that differs is
/// counted again, and reported only if it still differs three times.
async fn recount_usage(
    meta: &dyn MetaStore,
    sizes: &HashMap<Digest, u64>,
    report: &mut FsckReport,
) -> Result<()> {
    let mut projects: std::collections::BTreeMap<String, Vec<berth_oci::Repository>> =
        Default::default();
    let mut last: Option<String> = None;
    loop {
        let page = meta.repositories(last.as_deref(), PAGE).await?;
        for repository in &page.items {
            projects
                .entry(repository.project().to_string())
                .or_default()
                .push(repository.clone());
        }
        last = page.items.last().map(|r| r.as_str().to_string());
        if !page.more {
            break;
        }
    }
    for (project, repositories) in projects {
        report.projects += 1;
        let mut attempt = 0;
        loop {
            let reported = meta.project_usage(&project).await?.bytes();
            let recount = recount_project(meta, &repositories, sizes).await?;
            if reported == recount {
                break;
            }
            attempt += 1;
            if attempt == 3 {
                report.usage_faults.push(UsageFault {
                    project: project.clone(),
                    reported,
                    recount,
                });
                break;
            }
        }
    }
    Ok(())
}

/// A project's bytes, counted repository by repository: each blob and manifest once.
async fn recount_project(
    meta: &dyn MetaStore,
    repositories: &[berth_oci::Repository],
    sizes: &HashMap<Digest, u64>,
) -> Result<u64> {
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    let mut manifests: HashMap<Digest, u64> = HashMap::new();
    for repository in repositories {
        let mut after: Option<Digest> = None;
        loop {
            let digests = meta
                .repository_blob_digests(repository, after.as_ref(), PAGE)
                .await?;
            for d in &digests.items {
                // A blob recorded after the rows were read: its size now (0 if gone again).
                let size = match sizes.get(d) {
                    Some(size) => *size,
                    None => meta.blob(d).await?.map_or(0, |b| b.size),
                };
                blobs.insert(d.clone(), size);
            }
            after = digests.items.last().cloned();
            if !digests.more {
                break;
            }
        }
        let mut after: Option<Digest> = None;
        loop {
            let page = meta
                .repository_manifests(repository, after.as_ref(), PAGE)
                .await?;
            for m in &page.items {
                manifests.insert(m.digest.clone(), m.content.len() as u64);
            }
            after = page.items.last().map(|m| m.digest.clone());
            if !page.more {
                break;
            }
        }
    }
    Ok(blobs.values().sum::<u64>() + manifests.values().sum::<u64>())
}
