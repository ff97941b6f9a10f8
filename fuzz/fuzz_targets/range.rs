//! The `Range` header of a blob GET (`RangeRequest::parse`), then resolved against blob sizes
//! as `open_blob` does. Never panics; a resolved range lies within the blob, and what parses
//! is a single `bytes=` range.
#![no_main]

use berth_registry::RangeRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are a blob size, the rest the header value.
    let (size, header) = match data.split_first_chunk::<8>() {
        Some((size, header)) => (u64::from_le_bytes(*size), header),
        None => (0, data),
    };
    let Ok(s) = std::str::from_utf8(header) else {
        return;
    };
    let Some(request) = RangeRequest::parse(s) else {
        return;
    };
    assert!(s.trim().starts_with("bytes="), "{s:?}");
    assert!(!s.contains(','), "{s:?}: several ranges");
    for size in [
        size,
        0,
        1,
        u64::MAX,
        size.saturating_add(1),
        size.saturating_sub(1),
    ] {
        if let Ok(range) = request.resolve(size) {
            assert!(range.start <= range.end, "{s:?} on {size}: {range:?}");
            assert!(range.end < size, "{s:?} on {size}: {range:?}");
            assert_eq!(range.len(), range.end - range.start + 1);
        }
    }
});
