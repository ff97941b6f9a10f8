//! Image names and references: `Repository`, `Tag`, `ManifestRef` (the `/v2/<name>/...` path
//! parts) and `Reference` (what a user types, normalized like docker, with the default registry
//! or another one as the CLI's `default_registry`). Never panics; whatever parses prints in a
//! form that parses back to the same value.
#![no_main]

use berth_oci::{ManifestRef, Reference, Repository, Tag, registry_host};
use libfuzzer_sys::fuzz_target;

/// Default registries a CLI may be configured with; each looks like a host, so a name printed
/// with it parses back to it.
const DEFAULT_DOMAINS: [&str; 4] = ["docker.io", "registry.corp:5000", "localhost", "[::1]:5000"];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(repository) = s.parse::<Repository>() {
        assert_eq!(repository.as_str(), s);
        assert!(s.starts_with(repository.project()));
        assert_eq!(repository.to_string().parse::<Repository>(), Ok(repository));
    }
    if let Ok(tag) = s.parse::<Tag>() {
        assert_eq!(tag.to_string().parse::<Tag>(), Ok(tag));
    }
    if let Ok(reference) = s.parse::<ManifestRef>() {
        assert_eq!(reference.to_string(), s);
        assert_eq!(reference.to_string().parse::<ManifestRef>(), Ok(reference));
    }

    if let Ok(reference) = Reference::parse_normalized(s) {
        check_normalized(&reference, Reference::parse_normalized);
        let _ = reference.familiar();
        let _ = registry_host(reference.domain());
    }
    for domain in DEFAULT_DOMAINS {
        if let Ok(reference) = Reference::parse_normalized_with_domain(s, domain) {
            check_normalized(&reference, |t| {
                Reference::parse_normalized_with_domain(t, domain)
            });
        }
    }
});

/// parse(display(r)) == r, and the defaults change nothing more when applied twice.
fn check_normalized(
    reference: &Reference,
    parse: impl Fn(&str) -> Result<Reference, berth_oci::ReferenceError>,
) {
    let full = reference.to_string();
    assert_eq!(parse(&full).as_ref(), Ok(reference), "{full}");
    let tagged = reference.clone().with_default_tag();
    assert_eq!(tagged.clone().with_default_tag(), tagged);
    assert_eq!(parse(&tagged.to_string()), Ok(tagged));
    let name = reference.name();
    let bare = parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(bare.domain(), reference.domain());
    assert_eq!(bare.repository(), reference.repository());
}
