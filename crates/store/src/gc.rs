//! What a name keeps alive, and freeing what nothing keeps alive.
//!
//! Crash safety: index.json is rewritten (and synced) before any blob is deleted, so a crash in
//! between leaves unreferenced blobs (freed by [`Store::prune`]), never a name whose blobs are
//! gone. Both run under the index lock, and [`Store::tag`] checks an image's blobs under the
//! same lock, so a name cannot be added for blobs that are being deleted.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use berth_oci::{Descriptor, Digest, ParsedManifest, media_type, parse_manifest};

use crate::error::{Result, StoreError};
use crate::layout::{Store, sync_dir};

/// Unreferenced blobs younger than this survive [`Store::prune`]: a pull or load that has
/// written its blobs but not yet tagged its image must not lose them.
pub const UNREFERENCED_BLOB_GRACE: Duration = Duration::from_secs(60 * 60);
/// Partial downloads untouched for this long are abandoned; [`Store::prune`] deletes them.
pub const STALE_PARTIAL_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// What [`Store::remove`] did, in docker's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// Names removed from the store ("Untagged: ...").
    pub untagged: Vec<String>,
    /// Blobs deleted because no remaining name reaches them ("Deleted: sha256:..."); the
    /// removed images' manifests first.
    pub deleted: Vec<Digest>,
}

/// What [`Store::prune`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted_blobs: Vec<Digest>,
    pub deleted_partials: Vec<PathBuf>,
    pub bytes_freed: u64,
}

impl Store {
    /// Parses `desc`'s manifest if it is a manifest type and in the store.
    pub(crate) fn parse_stored_manifest(
        &self,
        desc: &Descriptor,
    ) -> Result<Option<ParsedManifest>> {
        if !media_type::MANIFEST_TYPES.contains(&desc.media_type.as_str())
            || !self.has_blob(&desc.digest)
        {
            return Ok(None);
        }
        let bytes = self.read_blob(&desc.digest)?;
        parse_manifest(Some(&desc.media_type), &bytes)
            .map(Some)
            .map_err(|source| StoreError::Manifest {
                digest: desc.digest.clone(),
                source,
            })
    }

    /// The blobs in the store that `desc` reaches: itself, and for a manifest its config and
    /// layers, for an index its children (nested indexes too). Blobs not in the store are left
    /// out: an index pulled for one platform holds only that platform's child.
    pub fn referenced_blobs(&self, desc: &Descriptor) -> Result<BTreeSet<Digest>> {
        let mut found = BTreeSet::new();
        let mut pending = vec![desc.clone()];
        while let Some(d) = pending.pop() {
            if !self.has_blob(&d.digest) || !found.insert(d.digest.clone()) {
                continue;
            }
            if let Some(parsed) = self.parse_stored_manifest(&d)? {
                for blob in parsed.blob_references() {
                    if self.has_blob(&blob.digest) {
                        found.insert(blob.digest.clone());
                    }
                }
                pending.extend(parsed.manifests);
            }
        }
        Ok(found)
    }

    /// docker `image rm`, kept simple: each name is untagged; then every blob that a removed
    /// image reached and no remaining name reaches is deleted (so an image goes when its last
    /// name goes, and blobs shared with other images stay).
    ///
    /// Names are full and normalized. An unknown name is an error (and nothing changes) unless
    /// `force` is set, in which case it is skipped, as `rm -f` does. Removing every name of an
    /// image (docker's `rmi -f <id>`) is the caller's choice of `names`.
    pub fn remove(&self, names: &[&str], force: bool) -> Result<RemoveReport> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut report = RemoveReport::default();
        let mut removed = Vec::new();
        for name in names {
            match index.remove(name) {
                Some(desc) => {
                    report.untagged.push((*name).to_string());
                    removed.push(desc);
                }
                None if force || report.untagged.iter().any(|n| n == name) => {}
                None => return Err(StoreError::ImageNotFound((*name).to_string())),
            }
        }
        if removed.is_empty() {
            return Ok(report);
        }
        self.write_index(&index)?;

        // Both sets are computed before anything is deleted: an unreadable manifest fails the
        // whole removal rather than deleting on a partial picture.
        let mut keep = BTreeSet::new();
        for desc in &index.manifests {
            keep.extend(self.referenced_blobs(desc)?);
        }
        let mut doomed = BTreeSet::new();
        for desc in &removed {
            doomed.extend(self.referenced_blobs(desc)?);
        }
        let doomed: BTreeSet<Digest> = doomed.difference(&keep).cloned().collect();
        let tops = removed
            .iter()
            .map(|d| &d.digest)
            .filter(|d| doomed.contains(*d));
        let mut ordered: Vec<Digest> = Vec::new();
        for d in tops.chain(doomed.iter()) {
            if !ordered.contains(d) {
                ordered.push(d.clone());
            }
        }
        for digest in ordered {
            if self.delete_blob(&digest)?.is_some() {
                report.deleted.push(digest);
            }
        }
        sync_dir(&self.blobs_dir())?;
        Ok(report)
    }

    /// Deletes blobs no index.json entry reaches (if older than [`UNREFERENCED_BLOB_GRACE`])
    /// and partial files untouched for [`STALE_PARTIAL_AGE`] that no writer holds.
    pub fn prune(&self) -> Result<PruneReport> {
        self.prune_older_than(UNREFERENCED_BLOB_GRACE, STALE_PARTIAL_AGE)
    }

    /// [`Store::prune`] with other ages.
    pub fn prune_older_than(
        &self,
        unreferenced_blobs: Duration,
        partials: Duration,
    ) -> Result<PruneReport> {
        let _lock = self.lock_index()?;
        let index = self.read_index()?;
        let mut keep = BTreeSet::new();
        for desc in &index.manifests {
            keep.extend(self.referenced_blobs(desc)?);
        }
        let mut report = PruneReport::default();
        let now = SystemTime::now();
        let older_than = |meta: &fs::Metadata, age: Duration| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|a| a >= age)
        };

        let blobs_dir = self.blobs_dir();
        for entry in fs::read_dir(&blobs_dir).map_err(StoreError::io("listing", &blobs_dir))? {
            let entry = entry.map_err(StoreError::io("listing", &blobs_dir))?;
            // Files that are not named by a digest are not ours to judge.
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            let meta = entry
                .metadata()
                .map_err(StoreError::io("inspecting", &entry.path()))?;
            if keep.contains(&digest) || !older_than(&meta, unreferenced_blobs) {
                continue;
            }
            if let Some(size) = self.delete_blob(&digest)? {
                report.bytes_freed += size;
                report.deleted_blobs.push(digest);
            }
        }
        sync_dir(&blobs_dir)?;

        let ingest = self.ingest_dir();
        for entry in fs::read_dir(&ingest).map_err(StoreError::io("listing", &ingest))? {
            let entry = entry.map_err(StoreError::io("listing", &ingest))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.ends_with(".partial") || name.ends_with(".tmp")) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            if !older_than(&meta, partials) {
                continue;
            }
            // A writer holds its partial file locked: leave those alone.
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.bytes_freed += meta.len();
                    report.deleted_partials.push(path);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("deleting", &path)(e)),
            }
        }
        sync_dir(&ingest)?;
        Ok(report)
    }

    /// Deletes one blob; returns its size, or `None` if it was not there.
    fn delete_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("inspecting", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(size)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("deleting", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, TestImage};
    use crate::testutil;

    #[test]
    fn referenced_blobs_walks_nested_indexes_and_skips_missing_children() {
        let (_dir, store) = testutil::store();
        let a = TestImage::build(&store, b"a").expect("image");
        let inner = testing::put_index(&store, [a.manifest.clone(), testing::absent_manifest()])
            .expect("index");
        let outer = testing::put_index(&store, [inner.clone()]).expect("index");
        let got = store.referenced_blobs(&outer).expect("walk");
        let want: BTreeSet<Digest> = [
            outer.digest.clone(),
            inner.digest.clone(),
            a.manifest.digest.clone(),
            a.config.digest.clone(),
            a.layer.digest.clone(),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn remove_frees_only_unshared_blobs() {
        let (_dir, store) = testutil::store();
        // Two images sharing one layer; the first also has two names.
        let shared_layer = testing::put_layer(&store, b"shared").expect("layer");
        let a = TestImage::build_with_layers(&store, b"a", [shared_layer.clone()]).expect("image");
        let b = TestImage::build_with_layers(&store, b"b", [shared_layer.clone()]).expect("image");
        store
            .tag("docker.io/library/a:1", a.manifest.clone())
            .expect("tag");
        store
            .tag("docker.io/library/a:alias", a.manifest.clone())
            .expect("tag");
        store
            .tag("docker.io/library/b:1", b.manifest.clone())
            .expect("tag");

        let report = store.remove(&["docker.io/library/a:1"], false).expect("rm");
        assert_eq!(report.untagged, ["docker.io/library/a:1"]);
        assert!(report.deleted.is_empty(), "a:alias still names it");
        assert!(store.has_blob(&a.manifest.digest));

        let report = store
            .remove(&["docker.io/library/a:alias"], false)
            .expect("rm");
        assert_eq!(report.deleted[0], a.manifest.digest);
        let deleted: BTreeSet<_> = report.deleted.iter().cloned().collect();
        assert_eq!(
            deleted,
            [
                a.manifest.digest.clone(),
                a.config.digest.clone(),
                a.layer.digest.clone()
            ]
            .into()
        );
        assert!(!store.has_blob(&a.config.digest));
        assert!(store.has_blob(&shared_layer.digest));
        assert!(store.has_blob(&b.config.digest));

        // Unknown names: an error without force, skipped with it.
        assert!(matches!(
            store.remove(&["docker.io/library/nope:1"], false),
            Err(StoreError::ImageNotFound(_))
        ));
        let report = store
            .remove(&["docker.io/library/nope:1", "docker.io/library/b:1"], true)
            .expect("rm -f");
        assert_eq!(report.untagged, ["docker.io/library/b:1"]);
        assert!(!store.has_blob(&shared_layer.digest));
        assert!(testutil::blob_files(&store).is_empty());
    }

    #[test]
    fn remove_keeps_a_manifest_an_index_still_holds() {
        let (_dir, store) = testutil::store();
        let a = TestImage::build(&store, b"a").expect("image");
        let index = testing::put_index(&store, [a.manifest.clone()]).expect("index");
        store
            .tag("docker.io/library/multi:1", index.clone())
            .expect("tag");
        store
            .tag("docker.io/library/single:1", a.manifest.clone())
            .expect("tag");
        let report = store
            .remove(&["docker.io/library/single:1"], false)
            .expect("rm");
        assert!(report.deleted.is_empty());
        let report = store
            .remove(&["docker.io/library/multi:1"], false)
            .expect("rm");
        assert_eq!(report.deleted.len(), 4);
    }

    #[test]
    fn prune_deletes_old_unreferenced_blobs_and_stale_partials() {
        let (_dir, store) = testutil::store();
        let kept = TestImage::build(&store, b"kept").expect("image");
        store
            .tag("docker.io/library/kept:1", kept.manifest.clone())
            .expect("tag");
        let orphan = store.put_blob(b"orphan").expect("put");
        let young_orphan = store.put_blob(b"young").expect("put");
        let old = SystemTime::now() - Duration::from_secs(2 * 24 * 60 * 60);
        testutil::set_mtime(&store.blob_path(&orphan), old);

        let stale = Digest::sha256_of(b"stale");
        let mut w = store.begin_blob(&stale, None).expect("begin");
        std::io::Write::write_all(&mut w, b"sta").expect("write");
        drop(w);
        testutil::set_mtime(&store.partial_path(&stale), old);
        // Held by a writer: kept however old.
        let busy = Digest::sha256_of(b"busy");
        let held = store.begin_blob(&busy, None).expect("begin");
        testutil::set_mtime(&store.partial_path(&busy), old);

        let report = store.prune().expect("prune");
        assert_eq!(report.deleted_blobs, [orphan]);
        assert_eq!(report.deleted_partials, [store.partial_path(&stale)]);
        assert!(store.has_blob(&young_orphan));
        assert!(store.partial_path(&busy).exists());
        drop(held);
        for d in store.referenced_blobs(&kept.manifest).expect("walk") {
            assert!(store.has_blob(&d));
        }
    }
}
