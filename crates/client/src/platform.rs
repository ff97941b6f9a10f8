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
mod tests {
    use super::*;
    use serde_json::json;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform::new(os, arch, variant)
    }

    #[test]
    fn parses_specifiers() {
        let host = Platform::host();
        let cases: Vec<(&str, Platform)> = vec![
            ("linux/amd64", p("linux", "amd64", None)),
            ("linux/x86_64", p("linux", "amd64", None)),
            ("linux/x86-64", p("linux", "amd64", None)),
            ("Linux/AMD64", p("linux", "amd64", None)),
            ("linux/aarch64", p("linux", "arm64", None)),
            ("linux/arm64", p("linux", "arm64", None)),
            ("linux/arm64/v8", p("linux", "arm64", Some("v8"))),
            ("linux/arm64/8", p("linux", "arm64", Some("v8"))),
            ("linux/arm64/v9.0", p("linux", "arm64", Some("v9"))),
            ("linux/arm", p("linux", "arm", None)),
            ("linux/arm/v7", p("linux", "arm", Some("v7"))),
            ("linux/arm/6", p("linux", "arm", Some("v6"))),
            ("linux/armhf", p("linux", "arm", None)),
            ("linux/armel", p("linux", "arm", Some("v6"))),
            ("linux/i386", p("linux", "386", None)),
            ("linux/386", p("linux", "386", None)),
            ("macos/arm64", p("darwin", "arm64", None)),
            ("windows/amd64", p("windows", "amd64", None)),
            ("linux/riscv64", p("linux", "riscv64", None)),
            ("linux/s390x", p("linux", "s390x", None)),
            ("linux/amd64/v3", p("linux", "amd64", Some("v3"))),
            ("linux/amd64/v1", p("linux", "amd64", None)),
            // Two components are taken as given even when unknown, like containerd.
            ("plan10/whatever", p("plan10", "whatever", None)),
            ("arm64", p(&host.os, "arm64", None)),
            ("aarch64", p(&host.os, "arm64", None)),
            ("armhf", p(&host.os, "arm", None)),
            ("x86_64", p(&host.os, "amd64", None)),
            ("linux", p("linux", &host.architecture, None)),
            (
                "windows(10.0.17763)/amd64",
                Platform {
                    os_version: Some("10.0.17763".into()),
                    ..p("windows", "amd64", None)
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<Platform>(), Ok(want), "{spec:?}");
        }
    }

    #[test]
    fn rejects_invalid_specifiers() {
        let cases: Vec<(&str, PlatformError)> = vec![
            (
                "",
                PlatformError::InvalidOs {
                    spec: "".into(),
                    component: "".into(),
                },
            ),
            (
                "linux/*",
                PlatformError::Wildcard {
                    spec: "linux/*".into(),
                },
            ),
            (
                "/amd64",
                PlatformError::InvalidOs {
                    spec: "/amd64".into(),
                    component: "".into(),
                },
            ),
            (
                "linux/",
                PlatformError::InvalidComponent {
                    spec: "linux/".into(),
                    component: "".into(),
                },
            ),
            (
                "linux/amd 64",
                PlatformError::InvalidComponent {
                    spec: "linux/amd 64".into(),
                    component: "amd 64".into(),
                },
            ),
            (
                "lin.ux/amd64",
                PlatformError::InvalidOs {
                    spec: "lin.ux/amd64".into(),
                    component: "lin.ux".into(),
                },
            ),
            (
                "windows(10/amd64",
                PlatformError::InvalidOs {
                    spec: "windows(10/amd64".into(),
                    component: "windows(10".into(),
                },
            ),
            (
                "linux/arm/v7/extra",
                PlatformError::TooManyComponents {
                    spec: "linux/arm/v7/extra".into(),
                },
            ),
            (
                "linux/arm/v7/extra/more",
                PlatformError::InvalidComponent {
                    spec: "linux/arm/v7/extra/more".into(),
                    component: "extra/more".into(),
                },
            ),
            (
                "potato",
                PlatformError::Unknown {
                    spec: "potato".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(spec.parse::<Platform>(), Err(want), "{spec:?}");
        }
        let msg = "potato".parse::<Platform>().err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("invalid platform \"potato\": unknown operating system or architecture")
        );
    }

    #[test]
    fn host_is_normalized() {
        let host = Platform::host();
        assert_eq!(host, host.normalized());
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host.to_string(), "linux/amd64");
    }

    #[test]
    fn matches_after_normalizing() {
        let cases = [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/x86_64", true),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/aarch64", true),
            ("linux/arm", "linux/arm/v7", true),
            ("linux/armhf", "linux/arm/v7", true),
            ("linux/arm/v7", "linux/arm/v6", false),
            ("linux/arm64", "linux/arm/v7", false),
            ("linux/amd64", "linux/386", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/arm64", "linux/arm64/v9", false),
            ("macos/arm64", "darwin/arm64", true),
        ];
        for (a, b, want) in cases {
            let a: Platform = a.parse().expect(a);
            let b: Platform = b.parse().expect(b);
            assert_eq!(a.matches(&b), want, "{a} vs {b}");
        }
        // Index entries spell variants any way; `""` is no variant.
        let entry: Platform =
            serde_json::from_value(json!({"os": "Linux", "architecture": "ARM64", "variant": ""}))
                .expect("valid platform");
        assert_eq!(entry.variant, None);
        assert!(p("linux", "arm64", None).matches(&entry));
        let windows = |v: &str| Platform {
            os_version: Some(v.into()),
            ..p("windows", "amd64", None)
        };
        assert!(windows("10.0.17763").matches(&windows("10.0.17763.5458")));
        assert!(!windows("10.0.17763").matches(&windows("10.0.177630")));
        assert!(!windows("10.0.17763").matches(&p("windows", "amd64", None)));
        assert!(p("windows", "amd64", None).matches(&windows("10.0.17763.5458")));
    }

    #[test]
    fn preference_follows_containerd_only() {
        let cases: Vec<(&str, &str, Option<usize>)> = vec![
            ("linux/arm/v7", "linux/arm/v7", Some(0)),
            ("linux/arm/v7", "linux/arm/v6", Some(1)),
            ("linux/arm/v7", "linux/arm/v5", Some(2)),
            ("linux/arm/v6", "linux/arm/v7", None),
            ("linux/arm/v5", "linux/arm/v5", Some(0)),
            ("linux/arm64", "linux/arm/v8", Some(1)),
            ("linux/arm64", "linux/arm/v7", Some(2)),
            ("linux/arm64", "linux/arm/v5", Some(4)),
            ("linux/amd64", "linux/386", Some(1)),
            ("linux/amd64/v3", "linux/amd64/v2", Some(1)),
            ("linux/amd64/v3", "linux/amd64", Some(2)),
            ("linux/amd64/v3", "linux/386", Some(3)),
            ("linux/amd64", "linux/amd64/v2", None),
            ("linux/386", "linux/amd64", None),
            ("linux/amd64", "linux/arm64", None),
        ];
        for (wanted, candidate, want) in cases {
            let w: Platform = wanted.parse().expect(wanted);
            let c: Platform = candidate.parse().expect(candidate);
            assert_eq!(w.preference(&c), want, "{wanted} wants {candidate}");
        }
    }

    fn index(platforms: &[Option<serde_json::Value>]) -> Vec<Descriptor> {
        platforms
            .iter()
            .enumerate()
            .map(|(i, platform)| {
                serde_json::from_value::<Descriptor>(json!({
                    "mediaType": berth_oci::media_type::OCI_MANIFEST,
                    "digest": format!("sha256:{i:064x}"),
                    "size": 100 + i,
                }))
                .map(|mut d| {
                    d.platform = platform.clone();
                    d
                })
                .expect("valid descriptor")
            })
            .collect()
    }

    #[test]
    fn selects_from_an_index() {
        let plat = |os: &str, arch: &str, variant: Option<&str>| {
            let mut v = json!({"os": os, "architecture": arch});
            if let Some(variant) = variant {
                v["variant"] = json!(variant);
            }
            Some(v)
        };
        let buildx = index(&[
            plat("linux", "amd64", None),
            plat("linux", "arm64", Some("v8")),
            plat("linux", "arm", Some("v6")),
            plat("linux", "arm", Some("v7")),
            plat("linux", "386", None),
            plat("unknown", "unknown", None),
            plat("unknown", "unknown", None),
        ]);
        let cases: Vec<(&[Descriptor], &str, Option<usize>)> = vec![
            (&buildx, "linux/amd64", Some(0)),
            (&buildx, "linux/x86_64", Some(0)),
            (&buildx, "linux/arm64", Some(1)),
            (&buildx, "linux/arm/v7", Some(3)),
            (&buildx, "linux/arm", Some(3)),
            (&buildx, "linux/arm/v6", Some(2)),
            (&buildx, "linux/386", Some(4)),
            (&buildx, "linux/s390x", None),
            (&buildx, "windows/amd64", None),
            (&buildx[2..], "linux/arm64", Some(3)),
            (&buildx[2..3], "linux/arm/v7", Some(2)),
            (&buildx[5..], "linux/amd64", None),
            (&buildx[4..], "linux/amd64", Some(4)),
            (&buildx[5..], "unknown/unknown", None),
        ];
        for (descriptors, wanted, want) in cases {
            let w: Platform = wanted.parse().expect(wanted);
            let got = select(&w, descriptors).map(|d| d.size as usize - 100);
            assert_eq!(got, want, "{wanted}");
        }

        // No platform: accepted, but after any match; bad platform objects are skipped.
        let odd = index(&[
            None,
            Some(json!({"os": "linux"})),
            Some(json!("linux/amd64")),
            plat("linux", "arm64", None),
        ]);
        let amd64 = p("linux", "amd64", None);
        assert_eq!(select(&amd64, &odd).map(|d| d.size), Some(100));
        assert_eq!(
            select(&p("linux", "arm64", Some("v8")), &odd).map(|d| d.size),
            Some(103)
        );
        assert_eq!(select(&amd64, &[]), None);
    }

    #[test]
    fn serde_round_trip() {
        let v = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
        let platform: Platform = serde_json::from_value(v.clone()).expect("valid platform");
        assert_eq!(platform, p("linux", "arm64", Some("v8")));
        assert_eq!(serde_json::to_value(&platform).ok(), Some(v));
        let win = json!({
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.20348.2340",
            "os.features": ["win32k"],
        });
        let platform: Platform = serde_json::from_value(win).expect("valid platform");
        assert_eq!(platform.os_version.as_deref(), Some("10.0.20348.2340"));
        assert_eq!(
            serde_json::to_value(&platform).ok(),
            Some(
                json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2340"})
            )
        );
        assert!(serde_json::from_value::<Platform>(json!({"os": "linux"})).is_err());
        assert_eq!(p("linux", "arm", Some("v7")).to_string(), "linux/arm/v7");
        assert_eq!(p("linux", "amd64", None).to_string(), "linux/amd64");
    }
}
