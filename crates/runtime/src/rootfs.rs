//! A container's root filesystem from unpacked layers: an overlayfs mount of the shared layer
//! directories with a writable directory of the container's own on top, or, where the kernel
//! or the filesystem refuses overlayfs, a copy of the layers merged in order (whiteouts and
//! opaque directories applied as overlayfs would show them).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::unpack::{OPAQUE_XATTR, copy_file};

/// How a container's root filesystem is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsMode {
    Overlay,
    Copy,
}

/// What `BERTH_ROOTFS` asks for: `overlay`, `copy`, or (unset, `auto`) overlay where it works.
pub fn wanted_mode() -> Result<Option<RootfsMode>> {
    match std::env::var("BERTH_ROOTFS").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(None),
        Ok("overlay") => Ok(Some(RootfsMode::Overlay)),
        Ok("copy") => Ok(Some(RootfsMode::Copy)),
        Ok(other) => Err(RuntimeError::Other(format!(
            "BERTH_ROOTFS={other:?}: use overlay, copy or auto"
        ))),
    }
}

/// The directories of one container's root filesystem.
pub struct Rootfs {
    /// Where the container sees `/`.
    pub target: PathBuf,
    /// overlayfs: the container's writable layer and overlayfs's work directory.
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Rootfs {
    pub fn in_bundle(bundle: &Path) -> Rootfs {
        Rootfs {
            target: bundle.join("rootfs"),
            upper: bundle.join("upper"),
            work: bundle.join("work"),
        }
    }

    /// Mounts `layers` (bottom first) at `target` with overlayfs.
    pub fn mount_overlay(&self, layers: &[PathBuf], empty: &Path) -> Result<()> {
        for dir in [&self.target, &self.upper, &self.work] {
            fs::create_dir_all(dir).map_err(RuntimeError::io("create", dir))?;
        }
        // overlayfs wants at least one lower directory; an image without layers gets an
        // empty one.
        let mut lowers: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| escape(&p.to_string_lossy()))
            .collect();
        if lowers.is_empty() {
            fs::create_dir_all(empty).map_err(RuntimeError::io("create", empty))?;
            lowers.push(escape(&empty.to_string_lossy()));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            escape(&self.upper.to_string_lossy()),
            escape(&self.work.to_string_lossy()),
        );
        // The mount data must fit in a page.
        if options.len() >= 4000 {
            return Err(RuntimeError::Other(format!(
                "{} layers make an overlayfs mount too long",
                layers.len()
            )));
        }
        let data = std::ffi::CString::new(options)
            .map_err(|_| RuntimeError::Other("a layer path holds a NUL byte".into()))?;
        rustix::mount::mount(
            "overlay",
            &self.target,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| RuntimeError::io("mount overlayfs on", &self.target)(e.into()))
    }

    pub fn is_mounted(&self) -> bool {
        let (Ok(here), Ok(parent)) = (
            fs::metadata(&self.target),
            fs::metadata(self.target.parent().unwrap_or(Path::new("/"))),
        ) else {
            return false;
        };
        here.dev() != parent.dev()
    }

    /// Unmounts the overlayfs, if mounted.
    pub fn unmount(&self) -> Result<()> {
        if !self.is_mounted() {
            return Ok(());
        }
        rustix::mount::unmount(&self.target, UnmountFlags::DETACH)
            .map_err(|e| RuntimeError::io("unmount", &self.target)(e.into()))
    }

    /// Copies `layers` (bottom first) into `target`, as overlayfs would show them merged.
    pub fn copy_layers(&self, layers: &[PathBuf]) -> Result<()> {
        fs::create_dir_all(&self.target).map_err(RuntimeError::io("create", &self.target))?;
        for layer in layers {
            merge(layer, &self.target)?;
        }
        Ok(())
    }
}

/// overlayfs separates lower directories with `:` and options with `,`; both can be escaped.
fn escape(path: &str) -> String {
    path.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Applies the layer directory `from` onto `to`. Only names read from directories are joined,
/// and every existing path is examined without following links, so nothing outside `to` is
/// touched.
fn merge(from: &Path, to: &Path) -> Result<()> {
    let source = fs::symlink_metadata(from).map_err(RuntimeError::io("read", from))?;
    copy_directory_meta(to, &source)?;
    let opaque = rustix::fs::lgetxattr(from, OPAQUE_XATTR, &mut [0u8; 4])
        .map(|n| n > 0)
        .unwrap_or(false);
    if opaque {
        clear(to)?;
    }
    let entries = fs::read_dir(from).map_err(RuntimeError::io("list", from))?;
    for entry in entries {
        let entry = entry.map_err(RuntimeError::io("list", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let m = fs::symlink_metadata(&src).map_err(RuntimeError::io("read", &src))?;
        let existing = match fs::symlink_metadata(&dst) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(RuntimeError::io("read", &dst)(e)),
        };
        let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
        match existing {
            Some(d) if d.is_dir() && m.is_dir() => {}
            Some(d) if d.is_dir() => {
                fs::remove_dir_all(&dst).map_err(RuntimeError::io("remove", &dst))?
            }
            Some(_) => fs::remove_file(&dst).map_err(RuntimeError::io("remove", &dst))?,
            None => {}
        }
        if whiteout {
            continue;
        }
        let kind = m.file_type();
        if kind.is_dir() {
            if !dst.is_dir() {
                fs::create_dir(&dst).map_err(RuntimeError::io("create", &dst))?;
            }
            merge(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(RuntimeError::io("read link", &src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(RuntimeError::io("link", &dst))?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))
                .map_err(RuntimeError::io("change owner of", &dst))?;
        } else if kind.is_file() {
            copy_file(&src, &dst)?;
        } else {
            let file_type = if kind.is_char_device() {
                FileType::CharacterDevice
            } else if kind.is_block_device() {
                FileType::BlockDevice
            } else if kind.is_fifo() {
                FileType::Fifo
            } else {
                // A socket: nothing to copy.
                continue;
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &dst,
                file_type,
                Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| RuntimeError::io("create device", &dst)(e.into()))?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))
                .map_err(RuntimeError::io("change owner of", &dst))?;
        }
    }
    Ok(())
}

/// Owner and mode of a directory copied over; its opaque mark is not (a merged directory is
/// never opaque).
fn copy_directory_meta(to: &Path, m: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()))
        .map_err(RuntimeError::io("change owner of", to))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(to, fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(RuntimeError::io("change mode of", to))
}

/// Empties a directory (the target of an opaque directory).
fn clear(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(RuntimeError::io("list", dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            fs::remove_dir_all(&path).map_err(RuntimeError::io("remove", &path))?;
        } else {
            fs::remove_file(&path).map_err(RuntimeError::io("remove", &path))?;
        }
    }
    Ok(())
}
