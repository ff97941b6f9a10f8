//! Property tests of name parsing: generated valid repository names, tags, digests and image
//! references (distribution/reference grammar: an optional registry host with an optional
//! port, path components, a tag and/or a digest) parse, print, and parse back to the same
//! value; docker's normalization of short names is idempotent.

use berth_oci::{Digest, ManifestRef, Reference, Repository, Tag};
use proptest::prelude::*;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, kept short.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

/// One to four components joined by `/`.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..=4).prop_map(|c| c.join("/"))
}

/// A first component that docker does not take for a registry: no `.`, no `:`, not
/// `localhost` (the path grammar allows no uppercase).
fn plain_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
        .prop_filter("localhost is a host", |c| c != "localhost")
}

fn tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))
}

/// A registry host as docker recognizes one: a dotted name, any name with a port, `localhost`,
/// a name with an uppercase letter, or a bracketed IPv6 address with a port.
fn domain() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?";
    let port = "[0-9]{1,5}";
    prop_oneof![
        (prop::collection::vec(label, 2..=3), prop::option::of(port)).prop_map(|(labels, port)| {
            let host = labels.join(".");
            match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        }),
        (label, port).prop_map(|(host, port)| format!("{host}:{port}")),
        Just("localhost".to_string()),
        "[A-Z][a-zA-Z0-9]{0,5}",
        ("[0-9a-f]{1,4}", port).prop_map(|(group, port)| format!("[fc00::{group}]:{port}")),
        Just("docker.io".to_string()),
        Just("index.docker.io".to_string()),
    ]
}

/// The parts of a reference as typed, and the text.
#[derive(Clone, Debug)]
struct Typed {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Typed {
    fn text(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.domain {
            s.push_str(d);
            s.push('/');
        }
        s.push_str(&self.path);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

fn typed_reference() -> impl Strategy<Value = Typed> {
    (
        prop::option::of(domain()),
        path(),
        plain_component(),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        .prop_map(|(domain, path, first, tag, digest)| Typed {
            // Without a registry the first component must not look like one.
            path: if domain.is_some() {
                path
            } else {
                format!("{first}/{path}")
            },
            domain,
            tag,
            digest,
        })
}

/// A short docker name: no registry, one or two plain components, maybe a tag.
fn short_name() -> impl Strategy<Value = String> {
    (
        plain_component(),
        prop::option::of(component()),
        prop::option::of(tag()),
    )
        .prop_map(|(first, second, tag)| {
            let mut s = first;
            if let Some(c) = second {
                s = format!("{s}/{c}");
            }
            if let Some(t) = tag {
                s = format!("{s}:{t}");
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn repository_tag_and_digest_round_trip(path in path(), tag in tag(), digest in digest()) {
        let repository: Repository = path.parse().expect("a generated name is valid");
        prop_assert_eq!(repository.as_str(), path.as_str());
        prop_assert_eq!(repository.to_string().parse::<Repository>(), Ok(repository));

        let parsed: Tag = tag.parse().expect("a generated tag is valid");
        prop_assert_eq!(parsed.to_string(), tag.clone());
        let by_tag: ManifestRef = tag.parse().expect("a tag is a manifest reference");
        prop_assert!(matches!(&by_tag, ManifestRef::Tag(t) if t == &parsed));
        prop_assert_eq!(by_tag.to_string().parse::<ManifestRef>(), Ok(by_tag));

        let parsed: Digest = digest.parse().expect("a generated digest is valid");
        prop_assert_eq!(parsed.to_string(), digest.clone());
        let by_digest: ManifestRef = digest.parse().expect("a digest is a manifest reference");
        prop_assert!(matches!(&by_digest, ManifestRef::Digest(d) if d == &parsed));
        prop_assert_eq!(by_digest.to_string().parse::<ManifestRef>(), Ok(by_digest));
    }

    #[test]
    fn references_normalize_print_and_parse_back(typed in typed_reference()) {
        let text = typed.text();
        let reference = Reference::parse_normalized(&text)
            .unwrap_or_else(|e| panic!("{text}: {e}"));

        let domain = match typed.domain.as_deref() {
            None | Some("index.docker.io") => "docker.io",
            Some(d) => d,
        };
        prop_assert_eq!(reference.domain(), domain);
        let path = if domain == "docker.io" && !typed.path.contains('/') {
            format!("library/{}", typed.path)
        } else {
            typed.path.clone()
        };
        prop_assert_eq!(reference.repository().as_str(), path.as_str());
        prop_assert_eq!(reference.tag().map(Tag::as_str), typed.tag.as_deref());
        prop_assert_eq!(
            reference.digest().map(ToString::to_string),
            typed.digest.clone()
        );

        let full = reference.to_string();
        let reparsed = Reference::parse_normalized(&full);
        prop_assert_eq!(reparsed.as_ref(), Ok(&reference), "{}", full);
        let tagged = reference.clone().with_default_tag();
        prop_assert_eq!(Reference::parse_normalized(&tagged.to_string()), Ok(tagged));
        // With another default registry, what names its registry parses as before.
        prop_assert_eq!(
            Reference::parse_normalized_with_domain(&full, "registry.corp:5000"),
            Ok(reference)
        );
    }

    #[test]
    fn short_names_normalize_idempotently(name in short_name()) {
        let once = Reference::parse_normalized(&name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .with_default_tag();
        prop_assert_eq!(once.domain(), "docker.io");
        prop_assert!(once.tag().is_some());
        let twice = Reference::parse_normalized(&once.to_string())
            .expect("a normalized name parses")
            .with_default_tag();
        prop_assert_eq!(&twice, &once);
        // The short form docker prints names the same image.
        let familiar = Reference::parse_normalized(&once.familiar());
        prop_assert_eq!(familiar.as_ref(), Ok(&once));
        if !name.contains('/') {
            let expected_tag = name.split_once(':').map_or("latest", |(_, t)| t);
            let bare = name.split(':').next().unwrap_or(&name);
            prop_assert_eq!(
                once.to_string(),
                format!("docker.io/library/{bare}:{expected_tag}")
            );
            prop_assert_eq!(once.familiar(), format!("{bare}:{expected_tag}"));
        }
        let elsewhere = Reference::parse_normalized_with_domain(&name, "registry.corp:5000")
            .expect("a short name parses with any default registry")
            .with_default_tag();
        prop_assert_eq!(elsewhere.domain(), "registry.corp:5000");
        prop_assert_eq!(
            Reference::parse_normalized_with_domain(&elsewhere.to_string(), "registry.corp:5000"),
            Ok(elsewhere)
        );
    }
}

#[test]
fn ubuntu_is_docker_hub_library_latest() {
    let r = Reference::parse_normalized("ubuntu")
        .expect("valid")
        .with_default_tag();
    assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
    assert_eq!(Reference::parse_normalized(&r.to_string()), Ok(r));
}
