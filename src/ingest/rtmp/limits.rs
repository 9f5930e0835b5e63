//! Connection caps for the RTMP listener: a global one and one per source
//! address, counted by RAII slots so no path can leak a count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Where connections are counted together. IPv6 is counted per /64: one
/// host usually holds a whole /64, so per-address counting would not limit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<Source, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapReached {
    Total(usize),
    PerAddress(usize),
}

/// The caps and the live counts, shared by the listener and its slots.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCaps {
    max_total: usize,
    max_per_source: usize,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionCaps {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            counts: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, held for the connection's
    /// life, or the cap that is full.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, CapReached> {
        let source = Source::of(ip);
        let mut counts = self.counts.lock();
        if counts.total >= self.max_total {
            return Err(CapReached::Total(self.max_total));
        }
        let from_source = counts.per_source.entry(source).or_default();
        if *from_source >= self.max_per_source {
            return Err(CapReached::PerAddress(self.max_per_source));
        }
        *from_source += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            counts: self.counts.clone(),
            source,
        })
    }

    #[cfg(test)]
    fn counted(&self) -> (usize, usize) {
        let counts = self.counts.lock();
        (counts.total, counts.per_source.len())
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counts: Arc<Mutex<Counts>>,
    source: Source,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn per_address_and_total_caps_and_slots_free_on_drop() {
        let caps = ConnectionCaps::new(3, 2);
        let a1 = caps.try_acquire(ip("192.0.2.1")).expect("first");
        let a2 = caps
            .try_acquire(ip("::ffff:192.0.2.1"))
            .expect("second, same address mapped");
        assert_eq!(caps.try_acquire(ip("192.0.2.1")).err(), Some(CapReached::PerAddress(2)));
        let b1 = caps.try_acquire(ip("192.0.2.2")).expect("other address");
        assert_eq!(caps.try_acquire(ip("192.0.2.3")).err(), Some(CapReached::Total(3)));
        drop(a1);
        let a3 = caps.try_acquire(ip("192.0.2.1")).expect("freed slot");
        assert_eq!(caps.counted(), (3, 2));
        drop((a2, a3, b1));
        assert_eq!(caps.counted(), (0, 0));
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let caps = ConnectionCaps::new(100, 1);
        let _a = caps.try_acquire(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            caps.try_acquire(ip("2001:db8:1:2:ffff::9")).err(),
            Some(CapReached::PerAddress(1))
        );
        let _b = caps.try_acquire(ip("2001:db8:1:3::1")).expect("other /64");
    }
}
