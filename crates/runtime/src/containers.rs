//! Container records: one directory per container under the containers root, with its state
//! in `container.json` (replaced atomically), its output in `output.log`, and its bundle.
//!
//! ```text
//! containers/
//!   .lock                 held while a name is claimed or a container removed
//!   layers/               unpacked layers, by chain ID (layers.rs)
//!   runc/                 runc's own state (`runc --root`)
//!   <id>/container.json   this module's record
//!   <id>/output.log       what the container wrote to stdout and stderr
//!   <id>/config.json      the OCI runtime config; <id>/rootfs, upper, work: its root filesystem
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::forward::PortMap;
use crate::rootfs::RootfsMode;

/// A container, as `berth ps` and `berth inspect` show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    /// 64 hex digits; the first 12 are what `ps` shows, and the hostname.
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its normalized reference.
    pub image: String,
    pub image_reference: String,
    /// The image's config digest (docker's image ID) and manifest digest.
    pub image_id: Digest,
    pub manifest: Digest,
    /// What runs: arguments, environment (HOME is added at start, from the user), working
    /// directory and user, as the image and the flags made them.
    pub process: ProcessPlan,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub ports: Vec<PortMap>,
    /// The image's ExposedPorts (`80/tcp`), shown by `ps` when not published.
    #[serde(default)]
    pub exposed: Vec<String>,
    pub rootfs: RootfsMode,
    /// The chain IDs of its layers, bottom first.
    pub layers: Vec<Digest>,
    pub auto_remove: bool,
    pub state: State,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The container's first process, on the host.
    pub pid: Option<u32>,
    /// The berth process that supervises it (pid and start time, so that a reused pid is
    /// not taken for it).
    pub supervisor: Option<Process>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i32>,
    /// Why it could not start, or stopped without an exit code.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub start_ticks: u64,
}

impl Process {
    pub fn current() -> Option<Process> {
        let pid = std::process::id();
        Some(Process {
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The status as `ps` tells it: a running container whose supervisor is gone has in
    /// fact stopped (the machine restarted, or the supervisor was killed).
    pub fn effective_status(&self) -> Status {
        match (self.state.status, self.state.supervisor) {
            (Status::Running, Some(s)) if !s.is_alive() => Status::Exited,
            (Status::Running, None) => Status::Exited,
            (status, _) => status,
        }
    }
}

/// Where containers live, and their records.
pub struct Containers {
    root: PathBuf,
}

impl Containers {
    /// `$BERTH_CONTAINERS`, else `$XDG_DATA_HOME/berth/containers`, else
    /// `$HOME/.local/share/berth/containers` (beside the image store).
    pub fn default_root() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("BERTH_CONTAINERS").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let absolute = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        if let Some(dir) = absolute("XDG_DATA_HOME") {
            return Ok(dir.join("berth").join("containers"));
        }
        if let Some(home) = absolute("HOME") {
            return Ok(home.join(".local/share/berth/containers"));
        }
        Err(RuntimeError::Other(
            "no place for containers: set BERTH_CONTAINERS, XDG_DATA_HOME or HOME to an absolute path"
                .into(),
        ))
    }

    /// Opens (creating) the containers directory, readable by its owner only: containers'
    /// output and root filesystems are theirs, not every local user's (docker's is 0710).
    pub fn open(root: impl Into<PathBuf>) -> Result<Containers> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root).map_err(RuntimeError::io("create", &root))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(RuntimeError::io("change mode of", &root))?;
        }
        Ok(Containers { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("output.log")
    }

    pub fn layers_root(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// Holds the containers lock while `f` runs: names are claimed and records removed one
    /// process at a time.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.root.join(".lock");
        let lock = File::create(&path).map_err(RuntimeError::io("create", &path))?;
        lock.lock().map_err(RuntimeError::io("lock", &path))?;
        f()
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.root).map_err(RuntimeError::io("list", &self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_id(&name) {
                continue;
            }
            if let Some(c) = self.load(&name)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn load(&self, id: &str) -> Result<Option<Container>> {
        let path = self.dir(id).join("container.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            // Being created or removed right now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Other(format!("{}: {e}", path.display())))
    }

    /// The container with this name, ID or unique ID prefix.
    pub fn find(&self, key: &str) -> Result<Container> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
            return Ok(c.clone());
        }
        let matches: Vec<&Container> =
            if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
                all.iter().filter(|c| c.id.starts_with(key)).collect()
            } else {
                Vec::new()
            };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RuntimeError::NoSuchContainer(key.to_string())),
            _ => Err(RuntimeError::Other(format!(
                "{key} matches {} containers: give more of the ID",
                matches.len()
            ))),
        }
    }

    /// Records a new container under its name (a generated one when `None`), refusing a name
    /// in use.
    pub fn create(&self, mut container: Container, name: Option<&str>) -> Result<Container> {
        self.locked(|| {
            let all = self.list()?;
            let name = match name {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n);
                    if !valid_name(n) {
                        return Err(RuntimeError::InvalidName(n.to_string()));
                    }
                    if let Some(other) = all.iter().find(|c| c.name == n) {
                        return Err(RuntimeError::NameInUse {
                            name: n.to_string(),
                            id: other.id.clone(),
                        });
                    }
                    n.to_string()
                }
                None => generated_name(&container.id, &all),
            };
            container.name = name;
            let dir = self.dir(&container.id);
            fs::create_dir(&dir).map_err(RuntimeError::io("create", &dir))?;
            self.save(&container)?;
            Ok(container)
        })
    }

    /// Writes the record, atomically.
    pub fn save(&self, container: &Container) -> Result<()> {
        let dir = self.dir(&container.id);
        let tmp = dir.join(format!("container.json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(container)
            .map_err(|e| RuntimeError::Other(format!("container record: {e}")))?;
        let mut file = File::create(&tmp).map_err(RuntimeError::io("create", &tmp))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(RuntimeError::io("write", &tmp))?;
        fs::rename(&tmp, dir.join("container.json")).map_err(RuntimeError::io("rename", &tmp))
    }

    /// Changes the record as `f` says, reading it fresh first.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
        let mut c = self
            .load(id)?
            .ok_or_else(|| RuntimeError::NoSuchContainer(id.to_string()))?;
        f(&mut c);
        self.save(&c)?;
        Ok(c)
    }

    /// Removes the container's directory (its root filesystem must be unmounted).
    pub fn remove(&self, id: &str) -> Result<()> {
        self.locked(|| {
            let dir = self.dir(id);
            // The record goes first, so a half-removed directory is not listed.
            let _ = fs::remove_file(dir.join("container.json"));
            match fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(RuntimeError::io("remove", &dir)(e)),
            }
        })
    }
}

/// A new container ID: 32 random bytes in hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| RuntimeError::Other("no randomness for a container ID".into()))?;
    Ok(hex::encode(bytes))
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(n: &str) -> bool {
    let mut bytes = n.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && n.len() >= 2
        && n.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A name like docker's `adjective_surname`, picked by the ID, unused.
fn generated_name(id: &str, taken: &[Container]) -> String {
    const ADJECTIVES: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "noble",
        "proud", "quiet", "sharp", "steady", "swift", "wise",
    ];
    const NAMES: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "faraday", "gauss", "hopper", "kepler", "lovelace",
        "maxwell", "noether", "pascal", "ritchie", "shannon", "turing", "volta",
    ];
    let n = u64::from_str_radix(&id[..8], 16).unwrap_or(0) as usize;
    let base = format!("{}_{}", ADJECTIVES[n % 16], NAMES[(n / 16) % 16]);
    let mut name = base.clone();
    let mut i = 2;
    while taken.iter().any(|c| c.name == name) {
        name = format!("{base}{i}");
        i += 1;
    }
    name
}
