//! Password and robot-secret hashing: argon2id with the crate's default parameters (OWASP's
//! 19 MiB, 2 passes), stored as PHC strings so parameters can change without a migration.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
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
    fn secrets_are_random_and_alphanumeric() {
        let a = generate_secret();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, generate_secret());
    }
}
