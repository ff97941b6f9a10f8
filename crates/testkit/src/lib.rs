//! Throw-away backends for tests, started on 127.0.0.1 and stopped when dropped: a PostgreSQL
//! cluster ([`postgres`]) and a moto S3 server ([`s3`]). Each honours the environment variables
//! that point the tests at servers of their own instead (see the README). And a round-robin
//! TCP balancer ([`balancer`]) to put in front of several replicas sharing them. And test
//! data ([`noise`]).

pub mod balancer;
pub mod postgres;
pub mod s3;

/// `len` deterministic pseudo-random bytes (xorshift from `seed`): they do not compress and
/// have no short period, so a piece stored at the wrong place cannot go unnoticed.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
