//! Failed-login counts and lock-outs, per account and per source address, kept in the
//! database so that every replica sees the same ones: a guesser spreading attempts over the
//! replicas behind a load balancer meets one limit, not one per replica. The rules (windows,
//! lock-outs, escalation) are the server's; this stores their state.

use async_trait::async_trait;

use crate::Result;

/// What is remembered about one key. Times are Unix milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleRecord {
    /// Failures in the current window.
    pub failures: u32,
    /// When the current window started (at its first failure).
    pub window_start: i64,
    /// The end of the latest lock-out, if there was one.
    pub locked_until: Option<i64>,
    /// Lock-outs in a row, for the escalation.
    pub strikes: u32,
    /// The latest failure.
    pub last_seen: i64,
}

/// A change to one key's record: given the record (`None`: none stored), the record to store
/// (`None`: delete it).
pub type ThrottleUpdate = Box<dyn FnOnce(Option<ThrottleRecord>) -> Option<ThrottleRecord> + Send>;

#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// The stored records among `keys`.
    async fn throttle_records(&self, keys: &[String]) -> Result<Vec<(String, ThrottleRecord)>>;
    /// Applies `update` to the key's record in one transaction that holds the row, so that
    /// concurrent failures on any replica all count. Returns the record before and after.
    async fn update_throttle_record(
        &self,
        key: &str,
        update: ThrottleUpdate,
    ) -> Result<(Option<ThrottleRecord>, Option<ThrottleRecord>)>;
    /// Deletes records whose last failure is before `seen_before` and that are not locked
    /// since `unlocked_before`; returns how many.
    async fn prune_throttle_records(&self, seen_before: i64, unlocked_before: i64) -> Result<u64>;
}
