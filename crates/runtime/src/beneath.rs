//! Writing beneath a directory by descriptor, never by path: what layers hold is untrusted, and
//! a path that names a directory of one entry may, one entry later, name a symbolic link to the
//! host. So every directory written in is a descriptor opened from the root without following a
//! link (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or, where the kernel has no
//! `openat2`, one `openat(O_NOFOLLOW | O_DIRECTORY)` per component), every change of owner,
//! mode, attributes or times goes through a descriptor of the file itself (`fchown`, `fchmod`,
//! `fsetxattr`, `futimens`) or, for a link or a device node, through its parent's descriptor
//! with `AT_SYMLINK_NOFOLLOW`, and files are created, linked and removed with the `*at` calls
//! relative to their directory's descriptor.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::{Result, RuntimeError};

/// How a directory is opened: for reading its entries and as the base of `*at` calls, never
/// through a link.
const DIRECTORY: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Set once `openat2` answered ENOSYS (a kernel before 5.6): the walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens the directory `path` itself (the root of what is written: a layer, a container's
/// root filesystem), refusing a link.
pub(crate) fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, DIRECTORY, Mode::empty())
        .map_err(|e| RuntimeError::io("open directory", path)(e.into()))
}

/// Opens the directory `rel` beneath `base`; fails (ELOOP, ENOTDIR, ENOENT) rather than follow a
/// symbolic link anywhere on the way or at the end. `rel` holds only plain names.
pub(crate) fn open_dir(base: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let at = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        match rustix::fs::openat2(base, at, DIRECTORY, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // Some seccomp profiles answer EPERM for system calls they do not know; EAGAIN is
            // a rename racing the lookup. The walk is as strict.
            Err(Errno::PERM) | Err(Errno::AGAIN) => {}
            other => return other.map_err(io::Error::from),
        }
    }
    walk(base, rel)
}

/// [`open_dir`] without `openat2`: one component at a time, none of them followed if a link.
pub(crate) fn walk(base: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let mut here = rustix::fs::openat(base, ".", DIRECTORY, Mode::empty())?;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(Errno::INVAL.into());
        };
        here = rustix::fs::openat(&here, name, DIRECTORY, Mode::empty())?;
    }
    Ok(here)
}

/// Whether an error of [`open_dir`] or [`walk`] means the path is not a directory reached
/// without links (absent, a link, or not a directory) rather than a failure to look.
pub(crate) fn not_a_plain_directory(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::NOENT | Errno::LOOP | Errno::NOTDIR | Errno::XDEV)
    )
}

/// The entry `name` of `dir`, not followed if a link; `None` when there is none.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// An overlayfs whiteout: a character device 0/0.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    kind(st) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Removes the entry `name` of `dir`, a whole tree if a directory (nothing is followed).
pub(crate) fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match stat_at(dir, name)? {
        Some(st) if kind(&st) == FileType::Directory => {
            let inner = rustix::fs::openat(dir, name, DIRECTORY, Mode::empty())?;
            clear(inner.as_fd())?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())?,
        None => {}
    }
    Ok(())
}

/// Removes everything in `dir`.
pub(crate) fn clear(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in names(dir)? {
        remove(dir, &name)?;
    }
    Ok(())
}

/// The names in `dir`, `.` and `..` left out.
pub(crate) fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// Creates the regular file `name` in `dir`, which must not exist (not even as a link).
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Opens the regular file `name` of `dir` for reading, refusing anything else: the file is
/// looked at first through an `O_PATH` descriptor, which opens nothing (a device's driver is
/// never called, a FIFO never waited on), and opened for reading only if it is a regular file;
/// the two must be the same file.
pub(crate) fn open_regular(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(File, Stat)> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let looked = rustix::fs::fstat(rustix::fs::openat(dir, name, flags, Mode::empty())?)?;
    if kind(&looked) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file"));
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&file)?;
    if kind(&st) != FileType::RegularFile
        || (st.st_dev, st.st_ino) != (looked.st_dev, looked.st_ino)
    {
        return Err(io::Error::other("the file changed while it was opened"));
    }
    Ok((File::from(file), st))
}

/// Copies `input` into `output`, asking `allow` before each write whether that many more bytes
/// may go; `read_error` says what a failure to read means.
pub(crate) fn copy(
    input: &mut dyn Read,
    output: &mut File,
    allow: &mut dyn FnMut(u64) -> Result<()>,
    read_error: &dyn Fn(io::Error) -> RuntimeError,
    at: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        allow(n as u64)?;
        output
            .write_all(&buf[..n])
            .map_err(RuntimeError::io("write", at))?;
    }
}

/// Copies the regular file `name` of `from` to a new file `name` of `to`, with its owner, mode
/// and times; `at` names the copy in messages. Nothing is followed; only a regular file is
/// opened.
pub(crate) fn copy_file(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &OsStr,
    at: &Path,
) -> Result<()> {
    let (mut input, st) =
        open_regular(from, name).map_err(RuntimeError::io("open the source of", at))?;
    let mut output = create_file(to, name).map_err(RuntimeError::io("create", at))?;
    let read_error = |e| RuntimeError::io("read the source of", at)(e);
    copy(&mut input, &mut output, &mut |_| Ok(()), &read_error, at)?;
    apply(output.as_fd(), &Meta::of(&st), at)
}

/// What a file's owner, mode, time and extended attributes are to be.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    /// A file's own owner, mode and modification time (no extended attributes).
    pub(crate) fn of(st: &Stat) -> Meta {
        Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode,
            mtime: st.st_mtime,
            xattrs: Vec::new(),
        }
    }

    fn times(&self) -> Timestamps {
        let at = Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: at,
            last_modification: at,
        }
    }
}

/// Applies `meta` to the file or directory open as `fd`: owner, then mode (a change of owner
/// clears set-user-ID bits), then extended attributes and times.
pub(crate) fn apply(fd: BorrowedFd<'_>, meta: &Meta, at: &Path) -> Result<()> {
    let fail = |action| move |e: Errno| RuntimeError::io(action, at)(e.into());
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
    )
    .map_err(fail("change owner of"))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
        .map_err(fail("change mode of"))?;
    for (name, value) in &meta.xattrs {
        let set = rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty());
        xattr_result(set, name, at)?;
    }
    rustix::fs::futimens(fd, &meta.times()).map_err(fail("set time of"))
}

/// Applies `meta` to the symbolic link or device node `name` of `dir`, which cannot be opened
/// (a link is not followed; a device is not opened): through the parent's descriptor, with
/// `AT_SYMLINK_NOFOLLOW`. A link has no mode of its own.
pub(crate) fn apply_at(dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta, at: &Path) -> Result<()> {
    let fail = |action| move |e: Errno| RuntimeError::io(action, at)(e.into());
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail("read"))?;
    let symlink = kind(&st) == FileType::Symlink;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(fail("change owner of"))?;
    if !symlink {
        // fchmodat has no AT_SYMLINK_NOFOLLOW before Linux 6.6; it follows nothing here, as
        // `name` was just seen (above, without following) not to be a link, in a directory
        // only this process writes.
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(meta.mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(fail("change mode of"))?;
    }
    if !meta.xattrs.is_empty() {
        // No fsetxattr without opening the file: `/proc/self/fd/N/name` reaches `name` in the
        // very directory of descriptor N, and lsetxattr does not follow `name`.
        let path = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        for (key, value) in &meta.xattrs {
            let set = rustix::fs::lsetxattr(&path, key, value, rustix::fs::XattrFlags::empty());
            xattr_result(set, key, at)?;
        }
    }
    rustix::fs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(fail("set time of"))
}

/// Attributes the filesystem does not take are skipped, as docker skips them; the opaque mark
/// overlayfs needs is not.
fn xattr_result(set: rustix::io::Result<()>, name: &str, at: &Path) -> Result<()> {
    match set {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) if name != crate::unpack::OPAQUE_XATTR => {
            tracing::debug!(path = %at.display(), xattr = name, "extended attribute not supported");
            Ok(())
        }
        Err(e) => Err(RuntimeError::io("set extended attribute of", at)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn directories_open_beneath_the_base_and_never_through_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("symlink");
        std::os::unix::fs::symlink("a", root.join("a-link")).expect("symlink");
        fs::write(root.join("a/file"), b"").expect("write");
        let base = open_root(&root).expect("root");

        for (what, open) in [
            (
                "openat2",
                open_dir as fn(BorrowedFd<'_>, &Path) -> io::Result<OwnedFd>,
            ),
            ("walk", walk),
        ] {
            let b = open(base.as_fd(), Path::new("a/b")).expect(what);
            assert!(kind(&rustix::fs::fstat(&b).expect("stat")) == FileType::Directory);
            open(base.as_fd(), Path::new("")).expect(what);
            for refused in ["up", "up/root", "a-link", "a-link/b", "a/file", "a/none"] {
                let e = open(base.as_fd(), Path::new(refused)).expect_err(refused);
                assert!(not_a_plain_directory(&e), "{what} {refused}: {e}");
            }
            assert!(open(base.as_fd(), Path::new("../root")).is_err(), "{what}");
        }
    }

    #[test]
    fn only_a_regular_file_is_opened_for_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("file"), b"data").expect("write");
        std::os::unix::fs::symlink("file", dir.path().join("link")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let base = open_root(dir.path()).expect("open");
        let (mut file, _) = open_regular(base.as_fd(), OsStr::new("file")).expect("file");
        let mut data = String::new();
        file.read_to_string(&mut data).expect("read");
        assert_eq!(data, "data");
        for other in ["link", "pipe", "none"] {
            assert!(
                open_regular(base.as_fd(), OsStr::new(other)).is_err(),
                "{other}"
            );
        }
    }
}
