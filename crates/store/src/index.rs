//! index.json: which names the store holds. Readers read it without a lock (it is only ever
//! replaced by rename); every change is a read-modify-write under `index.json.lock`.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;

use berth_oci::{Descriptor, ManifestKind, media_type};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::layout::Store;

/// The annotation that names an image in an OCI layout; here it holds the full normalized name.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// One named image in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// The full normalized name, e.g. `docker.io/library/nginx:latest`.
    pub name: String,
    /// The manifest or index the name points to (without the name annotation).
    pub descriptor: Descriptor,
}

/// index.json as stored. Fields we do not know are kept as they were.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ImageIndex {
    pub fn empty() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            other: serde_json::Map::new(),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.manifests
            .iter()
            .position(|d| ref_name(d) == Some(name))
    }

    /// Removes the entry for `name`; returns its descriptor without the name.
    pub fn remove(&mut self, name: &str) -> Option<Descriptor> {
        self.position(name)
            .map(|i| without_ref_name(self.manifests.remove(i)))
    }
}

pub(crate) fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

pub(crate) fn without_ref_name(mut desc: Descriptor) -> Descriptor {
    if let Some(a) = &mut desc.annotations {
        a.remove(REF_NAME_ANNOTATION);
        if a.is_empty() {
            desc.annotations = None;
        }
    }
    desc
}

fn with_ref_name(mut desc: Descriptor, name: &str) -> Descriptor {
    desc.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
    desc
}

/// Names arrive normalized from the caller; this only keeps out what could never be one.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 1024
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::InvalidName(name.chars().take(200).collect()));
    }
    Ok(())
}

impl Store {
    pub(crate) fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ImageIndex::empty()),
            Err(e) => return Err(StoreError::io("reading", &path)(e)),
        };
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidLayout {
                root: self.root().to_path_buf(),
                reason: format!("index.json: {e}"),
            })?;
        if index.schema_version != 2 {
            return Err(StoreError::InvalidLayout {
                root: self.root().to_path_buf(),
                reason: format!("index.json: schemaVersion {}", index.schema_version),
            });
        }
        Ok(index)
    }

    /// Read-modify-write of index.json under the index lock.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut ImageIndex) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        index.schema_version = 2;
        index.media_type = Some(media_type::OCI_INDEX.to_string());
        self.write_index(&index)?;
        Ok(out)
    }

    /// Every named image, in index.json order. Entries without a name (written by another
    /// tool) are not listed, but their blobs are kept.
    pub fn images(&self) -> Result<Vec<ImageEntry>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = ref_name(&d)?.to_string();
                Some(ImageEntry {
                    name,
                    descriptor: without_ref_name(d),
                })
            })
            .collect())
    }

    /// What `name` (full, normalized) points to.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .find(|d| ref_name(d) == Some(name))
            .map(without_ref_name))
    }

    /// Points `name` (full, normalized by the caller, e.g. `docker.io/library/nginx:latest`)
    /// at `desc`, replacing what it pointed to; returns that. The manifest (and, for an image
    /// manifest, its config and layers) must already be in the store; an index may lack
    /// children (a pull for one platform keeps only that platform's).
    pub fn tag(&self, name: &str, desc: Descriptor) -> Result<Option<Descriptor>> {
        check_name(name)?;
        let desc = with_ref_name(desc, name);
        self.update_index(|index| {
            self.check_complete(name, &desc)?;
            Ok(match index.position(name) {
                Some(i) => Some(without_ref_name(std::mem::replace(
                    &mut index.manifests[i],
                    desc,
                ))),
                None => {
                    index.manifests.push(desc);
                    None
                }
            })
        })
    }

    /// Removes the name only; blobs stay (see [`Store::remove`] to free them).
    pub fn untag(&self, name: &str) -> Result<Option<Descriptor>> {
        self.update_index(|index| Ok(index.remove(name)))
    }

    fn check_complete(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let incomplete = |reason: String| StoreError::IncompleteImage {
            name: name.to_string(),
            reason,
        };
        if !self.has_blob(&desc.digest) {
            return Err(incomplete(format!("{} is not in the store", desc.digest)));
        }
        if let Some(parsed) = self.parse_stored_manifest(desc)?
            && parsed.kind == ManifestKind::Image
        {
            for blob in parsed.blob_references() {
                if !self.has_blob(&blob.digest) {
                    return Err(incomplete(format!(
                        "blob {} of manifest {} is not in the store",
                        blob.digest, desc.digest
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestImage;
    use crate::testutil;

    #[test]
    fn tag_resolve_untag() {
        let (_dir, store) = testutil::store();
        let a = TestImage::build(&store, b"a").expect("image");
        let b = TestImage::build(&store, b"b").expect("image");
        let name = "docker.io/library/nginx:latest";
        assert_eq!(store.tag(name, a.manifest.clone()).expect("tag"), None);
        assert_eq!(
            store.resolve(name).expect("resolve"),
            Some(a.manifest.clone())
        );
        // Re-tagging replaces the entry and returns the old one.
        assert_eq!(
            store.tag(name, b.manifest.clone()).expect("retag"),
            Some(a.manifest.clone())
        );
        store
            .tag("localhost:5000/team/web:0.1", b.manifest.clone())
            .expect("second name");
        let images = store.images().expect("images");
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].name, name);
        assert_eq!(images[0].descriptor, b.manifest);
        assert_eq!(store.untag(name).expect("untag"), Some(b.manifest.clone()));
        assert_eq!(store.untag(name).expect("untag again"), None);
        assert_eq!(store.resolve(name).expect("resolve"), None);
        // Blobs stay after untag.
        assert!(store.has_blob(&b.manifest.digest));

        let raw: serde_json::Value =
            serde_json::from_slice(&fs::read(store.index_path()).expect("read")).expect("json");
        assert_eq!(raw["schemaVersion"], 2);
        assert_eq!(raw["mediaType"], media_type::OCI_INDEX);
        assert_eq!(
            raw["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
            "localhost:5000/team/web:0.1"
        );
    }

    #[test]
    fn tag_refuses_incomplete_images_and_bad_names() {
        let (_dir, store) = testutil::store();
        let img = TestImage::build(&store, b"x").expect("image");
        fs::remove_file(store.blob_path(&img.layer.digest)).expect("rm layer");
        assert!(matches!(
            store.tag("docker.io/library/x:1", img.manifest.clone()),
            Err(StoreError::IncompleteImage { .. })
        ));
        let img = TestImage::build(&store, b"y").expect("image");
        for bad in ["", "has space:1", "new\nline"] {
            assert!(matches!(
                store.tag(bad, img.manifest.clone()),
                Err(StoreError::InvalidName(_))
            ));
        }
        assert!(store.images().expect("images").is_empty());
    }

    #[test]
    fn concurrent_tagging_loses_nothing() {
        let (_dir, store) = testutil::store();
        let img = TestImage::build(&store, b"shared").expect("image");
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let root = store.root().to_path_buf();
                let desc = img.manifest.clone();
                std::thread::spawn(move || {
                    // A store of its own per thread: its own lock file handles, as another
                    // process would have.
                    let store = Store::open(root).expect("open");
                    for i in 0..10 {
                        store
                            .tag(&format!("localhost:5000/t{t}/img:{i}"), desc.clone())
                            .expect("tag");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let names: std::collections::BTreeSet<String> = store
            .images()
            .expect("images")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names.len(), 160);
        for t in 0..16 {
            for i in 0..10 {
                assert!(names.contains(&format!("localhost:5000/t{t}/img:{i}")));
            }
        }
    }
}
