//! The `Content-Range` of an upload chunk (`PATCH` / closing `PUT`), as the server reads it:
//! `<start>-<end>` inclusive, to (start, length). Never panics; what it accepts is a non-empty
//! chunk whose end fits in a u64, and the canonical spelling of it parses to the same.
#![no_main]

use berth_registry::parse_content_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Some((start, len)) = parse_content_range(s) else {
        return;
    };
    assert!(len >= 1, "{s:?}: an empty chunk");
    let end = start
        .checked_add(len - 1)
        .unwrap_or_else(|| panic!("{s:?}: the chunk ends past u64::MAX"));
    assert_eq!(
        parse_content_range(&format!("{start}-{end}")),
        Some((start, len))
    );
    assert_eq!(
        parse_content_range(&format!("bytes {start}-{end}")),
        Some((start, len))
    );
});
