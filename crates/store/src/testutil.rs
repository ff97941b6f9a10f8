//! Helpers for this crate's unit tests.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use crate::layout::Store;

pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("open");
    (dir, store)
}

/// The file names under blobs/sha256, sorted.
pub fn blob_files(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.blobs_dir())
        .expect("read blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn set_mtime(path: &Path, time: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

/// Whether `ingest/` holds nothing: no partial download or temp file was left behind.
pub fn ingest_is_empty(store: &Store) -> bool {
    fs::read_dir(store.ingest_dir())
        .expect("ingest")
        .next()
        .is_none()
}
