//! Digests (`algorithm:hex`, from paths, query strings and manifests) and the saved SHA-256
//! state of an upload session (read back from the database). Never panics; a digest that
//! parses prints as exactly what was parsed, and parses back to itself, also through serde.
#![no_main]

use berth_oci::{Digest, DigestHasher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(mut hasher) = DigestHasher::restore(data) {
        assert_eq!(
            DigestHasher::restore(&hasher.save()).map(|h| h.save()),
            Some(hasher.save())
        );
        hasher.update(data);
        let _ = hasher.finish();
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = s.parse::<Digest>() {
        // Only the canonical form is accepted, so printing gives the input back.
        assert_eq!(digest.to_string(), s);
        assert_eq!(
            digest.hex().len() + digest.algorithm().as_str().len() + 1,
            s.len()
        );
        assert_eq!(digest.to_string().parse::<Digest>().as_ref(), Ok(&digest));
        let json = serde_json::to_string(&digest).expect("a digest serializes");
        assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(digest));
    }
    // As a JSON string, the way descriptors carry it.
    let _ = serde_json::from_slice::<Digest>(data);
});
