use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

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
    unpack_layer(&layer_digest(bytes), bytes, root, &[])
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
    unpack_layer(
        &layer_digest(&layer),
        layer.as_slice(),
        &s.root,
        std::slice::from_ref(&lower.root),
    )
    .expect("unpack");
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
