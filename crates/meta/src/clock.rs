//! The time the registry goes by: rows are dated, grace periods, expiries, retention ages and
//! lock-outs measured with one [`Clock`], passed in. Production uses [`SystemClock`]; a test
//! that needs time to pass sets a [`ManualClock`] forward instead of sleeping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, the unit every stored timestamp is in.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> i64;

    /// Milliseconds since the epoch (login lock-outs count in them).
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }

    /// Resolves once the clock reads `at` or later: the system clock sleeps, a manual clock
    /// moves itself there at once (a test never waits for time to pass).
    fn wait_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    /// The time now as a [`SystemTime`] (what token signing and checking take).
    fn system_time(&self) -> SystemTime {
        let millis = u64::try_from(self.now_millis()).unwrap_or_default();
        UNIX_EPOCH + Duration::from_millis(millis)
    }
}

/// A clock shared by the metadata store and the services above it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }

    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }

    fn system_time(&self) -> SystemTime {
        SystemTime::now()
    }

    fn wait_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let left = at.saturating_mul(1000).saturating_sub(self.now_millis());
        let left = Duration::from_millis(u64::try_from(left).unwrap_or_default());
        Box::pin(tokio::time::sleep(left))
    }
}

/// The system's clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now` (seconds since the epoch).
    pub fn at(now: i64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(now),
        })
    }

    /// A clock standing at the system's time now.
    pub fn starting_now() -> Arc<Self> {
        Self::at(SystemClock.now())
    }

    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Moves the clock forward (whole seconds; a part of a second rounds up).
    pub fn advance(&self, by: Duration) {
        let secs = by.as_secs() + u64::from(by.subsec_nanos() > 0);
        self.now
            .fetch_add(i64::try_from(secs).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn wait_until(&self, at: i64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.now.fetch_max(at, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.now(), 1_000);
        clock.advance(Duration::from_millis(1));
        assert_eq!(clock.now(), 1_001);
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), 1_061);
        assert_eq!(clock.now_millis(), 1_061_000);
        assert_eq!(clock.system_time(), UNIX_EPOCH + Duration::from_secs(1_061));
        clock.set(5);
        assert_eq!(clock.now(), 5);
    }

    #[tokio::test]
    async fn waiting_on_a_manual_clock_moves_it_there() {
        let clock = ManualClock::at(100);
        clock.wait_until(99).await;
        assert_eq!(clock.now(), 100, "never backwards");
        clock.wait_until(102).await;
        assert_eq!(clock.now(), 102);
    }

    #[tokio::test]
    async fn waiting_on_the_system_clock_waits_for_that_second() {
        let next = SystemClock.now() + 1;
        SystemClock.wait_until(next).await;
        assert!(SystemClock.now() >= next);
    }

    #[test]
    fn the_system_clock_is_the_time_now() {
        let now = SystemClock.now();
        assert!(now > 1_700_000_000, "{now}");
        assert!(SystemClock.now() >= now);
    }
}
