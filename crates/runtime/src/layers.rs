//! Unpacked layers, shared by every container of every image that has them, keyed by chain ID
//! (image-spec config.md "Layer ChainID": a layer's identity together with all below it).
//!
//! ```text
//! layers/
//!   <chain ID hex>/diff/      one layer's files, overlayfs whiteouts included (unpack.rs)
//!   <chain ID hex>.lock       held while that layer is being unpacked
//!   <chain ID hex>.partial-*  an unpacking in progress, or left by a crash: removed under the lock
//! ```
//! A layer is unpacked once: the first to take its lock unpacks into a `.partial` directory,
//! checks the diff ID against the image config and renames it into place; the others wait on
//! the lock and find it there. An unpacking that fails removes its `.partial` directory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;

use berth_oci::{Descriptor, Digest, ManifestKind, parse_manifest};
use berth_store::Store;

use crate::error::{Result, RuntimeError};
use crate::unpack::{UnpackLimit, unpack_layer};

/// The chain IDs of layers with these diff IDs, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(below) => Digest::sha256_of(format!("{below} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// What [`LayerCache::prepare`] reports as it goes.
pub enum LayerEvent<'a> {
    /// The layer was unpacked before.
    Cached(&'a Descriptor),
    Unpacking(&'a Descriptor),
    Unpacked(&'a Descriptor),
}

/// One layer to unpack, with what it is checked against.
struct Unpack<'a> {
    layer: &'a Descriptor,
    diff_id: &'a Digest,
    chain_id: &'a Digest,
    lowers: &'a [PathBuf],
    limit: UnpackLimit,
}

/// An unpacking's `.partial` directory: removed when dropped, whatever failed on the way,
/// unless it was renamed into place.
struct Partial {
    path: PathBuf,
    renamed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a failed unpacking");
        }
    }
}

pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    pub fn new(root: impl Into<PathBuf>) -> LayerCache {
        LayerCache { root: root.into() }
    }

    /// Where the layer with this chain ID is (or would be) unpacked.
    pub fn diff_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex()).join("diff")
    }

    /// Unpacks, from `store`, the layers of an image that are not unpacked yet. `layers` and
    /// `diff_ids` come from its manifest and config, bottom first; `limit` bounds what each
    /// unpacks to. Returns the chain IDs.
    pub fn prepare(
        &self,
        store: &Store,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        limit: UnpackLimit,
        report: &mut dyn FnMut(LayerEvent<'_>),
    ) -> Result<Vec<Digest>> {
        if layers.len() != diff_ids.len() {
            return Err(RuntimeError::Other(format!(
                "the image has {} layers but its config lists {} diff IDs",
                layers.len(),
                diff_ids.len()
            )));
        }
        fs::create_dir_all(&self.root).map_err(RuntimeError::io("create", &self.root))?;
        let chain = chain_ids(diff_ids);
        for (i, layer) in layers.iter().enumerate() {
            let lowers: Vec<PathBuf> = chain[..i].iter().rev().map(|c| self.diff_dir(c)).collect();
            let unpack = Unpack {
                layer,
                diff_id: &diff_ids[i],
                chain_id: &chain[i],
                lowers: &lowers,
                limit,
            };
            self.ensure(store, unpack, report)?;
        }
        Ok(chain)
    }

    fn ensure(
        &self,
        store: &Store,
        unpack: Unpack<'_>,
        report: &mut dyn FnMut(LayerEvent<'_>),
    ) -> Result<()> {
        let Unpack {
            layer,
            diff_id,
            chain_id,
            lowers,
            limit,
        } = unpack;
        let done = self.root.join(chain_id.hex());
        if done.join("diff").is_dir() {
            report(LayerEvent::Cached(layer));
            return Ok(());
        }
        let lock_path = self.root.join(format!("{}.lock", chain_id.hex()));
        let lock = File::create(&lock_path).map_err(RuntimeError::io("create", &lock_path))?;
        lock.lock().map_err(RuntimeError::io("lock", &lock_path))?;
        if done.join("diff").is_dir() {
            report(LayerEvent::Cached(layer));
            return Ok(());
        }
        self.remove_partials(chain_id)?;
        report(LayerEvent::Unpacking(layer));
        let mut partial = Partial {
            path: self
                .root
                .join(format!("{}.partial-{}", chain_id.hex(), std::process::id())),
            renamed: false,
        };
        let diff = partial.path.join("diff");
        fs::create_dir_all(&diff).map_err(RuntimeError::io("create", &diff))?;
        let input = store.open_blob(&layer.digest)?;
        let max_size = limit.for_layer(layer.size);
        let actual = unpack_layer(&layer.digest, input, &diff, lowers, max_size)?;
        if &actual != diff_id {
            return Err(RuntimeError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        if done.exists() {
            // A directory without `diff`: what an older crash could leave; never in use.
            fs::remove_dir_all(&done).map_err(RuntimeError::io("remove", &done))?;
        }
        fs::rename(&partial.path, &done).map_err(RuntimeError::io("rename", &partial.path))?;
        partial.renamed = true;
        report(LayerEvent::Unpacked(layer));
        Ok(())
    }

    /// Removes what an interrupted unpacking of this layer left; the caller holds its lock.
    fn remove_partials(&self, chain_id: &Digest) -> Result<()> {
        let prefix = format!("{}.partial-", chain_id.hex());
        let entries = fs::read_dir(&self.root).map_err(RuntimeError::io("list", &self.root))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(RuntimeError::io("remove", &path))?;
            }
        }
        Ok(())
    }

    /// Removes unpacked layers that neither a container of `containers` nor an image of
    /// `store` has (after `berth image rm`); returns how many went.
    pub fn prune(
        &self,
        store: &Store,
        containers: &[crate::containers::Container],
    ) -> Result<usize> {
        let mut keep: BTreeSet<String> = containers
            .iter()
            .flat_map(|c| c.layers.iter().map(|l| l.hex().to_string()))
            .collect();
        for image in store.images()? {
            for chain_id in image_chain_ids(store, &image.descriptor)? {
                keep.insert(chain_id.hex().to_string());
            }
        }
        self.remove_unused(&keep)
    }

    /// Removes unpacked layers whose chain ID is not in `keep`; returns how many went.
    fn remove_unused(&self, keep: &BTreeSet<String>) -> Result<usize> {
        let mut removed = 0;
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if keep.contains(&name) {
                continue;
            }
            let lock_path = self.root.join(format!("{name}.lock"));
            let lock = File::create(&lock_path).map_err(RuntimeError::io("create", &lock_path))?;
            if lock.try_lock().is_err() {
                continue;
            }
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(RuntimeError::io("remove", &path))?;
            let _ = fs::remove_file(&lock_path);
            removed += 1;
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The chain IDs of an image's layers (of every platform present, for an index), from its
/// config in the store; what cannot be read has none.
pub fn image_chain_ids(store: &Store, desc: &Descriptor) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<Digest>,
    }
    if !store.has_blob(&desc.digest) {
        return Ok(Vec::new());
    }
    let bytes = store.read_blob(&desc.digest)?;
    let Ok(parsed) = parse_manifest(Some(&desc.media_type), &bytes) else {
        return Ok(Vec::new());
    };
    match parsed.kind {
        ManifestKind::Index => {
            let mut all = Vec::new();
            for child in &parsed.manifests {
                all.extend(image_chain_ids(store, child)?);
            }
            Ok(all)
        }
        ManifestKind::Image => {
            let Some(config) = parsed.config.filter(|c| store.has_blob(&c.digest)) else {
                return Ok(Vec::new());
            };
            let config: Option<Config> =
                serde_json::from_slice(&store.read_blob(&config.digest)?).ok();
            Ok(config
                .map(|c| chain_ids(&c.rootfs.diff_ids))
                .unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_store::testing::{layer_tar, put_layer};

    use super::*;

    #[test]
    fn a_layer_is_unpacked_once_and_checked_against_its_diff_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("store");
        let cache = LayerCache::new(dir.path().join("layers"));
        let layer = put_layer(&store, b"layer one").expect("layer");
        let diff_id = Digest::sha256_of(&layer_tar(b"layer one").expect("tar"));
        let mut events = Vec::new();
        let mut report = |e: LayerEvent<'_>| {
            events.push(match e {
                LayerEvent::Cached(_) => "cached",
                LayerEvent::Unpacking(_) => "unpacking",
                LayerEvent::Unpacked(_) => "unpacked",
            })
        };

        // A config that names other content: refused, and nothing is left in the cache.
        let wrong = Digest::sha256_of(b"something else");
        let e = cache
            .prepare(
                &store,
                std::slice::from_ref(&layer),
                &[wrong],
                UnpackLimit::Default,
                &mut report,
            )
            .expect_err("diff ID mismatch");
        assert!(matches!(e, RuntimeError::DiffIdMismatch { .. }), "{e}");
        let left: Vec<_> = fs::read_dir(cache.root())
            .expect("list")
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let chain = cache
            .prepare(
                &store,
                std::slice::from_ref(&layer),
                std::slice::from_ref(&diff_id),
                UnpackLimit::Default,
                &mut report,
            )
            .expect("unpack");
        assert_eq!(chain, vec![diff_id.clone()]);
        assert_eq!(
            fs::read(cache.diff_dir(&chain[0]).join("seed.txt")).expect("read"),
            b"layer one"
        );
        cache
            .prepare(
                &store,
                std::slice::from_ref(&layer),
                &[diff_id],
                UnpackLimit::Default,
                &mut report,
            )
            .expect("cached");
        assert_eq!(events, ["unpacking", "unpacking", "unpacked", "cached"]);

        // No image names it any more (the store has none) and no container: pruned.
        assert_eq!(cache.prune(&store, &[]).expect("prune"), 1);
        assert!(!cache.diff_dir(&chain[0]).exists());
    }

    #[test]
    fn a_failed_unpacking_leaves_nothing_in_the_cache() {
        use std::io::Write;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("store");
        let cache = LayerCache::new(dir.path().join("layers"));
        let tar_of = |path: &str, data: &[u8]| {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, data)
                .expect("append");
            builder.into_inner().expect("tar")
        };
        // 8 MiB of zeros, a few KiB gzipped, under a limit of 1 MiB.
        let big = tar_of("zeros", &vec![0u8; 8 << 20]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&big).expect("gzip");
        let big_gz = gz.finish().expect("gzip");
        // A whiteout through a link: refused half way.
        let mut evil = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        evil.append_link(&mut link, "evil", "/").expect("link");
        let mut evil = evil.into_inner().expect("tar");
        evil.truncate(evil.len() - 1024);
        evil.extend_from_slice(&tar_of("evil/.wh.etc", b""));

        for (what, bytes, diff_id, expected) in [
            (
                "too large",
                &big_gz,
                Digest::sha256_of(&big),
                "BERTH_MAX_UNPACK_SIZE",
            ),
            ("unsafe", &evil, Digest::sha256_of(&evil), "symbolic link"),
        ] {
            store.put_blob(bytes).expect("blob");
            let layer = berth_store::testing::descriptor(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                bytes,
            );
            let e = cache
                .prepare(
                    &store,
                    std::slice::from_ref(&layer),
                    &[diff_id],
                    UnpackLimit::Bytes(1 << 20),
                    &mut |_| {},
                )
                .expect_err(what);
            assert!(e.to_string().contains(expected), "{what}: {e}");
            let left: Vec<_> = fs::read_dir(cache.root())
                .expect("list")
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| !n.to_string_lossy().ends_with(".lock"))
                .collect();
            assert!(left.is_empty(), "{what}: {left:?}");
        }
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
    }
}
