//! Manifest validation as a manifest PUT runs it: `parse_manifest` with the request's
//! `Content-Type` (each manifest media type, the schema 1 ones, none, odd spellings, or one
//! taken from the input), then `index_manifest`, which builds what the database records.
//!
//! Input: the first byte picks the `Content-Type`; the rest is the body. Never panics; an
//! accepted manifest is of a supported type and kind, with the fields its kind requires.
#![no_main]

use berth_oci::media_type::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MANIFEST_TYPES,
    OCI_INDEX, OCI_MANIFEST,
};
use berth_oci::{Digest, ManifestKind, parse_manifest};
use berth_registry::index_manifest;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 11] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_MANIFEST_LIST),
    Some(DOCKER_SCHEMA1),
    Some(DOCKER_SCHEMA1_SIGNED),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some(" APPLICATION/VND.OCI.IMAGE.INDEX.V1+JSON "),
    Some("application/json"),
    Some(""),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let selector = usize::from(selector);
    if selector < CONTENT_TYPES.len() {
        check(CONTENT_TYPES[selector], body);
    } else {
        // The Content-Type is the input up to the first newline (a header value is one line).
        let Some(newline) = body.iter().position(|&b| b == b'\n') else {
            return;
        };
        let Ok(content_type) = std::str::from_utf8(&body[..newline]) else {
            return;
        };
        check(Some(content_type), &body[newline + 1..]);
    }
});

fn check(content_type: Option<&str>, body: &[u8]) {
    let Ok(parsed) = parse_manifest(content_type, body) else {
        return;
    };
    assert!(
        MANIFEST_TYPES.contains(&parsed.media_type.as_str()),
        "{}",
        parsed.media_type
    );
    match parsed.kind {
        ManifestKind::Image => {
            assert!(parsed.config.is_some());
            assert!(parsed.manifests.is_empty());
            assert!(matches!(
                parsed.media_type.as_str(),
                OCI_MANIFEST | DOCKER_MANIFEST
            ));
        }
        ManifestKind::Index => {
            assert!(parsed.config.is_none() && parsed.layers.is_empty());
            assert!(matches!(
                parsed.media_type.as_str(),
                OCI_INDEX | DOCKER_MANIFEST_LIST
            ));
        }
    }
    assert!(parsed.blob_references().count() <= parsed.layers.len() + 1);
    let indexed =
        index_manifest(&parsed, body.to_vec(), Vec::new()).expect("an accepted manifest indexes");
    assert_eq!(indexed.digest, Digest::sha256_of(body));
    assert_eq!(indexed.manifests.len(), parsed.manifests.len());
    if let Some(annotations) = &indexed.annotations {
        assert!(serde_json::from_str::<serde_json::Value>(annotations).is_ok());
    }
}
