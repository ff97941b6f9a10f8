//! One layer tar (gzip, zstd or plain) unpacked into a directory of its own, as overlayfs
//! wants its lower layers: a deleted file (`.wh.NAME`) becomes a character device 0/0, an
//! opaque directory (`.wh..wh..opq`) gets `trusted.overlay.opaque=y` (image-spec,
//! layer.md "Whiteouts"; the kernel's overlayfs.rst).
//!
//! Nothing lands outside the directory: a path with `..` is refused, and so is any entry whose
//! parent directories include a symbolic link, since the directory is new and a link in it can
//! only come from this layer (`evil -> /` and then `evil/etc/x` is the attack). Links
//! themselves may point anywhere: they are resolved inside the container's root when it runs,
//! never followed here. A hard link must name a file of this layer or of a layer below.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_oci::{Digest, DigestHasher};
use rustix::fs::{FileType, Mode, XattrFlags};
use tar::{EntryType, Header};

use crate::error::{Result, RuntimeError};

/// The prefix of a whiteout file name, and the name that makes its directory opaque.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// The extended attribute overlayfs reads to hide the lower layers' content of a directory.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the layer `digest` read from `input` into `dest` (an empty directory). `lowers` are
/// the unpacked layers below it, top first, where a hard link may find its target. Returns the
/// digest of the uncompressed tar: the layer's diff ID, for the caller to check against the
/// image config.
pub fn unpack_layer(
    digest: &Digest,
    input: impl Read,
    dest: &Path,
    lowers: &[PathBuf],
) -> Result<Digest> {
    let tar = decompressed(digest, input)?;
    let mut archive = tar::Archive::new(Hashing {
        inner: tar,
        hasher: DigestHasher::new(),
    });
    let mut unpacker = Unpacker {
        layer: digest,
        root: dest,
        lowers,
        directories: Vec::new(),
    };
    let entries = archive
        .entries()
        .map_err(|e| bad(digest, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(digest, format!("damaged tar archive: {e}")))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()?;
    // The diff ID covers the whole stream, the end-of-archive blocks and any padding included.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| bad(digest, format!("damaged tar archive: {e}")))?;
    Ok(rest.hasher.finish())
}

/// The uncompressed tar of a layer, whatever the media type says: gzip and zstd are known by
/// their first bytes, anything else is taken as a plain tar (docker does the same).
fn decompressed<'a>(digest: &Digest, input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut input = BufReader::with_capacity(256 << 10, input);
    let head = input
        .fill_buf()
        .map_err(|e| bad(digest, format!("cannot read: {e}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(input)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(input)
            .map_err(|e| bad(digest, format!("bad zstd stream: {e}")))?;
        return Ok(Box::new(decoder));
    }
    Ok(Box::new(input))
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: DigestHasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Unpacker<'a> {
    layer: &'a Digest,
    root: &'a Path,
    lowers: &'a [PathBuf],
    /// Directories with their metadata, applied at the end: a read-only mode or an mtime set
    /// at once would be undone, or refuse, by the entries written into them.
    directories: Vec<(PathBuf, Meta)>,
}

/// What a tar header says of an entry's ownership, mode, time and extended attributes.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| bad(self.layer, format!("bad entry name: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = self.clean(&raw, &shown)?;
        let kind = entry.header().entry_type();
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == OPAQUE {
            let dir = rel.parent().unwrap_or(Path::new(""));
            let at = self.directory(dir, &shown)?;
            return set_xattr(&at, OPAQUE_XATTR, b"y");
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.refuse(&shown, "a whiteout of no file"));
            }
            let target = rel.with_file_name(hidden);
            let at = self.make_room(&target, &shown, false)?;
            return rustix::fs::mknodat(
                rustix::fs::CWD,
                &at,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| RuntimeError::io("create whiteout", &at)(e.into()));
        }
        let meta = self.meta(entry)?;
        if rel.as_os_str().is_empty() {
            // `./` itself: the root keeps its own metadata.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.refuse(&shown, "names the root itself")),
            };
        }
        match kind {
            EntryType::Directory => {
                let at = self.directory(&rel, &shown)?;
                self.directories.push((at, meta));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let at = self.make_room(&rel, &shown, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&at)
                    .map_err(RuntimeError::io("create", &at))?;
                io::copy(entry, &mut file)
                    .map_err(|e| bad(self.layer, format!("{shown}: cannot read: {e}")))?;
                drop(file);
                apply(&at, &meta, false)?;
            }
            EntryType::Symlink => {
                let target = self.link_target(entry, &shown)?;
                let at = self.make_room(&rel, &shown, false)?;
                std::os::unix::fs::symlink(&target, &at)
                    .map_err(RuntimeError::io("create link", &at))?;
                apply(&at, &meta, true)?;
            }
            EntryType::Link => {
                let target = self.link_target(entry, &shown)?;
                self.hard_link(&rel, &target, &shown)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let at = self.make_room(&rel, &shown, false)?;
                let header = entry.header();
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &at,
                    file_type,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| RuntimeError::io("create device", &at)(e.into()))?;
                apply(&at, &meta, false)?;
            }
            // pax and GNU long-name headers are read by the tar crate itself; anything else
            // (a volume label, a GNU multi-volume part) carries no file.
            other => {
                tracing::debug!(layer = %self.layer, entry = %shown, kind = ?other, "skipped");
            }
        }
        Ok(())
    }

    /// What a symbolic or hard link entry names.
    fn link_target<R: Read>(&self, entry: &tar::Entry<'_, R>, shown: &str) -> Result<PathBuf> {
        Ok(entry
            .link_name()
            .map_err(|e| bad(self.layer, format!("{shown}: bad link: {e}")))?
            .ok_or_else(|| bad(self.layer, format!("{shown}: a link to nothing")))?
            .into_owned())
    }

    /// Directory modes and times last, innermost first.
    fn finish(&mut self) -> Result<()> {
        for (at, meta) in self.directories.drain(..).rev() {
            apply(&at, &meta, false)?;
        }
        Ok(())
    }

    /// The entry's path relative to the root: `/` and `.` dropped, `..` refused.
    fn clean(&self, raw: &Path, shown: &str) -> Result<PathBuf> {
        let mut rel = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => rel.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir => {
                    return Err(self.refuse(shown, "a path with .. could leave the root"));
                }
                Component::Prefix(_) => return Err(self.refuse(shown, "not a Unix path")),
            }
        }
        Ok(rel)
    }

    /// Creates the parents of `rel` that are missing; refuses a parent that is a link or not
    /// a directory. Returns where `rel` itself goes.
    fn parents(&self, rel: &Path, shown: &str) -> Result<PathBuf> {
        let mut at = self.root.to_path_buf();
        let Some(parent) = rel.parent() else {
            return Ok(at);
        };
        for part in parent.components() {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(shown, "it goes through a symbolic link"));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(self.refuse(shown, "a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&at).map_err(RuntimeError::io("create directory", &at))?;
                }
                Err(e) => return Err(RuntimeError::io("read", &at)(e)),
            }
        }
        Ok(self.root.join(rel))
    }

    /// Makes way for a new entry at `rel`: what this layer put there before goes, as a later
    /// tar entry replaces an earlier one. A directory stays when `keep_directory`.
    fn make_room(&self, rel: &Path, shown: &str, keep_directory: bool) -> Result<PathBuf> {
        if rel.as_os_str().is_empty() {
            return Err(self.refuse(shown, "names the root itself"));
        }
        let at = self.parents(rel, shown)?;
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() && keep_directory => {}
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(&at).map_err(RuntimeError::io("remove", &at))?;
            }
            Ok(_) => fs::remove_file(&at).map_err(RuntimeError::io("remove", &at))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("read", &at)(e)),
        }
        Ok(at)
    }

    /// The directory `rel`, created when missing (the root when `rel` is empty).
    fn directory(&self, rel: &Path, shown: &str) -> Result<PathBuf> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.to_path_buf());
        }
        let at = self.make_room(rel, shown, true)?;
        if !at.is_dir() {
            fs::create_dir(&at).map_err(RuntimeError::io("create directory", &at))?;
        }
        Ok(at)
    }

    /// A hard link at `rel` to `target`, a file this layer wrote earlier or, failing that, one
    /// of a lower layer (copied: layers are separate directories).
    fn hard_link(&self, rel: &Path, target: &Path, shown: &str) -> Result<()> {
        let target_rel = self.clean(target, shown)?;
        if target_rel.as_os_str().is_empty() {
            return Err(self.refuse(shown, "a hard link to the root"));
        }
        let here = self.inside(self.root, &target_rel);
        let at = self.make_room(rel, shown, false)?;
        if let Some(source) = here {
            if source == at {
                return Err(self.refuse(shown, "a hard link to itself"));
            }
            return fs::hard_link(&source, &at).map_err(RuntimeError::io("link", &at));
        }
        for lower in self.lowers {
            if let Some(source) = self.inside(lower, &target_rel) {
                return copy_file(&source, &at);
            }
        }
        Err(bad(
            self.layer,
            format!(
                "{shown}: a hard link to {}, which no layer has",
                target.display()
            ),
        ))
    }

    /// `root/rel` when it exists, is not a directory, and no directory on the way is a link.
    fn inside(&self, root: &Path, rel: &Path) -> Option<PathBuf> {
        let mut at = root.to_path_buf();
        let parent = rel.parent().unwrap_or(Path::new(""));
        for part in parent.components() {
            at.push(part);
            let m = fs::symlink_metadata(&at).ok()?;
            if !m.is_dir() {
                return None;
            }
        }
        let at = root.join(rel);
        let m = fs::symlink_metadata(&at).ok()?;
        let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
        (!m.is_dir() && !whiteout).then_some(at)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let header: &Header = entry.header();
        // An empty numeric field is 0, as Go's archive/tar (docker's) reads it.
        let number = |v: io::Result<u64>| v.unwrap_or(0);
        let uid = number(header.uid());
        let gid = number(header.gid());
        let mode = header.mode().unwrap_or(0o644);
        let mtime = number(header.mtime());
        let mut meta = Meta {
            uid: u32::try_from(uid).map_err(|_| bad(self.layer, format!("uid {uid} too large")))?,
            gid: u32::try_from(gid).map_err(|_| bad(self.layer, format!("gid {gid} too large")))?,
            mode,
            mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
            xattrs: Vec::new(),
        };
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for ext in extensions.flatten() {
                let Ok(key) = ext.key() else { continue };
                match key {
                    "uid" | "gid" => {
                        let value = ext
                            .value()
                            .ok()
                            .and_then(|v| v.trim().parse::<u32>().ok())
                            .ok_or_else(|| bad(self.layer, format!("bad pax {key}")))?;
                        if key == "uid" {
                            meta.uid = value;
                        } else {
                            meta.gid = value;
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            meta.xattrs
                                .push((name.to_string(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    fn refuse(&self, entry: &str, reason: &'static str) -> RuntimeError {
        RuntimeError::UnsafeEntry {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            reason,
        }
    }
}

fn bad(layer: &Digest, reason: String) -> RuntimeError {
    RuntimeError::BadLayer {
        layer: layer.clone(),
        reason,
    }
}

/// Ownership, then mode (a change of owner clears set-user-ID bits), then extended
/// attributes and times.
fn apply(at: &Path, meta: &Meta, symlink: bool) -> Result<()> {
    std::os::unix::fs::lchown(at, Some(meta.uid), Some(meta.gid))
        .map_err(RuntimeError::io("change owner of", at))?;
    if !symlink {
        fs::set_permissions(at, fs::Permissions::from_mode(meta.mode & 0o7777))
            .map_err(RuntimeError::io("change mode of", at))?;
    }
    for (name, value) in &meta.xattrs {
        set_xattr(at, name, value)?;
    }
    let time = filetime::FileTime::from_unix_time(meta.mtime, 0);
    filetime::set_symlink_file_times(at, time, time).map_err(RuntimeError::io("set time of", at))
}

/// Sets an extended attribute on `at` itself (not what it links to). Attributes the
/// filesystem does not take are skipped, as docker skips them.
pub(crate) fn set_xattr(at: &Path, name: &str, value: &[u8]) -> Result<()> {
    match rustix::fs::lsetxattr(at, name, value, XattrFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP && name != OPAQUE_XATTR => {
            tracing::debug!(path = %at.display(), xattr = name, "extended attribute not supported");
            Ok(())
        }
        Err(e) => Err(RuntimeError::io("set extended attribute of", at)(e.into())),
    }
}

/// Copies a regular file with its owner, mode and times (no link is followed).
pub(crate) fn copy_file(source: &Path, at: &Path) -> Result<()> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(source)
        .map_err(RuntimeError::io("open", source))?;
    let m = input.metadata().map_err(RuntimeError::io("read", source))?;
    let mut output: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(at)
        .map_err(RuntimeError::io("create", at))?;
    io::copy(&mut input, &mut output).map_err(RuntimeError::io("copy to", at))?;
    drop(output);
    let meta = Meta {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        mtime: m.mtime(),
        xattrs: Vec::new(),
    };
    apply(at, &meta, false)
}

#[cfg(test)]
mod tests;
