//! The client's own settings (`client.toml`), separate from docker's `config.json`, which only
//! holds credentials.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_oci::DEFAULT_DOMAIN;
use serde::Deserialize;

use crate::error::{ClientError, Result};

/// `$BERTH_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/berth/client.toml`, else
/// `~/.config/berth/client.toml`; a missing file means the defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The registry meant by a name without one (docker: `docker.io`). An air-gapped site sets
    /// its own.
    pub default_registry: String,
    /// Registries reached over plain HTTP (or HTTPS without verification of the certificate
    /// chain, if they offer it), besides loopback, which always may.
    pub insecure_registries: Vec<String>,
    /// A PEM bundle of extra CA certificates trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Parallel layer downloads per pull.
    pub max_concurrent_downloads: usize,
    /// Parallel layer uploads per push.
    pub max_concurrent_uploads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_registry: DEFAULT_DOMAIN.to_string(),
            insecure_registries: Vec::new(),
            ca_file: None,
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
        }
    }
}

impl Settings {
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("BERTH_CLIENT_CONFIG") {
            return Some(PathBuf::from(p));
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
        };
        Some(base.join("berth").join("client.toml"))
    }

    /// Loads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(ClientError::io(format!("reading {}", path.display()))(e)),
        };
        toml::from_str(&text).map_err(|e| ClientError::Settings {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Whether plain HTTP may be used for `host` (`host[:port]`): loopback always (as docker
    /// does for 127.0.0.0/8), and the registries listed as insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.insecure_registries.iter().any(|r| r == host) || is_loopback(host)
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fc00::1]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        assert_eq!(Settings::load(&path).unwrap().default_registry, "docker.io");
        std::fs::write(
            &path,
            "default_registry = \"registry.corp:5000\"\ninsecure_registries = [\"build:5000\"]\n",
        )
        .unwrap();
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.default_registry, "registry.corp:5000");
        assert!(s.is_insecure("build:5000"));
        assert!(!s.is_insecure("other:5000"));
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        assert!(Settings::load(&path).is_err());
    }
}
