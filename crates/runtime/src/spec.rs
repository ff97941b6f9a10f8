//! The OCI runtime bundle's `config.json` (runtime-spec config.md, config-linux.md), from the
//! image config and `berth run`'s flags, with docker's defaults: the same namespaces (mount,
//! pid, uts, ipc, network), mounts, masked paths and capabilities. Resource limits are
//! inherited from berth (a fixed RLIMIT_NOFILE can exceed what the host allows).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Result, RuntimeError};

/// The part of an image config (image-spec config.md, `config`) that says how to run it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<serde_json::Map<String, Value>>,
}

/// What `berth run` says over the image.
#[derive(Clone, Debug, Default)]
pub struct RunOverrides {
    pub entrypoint: Option<String>,
    /// COMMAND [ARG...]; empty: the image's Cmd.
    pub command: Vec<String>,
    /// `-e KEY=VALUE`, or `-e KEY` for the value this process has.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The default PATH docker gives a container whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities docker grants by default (moby `oci/caps/defaults.go`).
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The process arguments: `--entrypoint` replaces the image's Entrypoint and drops its Cmd;
/// a COMMAND replaces the Cmd (docker's rules).
pub fn process_args(image: &ImageRunConfig, run: &RunOverrides) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match &run.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), run.command.clone()),
        Some(e) => (vec![e.clone()], run.command.clone()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            if run.command.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                run.command.clone()
            },
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RuntimeError::Other(
            "no command specified: the image has no Entrypoint or Cmd; give one after the image name"
                .into(),
        ));
    }
    Ok(args)
}

/// The image's Env, then `-e` (a later KEY wins), then PATH and HOSTNAME when unset (HOME
/// comes with the user, at start: [`with_home`]).
pub fn environment(image: &ImageRunConfig, run: &RunOverrides, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        if let Some(slot) = env.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            env.push((key.to_string(), value.to_string()));
        }
    };
    for item in image.env.iter().flatten() {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        set(k, v);
    }
    for item in &run.env {
        match item.split_once('=') {
            Some((k, v)) => set(k, v),
            None => {
                if let Ok(v) = std::env::var(item) {
                    set(item, &v);
                }
            }
        }
    }
    for (k, v) in [("PATH", DEFAULT_PATH), ("HOSTNAME", hostname)] {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `env` with `HOME=home` added when it has no HOME.
pub fn with_home(mut env: Vec<String>, home: &str) -> Vec<String> {
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// A user the process runs as, resolved in the container's root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `user` (`name|uid[:group|gid]`, empty for root) with the container's
/// `/etc/passwd` and `/etc/group`, read inside `rootfs` (links resolved there, never on
/// the host).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    let (who, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let groups = read_in_root(rootfs, "etc/group")?;
    let users = colon_rows(passwd.as_deref(), 7);
    let group_rows = colon_rows(groups.as_deref(), 4);
    let invalid = |why: &str| RuntimeError::InvalidUser(user.to_string(), why.to_string());
    let who = if who.is_empty() { "0" } else { who };
    let entry = match who.parse::<u32>() {
        Ok(uid) => users.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => Some(
            users
                .iter()
                .find(|f| f[0] == who)
                .ok_or_else(|| invalid("no such user in the image's /etc/passwd"))?,
        ),
    };
    let uid = match entry {
        Some(f) => f[2].parse().map_err(|_| invalid("bad /etc/passwd line"))?,
        None => who.parse().map_err(|_| invalid("not a number"))?,
    };
    let mut gid = match entry {
        Some(f) => f[3].parse().map_err(|_| invalid("bad /etc/passwd line"))?,
        None => 0,
    };
    let home = entry
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => group_rows
                .iter()
                .find(|f| f[0] == group)
                .ok_or_else(|| invalid("no such group in the image's /etc/group"))?[2]
                .parse()
                .map_err(|_| invalid("bad /etc/group line"))?,
        };
    }
    // Supplementary groups: those that list the user by name (docker does the same).
    let mut additional_gids = Vec::new();
    if let Some(f) = entry {
        for g in &group_rows {
            if g[3].split(',').any(|member| member == f[0])
                && let Ok(id) = g[2].parse::<u32>()
                && id != gid
                && !additional_gids.contains(&id)
            {
                additional_gids.push(id);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// The lines of a `/etc/passwd`-style file split at `:`, those with fewer than `fields` left
/// out.
fn colon_rows(text: Option<&str>, fields: usize) -> Vec<Vec<&str>> {
    text.unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= fields)
        .collect()
}

/// A small file of the container's root filesystem, its path resolved as if `rootfs` were
/// `/` (`openat2` with `RESOLVE_IN_ROOT`): an image whose `/etc/passwd` is a link to the
/// host's cannot make berth read the host's. `None` when there is no such file.
fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::io("open", rootfs)(e.into()))?;
    let fd = match rustix::fs::openat2(
        &root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(None);
        }
        Err(e) => return Err(RuntimeError::io("open", rootfs.join(path))(e.into())),
    };
    let mut text = String::new();
    File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .map_err(RuntimeError::io("read", rootfs.join(path)))?;
    Ok(Some(text))
}

/// Everything `config.json` is made from.
pub struct Bundle<'a> {
    pub hostname: &'a str,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: &'a ResolvedUser,
    pub rootfs: &'a Path,
    /// Files bind-mounted over the image's `/etc/hosts` and `/etc/hostname`.
    pub hosts_file: &'a Path,
    pub hostname_file: &'a Path,
    pub cgroups_path: String,
}

/// The runtime-spec `config.json`.
pub fn config_json(b: &Bundle<'_>) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": b.user.uid,
                "gid": b.user.gid,
                "additionalGids": b.user.additional_gids,
            },
            "args": b.args,
            "env": b.env,
            "cwd": b.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": false,
        },
        "root": {"path": b.rootfs, "readonly": false},
        "hostname": b.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": b.hosts_file,
             "options": ["rbind", "rprivate"]},
            {"destination": "/etc/hostname", "type": "bind", "source": b.hostname_file,
             "options": ["rbind", "rprivate"]},
        ],
        "linux": {
            "cgroupsPath": b.cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageRunConfig {
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        ImageRunConfig {
            entrypoint: if entrypoint.is_empty() {
                None
            } else {
                list(entrypoint)
            },
            cmd: if cmd.is_empty() { None } else { list(cmd) },
            ..ImageRunConfig::default()
        }
    }

    fn run(entrypoint: Option<&str>, command: &[&str]) -> RunOverrides {
        RunOverrides {
            entrypoint: entrypoint.map(str::to_string),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..RunOverrides::default()
        }
    }

    #[test]
    fn arguments_follow_dockers_rules() {
        let img = image(&["/entry.sh"], &["serve", "--port", "80"]);
        assert_eq!(
            process_args(&img, &run(None, &[])).expect("args"),
            ["/entry.sh", "serve", "--port", "80"]
        );
        assert_eq!(
            process_args(&img, &run(None, &["sh", "-c", "exit 3"])).expect("args"),
            ["/entry.sh", "sh", "-c", "exit 3"]
        );
        assert_eq!(
            process_args(&img, &run(Some("/bin/sh"), &["-c", "true"])).expect("args"),
            ["/bin/sh", "-c", "true"],
            "--entrypoint drops the image's Cmd"
        );
        assert_eq!(
            process_args(&image(&[], &["httpd"]), &run(None, &["ls"])).expect("args"),
            ["ls"]
        );
        assert!(process_args(&image(&[], &[]), &run(None, &[])).is_err());
    }

    #[test]
    fn environment_merges_image_flags_and_defaults() {
        let img = ImageRunConfig {
            env: Some(vec!["GREETING=hello".into(), "PATH=/opt/bin".into()]),
            ..ImageRunConfig::default()
        };
        let flags = RunOverrides {
            env: vec!["GREETING=bonjour".into(), "EXTRA=1=2".into()],
            ..RunOverrides::default()
        };
        assert_eq!(
            with_home(environment(&img, &flags, "abc123"), "/root"),
            [
                "GREETING=bonjour",
                "PATH=/opt/bin",
                "EXTRA=1=2",
                "HOSTNAME=abc123",
                "HOME=/root"
            ]
        );
    }

    #[test]
    fn users_resolve_in_the_image_not_on_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).expect("mkdir");
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nwww:x:33:\nlogs:x:4:www,other\n",
        )
        .expect("group");
        let r = |u: &str| resolve_user(root, u);
        assert_eq!(
            r("").expect("root"),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/root".into()
            }
        );
        assert_eq!(
            r("www").expect("www"),
            ResolvedUser {
                uid: 33,
                gid: 33,
                additional_gids: vec![4],
                home: "/var/www".into()
            }
        );
        assert_eq!(r("www:logs").expect("group").gid, 4);
        assert_eq!(r("1234:5").expect("numbers").uid, 1234);
        assert_eq!(r("1234:5").expect("numbers").gid, 5);
        assert!(r("nobody-here").is_err());
        assert!(r("www:nogroup").is_err());

        // A passwd that links to the host's is read inside the root: there is none there.
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).expect("link");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
        assert!(r("root").is_err(), "the host's /etc/passwd was read");
        assert_eq!(r("0").expect("uid").uid, 0);
    }
}
