//! Brute-force protection for password logins: failures are counted per account and per source
//! address, and too many within a window lock that key out for a while.
//!
//! The limiter is consulted *before* a password is verified ([`LoginLimiter::check`]), so a
//! locked account or address costs no argon2 work, and told the outcome afterwards
//! ([`LoginLimiter::failed`], [`LoginLimiter::succeeded`]).
//!
//! Time is always passed in as an [`Instant`], so the tests drive the clock explicitly.
//!
//! Memory is bounded: accounts and addresses live in two separate tables of at most
//! [`LimitPolicy::max_tracked`] entries each. Keeping them apart means an attacker spraying
//! usernames can evict only account entries, never the entry that is about to lock out their own
//! address. When a table is full, entries that no longer matter are dropped first, then the
//! least recently seen unlocked ones, and locked ones only as a last resort.
//!
//! Per-account lock-out lets anyone lock a known account out for a few minutes; that is the
//! accepted price of stopping password guessing, and the lock-out is short and escalates only
//! while failures keep coming.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// At most this many accounts, and separately this many addresses, are remembered.
    pub max_tracked: usize,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(5 * 60),
            lockout: Duration::from_secs(5 * 60),
            max_lockout: Duration::from_secs(60 * 60),
            max_tracked: 100_000,
        }
    }
}

/// Which key is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    Account,
    Address,
}

/// A refusal: this login may not be attempted before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub until: Instant,
    pub reason: LockReason,
}

impl Locked {
    /// Whole seconds until the lock-out ends, rounded up and at least 1, for `Retry-After`.
    pub fn retry_after_secs(&self, now: Instant) -> u64 {
        let left = self.until.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Longer account names are cut to this many bytes before they are remembered, so a huge
/// username cannot make one entry expensive. Real names are far shorter.
const MAX_ACCOUNT_KEY_BYTES: usize = 256;

/// Failure counts per account and per source address; see the module documentation.
#[derive(Debug)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    accounts: Table<String>,
    addresses: Table<AddressKey>,
}

impl LoginLimiter {
    pub fn new(policy: LimitPolicy) -> LoginLimiter {
        let state = State {
            accounts: Table::new(policy.max_tracked),
            addresses: Table::new(policy.max_tracked),
        };
        LoginLimiter {
            policy,
            state: Mutex::new(state),
        }
    }

    /// Call before verifying a password. Refuses while the account or the address is locked;
    /// records nothing and allocates nothing, so probing cannot fill memory or extend a lock.
    /// When both are locked, the later end is reported.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Locked> {
        let state = self.lock();
        let account_until = state
            .accounts
            .get(account_key(account).as_ref())
            .and_then(|e| e.locked_at(now))
            .map(|until| Locked {
                until,
                reason: LockReason::Account,
            });
        let address_until = state
            .addresses
            .get(&AddressKey::of(address))
            .and_then(|e| e.locked_at(now))
            .map(|until| Locked {
                until,
                reason: LockReason::Address,
            });
        match later(account_until, address_until) {
            Some(locked) => Err(locked),
            None => Ok(()),
        }
    }

    /// Records a failed login. Returns `Some` when this failure starts a lock-out (of the
    /// account, the address, or both: then the later end). The lock-out is already logged here,
    /// with the account and address; the caller only needs to refuse the request.
    ///
    /// A failure for a key that is already locked (a request that passed [`check`](Self::check)
    /// just before another one locked it) is not counted, so it neither extends nor escalates the
    /// lock-out.
    pub fn failed(&self, account: &str, address: IpAddr, now: Instant) -> Option<Locked> {
        let policy = &self.policy;
        let key = account_key(account);
        let group = AddressKey::of(address);
        let mut state = self.lock();
        let account_until = state
            .accounts
            .entry(key.as_ref(), now, policy)
            .fail(now, policy.max_failures_per_account, policy)
            .map(|until| Locked {
                until,
                reason: LockReason::Account,
            });
        let address_until = state
            .addresses
            .entry(&group, now, policy)
            .fail(now, policy.max_failures_per_address, policy)
            .map(|until| Locked {
                until,
                reason: LockReason::Address,
            });
        drop(state);
        if let Some(locked) = account_until {
            tracing::warn!(
                account = %key,
                %address,
                lockout_secs = locked.until.saturating_duration_since(now).as_secs(),
                "too many failed logins for this account; locked out"
            );
        }
        if let Some(locked) = address_until {
            tracing::warn!(
                account = %key,
                %address,
                address_group = %group,
                lockout_secs = locked.until.saturating_duration_since(now).as_secs(),
                "too many failed logins from this address; locked out"
            );
        }
        later(account_until, address_until)
    }

    /// Records a successful login: the account's failures and escalation are forgotten, unless
    /// it is locked (a login that raced a lock-out does not lift it). The address keeps its
    /// count, so one valid account cannot be used to reset an address between guesses at others.
    pub fn succeeded(&self, account: &str, _address: IpAddr, now: Instant) {
        let key = account_key(account);
        let mut state = self.lock();
        let locked = state
            .accounts
            .get(key.as_ref())
            .is_some_and(|e| e.locked_at(now).is_some());
        if !locked {
            state.accounts.remove(key.as_ref());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the tables consistent, so a panic elsewhere does not poison them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let state = self.lock();
        (state.accounts.map.len(), state.addresses.map.len())
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(LimitPolicy::default())
    }
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

/// What is remembered about one account or address.
#[derive(Debug, Clone)]
struct Entry {
    /// Failures in the current window.
    failures: u32,
    /// When the current window started (at its first failure).
    window_start: Instant,
    /// The end of the latest lock-out, if there was one.
    locked_until: Option<Instant>,
    /// How many lock-outs in a row, for the doubling.
    strikes: u32,
    /// The latest failure, for choosing what to evict.
    last_seen: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
            strikes: 0,
            last_seen: now,
        }
    }

    fn locked_at(&self, now: Instant) -> Option<Instant> {
        self.locked_until.filter(|&until| until > now)
    }

    /// Records a failure; returns the end of the lock-out it starts, if it starts one.
    fn fail(&mut self, now: Instant, max_failures: u32, policy: &LimitPolicy) -> Option<Instant> {
        if self.locked_at(now).is_some() {
            return None;
        }
        if self.strikes > 0 && self.forgiven(now, policy) {
            self.strikes = 0;
        }
        if self.failures == 0 || now >= self.window_start + policy.window {
            self.failures = 0;
            self.window_start = now;
        }
        self.last_seen = now;
        self.failures += 1;
        if self.failures < max_failures.max(1) {
            return None;
        }
        self.strikes = self.strikes.saturating_add(1);
        let until = now + lockout_for(self.strikes, policy);
        self.failures = 0;
        self.locked_until = Some(until);
        Some(until)
    }

    /// Whether the key has been quiet for `max_lockout` since its last lock-out ended.
    fn forgiven(&self, now: Instant, policy: &LimitPolicy) -> bool {
        match self.locked_until {
            Some(until) => now >= until + policy.max_lockout,
            None => true,
        }
    }

    /// Whether forgetting this entry changes nothing: not locked, no failures in an open
    /// window, and any escalation forgiven.
    fn expired(&self, now: Instant, policy: &LimitPolicy) -> bool {
        let window_over = self.failures == 0 || now >= self.window_start + policy.window;
        window_over
            && self.locked_at(now).is_none()
            && (self.strikes == 0 || self.forgiven(now, policy))
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

/// A bounded map from keys to entries.
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
    cap: usize,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(cap: usize) -> Table<K> {
        Table {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&Entry>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.get(key)
    }

    fn remove<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.remove(key);
    }

    /// The entry for `key`, created (making room first if the table is full) if absent.
    fn entry<Q>(&mut self, key: &Q, now: Instant, policy: &LimitPolicy) -> &mut Entry
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    {
        if !self.map.contains_key(key) {
            if self.map.len() >= self.cap {
                self.make_room(now, policy);
            }
            self.map.insert(key.to_owned(), Entry::new(now));
        }
        self.map.get_mut(key).expect("present: just inserted")
    }

    /// Drops entries that no longer matter; if that frees nothing, drops the least valuable
    /// tenth (unlocked before locked, then least recently seen). Dropping a tenth at once keeps
    /// the cost amortised O(1) per insertion under spraying instead of a full scan each time.
    fn make_room(&mut self, now: Instant, policy: &LimitPolicy) {
        self.map.retain(|_, e| !e.expired(now, policy));
        if self.map.len() < self.cap {
            return;
        }
        let evict = (self.cap / 10).max(1).min(self.map.len());
        let mut order: Vec<(bool, Instant, K)> = self
            .map
            .iter()
            .map(|(k, e)| (e.locked_at(now).is_some(), e.last_seen, k.clone()))
            .collect();
        order.select_nth_unstable_by(evict - 1, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, key) in order.drain(..evict) {
            self.map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MIN: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter() -> LoginLimiter {
        LoginLimiter::default()
    }

    /// Fails `n` times, one second apart from `start`; returns the last result and the time after.
    fn fail_n(
        l: &LoginLimiter,
        account: &str,
        address: IpAddr,
        n: u32,
        start: Instant,
    ) -> (Option<Locked>, Instant) {
        let mut now = start;
        let mut last = None;
        for _ in 0..n {
            last = l.failed(account, address, now);
            now += Duration::from_secs(1);
        }
        (last, now)
    }

    #[test]
    fn locks_the_account_after_the_allowed_failures() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (last, now) = fail_n(&l, "alice", a, 4, t0);
        assert_eq!(last, None);
        assert_eq!(l.check("alice", a, now), Ok(()));

        let locked = l.failed("alice", a, now).expect("fifth failure locks");
        assert_eq!(locked.reason, LockReason::Account);
        assert_eq!(locked.until, now + 5 * MIN);
        assert_eq!(l.check("alice", a, now), Err(locked));
        // From anywhere, and whatever the case of the name.
        assert_eq!(l.check("ALICE", ip("198.51.100.7"), now), Err(locked));
        // Other accounts are unaffected.
        assert_eq!(l.check("bob", a, now), Ok(()));
    }

    #[test]
    fn unlocks_when_the_lockout_ends() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (locked, _) = fail_n(&l, "alice", a, 5, t0);
        let until = locked.unwrap().until;
        assert!(
            l.check("alice", a, until - Duration::from_millis(1))
                .is_err()
        );
        assert_eq!(l.check("alice", a, until), Ok(()));
        // A fresh count after the lock-out: four more failures do not lock again.
        let (last, _) = fail_n(&l, "alice", a, 4, until);
        assert_eq!(last, None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        fail_n(&l, "alice", a, 4, t0);
        let later = t0 + 6 * MIN;
        let (last, _) = fail_n(&l, "alice", a, 4, later);
        assert_eq!(last, None);
        assert_eq!(l.check("alice", a, later + MIN), Ok(()));
    }

    #[test]
    fn repeated_lockouts_double_up_to_the_cap() {
        let l = limiter();
        let a = ip("192.0.2.1");
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let (locked, after) = fail_n(&l, "alice", a, 5, now);
            let locked = locked.expect("locks");
            let last_failure = after - Duration::from_secs(1);
            lengths.push((locked.until - last_failure).as_secs() / 60);
            now = locked.until;
        }
        assert_eq!(lengths, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn escalation_is_forgiven_after_a_quiet_hour() {
        let l = limiter();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        let (first, _) = fail_n(&l, "alice", a, 5, t0);
        let (second, _) = fail_n(&l, "alice", a, 5, first.unwrap().until);
        let second = second.unwrap().until;
        let quiet = second + 60 * MIN;
        let (third, after) = fail_n(&l, "alice", a, 5, quiet);
        let last_failure = after - Duration::from_secs(1);
        assert_eq!(third.unwrap().until - last_failure, 5 * MIN);
    }

    #[test]
    fn success_resets_the_account_but_not_the_address() {
        let l = LoginLimiter::new(LimitPolicy {
            max_failures_per_address: 6,
            ..LimitPolicy::default()
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (_, now) = fail_n(&l, "alice", a, 4, t0);
        l.succeeded("alice", a, now);
        // The account count starts again: four more do not lock it ...
        let (last, now) = fail_n(&l, "alice", ip("198.51.100.1"), 4, now);
        assert_eq!(last, None);
        assert_eq!(l.check("alice", a, now), Ok(()));
        // ... but the address still remembers its four: two more lock it.
        let (last, now) = fail_n(&l, "bob", a, 2, now);
        assert_eq!(last.unwrap().reason, LockReason::Address);
        assert_eq!(
            l.check("carol", a, now).unwrap_err().reason,
            LockReason::Address
        );
    }

    #[test]
    fn success_does_not_lift_a_lockout() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (locked, now) = fail_n(&l, "alice", a, 5, t0);
        l.succeeded("alice", a, now);
        assert_eq!(l.check("alice", a, now), Err(locked.unwrap()));
    }

    #[test]
    fn per_address_limit_spans_accounts() {
        let l = limiter();
        let mut now = Instant::now();
        let a = ip("203.0.113.9");
        for i in 0..19 {
            assert_eq!(l.failed(&format!("user{i}"), a, now), None);
            now += Duration::from_secs(1);
        }
        let locked = l.failed("user19", a, now).expect("twentieth failure locks");
        assert_eq!(locked.reason, LockReason::Address);
        assert_eq!(locked.until, now + 5 * MIN);
        assert_eq!(l.check("someone-else", a, now), Err(locked));
        // Another address may still try those accounts.
        assert_eq!(l.check("user3", ip("203.0.113.10"), now), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = limiter();
        let mut now = Instant::now();
        for i in 0..20u16 {
            let address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0xffff, i, 1));
            let result = l.failed(&format!("user{i}"), address, now);
            assert_eq!(result.is_some(), i == 19, "failure {i}");
            now += Duration::from_secs(1);
        }
        assert!(l.check("x", ip("2001:db8:1:2::99"), now).is_err());
        // The neighbouring /64 is someone else.
        assert_eq!(l.check("x", ip("2001:db8:1:3::1"), now), Ok(()));
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

    #[test]
    fn check_on_a_locked_key_records_nothing() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (locked, now) = fail_n(&l, "alice", a, 5, t0);
        let locked = locked.unwrap();
        for _ in 0..100 {
            assert_eq!(l.check("alice", a, now), Err(locked));
        }
        // Neither extended nor escalated, and the address count did not move.
        assert_eq!(l.check("alice", a, locked.until), Ok(()));
        let (last, _) = fail_n(&l, "bob", a, 14, locked.until);
        assert_eq!(last, None);
    }

    #[test]
    fn check_of_unknown_keys_allocates_nothing() {
        let l = limiter();
        let now = Instant::now();
        for i in 0..1000u32 {
            let address = IpAddr::V4(Ipv4Addr::from(i));
            assert_eq!(l.check(&format!("user{i}"), address, now), Ok(()));
        }
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn failures_during_a_lockout_do_not_extend_it() {
        let l = limiter();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let (locked, now) = fail_n(&l, "alice", a, 5, t0);
        let locked = locked.unwrap();
        // Requests that raced past check() before the lock.
        assert_eq!(l.failed("alice", a, now), None);
        assert_eq!(l.check("alice", a, locked.until), Ok(()));
        // And the next lock-out is only the second (10 minutes), not a third.
        let (next, after) = fail_n(&l, "alice", a, 5, locked.until);
        let last_failure = after - Duration::from_secs(1);
        assert_eq!(next.unwrap().until - last_failure, 10 * MIN);
    }

    #[test]
    fn memory_stays_bounded_under_username_spraying() {
        let l = LoginLimiter::new(LimitPolicy {
            max_tracked: 1_000,
            ..LimitPolicy::default()
        });
        let now = Instant::now();
        for i in 0..200_000u32 {
            let address = IpAddr::V4(Ipv4Addr::from(i));
            l.failed(&format!("user{i}"), address, now);
            let (accounts, addresses) = l.tracked();
            assert!(accounts <= 1_000 && addresses <= 1_000, "after {i}");
        }
    }

    #[test]
    fn spraying_does_not_evict_a_lockout() {
        let l = LoginLimiter::new(LimitPolicy {
            max_tracked: 100,
            ..LimitPolicy::default()
        });
        let t0 = Instant::now();
        let (locked, now) = fail_n(&l, "alice", ip("192.0.2.1"), 5, t0);
        let locked = locked.unwrap();
        // A botnet: every guess from a new address, at a new username.
        for i in 0..10_000u32 {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(&format!("user{i}"), address, now);
        }
        assert_eq!(l.check("alice", ip("192.0.2.1"), now), Err(locked));
    }

    #[test]
    fn expired_entries_are_pruned_before_live_ones() {
        let l = LoginLimiter::new(LimitPolicy {
            max_tracked: 10,
            ..LimitPolicy::default()
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // alice was locked once; her escalation is still remembered, though she is the least
        // recently seen entry.
        let (first, _) = fail_n(&l, "alice", a, 5, t0);
        assert!(first.is_some());
        for i in 0..9 {
            l.failed(&format!("old{i}"), ip("198.51.100.1"), t0 + 10 * MIN);
        }
        // Those nine are expired by now; new names push them out, not alice.
        let later = t0 + 20 * MIN;
        for i in 0..5 {
            l.failed(&format!("new{i}"), ip("198.51.100.2"), later);
        }
        let (second, after) = fail_n(&l, "alice", a, 5, later);
        let last_failure = after - Duration::from_secs(1);
        assert_eq!(second.unwrap().until - last_failure, 10 * MIN);
    }

    #[test]
    fn retry_after_rounds_up() {
        let now = Instant::now();
        let locked = |d| Locked {
            until: now + d,
            reason: LockReason::Account,
        };
        assert_eq!(locked(Duration::from_millis(1500)).retry_after_secs(now), 2);
        assert_eq!(locked(Duration::from_secs(300)).retry_after_secs(now), 300);
        assert_eq!(locked(Duration::ZERO).retry_after_secs(now), 1);
        assert_eq!(locked(MIN).retry_after_secs(now + 2 * MIN), 1);
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

    #[test]
    fn limiter_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LoginLimiter>();
    }
}
