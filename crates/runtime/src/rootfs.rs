//! A container's root filesystem from unpacked layers: an overlayfs mount of the shared layer
//! directories with a writable directory of the container's own on top, or, where the kernel
//! or the filesystem refuses overlayfs, a copy of the layers merged in order (whiteouts and
//! opaque directories applied as overlayfs would show them).

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};

use crate::beneath::{self, Meta, copy_file};
use crate::error::{Result, RuntimeError};
use crate::unpack::OPAQUE_XATTR;

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
        let target = beneath::open_root(&self.target)?;
        for layer in layers {
            let from = beneath::open_root(layer)?;
            merge(from.as_fd(), target.as_fd(), layer, &self.target)?;
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

/// Applies the layer directory `from` onto `to` (`from_path` and `to_path` are for messages).
/// Both are descriptors, and so is every directory below them, opened without following a
/// link; every entry is examined, created and removed relative to its directory's descriptor,
/// so nothing outside `to` is touched, whatever links the layers hold.
fn merge(from: BorrowedFd<'_>, to: BorrowedFd<'_>, from_path: &Path, to_path: &Path) -> Result<()> {
    let fail = |action, at: &Path| {
        let at = at.to_path_buf();
        move |e: std::io::Error| RuntimeError::io(action, at)(e)
    };
    let source = rustix::fs::fstat(from).map_err(|e| fail("read", from_path)(e.into()))?;
    copy_directory_meta(to, &source, to_path)?;
    let opaque = rustix::fs::fgetxattr(from, OPAQUE_XATTR, &mut [0u8; 4])
        .map(|n| n > 0)
        .unwrap_or(false);
    if opaque {
        beneath::clear(to).map_err(fail("empty", to_path))?;
    }
    let names = beneath::names(from).map_err(fail("list", from_path))?;
    for name in names {
        let (src, dst) = (from_path.join(&name), to_path.join(&name));
        let Some(m) = beneath::stat_at(from, &name).map_err(fail("read", &src))? else {
            continue;
        };
        let existing = beneath::stat_at(to, &name).map_err(fail("read", &dst))?;
        let kind = beneath::kind(&m);
        let is_dir = |st: &rustix::fs::Stat| beneath::kind(st) == FileType::Directory;
        let keep = existing.as_ref().is_some_and(is_dir) && kind == FileType::Directory;
        if existing.is_some() && !keep {
            beneath::remove(to, &name).map_err(fail("remove", &dst))?;
        }
        if beneath::is_whiteout(&m) {
            continue;
        }
        match kind {
            FileType::Directory => {
                if !keep {
                    rustix::fs::mkdirat(to, &name, Mode::from_raw_mode(0o700))
                        .map_err(|e| fail("create", &dst)(e.into()))?;
                }
                let open = |dir, at: &Path| {
                    beneath::walk(dir, Path::new(&name)).map_err(fail("open directory", at))
                };
                let (inner_from, inner_to) = (open(from, &src)?, open(to, &dst)?);
                merge(inner_from.as_fd(), inner_to.as_fd(), &src, &dst)?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(from, &name, Vec::new())
                    .map_err(|e| fail("read link", &src)(e.into()))?;
                rustix::fs::symlinkat(target.as_c_str(), to, &name)
                    .map_err(|e| fail("link", &dst)(e.into()))?;
                beneath::apply_at(to, &name, &Meta::of(&m), &dst)?;
            }
            FileType::RegularFile => copy_file(from, to, &name, &dst)?,
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(
                    to,
                    &name,
                    kind,
                    Mode::from_raw_mode(m.st_mode & 0o7777),
                    m.st_rdev,
                )
                .map_err(|e| fail("create device", &dst)(e.into()))?;
                beneath::apply_at(to, &name, &Meta::of(&m), &dst)?;
            }
            // A socket: nothing to copy.
            _ => {}
        }
    }
    Ok(())
}

/// Owner and mode of a directory copied over; its opaque mark is not (a merged directory is
/// never opaque).
fn copy_directory_meta(to: BorrowedFd<'_>, m: &rustix::fs::Stat, at: &Path) -> Result<()> {
    let fail = |action| move |e: rustix::io::Errno| RuntimeError::io(action, at)(e.into());
    rustix::fs::fchown(
        to,
        Some(rustix::fs::Uid::from_raw(m.st_uid)),
        Some(rustix::fs::Gid::from_raw(m.st_gid)),
    )
    .map_err(fail("change owner of"))?;
    rustix::fs::fchmod(to, Mode::from_raw_mode(m.st_mode & 0o7777)).map_err(fail("change mode of"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};

    use super::*;

    /// Kind, mode, owner, time and extended attributes: what no layer may change on the host.
    fn fingerprint(p: &Path) -> (bool, u32, u32, i64, Vec<u8>) {
        let m = fs::symlink_metadata(p).expect("stat");
        let mut names = [0u8; 1024];
        let n = rustix::fs::llistxattr(p, &mut names[..]).expect("xattrs");
        (
            m.file_type().is_symlink(),
            m.mode(),
            m.uid(),
            m.mtime(),
            names[..n].to_vec(),
        )
    }

    #[test]
    fn merging_layers_with_links_to_the_host_writes_nothing_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outer = dir.path();
        let (host_dir, host_file) = (outer.join("host-dir"), outer.join("host-file"));
        fs::create_dir_all(host_dir.join("c")).expect("mkdir");
        fs::write(host_dir.join("c/keep"), b"host").expect("write");
        fs::write(&host_file, b"host").expect("write");
        let watched = [
            host_dir.clone(),
            host_dir.join("c"),
            host_dir.join("c/keep"),
            host_file.clone(),
        ];
        let before: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();

        // The lower layer: links to the host where the upper layer has directories and files
        // (absolute and relative), and a FIFO.
        let lower = outer.join("lower");
        fs::create_dir(&lower).expect("mkdir");
        for (name, target) in [
            ("d", host_dir.clone()),
            ("f", host_file.clone()),
            ("r", PathBuf::from("../host-dir")),
            ("o", host_dir.clone()),
            ("w", host_dir.clone()),
        ] {
            symlink(&target, lower.join(name)).expect("symlink");
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            lower.join("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");

        // The upper layer: a set-user-ID directory over `d` with a directory of another owner
        // in it, a set-user-ID file over `f`, a directory over `r`, an opaque directory over
        // `o`, a whiteout of `w/c`.
        let upper = outer.join("upper");
        fs::create_dir_all(upper.join("d/c")).expect("mkdir");
        fs::write(upper.join("d/c/planted"), b"layer").expect("write");
        fs::set_permissions(upper.join("d"), fs::Permissions::from_mode(0o4777)).expect("chmod");
        fs::set_permissions(upper.join("d/c"), fs::Permissions::from_mode(0o777)).expect("chmod");
        std::os::unix::fs::chown(upper.join("d/c"), Some(4242), Some(4242)).expect("chown");
        fs::write(upper.join("f"), b"layer").expect("write");
        fs::set_permissions(upper.join("f"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::create_dir_all(upper.join("r/c")).expect("mkdir");
        fs::create_dir_all(upper.join("o")).expect("mkdir");
        fs::write(upper.join("o/new"), b"layer").expect("write");
        rustix::fs::lsetxattr(
            upper.join("o"),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .expect("opaque");
        fs::create_dir_all(upper.join("w")).expect("mkdir");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("w/c"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .expect("whiteout");

        let rootfs = Rootfs::in_bundle(&outer.join("bundle"));
        rootfs.copy_layers(&[lower, upper]).expect("copy");

        let after: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();
        assert_eq!(after, before);
        assert_eq!(fs::read(&host_file).expect("read"), b"host");
        assert_eq!(
            fs::read_dir(&host_dir).expect("list").count(),
            1,
            "only c in the host's directory"
        );
        assert_eq!(fs::read_dir(host_dir.join("c")).expect("list").count(), 1);

        let t = &rootfs.target;
        assert_eq!(fs::read(t.join("d/c/planted")).expect("read"), b"layer");
        let d = fs::symlink_metadata(t.join("d")).expect("stat");
        assert!(d.is_dir() && d.mode() & 0o7777 == 0o4777);
        assert_eq!(
            fs::symlink_metadata(t.join("d/c")).expect("stat").uid(),
            4242
        );
        let f = fs::symlink_metadata(t.join("f")).expect("stat");
        assert!(f.is_file() && f.mode() & 0o7777 == 0o4755);
        assert!(fs::symlink_metadata(t.join("r/c")).expect("stat").is_dir());
        assert_eq!(fs::read(t.join("o/new")).expect("read"), b"layer");
        assert!(fs::symlink_metadata(t.join("w")).expect("stat").is_dir());
        assert!(!t.join("w/c").exists());
        let pipe = fs::symlink_metadata(t.join("pipe")).expect("stat");
        assert!(pipe.file_type().is_fifo());
    }
}
