//! The OCI vocabulary shared by every other berth crate: repository names, tags, digests,
//! media types and manifest validation. No I/O lives here; everything that crosses the HTTP or
//! CLI boundary is parsed into one of these types first, so nothing past the edge handles a raw
//! string name or digest.

mod digest;
mod manifest;
pub mod media_type;
mod name;
mod reference;
pub mod text;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest, parse_manifest};
pub use name::{ManifestRef, NameError, Repository, Tag};
pub use reference::{
    DEFAULT_CREDENTIALS_KEY, DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST, DEFAULT_TAG,
    LEGACY_DEFAULT_DOMAIN, Reference, ReferenceError, registry_host,
};
