//! One layer tar (gzip, zstd or plain) unpacked into a directory of its own, as overlayfs
//! wants its lower layers: a deleted file (`.wh.NAME`) becomes a character device 0/0, an
//! opaque directory (`.wh..wh..opq`) gets `trusted.overlay.opaque=y` (image-spec,
//! layer.md "Whiteouts"; the kernel's overlayfs.rst).
//!
//! Nothing lands outside the directory, and nothing outside it changes: a path with `..` is
//! refused, and so is any entry (a whiteout, an opaque mark included) whose parent directories
//! include a symbolic link, since the directory is new and a link in it can only come from this
//! layer (`evil -> /` and then `evil/etc/x` is the attack). Every write goes through directory
//! descriptors opened from the layer's root without following a link, and owners, modes,
//! attributes and times are set through descriptors, never by path (beneath.rs): a directory
//! that a later entry replaced with a link to the host keeps its metadata to itself, as the
//! link is not followed when directories get theirs at the end. Links themselves may point
//! anywhere: they are resolved inside the container's root when it runs, never followed here.
//!
//! A hard link must name a file of this layer (linked) or of a layer below (made again: only a
//! regular file is read to be copied; a device node or FIFO is created anew, never opened).
//! What a layer unpacks to is bounded ([`UnpackLimit`]): a small layer cannot fill the disk.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use berth_oci::{Digest, DigestHasher};
use rustix::fs::{FileType, Mode};
use rustix::io::Errno;
use tar::{EntryType, Header};

use crate::beneath::{self, Meta};
use crate::error::{Result, RuntimeError};

/// The prefix of a whiteout file name, and the name that makes its directory opaque.
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// The extended attribute overlayfs reads to hide the lower layers' content of a directory.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The variable that sets how much one layer may unpack to.
pub const MAX_UNPACK_SIZE_VAR: &str = "BERTH_MAX_UNPACK_SIZE";
const GIB: u64 = 1 << 30;

/// How much one layer may unpack to: the bytes of tar read and, apart, the bytes written to
/// files (each counted in full: a sparse file by its length, a copy of a lower layer's file
/// too). A layer of a few MiB that inflates to terabytes would fill the host's disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnpackLimit {
    /// Ten times the layer's compressed size, and at least 1 GiB.
    #[default]
    Default,
    Bytes(u64),
    Unlimited,
}

impl UnpackLimit {
    /// What `BERTH_MAX_UNPACK_SIZE` says: unset or empty for the default, `0` for no limit,
    /// else bytes with an optional K, M, G (or KiB, MiB, GiB: powers of 1024).
    pub fn from_env() -> Result<UnpackLimit> {
        match std::env::var(MAX_UNPACK_SIZE_VAR) {
            Err(std::env::VarError::NotPresent) => Ok(UnpackLimit::Default),
            Err(std::env::VarError::NotUnicode(value)) => Err(RuntimeError::Other(format!(
                "{MAX_UNPACK_SIZE_VAR}={value:?}: not a size"
            ))),
            Ok(value) => UnpackLimit::parse(&value).ok_or_else(|| {
                RuntimeError::Other(format!(
                    "{MAX_UNPACK_SIZE_VAR}={value:?}: use a size in bytes, with K, M or G \
                     (KiB, MiB, GiB) if you like, such as 20G; or 0 for no limit"
                ))
            }),
        }
    }

    pub fn parse(value: &str) -> Option<UnpackLimit> {
        let value = value.trim();
        if value.is_empty() {
            return Some(UnpackLimit::Default);
        }
        let digits = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            _ => return None,
        };
        match number.checked_mul(1 << shift)? {
            0 => Some(UnpackLimit::Unlimited),
            bytes => Some(UnpackLimit::Bytes(bytes)),
        }
    }

    /// The limit for a layer of `compressed` bytes; `None` for no limit.
    pub fn for_layer(self, compressed: u64) -> Option<u64> {
        match self {
            UnpackLimit::Default => Some(compressed.saturating_mul(10).max(GIB)),
            UnpackLimit::Bytes(bytes) => Some(bytes),
            UnpackLimit::Unlimited => None,
        }
    }
}

/// Unpacks the layer `digest` read from `input` into `dest` (an empty directory). `lowers` are
/// the unpacked layers below it, top first, where a hard link may find its target. `max_size`
/// bounds the tar read and, apart, the bytes written ([`UnpackLimit`]). Returns the digest of
/// the uncompressed tar: the layer's diff ID, for the caller to check against the image config.
pub fn unpack_layer(
    digest: &Digest,
    input: impl Read,
    dest: &Path,
    lowers: &[PathBuf],
    max_size: Option<u64>,
) -> Result<Digest> {
    let budget = Budget {
        limit: max_size,
        read: Cell::new(0),
        written: Cell::new(0),
    };
    let tar = decompressed(digest, input)?;
    let mut archive = tar::Archive::new(Hashing {
        inner: tar,
        hasher: DigestHasher::new(),
        budget: &budget,
    });
    let mut unpacker = Unpacker {
        layer: digest,
        root_path: dest,
        root: beneath::open_root(dest)?,
        lowers: lowers
            .iter()
            .map(|l| Ok((l.clone(), beneath::open_root(l)?)))
            .collect::<Result<_>>()?,
        directories: BTreeMap::new(),
        budget: &budget,
    };
    let entries = archive
        .entries()
        .map_err(|e| unpacker.stream_error("not a tar archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpacker.stream_error("damaged tar archive", e))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()?;
    // The diff ID covers the whole stream, the end-of-archive blocks and any padding included.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| {
        if budget.exceeded() {
            budget.error(digest)
        } else {
            bad(digest, format!("damaged tar archive: {e}"))
        }
    })?;
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

/// What one layer has unpacked so far, against its limit.
struct Budget {
    limit: Option<u64>,
    /// Bytes of uncompressed tar read.
    read: Cell<u64>,
    /// Bytes written to files.
    written: Cell<u64>,
}

impl Budget {
    fn exceeded(&self) -> bool {
        self.limit
            .is_some_and(|limit| self.read.get() > limit || self.written.get() > limit)
    }

    /// Counts `n` more bytes written; refuses them if they would pass the limit.
    fn write(&self, layer: &Digest, n: u64) -> Result<()> {
        let total = self.written.get().saturating_add(n);
        self.written.set(total);
        if self.exceeded() {
            return Err(self.error(layer));
        }
        Ok(())
    }

    fn error(&self, layer: &Digest) -> RuntimeError {
        RuntimeError::LayerTooLarge {
            layer: layer.clone(),
            limit: self.limit.unwrap_or(u64::MAX),
        }
    }
}

/// Hashes and counts what is read through it; fails once more than the limit was read.
struct Hashing<'a, R> {
    inner: R,
    hasher: DigestHasher,
    budget: &'a Budget,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        let read = &self.budget.read;
        read.set(read.get().saturating_add(n as u64));
        if self.budget.exceeded() {
            return Err(io::Error::other("the layer unpacks to more than its limit"));
        }
        Ok(n)
    }
}

struct Unpacker<'a> {
    layer: &'a Digest,
    /// The layer's directory, for messages; everything is written through `root`.
    root_path: &'a Path,
    root: OwnedFd,
    lowers: Vec<(PathBuf, OwnedFd)>,
    /// Directories with their metadata, applied at the end: a read-only mode or an mtime set
    /// at once would be undone, or refuse, by the entries written into them. The last entry
    /// of a path wins.
    directories: BTreeMap<PathBuf, Meta>,
    budget: &'a Budget,
}

/// Where a hard link's target was found.
enum Found {
    /// In this layer or a lower one: its directory, opened without following links, and its
    /// own status (not followed).
    At(OwnedFd, rustix::fs::Stat),
    /// Deleted by a whiteout: no layer below counts.
    WhitedOut,
    Absent,
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
            // The directory it marks must be one: created if missing, never a link replaced.
            let dir = self.directory_beneath(rel.parent().unwrap_or(Path::new("")), &shown)?;
            let set =
                rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty());
            return set.map_err(|e| RuntimeError::io("mark opaque", self.at(&rel))(e.into()));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.refuse(&shown, "a whiteout of no file"));
            }
            let target = rel.with_file_name(hidden);
            let (dir, hidden) = self.make_room(&target, &shown, false)?;
            return rustix::fs::mknodat(
                &dir,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| RuntimeError::io("create whiteout", self.at(&target))(e.into()));
        }
        let meta = self.meta(entry)?;
        if rel.as_os_str().is_empty() {
            // `./` itself: the root keeps its own metadata.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(self.refuse(&shown, "names the root itself")),
            };
        }
        let at = self.at(&rel);
        match kind {
            EntryType::Directory => {
                let (dir, name) = self.make_room(&rel, &shown, true)?;
                if beneath::stat_at(dir.as_fd(), name)
                    .map_err(RuntimeError::io("read", &at))?
                    .is_none()
                {
                    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| RuntimeError::io("create directory", &at)(e.into()))?;
                }
                self.directories.insert(rel, meta);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let (dir, name) = self.make_room(&rel, &shown, false)?;
                let mut file = beneath::create_file(dir.as_fd(), name)
                    .map_err(RuntimeError::io("create", &at))?;
                beneath::copy(
                    entry,
                    &mut file,
                    &mut |n| self.budget.write(self.layer, n),
                    &|e| self.stream_error(&format!("{shown}: cannot read"), e),
                    &at,
                )?;
                beneath::apply(file.as_fd(), &meta, &at)?;
            }
            EntryType::Symlink => {
                let target = self.link_target(entry, &shown)?;
                let (dir, name) = self.make_room(&rel, &shown, false)?;
                rustix::fs::symlinkat(&target, &dir, name)
                    .map_err(|e| RuntimeError::io("create link", &at)(e.into()))?;
                beneath::apply_at(dir.as_fd(), name, &meta, &at)?;
            }
            EntryType::Link => {
                let target = self.link_target(entry, &shown)?;
                self.hard_link(&rel, &target, &shown)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (dir, name) = self.make_room(&rel, &shown, false)?;
                let header = entry.header();
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(
                    &dir,
                    name,
                    file_type,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| RuntimeError::io("create device", &at)(e.into()))?;
                beneath::apply_at(dir.as_fd(), name, &meta, &at)?;
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

    /// Directory modes, owners, attributes and times last, deepest first. Each directory is
    /// opened again from the root without following a link: one that a later entry replaced
    /// (by a link, a file) is not a directory of this layer any more and is left alone.
    fn finish(&mut self) -> Result<()> {
        let mut directories: Vec<_> = std::mem::take(&mut self.directories).into_iter().collect();
        directories.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in directories {
            let at = self.at(&rel);
            match beneath::open_dir(self.root.as_fd(), &rel) {
                Ok(dir) => beneath::apply(dir.as_fd(), &meta, &at)?,
                Err(e) if beneath::not_a_plain_directory(&e) => {
                    tracing::debug!(layer = %self.layer, path = %rel.display(), "replaced: not a directory any more");
                }
                Err(e) => return Err(RuntimeError::io("open directory", at)(e)),
            }
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

    /// The directory `rel` (the root when empty), opened beneath the root without following a
    /// link; directories missing on the way are created. A link or a file on the way is
    /// refused.
    fn directory_beneath(&self, rel: &Path, shown: &str) -> Result<OwnedFd> {
        // Most entries go where an earlier one made the way: one openat2.
        if let Ok(dir) = beneath::open_dir(self.root.as_fd(), rel) {
            return Ok(dir);
        }
        let mut here = beneath::walk(self.root.as_fd(), Path::new(""))
            .map_err(RuntimeError::io("open directory", self.root_path))?;
        let mut walked = PathBuf::new();
        for part in rel.components() {
            let Component::Normal(part) = part else {
                return Err(self.refuse(shown, "not a plain path"));
            };
            walked.push(part);
            let next = match beneath::walk(here.as_fd(), Path::new(part)) {
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    rustix::fs::mkdirat(&here, part, Mode::from_raw_mode(0o755)).map_err(|e| {
                        RuntimeError::io("create directory", self.at(&walked))(e.into())
                    })?;
                    beneath::walk(here.as_fd(), Path::new(part))
                }
                other => other,
            };
            here = match next {
                Ok(dir) => dir,
                Err(e) if beneath::not_a_plain_directory(&e) => {
                    let st = beneath::stat_at(here.as_fd(), part)
                        .map_err(RuntimeError::io("read", self.at(&walked)))?;
                    return Err(match st.map(|st| beneath::kind(&st)) {
                        Some(FileType::Symlink) => {
                            self.refuse(shown, "it goes through a symbolic link")
                        }
                        _ => self.refuse(shown, "a parent is not a directory"),
                    });
                }
                Err(e) => return Err(RuntimeError::io("open directory", self.at(&walked))(e)),
            };
        }
        Ok(here)
    }

    /// Makes way for a new entry at `rel`: what this layer put there before goes, as a later
    /// tar entry replaces an earlier one (a directory stays when `keep_directory`). Returns the
    /// directory the entry goes in, and its name there.
    fn make_room<'r>(
        &self,
        rel: &'r Path,
        shown: &str,
        keep_directory: bool,
    ) -> Result<(OwnedFd, &'r OsStr)> {
        let Some(name) = rel.file_name() else {
            return Err(self.refuse(shown, "names the root itself"));
        };
        let dir = self.directory_beneath(rel.parent().unwrap_or(Path::new("")), shown)?;
        let at = self.at(rel);
        let existing =
            beneath::stat_at(dir.as_fd(), name).map_err(RuntimeError::io("read", &at))?;
        match existing {
            Some(st) if keep_directory && beneath::kind(&st) == FileType::Directory => {}
            Some(_) => {
                beneath::remove(dir.as_fd(), name).map_err(RuntimeError::io("remove", &at))?
            }
            None => {}
        }
        Ok((dir, name))
    }

    /// A hard link at `rel` to `target`: a file this layer wrote earlier is linked; one of a
    /// lower layer (layers are separate directories) is made again, and only a regular file is
    /// ever read to be copied: a device node or a FIFO is created anew from its type, number
    /// and mode (never opened), a symbolic link from its target; a directory is refused.
    fn hard_link(&self, rel: &Path, target: &Path, shown: &str) -> Result<()> {
        let target_rel = self.clean(target, shown)?;
        if target_rel.as_os_str().is_empty() {
            return Err(self.refuse(shown, "a hard link to the root"));
        }
        if target_rel == rel {
            return Err(self.refuse(shown, "a hard link to itself"));
        }
        let at = self.at(rel);
        let target_name = target_rel.file_name().unwrap_or_default();
        let mut found = self.find(self.root.as_fd(), &target_rel)?;
        let mut lower = None;
        if matches!(found, Found::Absent) {
            for (path, fd) in &self.lowers {
                found = self.find(fd.as_fd(), &target_rel)?;
                if !matches!(found, Found::Absent) {
                    lower = Some(path);
                    break;
                }
            }
        }
        let Found::At(source_dir, st) = found else {
            return Err(bad(
                self.layer,
                format!(
                    "{shown}: a hard link to {}, which no layer has",
                    target.display()
                ),
            ));
        };
        let kind = beneath::kind(&st);
        if kind == FileType::Directory {
            return Err(self.refuse(shown, "a hard link to a directory"));
        }
        let (dir, name) = self.make_room(rel, shown, false)?;
        let Some(lower) = lower else {
            // This layer's own file: the same inode, whatever its kind (nothing is opened).
            return rustix::fs::linkat(
                &source_dir,
                target_name,
                &dir,
                name,
                rustix::fs::AtFlags::empty(),
            )
            .map_err(|e| RuntimeError::io("link", &at)(e.into()));
        };
        let source = lower.join(&target_rel);
        let meta = Meta::of(&st);
        match kind {
            FileType::RegularFile => {
                let (mut input, st) = beneath::open_regular(source_dir.as_fd(), target_name)
                    .map_err(RuntimeError::io("open", &source))?;
                let mut output = beneath::create_file(dir.as_fd(), name)
                    .map_err(RuntimeError::io("create", &at))?;
                beneath::copy(
                    &mut input,
                    &mut output,
                    &mut |n| self.budget.write(self.layer, n),
                    &|e| RuntimeError::io("read", &source)(e),
                    &at,
                )?;
                beneath::apply(output.as_fd(), &Meta::of(&st), &at)
            }
            FileType::Symlink => {
                let link = rustix::fs::readlinkat(&source_dir, target_name, Vec::new())
                    .map_err(|e| RuntimeError::io("read link", &source)(e.into()))?;
                rustix::fs::symlinkat(link.as_c_str(), &dir, name)
                    .map_err(|e| RuntimeError::io("create link", &at)(e.into()))?;
                beneath::apply_at(dir.as_fd(), name, &meta, &at)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(
                    &dir,
                    name,
                    kind,
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    st.st_rdev,
                )
                .map_err(|e| RuntimeError::io("create device", &at)(e.into()))?;
                beneath::apply_at(dir.as_fd(), name, &meta, &at)
            }
            _ => Err(self.refuse(shown, "a hard link to a socket")),
        }
    }

    /// `rel` in the layer directory `root`: found when no directory on the way is a link.
    fn find(&self, root: BorrowedFd<'_>, rel: &Path) -> Result<Found> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(name) = rel.file_name() else {
            return Ok(Found::Absent);
        };
        let dir = match beneath::open_dir(root, parent) {
            Ok(dir) => dir,
            Err(e) if beneath::not_a_plain_directory(&e) => return Ok(Found::Absent),
            Err(e) => return Err(RuntimeError::io("open directory", self.at(parent))(e)),
        };
        match beneath::stat_at(dir.as_fd(), name) {
            Ok(Some(st)) if beneath::is_whiteout(&st) => Ok(Found::WhitedOut),
            Ok(Some(st)) => Ok(Found::At(dir, st)),
            Ok(None) => Ok(Found::Absent),
            Err(e) => Err(RuntimeError::io("read", self.at(rel))(e)),
        }
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

    /// An error reading the tar stream: the size limit when it was passed (the reader fails
    /// then), else a damaged archive.
    fn stream_error(&self, what: &str, e: io::Error) -> RuntimeError {
        if self.budget.exceeded() {
            return self.budget.error(self.layer);
        }
        bad(self.layer, format!("{what}: {e}"))
    }

    /// Where `rel` is, for messages.
    fn at(&self, rel: &Path) -> PathBuf {
        self.root_path.join(rel)
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

#[cfg(test)]
mod tests;
