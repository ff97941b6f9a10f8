use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// A tar entry written by hand, so that names the tar crate's builder would refuse (`..`)
/// can be made.
struct Item<'a> {
    name: &'a str,
    kind: EntryType,
    data: &'a [u8],
    link: &'a str,
    mode: u32,
    uid: u64,
    /// pax extended attributes (`SCHILY.xattr.NAME`).
    xattrs: &'a [(&'a str, &'a [u8])],
}

fn item<'a>(name: &'a str, kind: EntryType) -> Item<'a> {
    Item {
        name,
        kind,
        data: b"",
        link: "",
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        xattrs: &[],
    }
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Item<'a> {
    Item {
        data,
        ..item(name, EntryType::Regular)
    }
}

fn link<'a>(name: &'a str, kind: EntryType, target: &'a str) -> Item<'a> {
    Item {
        link: target,
        ..item(name, kind)
    }
}

fn tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for it in items {
        if !it.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = it
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                .expect("pax");
        }
        let mut header = Header::new_gnu();
        let name = &mut header.as_old_mut().name;
        name[..it.name.len()].copy_from_slice(it.name.as_bytes());
        if !it.link.is_empty() {
            let link = &mut header.as_old_mut().linkname;
            link[..it.link.len()].copy_from_slice(it.link.as_bytes());
        }
        header.set_entry_type(it.kind);
        header.set_mode(it.mode);
        header.set_uid(it.uid);
        header.set_gid(it.uid);
        header.set_mtime(1_700_000_000);
        header.set_size(it.data.len() as u64);
        header.set_cksum();
        builder.append(&header, it.data).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn layer_digest(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// A sandbox: `root` to unpack into, inside `outer`, which must stay as it was.
struct Sandbox {
    _dir: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().expect("tempdir");
    let outer = dir.path().join("outer");
    let root = outer.join("a").join("b").join("root");
    fs::create_dir_all(&root).expect("mkdir");
    Sandbox {
        outer,
        root,
        _dir: dir,
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("inside").display().to_string());
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn unpack(bytes: &[u8], root: &Path) -> Result<Digest> {
    unpack_with(bytes, root, &[], None)
}

fn unpack_with(
    bytes: &[u8],
    root: &Path,
    lowers: &[PathBuf],
    limit: Option<u64>,
) -> Result<Digest> {
    unpack_layer(&layer_digest(bytes), bytes, root, lowers, limit)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// A file and a directory with a child directory, outside the root: no layer may change them.
struct HostTargets {
    file: PathBuf,
    dir: PathBuf,
    child: PathBuf,
}

fn host_targets(s: &Sandbox) -> HostTargets {
    let file = s.outer.join("host-file");
    fs::write(&file, b"host").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let dir = s.outer.join("host-dir");
    let child = dir.join("dir");
    fs::create_dir_all(&child).expect("mkdir");
    fs::set_permissions(&child, fs::Permissions::from_mode(0o755)).expect("chmod");
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for p in [&file, &child, &dir] {
        filetime::set_symlink_file_times(p, old, old).expect("times");
    }
    HostTargets { file, dir, child }
}

/// What a layer must not change of a host file: kind, mode, owner, mtime, xattr names.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    symlink: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<u8>,
}

fn fingerprint(p: &Path) -> Fingerprint {
    let m = fs::symlink_metadata(p).expect("stat");
    let mut names = [0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names[..]).expect("list xattrs");
    Fingerprint {
        symlink: m.file_type().is_symlink(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        xattrs: names[..n].to_vec(),
    }
}

/// Runs `unpack` on another thread: `None` when it has not returned after 20 s.
fn within_20s(run: impl FnOnce() -> Result<Digest> + Send + 'static) -> Option<Result<Digest>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run());
    });
    rx.recv_timeout(Duration::from_secs(20)).ok()
}

#[test]
fn files_directories_links_and_devices_keep_their_kind_owner_and_mode() {
    let s = sandbox();
    let layer = tar(&[
        item("etc/", EntryType::Directory),
        Item {
            mode: 0o640,
            uid: 1000,
            ..file("etc/app.conf", b"key = value\n")
        },
        link("etc/current", EntryType::Symlink, "/etc/app.conf"),
        link("etc/again", EntryType::Link, "etc/app.conf"),
        Item {
            mode: 0o555,
            ..item("ro/", EntryType::Directory)
        },
        file(
            "ro/inside",
            b"written before its directory turned read-only",
        ),
        item("run/pipe", EntryType::Fifo),
        Item {
            mode: 0o666,
            ..item("dev/null", EntryType::Char)
        },
    ]);
    let diff_id = unpack(&layer, &s.root).expect("unpack");
    assert_eq!(diff_id, Digest::sha256_of(&layer));

    let conf = s.root.join("etc/app.conf");
    assert_eq!(fs::read(&conf).expect("read"), b"key = value\n");
    let m = fs::metadata(&conf).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 1000));
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(
        fs::read_link(s.root.join("etc/current")).expect("link"),
        Path::new("/etc/app.conf")
    );
    let again = fs::metadata(s.root.join("etc/again")).expect("stat");
    assert_eq!(again.ino(), m.ino(), "a hard link shares the inode");
    assert_eq!(
        fs::metadata(s.root.join("ro")).expect("stat").mode() & 0o7777,
        0o555
    );
    assert!(
        fs::symlink_metadata(s.root.join("run/pipe"))
            .expect("stat")
            .file_type()
            .is_fifo()
    );
    let null = fs::symlink_metadata(s.root.join("dev/null")).expect("stat");
    assert!(null.file_type().is_char_device());
}

#[test]
fn gzip_zstd_and_plain_layers_give_the_same_files_and_diff_id() {
    let layer = tar(&[file("a/b.txt", b"same bytes")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = ruzstd::encoding::compress_to_vec(
        layer.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    for (what, bytes) in [("plain", &layer), ("gzip", &gz), ("zstd", &zst)] {
        let s = sandbox();
        let diff_id = unpack(bytes, &s.root).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(diff_id, Digest::sha256_of(&layer), "{what}");
        assert_eq!(
            fs::read(s.root.join("a/b.txt")).expect("read"),
            b"same bytes"
        );
    }
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let s = sandbox();
    let layer = tar(&[
        item("www/", EntryType::Directory),
        file("www/.wh.secret.txt", b""),
        item("cache/", EntryType::Directory),
        file("cache/.wh..wh..opq", b""),
        file("cache/fresh", b"new"),
    ]);
    unpack(&layer, &s.root).expect("unpack");
    let gone = fs::symlink_metadata(s.root.join("www/secret.txt")).expect("whiteout");
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(!s.root.join("www/.wh.secret.txt").exists());
    let mut value = [0u8; 4];
    let n =
        rustix::fs::lgetxattr(s.root.join("cache"), OPAQUE_XATTR, &mut value).expect("opaque mark");
    assert_eq!(&value[..n], b"y");
    assert_eq!(fs::read(s.root.join("cache/fresh")).expect("read"), b"new");
}

/// Builds a layer for a sandbox (some layers name paths in it).
type MakeLayer = Box<dyn Fn(&Sandbox) -> Vec<u8>>;

#[test]
fn entries_that_would_leave_the_root_are_refused_and_write_nothing_outside() {
    let outside_target = |s: &Sandbox| s.outer.join("a").display().to_string();
    let cases: Vec<(&str, MakeLayer)> = vec![
        (
            "a path with ..",
            Box::new(|_| tar(&[file("../../x", b"escaped")])),
        ),
        (
            "a path with .. inside",
            Box::new(|_| tar(&[file("etc/../../../x", b"escaped")])),
        ),
        (
            "a file through an absolute symlink",
            Box::new(move |s| {
                let target = outside_target(s);
                tar(&[
                    link("evil", EntryType::Symlink, &target),
                    file("evil/x", b"escaped"),
                ])
            }),
        ),
        (
            "a file through a relative symlink",
            Box::new(|_| {
                tar(&[
                    link("evil", EntryType::Symlink, "../.."),
                    file("evil/x", b"escaped"),
                ])
            }),
        ),
        (
            "a directory through a symlink",
            Box::new(|_| {
                tar(&[
                    link("evil", EntryType::Symlink, "../.."),
                    item("evil/d/", EntryType::Directory),
                ])
            }),
        ),
        (
            "a hard link to a file outside",
            Box::new(|_| tar(&[link("x", EntryType::Link, "../../../a/secret")])),
        ),
        (
            "an opaque whiteout under a symlink",
            Box::new(|_| {
                tar(&[
                    link("evil", EntryType::Symlink, "../.."),
                    file("evil/.wh..wh..opq", b""),
                ])
            }),
        ),
        (
            "a whiteout through a symlink",
            Box::new(|_| {
                tar(&[
                    link("evil", EntryType::Symlink, "../.."),
                    file("evil/.wh.b", b""),
                ])
            }),
        ),
    ];
    for (what, make) in cases {
        let s = sandbox();
        fs::write(s.outer.join("a").join("secret"), b"keep").expect("write");
        let before = listing(&s.outer);
        let layer = make(&s);
        let e = unpack(&layer, &s.root).expect_err(what);
        assert!(
            matches!(
                e,
                RuntimeError::UnsafeEntry { .. } | RuntimeError::BadLayer { .. }
            ),
            "{what}: {e}"
        );
        let after: Vec<String> = listing(&s.outer)
            .into_iter()
            .filter(|p| !p.starts_with("a/b/root/"))
            .collect();
        assert_eq!(
            after, before,
            "{what}: something was written outside the root"
        );
        assert_eq!(
            fs::read(s.outer.join("a").join("secret")).expect("read"),
            b"keep",
            "{what}"
        );
    }
}

#[test]
fn a_later_entry_replaces_an_earlier_one_and_a_hard_link_finds_a_lower_layer() {
    let lower = sandbox();
    unpack(&tar(&[file("bin/tool", b"tool v1")]), &lower.root).expect("lower");
    let s = sandbox();
    let layer = tar(&[
        file("conf", b"first"),
        file("conf", b"second"),
        item("dir/", EntryType::Directory),
        file("dir", b"a file now"),
        link("bin/alias", EntryType::Link, "bin/tool"),
    ]);
    unpack_with(&layer, &s.root, std::slice::from_ref(&lower.root), None).expect("unpack");
    assert_eq!(fs::read(s.root.join("conf")).expect("read"), b"second");
    assert_eq!(fs::read(s.root.join("dir")).expect("read"), b"a file now");
    assert_eq!(
        fs::read(s.root.join("bin/alias")).expect("read"),
        b"tool v1"
    );
}

#[test]
fn a_damaged_archive_is_an_error() {
    let s = sandbox();
    let mut layer = tar(&[file("a", &[7u8; 2000])]);
    layer.truncate(700);
    let e = unpack(&layer, &s.root).expect_err("truncated");
    assert!(matches!(e, RuntimeError::BadLayer { .. }), "{e}");
}

#[test]
fn directory_metadata_never_reaches_what_a_later_link_points_to() {
    for relative in [false, true] {
        let s = sandbox();
        let host = host_targets(&s);
        let watched = [&host.file, &host.dir, &host.child];
        let before: Vec<Fingerprint> = watched.iter().map(|p| fingerprint(p)).collect();
        let (file_target, dir_target) = if relative {
            (
                "../../../host-file".to_string(),
                "../../../host-dir".to_string(),
            )
        } else {
            (
                host.file.display().to_string(),
                host.dir.display().to_string(),
            )
        };
        let layer = tar(&[
            // A set-user-ID directory, then a link in its place: its mode is applied at the
            // end of the layer, and must not go through the link.
            Item {
                mode: 0o4777,
                ..item("d/", EntryType::Directory)
            },
            link("d", EntryType::Symlink, &file_target),
            // The same with a directory below it: owner, mode, extended attribute, time.
            item("a/", EntryType::Directory),
            Item {
                mode: 0o777,
                uid: 4242,
                xattrs: &[("user.pwned", b"yes")],
                ..item("a/dir/", EntryType::Directory)
            },
            link("a", EntryType::Symlink, &dir_target),
        ]);
        let result = unpack(&layer, &s.root);
        let after: Vec<Fingerprint> = watched.iter().map(|p| fingerprint(p)).collect();
        assert_eq!(after, before, "relative {relative}: {result:?}");
        // The links stay links: they are resolved inside the container only.
        result.expect("unpack");
        for name in ["d", "a"] {
            assert!(
                fs::symlink_metadata(s.root.join(name))
                    .expect("stat")
                    .file_type()
                    .is_symlink()
            );
        }
    }
}

#[test]
fn an_opaque_whiteout_under_a_symlink_is_refused() {
    let s = sandbox();
    let layer = tar(&[
        link("evil", EntryType::Symlink, "../.."),
        file("evil/.wh..wh..opq", b""),
    ]);
    let e = unpack(&layer, &s.root).expect_err("refused");
    assert!(matches!(e, RuntimeError::UnsafeEntry { .. }), "{e}");
    let mut value = [0u8; 4];
    assert!(rustix::fs::lgetxattr(&s.outer, OPAQUE_XATTR, &mut value).is_err());
}

/// A lower layer (unpacked before) holding a block device 7:0, a FIFO, a symbolic link and a
/// directory, made here as an unpacked layer would hold them.
fn lower_with_special_files() -> Sandbox {
    let lower = sandbox();
    for dir in ["dev", "run", "etc", "srv/data"] {
        fs::create_dir_all(lower.root.join(dir)).expect("mkdir");
    }
    let node = |rel: &str, kind: FileType, mode: u32, dev| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            lower.root.join(rel),
            kind,
            Mode::from_raw_mode(mode),
            dev,
        )
        .expect("mknod (the tests run as root)");
        // (mknod's mode goes through the umask)
        fs::set_permissions(lower.root.join(rel), fs::Permissions::from_mode(mode)).expect("chmod");
    };
    node(
        "dev/loop",
        FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(7, 0),
    );
    node("run/pipe", FileType::Fifo, 0o620, 0);
    std::os::unix::fs::symlink("/etc/real", lower.root.join("etc/alias")).expect("symlink");
    lower
}

#[test]
fn a_hard_link_to_a_lower_block_device_is_a_device_again_and_never_read() {
    let lower = lower_with_special_files();
    let s = sandbox();
    let layer = tar(&[link("dev/copy", EntryType::Link, "dev/loop")]);
    unpack_with(&layer, &s.root, std::slice::from_ref(&lower.root), None).expect("unpack");
    let m = fs::symlink_metadata(s.root.join("dev/copy")).expect("stat");
    assert!(m.file_type().is_block_device(), "{:?}", m.file_type());
    assert_eq!(m.rdev(), rustix::fs::makedev(7, 0));
    assert_eq!(m.mode() & 0o7777, 0o660);
}

#[test]
fn a_hard_link_to_a_lower_fifo_is_a_fifo_again_and_does_not_hang() {
    let lower = lower_with_special_files();
    let s = sandbox();
    let layer = tar(&[link("run/copy", EntryType::Link, "run/pipe")]);
    let (root, lowers) = (s.root.clone(), vec![lower.root.clone()]);
    let result = within_20s(move || unpack_with(&layer, &root, &lowers, None))
        .expect("unpacking hung on a hard link to a FIFO");
    result.expect("unpack");
    let m = fs::symlink_metadata(s.root.join("run/copy")).expect("stat");
    assert!(m.file_type().is_fifo(), "{:?}", m.file_type());
    assert_eq!(m.mode() & 0o7777, 0o620);
}

#[test]
fn a_hard_link_to_a_lower_symlink_is_a_symlink_and_to_a_lower_directory_is_refused() {
    let lower = lower_with_special_files();
    let lowers = std::slice::from_ref(&lower.root);
    let s = sandbox();
    let layer = tar(&[link("etc/again", EntryType::Link, "etc/alias")]);
    unpack_with(&layer, &s.root, lowers, None).expect("unpack");
    assert_eq!(
        fs::read_link(s.root.join("etc/again")).expect("link"),
        Path::new("/etc/real")
    );

    let s = sandbox();
    let layer = tar(&[link("data", EntryType::Link, "srv/data")]);
    let e = unpack_with(&layer, &s.root, lowers, None).expect_err("a directory");
    assert!(matches!(e, RuntimeError::UnsafeEntry { .. }), "{e}");
}

/// A GNU sparse file of `logical` bytes with one block of data at its end.
fn sparse_layer(logical: u64) -> Vec<u8> {
    let mut header = Header::new_gnu();
    header.set_path("holes").expect("name");
    header.set_entry_type(EntryType::GNUSparse);
    header.set_mode(0o644);
    header.set_size(512);
    let gnu = header.as_gnu_mut().expect("gnu");
    gnu.set_real_size(logical);
    gnu.sparse[0].set_offset(logical - 512);
    gnu.sparse[0].set_length(512);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &[7u8; 512][..]).expect("append");
    builder.into_inner().expect("tar")
}

#[test]
fn a_layer_that_unpacks_to_more_than_the_limit_is_refused() {
    const LIMIT: u64 = 1 << 20;
    let zeros = vec![0u8; 16 << 20];
    let one_big_file = gzip(&tar(&[file("zeros", &zeros)]));
    // Nothing written, but 16 MiB of tar read: the padding after the end of the archive.
    let mut padded = tar(&[file("small", b"x")]);
    padded.extend_from_slice(&zeros);
    let padded = gzip(&padded);
    let sparse = gzip(&sparse_layer(16 << 20));
    // Three copies of a 600 KiB file of a lower layer.
    let lower = sandbox();
    fs::write(lower.root.join("big"), vec![1u8; 600 << 10]).expect("write");
    let copies = tar(&[
        link("one", EntryType::Link, "big"),
        link("two", EntryType::Link, "big"),
        link("three", EntryType::Link, "big"),
    ]);
    let lowers = std::slice::from_ref(&lower.root);
    for (what, layer) in [
        ("one big file", &one_big_file),
        ("padding after the archive", &padded),
        ("a sparse file", &sparse),
        ("copies from a lower layer", &copies),
    ] {
        assert!(layer.len() < 128 << 10, "{what}: {} bytes", layer.len());
        let s = sandbox();
        let e = unpack_with(layer, &s.root, lowers, Some(LIMIT)).expect_err(what);
        let message = e.to_string();
        assert!(
            message.contains("BERTH_MAX_UNPACK_SIZE") && message.contains("1 MiB"),
            "{what}: {message}"
        );
        let written: u64 = listing(&s.root)
            .iter()
            .filter_map(|p| fs::symlink_metadata(s.root.join(p)).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        assert!(
            written <= LIMIT + (256 << 10),
            "{what}: {written} bytes written"
        );

        // Without a limit, the same layer unpacks.
        let s = sandbox();
        unpack_with(layer, &s.root, lowers, None).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn the_unpack_size_limit_reads_like_dockers_sizes() {
    for (value, limit) in [
        ("", Some(UnpackLimit::Default)),
        ("0", Some(UnpackLimit::Unlimited)),
        ("0G", Some(UnpackLimit::Unlimited)),
        ("123", Some(UnpackLimit::Bytes(123))),
        ("4K", Some(UnpackLimit::Bytes(4 << 10))),
        ("512MiB", Some(UnpackLimit::Bytes(512 << 20))),
        ("20G", Some(UnpackLimit::Bytes(20 << 30))),
        ("2 gib", Some(UnpackLimit::Bytes(2 << 30))),
        ("1.5G", None),
        ("-1", None),
        ("lots", None),
        ("99999999999999999999G", None),
        ("10T", None),
    ] {
        assert_eq!(UnpackLimit::parse(value), limit, "{value:?}");
    }
    // 10x the compressed size, at least 1 GiB.
    assert_eq!(UnpackLimit::Default.for_layer(2 << 20), Some(1 << 30));
    assert_eq!(UnpackLimit::Default.for_layer(1 << 30), Some(10 << 30));
    assert_eq!(UnpackLimit::Bytes(5).for_layer(1 << 30), Some(5));
    assert_eq!(UnpackLimit::Unlimited.for_layer(1 << 30), None);
    let e = RuntimeError::LayerTooLarge {
        layer: layer_digest(b"x"),
        limit: (1 << 30) + 1,
    };
    assert!(e.to_string().contains("1.0 GiB (1073741825 bytes)"), "{e}");
}
