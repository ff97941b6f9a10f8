//! Brute-force protection for password logins: failures are counted per account and per source
//! address, and too many within a window lock that key out for a while.
//!
//! The limiter is consulted *before* a password is verified ([`LoginLimiter::check`]), so a
//! locked account or address costs no argon2 work, and told the outcome afterwards
//! ([`LoginLimiter::failed`], [`LoginLimiter::succeeded`]).
//!
//! The counts live in the metadata database ([`berth_meta::LoginThrottle`]), so every replica
//! behind a load balancer applies one limit: spreading guesses over the replicas gains nothing,
//! and a restart forgets nothing. Each change of a key is one transaction that holds the key,
//! so concurrent failures all count. Only failures write: a check reads (one primary-key lookup
//! per key), and a success deletes only a record that exists. Quiet keys are pruned by
//! [`LoginLimiter::prune`], which `berth serve` runs with its background jobs, so username
//! spraying grows the table only for as long as the window lasts.
//!
//! Time is always passed in (Unix milliseconds), so the tests drive the clock explicitly.
//!
//! Per-account lock-out lets anyone lock a known account out for a few minutes; that is the
//! accepted price of stopping password guessing, and the lock-out is short and escalates only
//! while failures keep coming.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use berth_meta::{MetaError, MetaStore, ThrottleRecord};

/// How many failures are allowed and what happens after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Failures for one account within [`window`](Self::window) that lock it.
    pub max_failures_per_account: u32,
    /// Failures from one address (IPv6: one /64) within the window that lock it, whatever
    /// accounts they were for.
    pub max_failures_per_address: u32,
    /// Failures are counted in a window that starts at the first failure.
    pub window: Duration,
    /// The first lock-out; each further lock-out of the same key doubles it.
    pub lockout: Duration,
    /// The longest lock-out. A key that stays quiet this long after a lock-out ends is
    /// forgiven: its next lock-out starts again at [`lockout`](Self::lockout).
    pub max_lockout: Duration,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(5 * 60),
            lockout: Duration::from_secs(5 * 60),
            max_lockout: Duration::from_secs(60 * 60),
        }
    }
}

/// Which key is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    Account,
    Address,
}

/// A refusal: this login may not be attempted before `until` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub until: i64,
    pub reason: LockReason,
}

impl Locked {
    /// Whole seconds until the lock-out ends, rounded up and at least 1, for `Retry-After`.
    pub fn retry_after_secs(&self, now: i64) -> u64 {
        let left = u64::try_from(self.until.saturating_sub(now)).unwrap_or(0);
        left.div_ceil(1000).max(1)
    }
}

/// Why a login may not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("locked out")]
    Locked(Locked),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What [`LoginLimiter::check`] found, for [`LoginLimiter::succeeded`]: whether the account has
/// a record a success must clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    account_recorded: bool,
}

/// Longer account names are cut to this many bytes before they are remembered, so a huge
/// username cannot make one record expensive. Real names are far shorter.
const MAX_ACCOUNT_KEY_BYTES: usize = 256;

/// Unix milliseconds now: the clock the limiter's callers pass in.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Failure counts per account and per source address; see the module documentation.
#[derive(Clone)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    meta: Arc<dyn MetaStore>,
}

impl LoginLimiter {
    pub fn new(meta: Arc<dyn MetaStore>, policy: LimitPolicy) -> LoginLimiter {
        LoginLimiter { policy, meta }
    }

    /// Call before verifying a password. Refuses while the account or the address is locked;
    /// records nothing, so probing cannot fill the table or extend a lock. When both are
    /// locked, the later end is reported.
    pub async fn check(
        &self,
        account: &str,
        address: IpAddr,
        now: i64,
    ) -> Result<Checked, LimitError> {
        let account_key = account_record_key(account);
        let keys = [account_key.clone(), address_record_key(address)];
        let mut checked = Checked {
            account_recorded: false,
        };
        let mut locked = None;
        for (key, record) in self.meta.throttle_records(&keys).await? {
            let reason = if key == account_key {
                checked.account_recorded = true;
                LockReason::Account
            } else {
                LockReason::Address
            };
            let until = locked_at(&record, now).map(|until| Locked { until, reason });
            locked = later(locked, until);
        }
        match locked {
            Some(locked) => Err(LimitError::Locked(locked)),
            None => Ok(checked),
        }
    }

    /// Records a failed login. Returns `Some` when this failure starts a lock-out (of the
    /// account, the address, or both: then the later end). The lock-out is already logged here,
    /// with the account and address; the caller only needs to refuse the request.
    ///
    /// A failure for a key that is already locked (a request that passed [`check`](Self::check)
    /// just before another one locked it) is not counted, so it neither extends nor escalates the
    /// lock-out.
    pub async fn failed(
        &self,
        account: &str,
        address: IpAddr,
        now: i64,
    ) -> Result<Option<Locked>, MetaError> {
        let policy = &self.policy;
        let account_until = self
            .fail(
                account_record_key(account),
                now,
                policy.max_failures_per_account,
            )
            .await?
            .map(|until| Locked {
                until,
                reason: LockReason::Account,
            });
        let address_until = self
            .fail(
                address_record_key(address),
                now,
                policy.max_failures_per_address,
            )
            .await?
            .map(|until| Locked {
                until,
                reason: LockReason::Address,
            });
        let key = account_key(account);
        let lockout_secs = |l: Locked| (l.until - now) / 1000;
        if let Some(locked) = account_until {
            tracing::warn!(
                account = %key,
                %address,
                lockout_secs = lockout_secs(locked),
                "too many failed logins for this account; locked out"
            );
        }
        if let Some(locked) = address_until {
            tracing::warn!(
                account = %key,
                %address,
                address_group = %AddressKey::of(address),
                lockout_secs = lockout_secs(locked),
                "too many failed logins from this address; locked out"
            );
        }
        Ok(later(account_until, address_until))
    }

    /// Records a successful login: the account's failures and escalation are forgotten, unless
    /// it is locked (a login that raced a lock-out does not lift it). The address keeps its
    /// count, so one valid account cannot be used to reset an address between guesses at others.
    pub async fn succeeded(
        &self,
        account: &str,
        checked: Checked,
        now: i64,
    ) -> Result<(), MetaError> {
        if !checked.account_recorded {
            return Ok(());
        }
        self.meta
            .update_throttle_record(
                &account_record_key(account),
                Box::new(move |r| r.filter(|r| locked_at(r, now).is_some())),
            )
            .await?;
        Ok(())
    }

    /// Forgets keys whose record no longer changes anything: no failure within the window, not
    /// locked, and any escalation forgiven. Returns how many.
    pub async fn prune(&self, now: i64) -> Result<u64, MetaError> {
        self.meta
            .prune_throttle_records(
                now.saturating_sub(millis(self.policy.window)),
                now.saturating_sub(millis(self.policy.max_lockout)),
            )
            .await
    }

    /// Counts a failure of `key`; returns the end of the lock-out it starts, if it starts one.
    async fn fail(
        &self,
        key: String,
        now: i64,
        max_failures: u32,
    ) -> Result<Option<i64>, MetaError> {
        let policy = self.policy.clone();
        let (before, after) = self
            .meta
            .update_throttle_record(
                &key,
                Box::new(move |r| Some(fail(r, now, max_failures, &policy))),
            )
            .await?;
        let started = after
            .and_then(|a| a.locked_until)
            .filter(|&until| before.and_then(|b| b.locked_until) != Some(until));
        Ok(started)
    }
}

fn locked_at(record: &ThrottleRecord, now: i64) -> Option<i64> {
    record.locked_until.filter(|&until| until > now)
}

/// The record after one more failure at `now`.
fn fail(
    record: Option<ThrottleRecord>,
    now: i64,
    max_failures: u32,
    policy: &LimitPolicy,
) -> ThrottleRecord {
    let mut r = record.unwrap_or(ThrottleRecord {
        window_start: now,
        last_seen: now,
        ..ThrottleRecord::default()
    });
    if locked_at(&r, now).is_some() {
        return r;
    }
    // Quiet for `max_lockout` since the last lock-out ended: forgiven.
    if r.strikes > 0
        && r.locked_until
            .is_none_or(|until| now >= until.saturating_add(millis(policy.max_lockout)))
    {
        r.strikes = 0;
    }
    if r.failures == 0 || now >= r.window_start.saturating_add(millis(policy.window)) {
        r.failures = 0;
        r.window_start = now;
    }
    r.last_seen = now;
    r.failures += 1;
    if r.failures < max_failures.max(1) {
        return r;
    }
    r.strikes = r.strikes.saturating_add(1);
    r.locked_until = Some(now.saturating_add(millis(lockout_for(r.strikes, policy))));
    r.failures = 0;
    r
}

/// Account names are compared case-insensitively and cut to a bounded length: merging names
/// can only make the limit stricter, never let a guesser go around it with `Admin`/`ADMIN`.
fn account_key(account: &str) -> std::borrow::Cow<'_, str> {
    let mut end = account.len().min(MAX_ACCOUNT_KEY_BYTES);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &account[..end];
    if cut.chars().any(char::is_uppercase) {
        std::borrow::Cow::Owned(cut.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(cut)
    }
}

fn account_record_key(account: &str) -> String {
    format!("account:{}", account_key(account))
}

fn address_record_key(address: IpAddr) -> String {
    format!("address:{}", AddressKey::of(address))
}

fn later(a: Option<Locked>, b: Option<Locked>) -> Option<Locked> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.until > a.until { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The unit the per-address limit counts: an IPv4 address, or an IPv6 /64 (a single host
/// usually controls a whole /64, so counting single IPv6 addresses would limit nothing).
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 clients)
/// count as the IPv4 address; otherwise every IPv4 client would share one /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey(IpAddr);

impl AddressKey {
    fn of(address: IpAddr) -> AddressKey {
        match address.to_canonical() {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// `lockout * 2^(strikes-1)`, capped at `max_lockout` (and never below `lockout`).
fn lockout_for(strikes: u32, policy: &LimitPolicy) -> Duration {
    let doublings = strikes.saturating_sub(1).min(31);
    let cap = policy.max_lockout.max(policy.lockout);
    policy
        .lockout
        .checked_mul(1u32 << doublings)
        .map_or(cap, |d| d.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SEC: i64 = 1000;
    const MIN: i64 = 60 * SEC;
    const T0: i64 = 1_700_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A limiter on a fresh SQLite database (the directory lives as long as the limiter).
    async fn limiter_with(policy: LimitPolicy) -> (LoginLimiter, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta = berth_meta::SqliteMeta::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        (LoginLimiter::new(Arc::new(meta), policy), dir)
    }

    async fn limiter() -> (LoginLimiter, tempfile::TempDir) {
        limiter_with(LimitPolicy::default()).await
    }

    /// The lock-out `check` reports, if any.
    async fn locked(l: &LoginLimiter, account: &str, address: IpAddr, now: i64) -> Option<Locked> {
        match l.check(account, address, now).await {
            Ok(_) => None,
            Err(LimitError::Locked(locked)) => Some(locked),
            Err(e) => panic!("{e}"),
        }
    }

    async fn failed(l: &LoginLimiter, account: &str, address: IpAddr, now: i64) -> Option<Locked> {
        l.failed(account, address, now).await.unwrap()
    }

    /// Fails `n` times, one second apart from `start`; returns the last result and the time after.
    async fn fail_n(
        l: &LoginLimiter,
        account: &str,
        address: IpAddr,
        n: u32,
        start: i64,
    ) -> (Option<Locked>, i64) {
        let mut now = start;
        let mut last = None;
        for _ in 0..n {
            last = failed(l, account, address, now).await;
            now += SEC;
        }
        (last, now)
    }

    async fn succeed(l: &LoginLimiter, account: &str, address: IpAddr, now: i64) {
        let checked = l.check(account, address, now).await.unwrap();
        l.succeeded(account, checked, now).await.unwrap();
    }

    #[tokio::test]
    async fn locks_the_account_after_the_allowed_failures() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (last, now) = fail_n(&l, "alice", a, 4, T0).await;
        assert_eq!(last, None);
        assert_eq!(locked(&l, "alice", a, now).await, None);

        let lock = failed(&l, "alice", a, now)
            .await
            .expect("fifth failure locks");
        assert_eq!(lock.reason, LockReason::Account);
        assert_eq!(lock.until, now + 5 * MIN);
        assert_eq!(locked(&l, "alice", a, now).await, Some(lock));
        // From anywhere, and whatever the case of the name.
        assert_eq!(
            locked(&l, "ALICE", ip("198.51.100.7"), now).await,
            Some(lock)
        );
        // Other accounts are unaffected.
        assert_eq!(locked(&l, "bob", a, now).await, None);
    }

    #[tokio::test]
    async fn replicas_share_counts_and_lockouts() {
        let (one, dir) = limiter().await;
        let meta = berth_meta::SqliteMeta::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let two = LoginLimiter::new(Arc::new(meta), LimitPolicy::default());
        let a = ip("192.0.2.1");
        // Failures alternate between the replicas: the fifth locks, wherever it lands.
        let mut now = T0;
        for i in 0..4 {
            let replica = if i % 2 == 0 { &one } else { &two };
            assert_eq!(failed(replica, "alice", a, now).await, None);
            now += SEC;
        }
        let lock = failed(&two, "alice", a, now).await.expect("locks");
        assert_eq!(locked(&one, "alice", a, now).await, Some(lock));
    }

    #[tokio::test]
    async fn unlocks_when_the_lockout_ends() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (lock, _) = fail_n(&l, "alice", a, 5, T0).await;
        let until = lock.unwrap().until;
        assert!(locked(&l, "alice", a, until - 1).await.is_some());
        assert_eq!(locked(&l, "alice", a, until).await, None);
        // A fresh count after the lock-out: four more failures do not lock again.
        let (last, _) = fail_n(&l, "alice", a, 4, until).await;
        assert_eq!(last, None);
    }

    #[tokio::test]
    async fn failures_outside_the_window_do_not_add_up() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        fail_n(&l, "alice", a, 4, T0).await;
        let later = T0 + 6 * MIN;
        let (last, _) = fail_n(&l, "alice", a, 4, later).await;
        assert_eq!(last, None);
        assert_eq!(locked(&l, "alice", a, later + MIN).await, None);
    }

    #[tokio::test]
    async fn repeated_lockouts_double_up_to_the_cap() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let mut now = T0;
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let (lock, after) = fail_n(&l, "alice", a, 5, now).await;
            let lock = lock.expect("locks");
            let last_failure = after - SEC;
            lengths.push((lock.until - last_failure) / MIN);
            now = lock.until;
        }
        assert_eq!(lengths, [5, 10, 20, 40, 60, 60]);
    }

    #[tokio::test]
    async fn escalation_is_forgiven_after_a_quiet_hour() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (first, _) = fail_n(&l, "alice", a, 5, T0).await;
        let (second, _) = fail_n(&l, "alice", a, 5, first.unwrap().until).await;
        let quiet = second.unwrap().until + 60 * MIN;
        let (third, after) = fail_n(&l, "alice", a, 5, quiet).await;
        assert_eq!(third.unwrap().until - (after - SEC), 5 * MIN);
    }

    #[tokio::test]
    async fn success_resets_the_account_but_not_the_address() {
        let (l, _dir) = limiter_with(LimitPolicy {
            max_failures_per_address: 6,
            ..LimitPolicy::default()
        })
        .await;
        let a = ip("192.0.2.1");
        let (_, now) = fail_n(&l, "alice", a, 4, T0).await;
        succeed(&l, "alice", a, now).await;
        // The account count starts again: four more do not lock it ...
        let (last, now) = fail_n(&l, "alice", ip("198.51.100.1"), 4, now).await;
        assert_eq!(last, None);
        assert_eq!(locked(&l, "alice", a, now).await, None);
        // ... but the address still remembers its four: two more lock it.
        let (last, now) = fail_n(&l, "bob", a, 2, now).await;
        assert_eq!(last.unwrap().reason, LockReason::Address);
        assert_eq!(
            locked(&l, "carol", a, now).await.unwrap().reason,
            LockReason::Address
        );
    }

    #[tokio::test]
    async fn success_does_not_lift_a_lockout() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (lock, now) = fail_n(&l, "alice", a, 5, T0).await;
        // A login that passed its check just before the lock-out started.
        let checked = Checked {
            account_recorded: true,
        };
        l.succeeded("alice", checked, now).await.unwrap();
        assert_eq!(locked(&l, "alice", a, now).await, lock);
    }

    #[tokio::test]
    async fn per_address_limit_spans_accounts() {
        let (l, _dir) = limiter().await;
        let mut now = T0;
        let a = ip("203.0.113.9");
        for i in 0..19 {
            assert_eq!(failed(&l, &format!("user{i}"), a, now).await, None);
            now += SEC;
        }
        let lock = failed(&l, "user19", a, now)
            .await
            .expect("twentieth failure locks");
        assert_eq!(lock.reason, LockReason::Address);
        assert_eq!(lock.until, now + 5 * MIN);
        assert_eq!(locked(&l, "someone-else", a, now).await, Some(lock));
        // Another address may still try those accounts.
        assert_eq!(locked(&l, "user3", ip("203.0.113.10"), now).await, None);
    }

    #[tokio::test]
    async fn ipv6_counts_per_64() {
        let (l, _dir) = limiter().await;
        let mut now = T0;
        for i in 0..20u16 {
            let address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0xffff, i, 1));
            let result = failed(&l, &format!("user{i}"), address, now).await;
            assert_eq!(result.is_some(), i == 19, "failure {i}");
            now += SEC;
        }
        assert!(locked(&l, "x", ip("2001:db8:1:2::99"), now).await.is_some());
        // The neighbouring /64 is someone else.
        assert_eq!(locked(&l, "x", ip("2001:db8:1:3::1"), now).await, None);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        assert_eq!(
            AddressKey::of(ip("::ffff:192.0.2.1")),
            AddressKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_ne!(
            AddressKey::of(ip("::ffff:192.0.2.1")),
            AddressKey::of(ip("::ffff:192.0.2.2"))
        );
    }

    #[tokio::test]
    async fn check_on_a_locked_key_records_nothing() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (lock, now) = fail_n(&l, "alice", a, 5, T0).await;
        let lock = lock.unwrap();
        for _ in 0..100 {
            assert_eq!(locked(&l, "alice", a, now).await, Some(lock));
        }
        // Neither extended nor escalated, and the address count did not move.
        assert_eq!(locked(&l, "alice", a, lock.until).await, None);
        let (last, _) = fail_n(&l, "bob", a, 14, lock.until).await;
        assert_eq!(last, None);
    }

    #[tokio::test]
    async fn checks_and_successes_of_unknown_keys_store_nothing() {
        let (l, _dir) = limiter().await;
        for i in 0..100u32 {
            let address = IpAddr::V4(Ipv4Addr::from(i));
            succeed(&l, &format!("user{i}"), address, T0).await;
        }
        let keys: Vec<String> = (0..100u32)
            .flat_map(|i| {
                [
                    account_record_key(&format!("user{i}")),
                    address_record_key(IpAddr::V4(Ipv4Addr::from(i))),
                ]
            })
            .collect();
        assert!(l.meta.throttle_records(&keys).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn failures_during_a_lockout_do_not_extend_it() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        let (lock, now) = fail_n(&l, "alice", a, 5, T0).await;
        let lock = lock.unwrap();
        // Requests that raced past check() before the lock.
        assert_eq!(failed(&l, "alice", a, now).await, None);
        assert_eq!(locked(&l, "alice", a, lock.until).await, None);
        // And the next lock-out is only the second (10 minutes), not a third.
        let (next, after) = fail_n(&l, "alice", a, 5, lock.until).await;
        assert_eq!(next.unwrap().until - (after - SEC), 10 * MIN);
    }

    #[tokio::test]
    async fn quiet_keys_are_pruned_and_escalation_is_kept_until_forgiven() {
        let (l, _dir) = limiter().await;
        let a = ip("192.0.2.1");
        // alice was locked once; a sprayed name failed once.
        let (first, _) = fail_n(&l, "alice", a, 5, T0).await;
        let until = first.unwrap().until;
        failed(&l, "sprayed", ip("198.51.100.1"), T0).await;
        // Past the window the sprayed name and the addresses go; alice's strike stays, so
        // her next lock-out is the second.
        assert_eq!(l.prune(T0 + 10 * MIN).await.unwrap(), 3);
        let (second, after) = fail_n(&l, "alice", a, 5, until).await;
        assert_eq!(second.unwrap().until - (after - SEC), 10 * MIN);
        // An hour after her last lock-out ended, she is forgotten too.
        let quiet = second.unwrap().until + 60 * MIN + 1;
        assert_eq!(l.prune(quiet).await.unwrap(), 2);
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = T0;
        let lock = |d| Locked {
            until: now + d,
            reason: LockReason::Account,
        };
        assert_eq!(lock(1500).retry_after_secs(now), 2);
        assert_eq!(lock(300 * SEC).retry_after_secs(now), 300);
        assert_eq!(lock(0).retry_after_secs(now), 1);
        assert_eq!(lock(MIN).retry_after_secs(now + 2 * MIN), 1);
    }

    #[test]
    fn long_and_mixed_case_names_share_a_key() {
        let long = "a".repeat(10_000);
        assert_eq!(account_key(&long).len(), MAX_ACCOUNT_KEY_BYTES);
        assert_eq!(account_key("Alice"), account_key("alice"));
        // Cutting never splits a character.
        let wide = "é".repeat(200);
        assert!(account_key(&wide).len() <= MAX_ACCOUNT_KEY_BYTES);
    }
}
