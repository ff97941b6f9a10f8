//! `berth run`, `ps`, `logs`, `stop` and `rm` with the real runc: an image built here from
//! Debian's busybox-static (three layers: gzip, zstd and plain; a whiteout and an opaque
//! directory), pushed to `berth serve`, then run from a client that does not have it.
//! Needs root and runc (`./scripts/test` installs runc and busybox-static).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::harness::*;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 10] = [
    "sh", "httpd", "ls", "cat", "echo", "test", "sleep", "id", "hostname", "wget",
];

const ENTRYPOINT: &str = "#!/bin/sh\n\
    # With arguments, run them; without, write the greeting and serve the working directory.\n\
    if [ $# -gt 0 ]; then exec \"$@\"; fi\n\
    echo \"$GREETING\" > greeting.txt\n\
    exec httpd -f -v -p 80 -h .\n";

/// One tar entry of a test layer.
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Dir(&'a str),
}

fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                tar.append_data(&mut h, path, *data).expect("file");
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                tar.append_link(&mut h, path, target).expect("link");
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                tar.append_data(&mut h, path, std::io::empty())
                    .expect("dir");
            }
        }
    }
    tar.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// Writes the busybox web image into an OCI layout; returns its manifest descriptor.
fn busybox_image(layout: &Layout) -> Value {
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is not installed");
    let mut base = vec![
        Entry::Dir("bin"),
        Entry::File("bin/busybox", &busybox, 0o755),
        Entry::File("entrypoint.sh", ENTRYPOINT.as_bytes(), 0o755),
        Entry::Dir("www"),
        Entry::File("www/index.html", b"hello from a berth container\n", 0o644),
        Entry::File("www/secret.txt", b"deleted by the next layer\n", 0o644),
        Entry::Dir("cache"),
        Entry::File("cache/old", b"hidden by an opaque directory\n", 0o644),
        Entry::Dir("tmp"),
    ];
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    for l in &links {
        base.push(Entry::Symlink(l, "busybox"));
    }
    let base = layer(&base);
    let deletes = layer(&[
        Entry::File("www/.wh.secret.txt", b"", 0o644),
        Entry::File("cache/.wh..wh..opq", b"", 0o644),
        Entry::File("cache/new", b"fresh\n", 0o644),
    ]);
    let about = layer(&[Entry::File("www/about.txt", b"three layers\n", 0o644)]);
    let layers = [
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gzip(&base),
            &base,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            ruzstd::encoding::compress_to_vec(
                deletes.as_slice(),
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
            &deletes,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            about.clone(),
            &about,
        ),
    ];
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(media_type, bytes, _)| layout.blob(media_type, bytes))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|(_, _, tar)| sha256(tar)).collect();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/entrypoint.sh"],
            "Env": ["PATH=/bin", "GREETING=hello from the image config"],
            "WorkingDir": "/www",
            "ExposedPorts": {"80/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let config = layout.blob(
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).expect("json"),
    );
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": descriptors
    });
    layout.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("json"))
}

/// A registry (`berth serve` in a new temporary directory) holding the busybox web image as
/// `repo_tag`: (the directory, the server, the image's full name).
fn busybox_in_registry(repo_tag: &str) -> (tempfile::TempDir, Server, String) {
    runc_installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let src = dir.path().join("layout");
    let mut layout = Layout::new(&src);
    let image = busybox_image(&layout);
    layout.tag(&image, "seed");
    let name = format!("{}/{repo_tag}", server.addr);
    push_layout(dir.path(), &src, "seed", &name);
    (dir, server, name)
}

/// How many layers the client's layer cache holds unpacked.
fn unpacked_layers(home: &ClientHome) -> usize {
    let layers = home.home.join(".local/share/berth/containers/layers");
    std::fs::read_dir(&layers)
        .expect("layer cache")
        .flatten()
        .filter(|e| e.file_name().len() == 64 && e.path().join("diff").is_dir())
        .count()
}

/// A one-layer image whose layer is `tar` (uncompressed); returns its manifest descriptor.
fn one_layer_image(layout: &Layout, tar: &[u8]) -> Value {
    image_of_layers(layout, &[tar], &[sha256(tar)])
}

/// An image of these layers (uncompressed tars, bottom first) whose config names `diff_ids`;
/// returns its manifest descriptor.
fn image_of_layers(layout: &Layout, tars: &[&[u8]], diff_ids: &[String]) -> Value {
    let layers: Vec<Value> = tars
        .iter()
        .map(|tar| layout.blob("application/vnd.oci.image.layer.v1.tar", tar))
        .collect();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let config = layout.blob(
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).expect("json"),
    );
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
    layout.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("json"))
}

/// Pushes the layout's `tag` to `registry/repo_tag` with skopeo.
fn push_layout(dir: &Path, layout_dir: &Path, tag: &str, to: &str) {
    skopeo(
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout_dir.display()),
            &format!("docker://{to}"),
        ],
        &policy(dir),
    );
}

/// A plain HTTP/1.0 GET on 127.0.0.1: (status line, body), or `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Removes every container of the client when the test ends, passed or not, so that no
/// supervisor, container or mount outlives it.
struct Cleanup<'a>(&'a ClientHome);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ids = self.0.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
    }
}

fn runc_installed() {
    assert!(
        Path::new(BUSYBOX).exists()
            && std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("runc").is_file())),
        "runc and busybox-static are needed: apt-get install runc busybox-static (./scripts/test does)"
    );
}

#[test]
fn run_pulls_serves_a_published_port_and_stops() {
    let (dir, _server, web) = busybox_in_registry("team/web:0.1");
    let home = ClientHome::new(&dir.path().join("home"));
    let _cleanup = Cleanup(&home);

    // Not local: pulled first, as docker does, with the pull's words on stderr and only the
    // ID on stdout.
    let port = free_port();
    let started = Instant::now();
    let out = home.run(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "--name",
        "web",
        &web,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("Unable to find image '{web}' locally")),
        "{stderr}"
    );
    assert!(
        stderr.contains("Status: Downloaded newer image"),
        "{stderr}"
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        if let Some(answer) = http_get(port, "/index.html") {
            break answer;
        }
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "berth run -d (image not local) to the first HTTP answer: {:?}",
        started.elapsed()
    );
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "hello from a berth container\n");
    // Env and WorkingDir from the image config: the entrypoint wrote the greeting into the
    // working directory, which httpd serves.
    assert_eq!(
        http_get(port, "/greeting.txt").expect("greeting").1,
        "hello from the image config\n"
    );
    assert_eq!(
        http_get(port, "/about.txt").expect("about").1,
        "three layers\n"
    );
    // The whited-out file is gone.
    let (status, _) = http_get(port, "/secret.txt").expect("answer");
    assert!(status.contains("404"), "{status}");

    let ps = home.ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.ends_with("web"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.starts_with(&id[..12]), "{ps}");
    assert!(line.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    assert!(line.contains("Up "), "{ps}");
    assert!(line.contains("\"/entrypoint.sh\""), "{ps}");
    let name_in_use = home.fails(&["run", "-d", "--name", "web", &web]);
    assert!(name_in_use.contains("already in use"), "{name_in_use}");

    // httpd -v logs each request to stderr, which the log keeps.
    let logs = home.ok(&["logs", "web"]);
    assert!(logs.contains("response:200"), "{logs}");

    // The image is in use: image rm refuses without -f.
    let refused = home.fails(&["image", "rm", &web]);
    assert!(refused.contains("is using"), "{refused}");

    // A second container of the same image, already unpacked: the layer cache is reused,
    // and its root filesystem is its own (the first one's greeting.txt is not in it).
    let started = Instant::now();
    let port2 = free_port();
    home.ok(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{port2}:80"),
        "--name",
        "web2",
        &web,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port2, "/index.html").is_none() {
        assert!(Instant::now() < deadline, "nothing answers on port {port2}");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "berth run -d (image unpacked) to the first HTTP answer: {:?}",
        started.elapsed()
    );

    // Containers' records, output and root filesystems are root's only.
    let containers_dir = home.home.join(".local/share/berth/containers");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&containers_dir)
            .expect("containers dir")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);

    // Each layer was unpacked once, for both containers.
    assert_eq!(unpacked_layers(&home), 3);

    // httpd as PID 1 ignores SIGTERM: stop kills it after the grace period.
    let started = Instant::now();
    assert_eq!(home.ok(&["stop", "-t", "1", "web"]).trim(), "web");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        http_get(port, "/index.html").is_none(),
        "still served after stop"
    );
    let ps = home.ok(&["ps", "-a"]);
    let line = ps
        .lines()
        .find(|l| l.ends_with(" web"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.contains("Exited (137)"), "{ps}");
    assert!(!home.ok(&["ps"]).lines().any(|l| l.ends_with(" web")));
    assert_eq!(home.ok(&["rm", "web"]).trim(), "web");
    assert!(!home.ok(&["ps", "-a"]).contains(" web\n"));
    let running = home.fails(&["rm", "web2"]);
    assert!(running.contains("stop it first"), "{running}");
    home.ok(&["rm", "-f", "web2"]);
    assert!(home.ok(&["ps", "-aq"]).trim().is_empty());

    // No container left: image rm takes the image, and its unpacked layers with it.
    home.ok(&["image", "rm", &web]);
    assert_eq!(unpacked_layers(&home), 0);
}

#[test]
fn foreground_runs_exit_with_the_containers_code() {
    let (dir, server, web) = busybox_in_registry("fg/web:1");
    let home = ClientHome::new(&dir.path().join("home"));
    let _cleanup = Cleanup(&home);
    home.ok(&["pull", "-q", &web]);

    // COMMAND goes to the entrypoint, which runs it.
    let out = home.run(&["run", "--rm", &web, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(home.ok(&["ps", "-aq"]).trim().is_empty(), "--rm left it");

    // Output is attached; -e, -w, --entrypoint and the hostname.
    let out = home.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=from a flag",
        "-w",
        "/cache",
        "--entrypoint",
        "/bin/sh",
        &web,
        "-c",
        "echo $GREETING; pwd; ls; test ! -e /www/secret.txt && echo no-secret; hostname",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        ["from a flag", "/cache", "new", "no-secret"],
        "{out}"
    );
    assert_eq!(lines[4].len(), 12, "hostname is the short ID: {out}");

    // Kept without --rm, with its exit code and its log.
    let out = home.run(&[
        "run",
        "--name",
        "failing",
        &web,
        "sh",
        "-c",
        "echo bye >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert!(home.ok(&["ps", "-a"]).contains("Exited (7)"));
    assert_eq!(home.ok(&["logs", "failing"]), "bye\n");
    home.ok(&["rm", "failing"]);

    // Without overlayfs (BERTH_ROOTFS=copy): the layers copied, whiteouts and the opaque
    // directory applied the same way.
    let out = home
        .command(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            &web,
            "-c",
            "ls /cache; test ! -e /www/secret.txt && echo no-secret; cat /www/about.txt",
        ])
        .env("BERTH_ROOTFS", "copy")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "new\nno-secret\nthree layers\n"
    );

    // Ctrl-C (SIGINT to berth) stops the container with SIGTERM.
    let mut child = home
        .command(&[
            "run",
            "--rm",
            &web,
            "sh",
            "-c",
            "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
    assert_eq!(line, "ready\n");
    let interrupted = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(42));
    assert!(interrupted.elapsed() < Duration::from_secs(5));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read");
    assert_eq!(rest, "got TERM\n");

    // logs -f follows until the container stops; ps shows the image's exposed port, not
    // published.
    home.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        &web,
        "sh",
        "-c",
        "echo one; sleep 1; echo two",
    ]);
    let ps = home.ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.ends_with("talker"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.contains("   80/tcp   "), "{ps}");
    assert_eq!(home.ok(&["logs", "-f", "talker"]), "one\ntwo\n");
    home.ok(&["rm", "talker"]);

    // A command that is not there: runc's error, and docker's 125-or-above.
    let out = home.run(&["run", "--rm", "--entrypoint", "/no/such", &web]);
    assert!(out.status.code().unwrap_or(0) >= 125, "{}", text(&out));
    assert!(text(&out).contains("/no/such"), "{}", text(&out));

    // A port already taken is refused before the container starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = home.run(&["run", "--rm", "-p", &format!("127.0.0.1:{port}:80"), &web]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("is the port taken?"), "{}", text(&out));
    assert!(home.ok(&["ps", "-aq"]).trim().is_empty());

    // No runtime, or not root: said before anything is pulled or created.
    let out = home
        .command(&["run", "--rm", &web])
        .env("BERTH_RUNTIME", "/nonexistent/runc")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out).contains("apt-get install runc"),
        "{}",
        text(&out)
    );
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["run", "--rm", &web])
        .env("HOME", dir.path().join("nobody"))
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("needs root"), "{}", text(&out));

    // --pull never with an image that is not local.
    let out = home.run(&[
        "run",
        "--pull",
        "never",
        &format!("{}/fg/absent:1", server.addr),
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out).contains("No such image"), "{}", text(&out));
}

#[test]
fn a_malicious_layer_is_refused_and_writes_nothing_outside() {
    runc_installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = ClientHome::new(&dir.path().join("home"));
    let _cleanup = Cleanup(&home);
    let server = Server::start(&dir.path().join("data"));
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");

    // A tar entry ../../x (the tar crate's builder refuses to write one: the name is set by
    // hand), and a symlink to a directory outside followed by a file through it.
    let mut dotdot = tar::Header::new_gnu();
    dotdot.as_old_mut().name[..25].copy_from_slice(b"../../../../../../../../x");
    dotdot.set_entry_type(tar::EntryType::Regular);
    dotdot.set_size(4);
    dotdot.set_mode(0o644);
    dotdot.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&dotdot, &b"evil"[..]).expect("append");
    let dotdot = b.into_inner().expect("tar");
    let through = layer(&[
        Entry::Symlink("escape", outside.to_str().expect("utf-8")),
        Entry::File("escape/planted", b"evil", 0o644),
    ]);

    let src = dir.path().join("layout");
    let mut layout = Layout::new(&src);
    for (tag, tar, words) in [
        ("dotdot", &dotdot, "a path with .. could leave the root"),
        ("symlink", &through, "it goes through a symbolic link"),
    ] {
        let image = one_layer_image(&layout, tar);
        layout.tag(&image, tag);
        let name = format!("{}/evil/{tag}:1", server.addr);
        push_layout(dir.path(), &src, tag, &name);
        let out = home.run(&["run", "--rm", &name]);
        assert_eq!(out.status.code(), Some(125), "{}", text(&out));
        assert!(text(&out).contains(words), "{tag}: {}", text(&out));
        assert!(home.ok(&["ps", "-aq"]).trim().is_empty());
    }
    assert_eq!(std::fs::read_dir(&outside).expect("list").count(), 0);
    for x in ["x", "../x"] {
        assert!(!dir.path().join(x).exists());
    }
    assert!(!Path::new("/x").exists());
}

/// Runs `cmd` to its end, or kills it after `limit`: a hang fails the test instead of stalling
/// the run.
fn output_within(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{cmd:?} hung for {limit:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// What no layer may change of a host file: mode, owner, modification time and the names of
/// its extended attributes.
fn host_state(paths: &[&Path]) -> Vec<(u32, u32, u32, i64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).expect("stat");
            let mut names = [0u8; 1024];
            let n = rustix::fs::llistxattr(*p, &mut names[..]).expect("xattrs");
            (m.mode(), m.uid(), m.gid(), m.mtime(), names[..n].to_vec())
        })
        .collect()
}

/// A tar entry of an attack layer: a directory (mode, owner, pax extended attributes), a
/// symbolic or hard link, a device node or a FIFO.
fn attack_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    link: &str,
    xattrs: &[(&str, &[u8])],
) {
    if !xattrs.is_empty() {
        tar.append_pax_extensions(xattrs.iter().copied())
            .expect("pax");
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    if kind == tar::EntryType::Block {
        h.set_device_major(7).expect("major");
        h.set_device_minor(0).expect("minor");
    }
    if link.is_empty() {
        tar.append_data(&mut h, path, std::io::empty())
            .expect("entry");
    } else {
        tar.append_link(&mut h, path, link).expect("link");
    }
}

#[test]
fn layers_cannot_change_or_read_the_host_through_links_in_either_root_filesystem_mode() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::EntryType::{Block, Directory, Fifo, Link, Symlink};

    runc_installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let outside = dir.path().join("outside");
    let (host_file, host_dir) = (outside.join("host-file"), outside.join("host-dir"));
    let host_child = host_dir.join("dir");
    std::fs::create_dir_all(&host_child).expect("mkdir");
    std::fs::write(&host_file, b"host").expect("write");
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&host_child, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let old = rustix::fs::Timespec {
        tv_sec: 1_600_000_000,
        tv_nsec: 0,
    };
    for p in [&host_file, &host_child, &host_dir] {
        let times = rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &times, rustix::fs::AtFlags::empty())
            .expect("times");
    }
    let watched = [
        host_file.as_path(),
        host_dir.as_path(),
        host_child.as_path(),
    ];
    let before = host_state(&watched);
    // From anywhere in the layer cache or a container's root filesystem, this many `..` reach /.
    let relative = |p: &Path| {
        format!(
            "{}{}",
            "../".repeat(40),
            p.display().to_string().trim_start_matches('/')
        )
    };
    let (file_abs, dir_abs) = (
        host_file.display().to_string(),
        host_dir.display().to_string(),
    );
    let (file_rel, dir_rel) = (relative(&host_file), relative(&host_dir));

    // A: a set-user-ID directory then a link in its place (to the host file); a directory of
    // uid 4242 with an extended attribute under a directory then replaced by a link to the host
    // directory. Absolute and relative links.
    let mut a = tar::Builder::new(Vec::new());
    let pwned: &[(&str, &[u8])] = &[("SCHILY.xattr.user.pwned", b"yes")];
    for (top, file_target, dir_target) in [("", &file_abs, &dir_abs), ("r", &file_rel, &dir_rel)] {
        let d = format!("{top}d");
        attack_entry(&mut a, &format!("{d}/"), Directory, 0o4777, 0, "", &[]);
        attack_entry(&mut a, &d, Symlink, 0o777, 0, file_target, &[]);
        let up = format!("{top}a");
        attack_entry(&mut a, &format!("{up}/"), Directory, 0o755, 0, "", &[]);
        attack_entry(
            &mut a,
            &format!("{up}/dir/"),
            Directory,
            0o777,
            4242,
            "",
            pwned,
        );
        attack_entry(&mut a, &up, Symlink, 0o777, 0, dir_target, &[]);
    }
    let a = a.into_inner().expect("tar");
    // B: a lower layer with a block device (7:0, a loop device) and a FIFO; hard links to them
    // in the next layer.
    let mut nodes = tar::Builder::new(Vec::new());
    attack_entry(&mut nodes, "dev/loop", Block, 0o660, 0, "", &[]);
    attack_entry(&mut nodes, "run/pipe", Fifo, 0o600, 0, "", &[]);
    let nodes = nodes.into_inner().expect("tar");
    let mut links = tar::Builder::new(Vec::new());
    attack_entry(&mut links, "dev/copy", Link, 0o660, 0, "dev/loop", &[]);
    attack_entry(&mut links, "run/copy", Link, 0o600, 0, "run/pipe", &[]);
    let links = links.into_inner().expect("tar");

    let src = dir.path().join("layout");
    let mut layout = Layout::new(&src);
    let images = [
        ("links", image_of_layers(&layout, &[&a], &[sha256(&a)])),
        // The same layer with a config that names other content: the diff ID is known only
        // once the layer is read, after unpacking.
        (
            "bad-diff-id",
            image_of_layers(&layout, &[&a], &[sha256(b"other")]),
        ),
        (
            "devices",
            image_of_layers(
                &layout,
                &[&nodes, &links],
                &[sha256(&nodes), sha256(&links)],
            ),
        ),
    ];
    let mut names = Vec::new();
    for (tag, image) in &images {
        layout.tag(image, tag);
        let name = format!("{}/attack/{tag}:1", server.addr);
        push_layout(dir.path(), &src, tag, &name);
        names.push((*tag, name));
    }

    for mode in ["overlay", "copy"] {
        let home = ClientHome::new(&dir.path().join(format!("home-{mode}")));
        let _cleanup = Cleanup(&home);
        let layers = home.home.join(".local/share/berth/containers/layers");
        for (tag, name) in &names {
            let out = output_within(
                home.command(&["run", "--rm", name, "sh", "-c", "true"])
                    .env("BERTH_ROOTFS", mode),
                Duration::from_secs(120),
            );
            // The images have no shell: what matters is what unpacking and the root
            // filesystem did to the host.
            if *tag == "bad-diff-id" {
                assert_eq!(out.status.code(), Some(125), "{}", text(&out));
                assert!(
                    text(&out).contains("but the image config says"),
                    "{}",
                    text(&out)
                );
            }
            assert_eq!(host_state(&watched), before, "{mode} {tag}: {}", text(&out));
            assert_eq!(std::fs::read(&host_file).expect("read"), b"host");
            assert_eq!(std::fs::read_dir(&host_dir).expect("list").count(), 1);
            let partial: Vec<_> = std::fs::read_dir(&layers)
                .expect("layer cache")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".partial"))
                .collect();
            assert!(partial.is_empty(), "{mode} {tag}: {partial:?}");
        }
        // The lower layer's device node and FIFO were made again in the upper layer, never
        // opened (a copy of the device would be a regular file with its bytes).
        let mut found = 0;
        for entry in std::fs::read_dir(&layers).expect("list").flatten() {
            let diff = entry.path().join("diff");
            let Ok(device) = std::fs::symlink_metadata(diff.join("dev/copy")) else {
                continue;
            };
            assert!(device.file_type().is_block_device(), "{mode}: {device:?}");
            assert_eq!(device.rdev(), rustix::fs::makedev(7, 0));
            let fifo = std::fs::symlink_metadata(diff.join("run/copy")).expect("FIFO");
            assert!(fifo.file_type().is_fifo(), "{mode}: {fifo:?}");
            found += 1;
        }
        assert_eq!(found, 1, "{mode}: the layer of hard links");
    }
}

#[test]
fn a_layer_that_unpacks_to_more_than_the_limit_is_refused() {
    runc_installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = ClientHome::new(&dir.path().join("home"));
    let _cleanup = Cleanup(&home);
    let server = Server::start(&dir.path().join("data"));
    // 8 MiB of zeros: a few KiB gzipped.
    let zeros = layer(&[Entry::File("zeros", &vec![0u8; 8 << 20], 0o644)]);
    let src = dir.path().join("layout");
    let mut layout = Layout::new(&src);
    let l = layout.blob("application/vnd.oci.image.layer.v1.tar+gzip", &gzip(&zeros));
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&zeros)]}
    });
    let config = layout.blob(
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).expect("json"),
    );
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [l]});
    let image = layout.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("json"));
    layout.tag(&image, "bomb");
    let name = format!("{}/bomb/zeros:1", server.addr);
    push_layout(dir.path(), &src, "bomb", &name);
    home.ok(&["pull", "-q", &name]);

    for (limit, words) in [
        (
            "1M",
            "more than 1 MiB, its limit: set BERTH_MAX_UNPACK_SIZE",
        ),
        ("lots", "BERTH_MAX_UNPACK_SIZE=\"lots\""),
    ] {
        let out = home
            .command(&["run", "--rm", &name])
            .env("BERTH_MAX_UNPACK_SIZE", limit)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(125), "{}", text(&out));
        assert!(text(&out).contains(words), "{limit}: {}", text(&out));
    }
    assert_eq!(unpacked_layers(&home), 0);
    // Raised: unpacked (the image has no /x to run).
    let out = home
        .command(&["run", "--rm", &name])
        .env("BERTH_MAX_UNPACK_SIZE", "16MiB")
        .output()
        .expect("run");
    assert!(
        !text(&out).contains("BERTH_MAX_UNPACK_SIZE"),
        "{}",
        text(&out)
    );
    assert_eq!(unpacked_layers(&home), 1);
}
