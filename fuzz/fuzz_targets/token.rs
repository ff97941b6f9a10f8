//! Token verification (`TokenVerifier::verify`) against a real key: arbitrary strings as
//! tokens, edits of a token that key signed, and well-formed tokens with one part replaced
//! (a header or claims of the input's choosing, or the input as the signature). Never panics,
//! and accepts nothing but a token the key signed, whose claims come back unchanged.
//!
//! ECDSA signatures are malleable: with `(r, s)` valid, so is `(r, n - s)`, and `verify`
//! accepts that twin of a signed token (the same header and claims; nothing keys on a token's
//! text). The check below allows exactly that twin besides the signed tokens.
//!
//! Input: the first byte picks the mode, the rest is its material. The key and the token the
//! edits start from are fixed (`token_key.pk8`, [`SIGNED`]), so every crash reproduces.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_registry::token::{Claims, ResourceAccess, SigningKey, TokenIssuer, TokenVerifier};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "berth-token";
const SERVICE: &str = "registry.example.com";
const ISSUED_AT: u64 = 1_800_000_000;
/// Signed with `token_key.pk8` at [`ISSUED_AT`] for five minutes: `alice`, push and pull on
/// `team/web`.
const SIGNED: &str = include_str!("token_signed.txt");

struct Setup {
    verifier: TokenVerifier,
    /// Every token signed here, with its claims.
    signed: Vec<(String, Claims)>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let key = || SigningKey::from_pkcs8(include_bytes!("token_key.pk8")).expect("the fuzz key");
    let issuer = TokenIssuer::new(key(), ISSUER, SERVICE, Duration::from_secs(300));
    let verifier = TokenVerifier::new(ISSUER, SERVICE, &key());
    let fixed = SIGNED.trim().to_string();
    let fixed_claims = verifier
        .verify(&fixed, now())
        .expect("the fixed token verifies");
    let fresh = issuer
        .issue(
            "alice",
            vec![ResourceAccess::repository("team/web", &["pull", "push"])],
            UNIX_EPOCH + Duration::from_secs(ISSUED_AT),
        )
        .expect("signing");
    let fresh_claims = verifier
        .verify(&fresh.token, now())
        .expect("a fresh token verifies");
    let mut signed = vec![(fixed, fixed_claims), (fresh.token, fresh_claims)];
    let twins: Vec<(String, Claims)> = signed
        .iter()
        .map(|(token, claims)| (twin(token), claims.clone()))
        .collect();
    for (token, claims) in &twins {
        assert_eq!(
            verifier.verify(token, now()).as_ref(),
            Ok(claims),
            "the twin verifies"
        );
    }
    signed.extend(twins);
    Setup { verifier, signed }
});

/// The order of P-256, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The token with its signature `(r, s)` replaced by `(r, n - s)`.
fn twin(token: &str) -> String {
    let (signed_part, signature) = token.rsplit_once('.').expect("a compact token");
    let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    let s = &mut signature[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
    format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ISSUED_AT + 10)
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(s) => s.to_string(),
            Err(_) => return,
        },
        1 => match edit(&setup.signed[0].0, rest) {
            Some(t) => t,
            None => return,
        },
        _ => replace_part(&setup.signed[0].0, rest),
    };
    // Also at other times: expiry and not-before are checked after the signature.
    for at in [
        now(),
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
    ] {
        if let Ok(claims) = setup.verifier.verify(&token, at) {
            let signed = setup.signed.iter().find(|(t, _)| *t == token);
            let Some((_, signed_claims)) = signed else {
                panic!("accepted a token that was never signed: {token:?}");
            };
            assert_eq!(&claims, signed_claims);
        }
    }
});

/// The signed token with edits applied: each is 4 bytes, a position (u16), an operation
/// (replace, insert, delete, truncate) and a byte.
fn edit(signed: &str, edits: &[u8]) -> Option<String> {
    let mut bytes = signed.as_bytes().to_vec();
    for e in edits.chunks_exact(4) {
        let at = usize::from(u16::from_le_bytes([e[0], e[1]]));
        let at = at % (bytes.len() + 1);
        match e[2] % 4 {
            0 if at < bytes.len() => bytes[at] = e[3],
            1 => bytes.insert(at, e[3]),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            _ => {}
        }
    }
    String::from_utf8(bytes).ok()
}

/// The signed token with its header (selector 0), claims (1) or signature (2) replaced by the
/// input, base64url-encoded; selector 3 gives the input as the signature of a header and
/// claims given in base64 (as `<header>.<claims>` before a NUL).
fn replace_part(signed: &str, input: &[u8]) -> String {
    let parts: Vec<&str> = signed.split('.').collect();
    let Some((&selector, material)) = input.split_first() else {
        return signed.to_string();
    };
    let encoded = URL_SAFE_NO_PAD.encode(material);
    match selector % 4 {
        0 => format!("{encoded}.{}.{}", parts[1], parts[2]),
        1 => format!("{}.{encoded}.{}", parts[0], parts[2]),
        2 => format!("{}.{}.{encoded}", parts[0], parts[1]),
        _ => {
            let (head, signature) = match material.iter().position(|&b| b == 0) {
                Some(nul) => (&material[..nul], &material[nul + 1..]),
                None => (material, &[][..]),
            };
            format!(
                "{}.{}",
                String::from_utf8_lossy(head),
                URL_SAFE_NO_PAD.encode(signature)
            )
        }
    }
}
