//! Password and robot-secret hashing: argon2id with the crate's default parameters (OWASP's
//! 19 MiB, 2 passes), stored as PHC strings so parameters can change without a migration.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::{Error, Result};

/// Longest password accepted: hashing cost must not grow with what a client sends.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::Invalid(format!(
            "passwords are at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches `stored` (a PHC string). A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    verify_password_in(password, stored, &mut Vec::new())
}

/// [`verify_password`], computing in `memory`: grown to the hash's memory cost (19 MiB by
/// default) and kept by the caller for the next check. argon2 fills its whole memory for every
/// check; allocating it anew each time left glibc holding several checks' worth per thread
/// (`berth serve` grew by 19 MiB with each of its first ten logins).
///
/// The result is compared in constant time (`password_hash::Output`'s `PartialEq` is
/// `subtle::ConstantTimeEq`), as argon2's own verifier does.
pub fn verify_password_in(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut computed = [0u8; Output::MAX_LENGTH];
    let computed = &mut computed[..expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, computed, &mut memory[..blocks])
        .is_ok()
        && Output::new(computed).is_ok_and(|c| c == expected)
}

/// A random secret for a robot account or a generated admin password: 32 characters from a
/// 62-letter alphabet (about 190 bits).
pub fn generate_secret() -> String {
    use argon2::password_hash::rand_core::RngCore as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        // Rejection sampling keeps the letters uniform.
        if (byte[0] as usize) < ALPHABET.len() * 4 {
            out.push(ALPHABET[byte[0] as usize % ALPHABET.len()] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsf", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("", &a));
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }

    #[test]
    fn checks_in_kept_memory_agree_with_fresh_ones() {
        let mut memory = Vec::new();
        let a = hash_password("correct horse").expect("hash");
        assert!(verify_password_in("correct horse", &a, &mut memory));
        let kept = memory.len();
        assert_eq!(kept, Params::DEFAULT_M_COST as usize, "one block per KiB");
        assert!(!verify_password_in("correct horsf", &a, &mut memory));
        assert!(verify_password_in("correct horse", &a, &mut memory));
        assert_eq!(memory.len(), kept, "the memory is reused, not grown");
        // Other parameters and algorithms, as hashes written by other settings would have.
        for (algorithm, version, m, t, p) in [
            (Algorithm::Argon2id, Version::V0x13, 64, 3, 2),
            (Algorithm::Argon2i, Version::V0x10, 32, 2, 1),
            (Algorithm::Argon2d, Version::V0x13, 8, 1, 1),
        ] {
            let params = Params::new(m, t, p, None).expect("params");
            let salt = SaltString::generate(&mut OsRng);
            let h = Argon2::new(algorithm, version, params)
                .hash_password(b"pw", &salt)
                .expect("hash")
                .to_string();
            assert!(verify_password_in("pw", &h, &mut memory), "{h}");
            assert!(!verify_password_in("pv", &h, &mut memory), "{h}");
            assert!(verify_password("pw", &h), "{h}");
        }
        assert!(!verify_password_in(
            "x",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            &mut memory
        ));
        assert!(!verify_password_in(
            "x",
            "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA",
            &mut memory
        ));
    }

    #[test]
    fn secrets_are_random_and_alphanumeric() {
        let a = generate_secret();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, generate_secret());
    }
}
