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
        Some(json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.2340"}))
    );
    assert!(serde_json::from_value::<Platform>(json!({"os": "linux"})).is_err());
    assert_eq!(p("linux", "arm", Some("v7")).to_string(), "linux/arm/v7");
    assert_eq!(p("linux", "amd64", None).to_string(), "linux/amd64");
}
