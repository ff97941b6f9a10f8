//! Image archives: `save` writes a tar that `docker load` (and `berth load`, and skopeo's
//! `oci-archive:`) read; `load` reads those, `docker save` output, and plain OCI layout tars.
//!
//! The archive is never unpacked onto disk by its own names: every member becomes either a blob
//! (named by its verified digest), a temporary file in `ingest/`, or a small document in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use berth_oci::{
    Algorithm, Descriptor, Digest, DigestHasher, ManifestKind, ParsedManifest, media_type,
};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::blobs::MAX_READ_SIZE;
use crate::error::{Result, StoreError};
use crate::index::{REF_NAME_ANNOTATION, ref_name, without_ref_name};
use crate::layout::{OCI_LAYOUT_CONTENT, Store, sync_dir};

/// The annotation docker (and containerd) put on index.json entries for the full image name;
/// docker's own `org.opencontainers.image.ref.name` there holds only the tag.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// An image that [`Store::load`] put into the store (blobs only; no name yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Names as the archive gives them: full names from index.json annotations, else docker's
    /// familiar `RepoTags` (`nginx:latest`). Empty when the archive names it by a bare tag
    /// only. The caller normalizes these and calls [`Store::tag`].
    pub names: Vec<String>,
    pub descriptor: Descriptor,
}

/// One entry of docker's legacy `manifest.json`.
#[derive(Serialize, Deserialize)]
struct LegacyManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ArchiveIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// `repo:tag` split at the tag's colon (not a registry port's); `None` for a digest reference
/// or one without a tag.
fn split_tag(name: &str) -> Option<(&str, &str)> {
    if name.contains('@') {
        return None;
    }
    let after_slash = name.rfind('/').map_or(0, |i| i + 1);
    let colon = after_slash + name[after_slash..].rfind(':')?;
    Some((&name[..colon], &name[colon + 1..]))
}

/// Adds an image, or its names to the same image already loaded under another name.
fn add_loaded(loaded: &mut Vec<LoadedImage>, names: Vec<String>, descriptor: Descriptor) {
    match loaded
        .iter_mut()
        .find(|l| l.descriptor.digest == descriptor.digest)
    {
        Some(l) => {
            for n in names {
                if !l.names.contains(&n) {
                    l.names.push(n);
                }
            }
        }
        None => loaded.push(LoadedImage { names, descriptor }),
    }
}

fn archive_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Archive(e.to_string())
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

impl Store {
    /// Writes the named images as a tar to `out`: an OCI layout (oci-layout, index.json,
    /// blobs/sha256/...) plus docker's `manifest.json` and `repositories`, as docker 25+
    /// `docker save` does. `images` pairs each full name with the familiar `repo:tag` docker
    /// should give it (`("docker.io/library/nginx:latest", "nginx:latest")`). Blobs are streamed
    /// from their files.
    pub fn save<N: AsRef<str>, F: AsRef<str>>(
        &self,
        images: &[(N, F)],
        out: impl Write,
    ) -> Result<()> {
        let index = self.read_index()?;
        let mut named = Vec::new();
        for (full, familiar) in images {
            let (full, familiar) = (full.as_ref(), familiar.as_ref());
            let desc = index
                .manifests
                .iter()
                .find(|d| ref_name(d) == Some(full))
                .cloned()
                .map(without_ref_name)
                .ok_or_else(|| StoreError::ImageNotFound(full.to_string()))?;
            named.push((full, familiar, desc));
        }

        let mut blobs = BTreeSet::new();
        let mut index_entries = Vec::new();
        let mut legacy: Vec<(Digest, LegacyManifest)> = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (full, familiar, desc) in &named {
            blobs.extend(self.referenced_blobs(desc)?);

            let mut entry = desc.clone();
            let annotations = entry.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(IMAGE_NAME_ANNOTATION.into(), (*full).to_string());
            if let Some((_, tag)) = split_tag(full) {
                annotations.insert(REF_NAME_ANNOTATION.into(), tag.to_string());
            }
            index_entries.push(entry);

            // docker's manifest.json knows single-platform images only.
            let mut first = true;
            for (manifest, parsed) in self.local_image_manifests(desc)? {
                let Some(config) = &parsed.config else {
                    continue;
                };
                let tag = split_tag(familiar).filter(|_| first);
                first = false;
                if let Some((repo, tag)) = tag
                    && let Some(top) = parsed.layers.last()
                {
                    repositories
                        .entry(repo.to_string())
                        .or_default()
                        .insert(tag.to_string(), top.digest.hex().to_string());
                }
                let pos = match legacy.iter().position(|(d, _)| *d == manifest) {
                    Some(pos) => pos,
                    None => {
                        legacy.push((
                            manifest,
                            LegacyManifest {
                                config: blob_member(&config.digest),
                                repo_tags: Some(Vec::new()),
                                layers: parsed
                                    .layers
                                    .iter()
                                    .map(|l| blob_member(&l.digest))
                                    .collect(),
                            },
                        ));
                        legacy.len() - 1
                    }
                };
                if tag.is_some()
                    && let Some(tags) = &mut legacy[pos].1.repo_tags
                    && !tags.iter().any(|t| t == *familiar)
                {
                    tags.push((*familiar).to_string());
                }
            }
        }

        let index_json = to_json(
            "index.json",
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": index_entries,
            }),
        )?;
        let legacy: Vec<LegacyManifest> = legacy.into_iter().map(|(_, m)| m).collect();
        let manifest_json = to_json("manifest.json", &legacy)?;
        let repositories_json = to_json("repositories", &repositories)?;

        let mut tar = tar::Builder::new(out);
        let io_err = StoreError::ArchiveWrite;
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = tar_header(tar::EntryType::Directory, 0);
            tar.append_data(&mut header, dir, io::empty())
                .map_err(io_err)?;
        }
        append_bytes(&mut tar, "oci-layout", OCI_LAYOUT_CONTENT.as_bytes())?;
        for digest in &blobs {
            let file = self.open_blob(digest)?;
            let path = self.blob_path(digest);
            let size = file
                .metadata()
                .map_err(StoreError::io("inspecting", &path))?
                .len();
            let mut header = tar_header(tar::EntryType::Regular, size);
            tar.append_data(&mut header, blob_member(digest), file.take(size))
                .map_err(io_err)?;
        }
        append_bytes(&mut tar, "index.json", &index_json)?;
        append_bytes(&mut tar, "manifest.json", &manifest_json)?;
        append_bytes(&mut tar, "repositories", &repositories_json)?;
        tar.into_inner().map_err(io_err)?.flush().map_err(io_err)
    }

    /// The image manifests `desc` reaches in the store, depth first, each once.
    fn local_image_manifests(&self, desc: &Descriptor) -> Result<Vec<(Digest, ParsedManifest)>> {
        let mut out: Vec<(Digest, ParsedManifest)> = Vec::new();
        let mut pending = vec![desc.clone()];
        let mut seen = BTreeSet::new();
        while let Some(d) = pending.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            let Some(parsed) = self.parse_stored_manifest(&d)? else {
                continue;
            };
            match parsed.kind {
                ManifestKind::Image => {
                    let complete = parsed
                        .config
                        .iter()
                        .chain(&parsed.layers)
                        .all(|b| self.has_blob(&b.digest));
                    if complete {
                        out.push((d.digest, parsed));
                    }
                }
                ManifestKind::Index => pending.extend(parsed.manifests.into_iter().rev()),
            }
        }
        Ok(out)
    }

    /// Reads an image archive into the store: a [`Store::save`] or `docker save` tar (docker
    /// 25+ OCI form, or the older `manifest.json` + `<id>/layer.tar` form), or a plain OCI
    /// layout tar (`skopeo copy ... oci-archive:`). Every blob is verified against its digest
    /// as it streams in. Nothing is named: the caller tags what it returns.
    pub fn load(&self, input: impl Read) -> Result<Vec<LoadedImage>> {
        let mut members = self.read_members(input)?;

        let index = match members.small("index.json")? {
            Some(bytes) => Some(serde_json::from_slice::<ArchiveIndex>(&bytes).map_err(
                |source| StoreError::Json {
                    what: "the archive's index.json".into(),
                    source,
                },
            )?),
            None => None,
        };
        let legacy = match members.small("manifest.json")? {
            Some(bytes) => {
                serde_json::from_slice::<Vec<LegacyManifest>>(&bytes).map_err(|source| {
                    StoreError::Json {
                        what: "the archive's manifest.json".into(),
                        source,
                    }
                })?
            }
            None => Vec::new(),
        };
        if index.is_none() && legacy.is_empty() {
            return Err(StoreError::Archive(
                "neither index.json nor manifest.json: not an image archive".into(),
            ));
        }

        let mut loaded: Vec<LoadedImage> = Vec::new();
        // Configs of the images index.json gave, to match manifest.json entries to them.
        let mut by_config: BTreeMap<Digest, Digest> = BTreeMap::new();
        for desc in index.map(|i| i.manifests).unwrap_or_default() {
            self.check_loaded(&desc)?;
            let mut names = Vec::new();
            let annotations = desc.annotations.clone().unwrap_or_default();
            if let Some(name) = annotations.get(IMAGE_NAME_ANNOTATION) {
                names.push(name.clone());
            } else if let Some(name) = annotations.get(REF_NAME_ANNOTATION)
                && name.contains(['/', ':', '@'])
            {
                names.push(name.clone());
            }
            for (_, parsed) in self.local_image_manifests(&desc)? {
                if let Some(config) = parsed.config {
                    by_config.insert(config.digest, desc.digest.clone());
                }
            }
            let mut descriptor = without_ref_name(desc);
            if let Some(a) = &mut descriptor.annotations {
                a.remove(IMAGE_NAME_ANNOTATION);
                if a.is_empty() {
                    descriptor.annotations = None;
                }
            }
            add_loaded(&mut loaded, names, descriptor);
        }

        for entry in legacy {
            let repo_tags = entry.repo_tags.unwrap_or_default();
            let config = members.store(self, &entry.config)?;
            if let Some(top) = by_config.get(&config.digest) {
                // Already loaded through index.json; its names there (full ones) win.
                if let Some(l) = loaded.iter_mut().find(|l| &l.descriptor.digest == top)
                    && l.names.is_empty()
                {
                    l.names = repo_tags;
                }
                continue;
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                layers.push(members.store(self, path)?);
            }
            let config = Descriptor {
                media_type: OCI_CONFIG.into(),
                ..config
            };
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_MANIFEST,
                "config": config,
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).map_err(|source| StoreError::Json {
                what: "encoding a manifest".into(),
                source,
            })?;
            let digest = self.put_blob(&bytes)?;
            add_loaded(
                &mut loaded,
                repo_tags,
                Descriptor {
                    media_type: media_type::OCI_MANIFEST.into(),
                    digest,
                    size: bytes.len() as u64,
                    artifact_type: None,
                    annotations: None,
                    urls: None,
                    platform: None,
                },
            );
        }
        Ok(loaded)
    }

    /// An image named by an archive's index.json must have arrived whole: the manifest, and
    /// the config and layers of every image manifest it reaches (an index may lack children).
    fn check_loaded(&self, desc: &Descriptor) -> Result<()> {
        let missing =
            |what: String| StoreError::Archive(format!("{what}, which the archive does not hold"));
        if !self.has_blob(&desc.digest) {
            return Err(missing(format!("index.json names {}", desc.digest)));
        }
        let mut pending = vec![desc.clone()];
        while let Some(d) = pending.pop() {
            let Some(parsed) = self.parse_stored_manifest(&d)? else {
                continue;
            };
            for blob in parsed.blob_references() {
                if !self.has_blob(&blob.digest) {
                    return Err(missing(format!(
                        "manifest {} needs blob {}",
                        d.digest, blob.digest
                    )));
                }
            }
            pending.extend(parsed.manifests);
        }
        Ok(())
    }

    /// Streams every tar member to its place: `blobs/<alg>/<hex>` straight into the store
    /// (verified), small JSON documents into memory, anything else into a hashed temp file.
    fn read_members(&self, input: impl Read) -> Result<Members> {
        let mut members = Members::default();
        let mut archive = tar::Archive::new(input);
        let read_err = |e: io::Error| StoreError::Archive(format!("reading the archive: {e}"));
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw_path = entry.path().map_err(read_err)?.into_owned();
            let path = member_path(&raw_path)?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| archive_error(format!("link {path} has no target")))?;
                // Symlinks are relative to their directory, hard links to the archive root.
                let base = if kind.is_symlink() {
                    Path::new(&path)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .to_path_buf()
                } else {
                    Default::default()
                };
                let resolved = resolve_link(&base, &target)?;
                members.entries.insert(path, Member::Link(resolved));
                continue;
            }
            if !(kind.is_file() || kind == tar::EntryType::Continuous) || path.is_empty() {
                continue;
            }
            let size = entry.size();
            if let Some(rest) = path.strip_prefix("blobs/") {
                let digest: Digest = rest
                    .replacen('/', ":", 1)
                    .parse()
                    .map_err(|e| archive_error(format!("member {path}: {e}")))?;
                if digest.algorithm() != Algorithm::Sha256 {
                    return Err(StoreError::UnsupportedDigest(digest));
                }
                if self.blob_size(&digest)?.is_none() {
                    let mut writer = self.begin_blob(&digest, Some(size))?;
                    if !writer.already_exists() {
                        writer.restart()?;
                        io::copy(&mut entry, &mut writer).map_err(read_err)?;
                        writer.commit()?;
                    }
                }
                members.entries.insert(path, Member::Blob(digest, size));
            } else if path.ends_with(".json") || path == "repositories" || path == "oci-layout" {
                if size > MAX_READ_SIZE {
                    return Err(archive_error(format!(
                        "member {path} is {size} bytes; documents are at most {MAX_READ_SIZE}"
                    )));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(MAX_READ_SIZE)
                    .read_to_end(&mut bytes)
                    .map_err(read_err)?;
                members.entries.insert(path, Member::Document(bytes));
            } else {
                let ingest = self.ingest_dir();
                let file = tempfile::Builder::new()
                    .prefix("load-")
                    .suffix(".tmp")
                    .tempfile_in(&ingest)
                    .map_err(StoreError::io("creating a file in", &ingest))?;
                let mut hashing = HashingWriter {
                    file,
                    hasher: DigestHasher::new(),
                    size: 0,
                    head: Vec::new(),
                };
                io::copy(&mut entry, &mut hashing).map_err(read_err)?;
                let media_type = layer_media_type(&hashing.head);
                members.entries.insert(
                    path,
                    Member::Temp {
                        digest: hashing.hasher.finish(),
                        size: hashing.size,
                        media_type,
                        file: hashing.file,
                    },
                );
            }
        }
        Ok(members)
    }
}

/// A tar member's name as `a/b/c`; refuses absolute names and `..`.
fn member_path(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| archive_error(format!("member {path:?}: name is not UTF-8")))?,
            ),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(archive_error(format!(
                    "refusing member {path:?}: absolute or with '..'"
                )));
            }
        }
    }
    Ok(parts.join("/"))
}

/// A link target inside the archive's own namespace; refuses one that climbs out of it.
fn resolve_link(base: &Path, target: &Path) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in base.join(target).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir if parts.pop().is_some() => {}
            _ => {
                return Err(archive_error(format!(
                    "refusing link to {target:?}: it leaves the archive"
                )));
            }
        }
    }
    Ok(parts.join("/"))
}

/// Layer media type from the first bytes: docker's legacy `layer.tar` is plain tar, but an
/// archive may hold compressed layers too.
fn layer_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER
    }
}

enum Member {
    /// Verified and committed to the store.
    Blob(Digest, u64),
    /// Hashed while copied into `ingest/`; becomes a blob only if something references it,
    /// and is deleted on drop otherwise.
    Temp {
        file: NamedTempFile,
        digest: Digest,
        size: u64,
        media_type: &'static str,
    },
    Document(Vec<u8>),
    Link(String),
}

#[derive(Default)]
struct Members {
    entries: BTreeMap<String, Member>,
}

impl Members {
    /// The member's path after following links (a few hops at most).
    fn resolve(&self, path: &str) -> Result<String> {
        let mut path = path.to_string();
        for _ in 0..8 {
            match self.entries.get(&path) {
                Some(Member::Link(target)) => path = target.clone(),
                Some(_) => return Ok(path),
                None => break,
            }
        }
        Err(archive_error(format!(
            "the archive has no member {path} (or its links loop)"
        )))
    }

    /// A document member's bytes, if the archive has it.
    fn small(&self, path: &str) -> Result<Option<Vec<u8>>> {
        if !self.entries.contains_key(path) {
            return Ok(None);
        }
        match self.entries.get(&self.resolve(path)?) {
            Some(Member::Document(bytes)) => Ok(Some(bytes.clone())),
            _ => Err(archive_error(format!("{path} is not a JSON document"))),
        }
    }

    /// Makes the member at `path` a blob in the store; returns its descriptor (media type
    /// guessed from its content for layers).
    fn store(&mut self, store: &Store, path: &str) -> Result<Descriptor> {
        let path = self.resolve(&member_path(Path::new(path))?)?;
        let Some(member) = self.entries.remove(&path) else {
            return Err(archive_error(format!("the archive has no member {path}")));
        };
        let (digest, size, media_type) = match member {
            Member::Blob(digest, size) => {
                let mut head = Vec::new();
                store
                    .open_blob(&digest)?
                    .take(4)
                    .read_to_end(&mut head)
                    .map_err(StoreError::io("reading", &store.blob_path(&digest)))?;
                (digest, size, layer_media_type(&head))
            }
            Member::Document(bytes) => {
                let digest = store.put_blob(&bytes)?;
                (digest, bytes.len() as u64, OCI_CONFIG)
            }
            Member::Temp {
                file,
                digest,
                size,
                media_type,
            } => {
                if !store.has_blob(&digest) {
                    let tmp = file.path().to_path_buf();
                    file.as_file()
                        .sync_all()
                        .map_err(StoreError::io("syncing", &tmp))?;
                    file.persist(store.blob_path(&digest))
                        .map_err(|e| StoreError::io("renaming", &tmp)(e.error))?;
                    sync_dir(&store.blobs_dir())?;
                }
                (digest, size, media_type)
            }
            Member::Link(_) => return Err(archive_error(format!("{path}: link loop"))),
        };
        self.entries
            .insert(path, Member::Blob(digest.clone(), size));
        Ok(Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: None,
            urls: None,
            platform: None,
        })
    }
}

struct HashingWriter {
    file: NamedTempFile,
    hasher: DigestHasher,
    size: u64,
    head: Vec<u8>,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        if self.head.len() < 4 {
            let want = (4 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..want]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn tar_header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_mtime(0);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar_header(tar::EntryType::Regular, bytes.len() as u64);
    tar.append_data(&mut header, path, bytes)
        .map_err(StoreError::ArchiveWrite)
}

fn to_json(what: &str, value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| StoreError::Json {
        what: format!("encoding {what}"),
        source,
    })
}

#[cfg(test)]
mod tests;
