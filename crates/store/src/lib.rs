//! The host's local image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) that skopeo and umoci can read, with one index.json entry per image name.
//!
//! Names are strings the caller has already normalized (`docker.io/library/nginx:latest`,
//! `localhost:5000/team/web:0.1`, `docker.io/library/nginx@sha256:...`): this crate stores and
//! compares them, it does not parse them. Blob writes are verified and atomic, downloads are
//! resumable, and index.json changes are serialized between processes by a file lock. See the
//! crate README for the layout, locking and crash-safety story.

mod archive;
mod blobs;
mod error;
mod gc;
mod index;
mod layout;
pub mod testing;
#[cfg(test)]
mod testutil;

pub use archive::LoadedImage;
pub use blobs::{BlobWriter, MAX_READ_SIZE};
pub use error::{Result, StoreError};
pub use gc::{PruneReport, RemoveReport, STALE_PARTIAL_AGE, UNREFERENCED_BLOB_GRACE};
pub use index::{ImageEntry, REF_NAME_ANNOTATION};
pub use layout::Store;
