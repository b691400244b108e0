//! Time, passed in: every wait of the GitHub client (token expiry, rate-limit
//! waits, backoff, pacing) goes through a [`Clock`], so tests drive time with
//! a [`ManualClock`] instead of sleeping for minutes.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed, sendable future (the clock is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The wall clock and the sleeper of the GitHub client.
pub trait Clock: Send + Sync + Debug {
    /// Wall-clock time (tokens expire and JWTs are stamped in wall time).
    fn now(&self) -> SystemTime;
    /// Waits `duration`; a test clock records the wait and returns at once.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock: `SystemTime::now` and `tokio::time::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock for tests: time moves only when a test calls [`ManualClock::advance`]
/// or when the client sleeps (a sleep advances time by its duration and is
/// recorded, so a test can assert the waits it asked for).
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
}

#[derive(Debug)]
struct ManualState {
    now: SystemTime,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            state: Mutex::new(ManualState {
                now: start,
                sleeps: Vec::new(),
            }),
        })
    }

    /// A clock standing at the real current time.
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(SystemTime::now())
    }

    fn state(&self) -> MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves time forward without recording a sleep.
    pub fn advance(&self, by: Duration) {
        self.state().now += by;
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state().sleeps.clone()
    }

    /// Forgets the recorded sleeps.
    pub fn clear_sleeps(&self) {
        self.state().sleeps.clear();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.state().now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        {
            let mut state = self.state();
            state.sleeps.push(duration);
            state.now += duration;
        }
        Box::pin(tokio::task::yield_now())
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Adapts a [`Clock`] to governor, so rate-limiter waits follow the same
/// (possibly manual) time as everything else.
#[derive(Debug, Clone)]
pub(crate) struct GovernorClock(pub(crate) Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_advances_time_and_is_recorded() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        clock.sleep(Duration::from_secs(60)).await;
        clock.advance(Duration::from_secs(5));
        assert_eq!(unix_secs(clock.now()), 165);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(60)]);
    }
}
