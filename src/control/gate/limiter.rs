//! Throttles stream-key guessing per client address. Only failures a
//! guesser causes count (unknown or disabled key, a deny from the external
//! control plane). Once an address is over its quota, its attempts are
//! refused without asking the store or the callback, except for a key that
//! was accepted from that address recently: an encoder that was streaming
//! keeps reconnecting (OBS retries every few seconds from the same address)
//! even while a neighbour behind the same NAT sprays keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Addresses (and recent good keys) tracked at most before old ones are pruned.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Failed attempts allowed per address per minute, sustained.
    pub failures_per_minute: u32,
    /// Failed attempts allowed in a burst before the per-minute rate applies.
    pub burst: u32,
    /// How long a key accepted from an address gets through its throttle.
    pub known_good_for: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            failures_per_minute: 10,
            burst: 10,
            known_good_for: Duration::from_secs(3600),
        }
    }
}

pub struct FailureLimiter {
    settings: LimiterSettings,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Until when an address is refused.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// (address, key hash) → when last accepted.
    known_good: Mutex<HashMap<(IpAddr, [u8; 32]), Instant>>,
}

impl std::fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl FailureLimiter {
    pub fn new(settings: LimiterSettings) -> Self {
        let per_minute = NonZeroU32::new(settings.failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            settings,
            failures: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
            known_good: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt from `ip` with `key` may be checked at all.
    pub fn admits(&self, ip: IpAddr, key: &str) -> bool {
        let now = Instant::now();
        let blocked = match self.blocked.lock().get(&ip) {
            Some(until) => *until > now,
            None => false,
        };
        if !blocked {
            return true;
        }
        self.known_good
            .lock()
            .get(&(ip, key_hash(key)))
            .is_some_and(|at| now.duration_since(*at) <= self.settings.known_good_for)
    }

    pub fn record_success(&self, ip: IpAddr, key: &str) {
        let now = Instant::now();
        let mut known = self.known_good.lock();
        if known.len() >= MAX_TRACKED {
            let keep = self.settings.known_good_for;
            known.retain(|_, at| now.duration_since(*at) <= keep);
            if known.len() >= MAX_TRACKED {
                return;
            }
        }
        known.insert((ip, key_hash(key)), now);
    }

    pub fn record_failure(&self, ip: IpAddr) {
        if let Err(not_until) = self.failures.check_key(&ip) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let now = Instant::now();
            let mut blocked = self.blocked.lock();
            if blocked.len() >= MAX_TRACKED {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + wait);
        }
        if self.failures.len() > MAX_TRACKED {
            self.failures.retain_recent();
            self.failures.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32) -> FailureLimiter {
        FailureLimiter::new(LimiterSettings {
            failures_per_minute: 1,
            burst,
            known_good_for: Duration::from_secs(3600),
        })
    }

    #[test]
    fn an_address_is_throttled_after_its_burst_of_failures_only() {
        let l = limiter(3);
        let guesser: IpAddr = "203.0.113.9".parse().expect("ip");
        let other: IpAddr = "203.0.113.10".parse().expect("ip");
        for _ in 0..3 {
            assert!(l.admits(guesser, "guess"));
            l.record_failure(guesser);
        }
        assert!(l.admits(guesser, "guess"), "the burst itself is allowed");
        l.record_failure(guesser);
        assert!(!l.admits(guesser, "guess"), "over the burst");
        assert!(!l.admits(guesser, "another-guess"));
        assert!(l.admits(other, "guess"), "other addresses are not affected");
    }

    #[test]
    fn a_key_accepted_from_the_address_still_gets_through() {
        let l = limiter(1);
        let nat: IpAddr = "198.51.100.1".parse().expect("ip");
        l.record_success(nat, "live_good");
        l.record_failure(nat);
        l.record_failure(nat);
        assert!(!l.admits(nat, "live_guess"));
        assert!(
            l.admits(nat, "live_good"),
            "the encoder that streamed from here reconnects"
        );
        let elsewhere: IpAddr = "198.51.100.2".parse().expect("ip");
        l.record_failure(elsewhere);
        l.record_failure(elsewhere);
        assert!(
            !l.admits(elsewhere, "live_good"),
            "known good only from the address it was used from"
        );
    }

    #[test]
    fn the_block_lifts_when_the_quota_refills() {
        let l = FailureLimiter::new(LimiterSettings {
            failures_per_minute: 600, // one every 100 ms
            burst: 1,
            known_good_for: Duration::from_secs(3600),
        });
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        l.record_failure(ip);
        l.record_failure(ip);
        assert!(!l.admits(ip, "k"));
        std::thread::sleep(Duration::from_millis(150));
        assert!(l.admits(ip, "k"));
    }
}
