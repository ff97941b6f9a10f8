//! Platforms (`linux/arm64/v8`) parsed, normalized and matched the way docker does it, through
//! containerd's `platforms` package: `Parse`, `Normalize`, and the `Only` matcher that docker's
//! pull uses to pick a manifest from an index.
//!
//! Normalization folds the spellings of one architecture together (`x86_64` = `amd64`,
//! `aarch64` = `arm64`, `armhf` = `arm/v7`) and the default variants (`arm64` = `arm64/v8`,
//! `arm` = `arm/v7`), so comparisons are made on normalized values only.

use std::fmt;
use std::str::FromStr;

use berth_oci::Descriptor;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {spec:?}: wildcards are not supported")]
    Wildcard { spec: String },
    #[error(
        "invalid platform {spec:?}: {component:?} is not an OS (expected letters, digits, '_' or '-', optionally followed by \"(version)\")"
    )]
    InvalidOs { spec: String, component: String },
    #[error(
        "invalid platform {spec:?}: {component:?} is not a valid component (expected letters, digits, '_', '.' or '-')"
    )]
    InvalidComponent { spec: String, component: String },
    #[error("invalid platform {spec:?}: unknown operating system or architecture")]
    Unknown { spec: String },
    #[error("invalid platform {spec:?}: expected os/arch[/variant]")]
    TooManyComponents { spec: String },
}

/// The `platform` object of an OCI index entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_empty"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "non_empty"
    )]
    pub variant: Option<String>,
}

/// `"variant": ""` and `"variant": null` mean no variant.
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            os_version: None,
        }
    }

    /// The platform this program runs on, in Go's names (`linux/amd64`, `darwin/arm64`).
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let big_endian = cfg!(target_endian = "big");
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "loongarch64" => "loong64",
            "powerpc" => "ppc",
            "powerpc64" if big_endian => "ppc64",
            "powerpc64" => "ppc64le",
            "mips" if big_endian => "mips",
            "mips" => "mipsle",
            "mips64" if big_endian => "mips64",
            "mips64" => "mips64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "sparc64" => "sparc64",
            "wasm32" => "wasm",
            other => other,
        };
        Platform::new(os, arch, None).normalized()
    }

    /// containerd's `Normalize`: lowercased, canonical architecture names, default variants
    /// dropped (`arm64/v8` -> `arm64`) except arm's, which is always explicit (`arm/v7`).
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) =
            normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform {
            os: normalize_os(&self.os),
            architecture,
            variant: Some(variant).filter(|v| !v.is_empty()),
            os_version: self.os_version.clone(),
        }
    }

    /// The `unknown/unknown` platform buildx gives attestation manifests in an index.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }

    /// Whether `candidate` is this very platform, after normalizing both: `arm64` matches
    /// `arm64/v8`, `x86_64` matches `amd64`, but `arm/v7` does not match `arm/v6`.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let a = self.normalized();
        let b = candidate.normalized();
        a.os == b.os
            && a.architecture == b.architecture
            && a.variant == b.variant
            && os_version_matches(a.os_version.as_deref(), b.os_version.as_deref())
    }

    /// How much this platform wants `candidate`: 0 for itself, higher for the compatible
    /// platforms containerd's `Only` accepts (a lower arm variant, 32-bit arm on arm64, 386 on
    /// amd64), `None` for a platform it cannot run.
    pub fn preference(&self, candidate: &Platform) -> Option<usize> {
        self.compatible().iter().position(|p| p.matches(candidate))
    }

    /// containerd's `platformVector`: this platform, then what it can also run, best first.
    fn compatible(&self) -> Vec<Platform> {
        let me = self.normalized();
        let mut out = vec![me.clone()];
        let with = |architecture: &str, variant: Option<String>| Platform {
            os: me.os.clone(),
            architecture: architecture.to_string(),
            variant,
            os_version: me.os_version.clone(),
        };
        match me.architecture.as_str() {
            "amd64" => {
                if let Some(v) = variant_number(me.variant.as_deref()) {
                    for lower in (1..v).rev() {
                        out.push(with("amd64", Some(format!("v{lower}"))));
                    }
                }
                out.push(with("386", None));
            }
            "arm" => {
                if let Some(v) = variant_number(me.variant.as_deref()) {
                    for lower in (5..v).rev() {
                        out.push(with("arm", Some(format!("v{lower}"))));
                    }
                }
            }
            "arm64" => {
                let variant = me.variant.clone().unwrap_or_else(|| "v8".to_string());
                out.extend(with("arm", Some(variant)).compatible());
            }
            _ => {}
        }
        out
    }
}

fn variant_number(variant: Option<&str>) -> Option<u32> {
    variant?.strip_prefix('v')?.parse().ok()
}

/// A wanted `os.version` (Windows builds) must be the candidate's, or a prefix of it at a dot
/// (`10.0.17763` matches `10.0.17763.5458`); no wanted version matches any.
fn os_version_matches(wanted: Option<&str>, candidate: Option<&str>) -> bool {
    match (wanted, candidate) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w), Some(c)) => c == w || c.strip_prefix(w).is_some_and(|rest| rest.starts_with('.')),
    }
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "" => Platform::host().os,
        "macos" => "darwin".to_string(),
        _ => os,
    }
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let variant = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), variant)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let variant = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), variant)
        }
        _ => (arch, variant),
    }
}

fn is_component(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `os` or `os(version)`, containerd's `^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$`.
fn parse_os(part: &str) -> Option<(String, Option<String>)> {
    let (os, version) = match part.split_once('(') {
        Some((os, rest)) => (os, Some(rest.strip_suffix(')')?)),
        None => (part, None),
    };
    let os_ok = !os.is_empty()
        && os
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'));
    let version_ok = version.is_none_or(|v| {
        v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    });
    if !os_ok || !version_ok {
        return None;
    }
    Some((
        normalize_os(os),
        version.filter(|v| !v.is_empty()).map(str::to_string),
    ))
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// containerd's `platforms.Parse`: `os[(version)][/arch[/variant]]`, or an architecture
    /// alone (`arm64`, which takes the host's OS), or an OS alone (`linux`, which takes the
    /// host's architecture).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if spec.contains('*') {
            return Err(PlatformError::Wildcard { spec: spec.into() });
        }
        let parts: Vec<&str> = spec.splitn(4, '/').collect();
        let first = parts.first().copied().unwrap_or("");
        let (os, os_version) = parse_os(first).ok_or_else(|| PlatformError::InvalidOs {
            spec: spec.into(),
            component: first.into(),
        })?;
        if let Some(bad) = parts.iter().skip(1).find(|p| !is_component(p)) {
            return Err(PlatformError::InvalidComponent {
                spec: spec.into(),
                component: (*bad).into(),
            });
        }
        let platform = |architecture: String, variant: String| Platform {
            os: os.clone(),
            architecture,
            variant: Some(variant).filter(|v| !v.is_empty()),
            os_version: os_version.clone(),
        };
        match parts.as_slice() {
            [single] => {
                if KNOWN_OS.contains(&os.as_str()) {
                    let host = Platform::host();
                    return Ok(Platform {
                        architecture: host.architecture,
                        variant: host.variant,
                        ..platform(String::new(), String::new())
                    });
                }
                let (arch, variant) = normalize_arch(single, "");
                let variant = if arch == "arm" && variant == "v7" {
                    String::new()
                } else {
                    variant
                };
                if KNOWN_ARCH.contains(&arch.as_str()) {
                    return Ok(Platform {
                        os: Platform::host().os,
                        os_version: None,
                        ..platform(arch, variant)
                    });
                }
                Err(PlatformError::Unknown { spec: spec.into() })
            }
            [_, arch] => {
                let (arch, variant) = normalize_arch(arch, "");
                let variant = if arch == "arm" && variant == "v7" {
                    String::new()
                } else {
                    variant
                };
                Ok(platform(arch, variant))
            }
            [_, arch, variant] => {
                let (arch, variant) = normalize_arch(arch, variant);
                let variant = if arch == "arm64" && variant.is_empty() {
                    "v8".to_string()
                } else {
                    variant
                };
                Ok(platform(arch, variant))
            }
            _ => Err(PlatformError::TooManyComponents { spec: spec.into() }),
        }
    }
}

/// containerd's `Format`: `os/arch[/variant]` as given (not normalized).
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// The candidate `wanted` prefers (see `Platform::preference`), the first one in order on a
/// tie. `None` platforms (an index entry without one) are accepted last, as containerd does;
/// `unknown/unknown` ones (attestations) never.
pub fn select_best<'p, T>(
    wanted: &Platform,
    candidates: impl IntoIterator<Item = (Option<&'p Platform>, T)>,
) -> Option<T> {
    let mut best: Option<(usize, T)> = None;
    for (platform, item) in candidates {
        let rank = match platform {
            Some(p) if p.is_unknown() => continue,
            Some(p) => match wanted.preference(p) {
                Some(rank) => rank,
                None => continue,
            },
            None => usize::MAX,
        };
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, item));
        }
    }
    best.map(|(_, item)| item)
}

/// Picks the entry of an index to pull for `wanted`, like docker's pull: the exact platform,
/// else the best compatible one. Entries whose `platform` is not a valid platform object are
/// skipped.
pub fn select<'a>(wanted: &Platform, descriptors: &'a [Descriptor]) -> Option<&'a Descriptor> {
    let parsed: Vec<(Option<Platform>, &Descriptor)> = descriptors
        .iter()
        .filter_map(|d| match &d.platform {
            None => Some((None, d)),
            Some(v) => serde_json::from_value::<Platform>(v.clone())
                .ok()
                .map(|p| (Some(p), d)),
        })
        .collect();
    select_best(wanted, parsed.iter().map(|(p, d)| (p.as_ref(), *d)))
}

#[cfg(test)]
mod tests;
