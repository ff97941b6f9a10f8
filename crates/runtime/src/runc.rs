//! The OCI runtime berth hands bundles to: runc (Debian package `runc`), or what
//! `BERTH_RUNTIME` names. Its state lives under the containers root (`runc --root`), apart
//! from other tools' containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, RuntimeError};

pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    /// Finds the runtime (`$BERTH_RUNTIME`, else `runc` on PATH) and checks that this process
    /// can run containers (root).
    pub fn locate(state_root: PathBuf) -> Result<Runc> {
        let wanted = std::env::var("BERTH_RUNTIME")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "runc".to_string());
        let binary = if wanted.contains('/') {
            Some(PathBuf::from(&wanted)).filter(|p| p.is_file())
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(&wanted))
                    .find(|p| p.is_file())
            })
        };
        let binary = binary.ok_or(RuntimeError::RuntimeMissing(wanted))?;
        Self::check_root()?;
        Ok(Runc {
            binary,
            root: state_root,
        })
    }

    /// Containers are run as root (runc's namespaces, mounts and cgroups need it).
    pub fn check_root() -> Result<()> {
        let uid = rustix::process::geteuid();
        if !uid.is_root() {
            return Err(RuntimeError::NotRoot(uid.as_raw()));
        }
        Ok(())
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `runc run`: creates and starts the container and waits for it, exiting with its
    /// status. The caller sets its stdio.
    pub fn run_command(&self, id: &str, bundle: &Path, pid_file: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::from(self.command());
        c.arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id);
        c
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) to the container's first process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        self.quiet(&["kill", id, signal])
    }

    /// Forgets the container, running or not; a container runc does not know is no error.
    pub fn delete(&self, id: &str) -> Result<()> {
        match self.quiet(&["delete", "--force", id]) {
            Err(RuntimeError::Runtime(e)) if e.contains("does not exist") => Ok(()),
            other => other,
        }
    }

    fn quiet(&self, args: &[&str]) -> Result<()> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(RuntimeError::io("run", &self.binary))?;
        if out.status.success() {
            return Ok(());
        }
        Err(RuntimeError::Runtime(format!(
            "{} {}: {}",
            self.binary.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
