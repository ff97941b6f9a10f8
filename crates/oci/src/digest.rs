use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256};

/// A content digest `algorithm:encoded` (image-spec `descriptor.md`, "Digests").
///
/// Only the registered algorithms with a fixed lowercase-hex encoding are representable, so the
/// encoded part is always safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected algorithm:hex, e.g. sha256:<64 lowercase hex>")]
    Invalid(String),
    #[error("unsupported digest algorithm {0:?}: berth verifies sha256 digests")]
    Unsupported(String),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex, exactly as long as the algorithm's output.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `data`, computed with SHA-256.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(data)),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || DigestError::Invalid(s.chars().take(200).collect());
        let (algorithm, encoded) = s.split_once(':').ok_or_else(invalid)?;
        // Grammar from image-spec descriptor.md: algorithm-component [.+_-] separators,
        // encoded [a-zA-Z0-9=_-]+.
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let encoded_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !algorithm_ok || !encoded_ok {
            return Err(invalid());
        }
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::Unsupported(other.to_string())),
        };
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// More 64-byte blocks than SHA-256 can count the bits of (its length field is a u64).
const MAX_BLOCKS: u64 = 1 << 55;

/// SHA-256 over a stream, whose state can be saved between requests so that a chunked upload
/// can be continued after a restart (or, later, on another replica).
#[derive(Clone, Default)]
pub struct DigestHasher {
    inner: Sha256,
}

impl DigestHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub fn finish(self) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(self.inner.finalize()),
        }
    }

    /// The state as opaque bytes, to be stored with the upload session.
    pub fn save(&self) -> Vec<u8> {
        self.inner.serialize().to_vec()
    }

    /// Restores a state produced by [`DigestHasher::save`]; `None` if the bytes are not one.
    pub fn restore(state: &[u8]) -> Option<Self> {
        // sha2 accepts any count of blocks hashed (bytes 32..40, little-endian), but SHA-256
        // holds the message length in bits in a u64: no stream reaches 2^55 blocks of 64 bytes,
        // and finishing a state that claims to (a damaged session row) overflowed that length.
        let blocks = u64::from_le_bytes(state.get(32..40)?.try_into().ok()?);
        if blocks >= MAX_BLOCKS {
            return None;
        }
        let state = state.try_into().ok()?;
        Sha256::deserialize(state).ok().map(|inner| Self { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d: Digest = EMPTY.parse().expect("valid");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::sha256_of(b""));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "md5:abcdef".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
    }

    #[test]
    fn hasher_state_survives_save_and_restore() {
        let mut h = DigestHasher::new();
        h.update(b"hello ");
        let saved = h.save();
        let mut restored = DigestHasher::restore(&saved).expect("restores");
        restored.update(b"world");
        assert_eq!(restored.finish(), Digest::sha256_of(b"hello world"));
        assert!(DigestHasher::restore(b"short").is_none());
    }

    /// `restore` reads the block count at bytes 32..40 of sha2's state: a sha2 that moves it
    /// fails here.
    #[test]
    fn saved_state_holds_the_block_count_where_restore_reads_it() {
        let mut h = DigestHasher::new();
        h.update(&[7; 64 * 3 + 5]);
        assert_eq!(h.save()[32..40], 3u64.to_le_bytes());
    }

    /// Found by fuzz/fuzz_targets/digest.rs: a saved state claiming more blocks than SHA-256
    /// can count restored, and finishing it overflowed the message length (a panic in debug
    /// builds, a wrong digest in release).
    #[test]
    fn restore_refuses_a_block_count_no_stream_reaches() {
        let crash = hex::decode(
            "227cffffffffff9494949494949494949494949494949484ffffff0000000000000000663931666433\
             3839373939393939393939393939393939393939390000000000000000000000000000000000000000\
             000000000000000000000000000000000000000000",
        )
        .expect("hex");
        assert!(DigestHasher::restore(&crash).is_none());

        let mut state = DigestHasher::new().save();
        state[32..40].copy_from_slice(&MAX_BLOCKS.to_le_bytes());
        assert!(DigestHasher::restore(&state).is_none());
        state[32..40].copy_from_slice(&(MAX_BLOCKS - 1).to_le_bytes());
        let largest = DigestHasher::restore(&state).expect("the largest count restores");
        let _ = largest.finish();
    }
}
