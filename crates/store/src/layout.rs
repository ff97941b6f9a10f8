//! The store's directory: an OCI image layout (image-spec `image-layout.md`) plus two things of
//! our own that OCI readers ignore.
//!
//! ```text
//! <root>/
//! ├── oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! ├── index.json                 one entry per image name (annotation org.opencontainers.image.ref.name)
//! ├── index.json.lock            flock'ed while index.json is read-modified-written
//! ├── blobs/
//! │   └── sha256/<64 hex>        verified content, only ever created by rename()
//! └── ingest/
//!     ├── <64 hex>.partial       a download in progress (flock'ed by its writer), resumable
//!     └── load-*.tmp             an archive member being hashed while it is copied in
//! ```

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use berth_oci::Digest;

use crate::error::{Result, StoreError};
use crate::index::ImageIndex;

pub(crate) const OCI_LAYOUT_FILE: &str = "oci-layout";
pub(crate) const INDEX_FILE: &str = "index.json";
pub(crate) const INDEX_LOCK_FILE: &str = "index.json.lock";
pub(crate) const INDEX_TMP_FILE: &str = "index.json.tmp";
pub(crate) const BLOBS_DIR: &str = "blobs";
pub(crate) const INGEST_DIR: &str = "ingest";
pub(crate) const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// The local image store. Cheap to open; holds no file handles, so one value can be shared by
/// threads and several processes may open the same root at once.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout (directories, `oci-layout`, an empty
    /// `index.json`) where it is missing, and checking it where it exists.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [
            store.root.clone(),
            store.root.join(BLOBS_DIR).join("sha256"),
            store.ingest_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(StoreError::io("creating", &dir))?;
        }
        if !store.root.join(OCI_LAYOUT_FILE).exists() || !store.index_path().exists() {
            // The first run creates the layout under the index lock, so that several berth
            // processes starting on an empty store at once neither race on the temp files
            // nor write an empty index over another's first entry.
            let _lock = store.lock_index()?;
            store.ensure_oci_layout()?;
            if !store.index_path().exists() {
                store.write_index(&crate::index::ImageIndex::empty())?;
            }
        } else {
            store.ensure_oci_layout()?;
        }
        store.read_index()?;
        Ok(store)
    }

    /// Where the store lives unless told otherwise: `$BERTH_STORE`, else
    /// `$XDG_DATA_HOME/berth/store`, else `$HOME/.local/share/berth/store`. Relative or empty
    /// values of the XDG and HOME variables are ignored, as the XDG spec asks.
    pub fn default_root() -> Result<PathBuf> {
        default_root_from(|name| std::env::var_os(name))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it is there). Built only from a
    /// parsed [`Digest`], whose parts are restricted to `[a-z0-9]`, so it stays inside the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join(BLOBS_DIR)
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR).join("sha256")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    pub(crate) fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.ingest_dir().join(format!("{}.partial", digest.hex()))
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    fn ensure_oci_layout(&self) -> Result<()> {
        let path = self.root.join(OCI_LAYOUT_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct OciLayout {
                    image_layout_version: String,
                }
                let layout: OciLayout =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidLayout {
                        root: self.root.clone(),
                        reason: format!("{OCI_LAYOUT_FILE}: {e}"),
                    })?;
                if layout.image_layout_version != "1.0.0" {
                    return Err(StoreError::InvalidLayout {
                        root: self.root.clone(),
                        reason: format!(
                            "imageLayoutVersion {:?}, expected \"1.0.0\"",
                            layout.image_layout_version
                        ),
                    });
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if self.index_path().exists() {
                    return Err(StoreError::InvalidLayout {
                        root: self.root.clone(),
                        reason: format!("{INDEX_FILE} exists but {OCI_LAYOUT_FILE} does not"),
                    });
                }
                let tmp = self.root.join(format!("{OCI_LAYOUT_FILE}.tmp"));
                write_synced(&tmp, OCI_LAYOUT_CONTENT.as_bytes())?;
                fs::rename(&tmp, &path).map_err(StoreError::io("renaming", &tmp))?;
                sync_dir(&self.root)
            }
            Err(e) => Err(StoreError::io("reading", &path)(e)),
        }
    }

    /// The exclusive lock that serializes every index.json read-modify-write, in this and
    /// other processes. Released when the returned file is dropped.
    pub(crate) fn lock_index(&self) -> Result<File> {
        let path = self.root.join(INDEX_LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io("opening", &path))?;
        file.lock().map_err(StoreError::io("locking", &path))?;
        Ok(file)
    }

    /// Replaces index.json with `index`: temp file, fsync, rename, fsync the directory. The
    /// caller holds the index lock, so the fixed temp name is not shared.
    pub(crate) fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::Json {
            what: "encoding index.json".into(),
            source,
        })?;
        let tmp = self.root.join(INDEX_TMP_FILE);
        write_synced(&tmp, &bytes)?;
        let path = self.index_path();
        fs::rename(&tmp, &path).map_err(StoreError::io("renaming", &tmp))?;
        sync_dir(&self.root)
    }
}

/// [`Store::default_root`] with the environment passed in, so it can be tested.
fn default_root_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let var = |name| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("BERTH_STORE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_DATA_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir.join("berth").join("store"));
    }
    if let Some(home) = var("HOME").map(PathBuf::from)
        && home.is_absolute()
    {
        return Ok(home.join(".local/share/berth/store"));
    }
    Err(StoreError::NoDefaultRoot)
}

/// Creates (or truncates) `path`, writes `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(StoreError::io("creating", path))?;
    file.write_all(bytes)
        .map_err(StoreError::io("writing", path))?;
    file.sync_all().map_err(StoreError::io("syncing", path))
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("syncing directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_follows_berth_store_then_xdg_then_home() {
        let root = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            default_root_from(move |name| {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| OsString::from(v))
            })
            .ok()
        };
        let all = [
            ("BERTH_STORE", "/s"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(root(&all), Some(PathBuf::from("/s")));
        assert_eq!(root(&all[1..]), Some(PathBuf::from("/x/berth/store")));
        assert_eq!(
            root(&[("XDG_DATA_HOME", "relative"), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.local/share/berth/store"))
        );
        assert_eq!(root(&[("BERTH_STORE", ""), ("HOME", "")]), None);
    }

    #[test]
    fn open_creates_then_validates_the_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("s")).expect("create");
        assert_eq!(
            fs::read_to_string(store.root().join(OCI_LAYOUT_FILE)).expect("oci-layout"),
            OCI_LAYOUT_CONTENT
        );
        assert!(store.images().expect("images").is_empty());
        Store::open(store.root()).expect("reopen");

        fs::write(
            store.root().join(OCI_LAYOUT_FILE),
            r#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .expect("write");
        assert!(matches!(
            Store::open(store.root()),
            Err(StoreError::InvalidLayout { .. })
        ));
        fs::write(store.root().join(OCI_LAYOUT_FILE), OCI_LAYOUT_CONTENT).expect("write");
        fs::write(store.index_path(), "not json").expect("write");
        assert!(matches!(
            Store::open(store.root()),
            Err(StoreError::InvalidLayout { .. })
        ));
    }
}
