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
}
