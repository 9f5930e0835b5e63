//! Counting what clients hold at once (connections, held requests), in
//! total and per client address, with a guard that gives the slot back.
//! Every listener counts the same way (HTTP, RTMP, WHIP, delivery's held
//! requests), so it is one leaf module that imports nothing of ours.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;

/// The address a per-client limit counts under. An IPv6 client usually has
/// a whole /64 to pick from, so the /64 is one client; an IPv4-mapped
/// address (a dual-stack listener) is its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Which limit refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerClient,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// At most `max_total` slots, and `max_per_client` per [`client_key`].
/// Clones share the counts.
#[derive(Clone)]
pub struct ClientSlots {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_client: usize,
}

impl ClientSlots {
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            counts: Arc::default(),
            max_total,
            max_per_client,
        }
    }

    /// A slot for `ip`, held until the [`Slot`] is dropped.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = client_key(ip);
        let mut counts = self.counts.lock();
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let held = counts.per_client.entry(key).or_insert(0);
        if *held >= self.max_per_client {
            return Err(Refusal::PerClient);
        }
        *held += 1;
        counts.total += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            key,
        })
    }

    pub fn total(&self) -> usize {
        self.counts.lock().total
    }

    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.counts.lock().per_client.get(&client_key(ip)).copied().unwrap_or(0)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_client(&self) -> usize {
        self.max_per_client
    }
}

/// One held slot; dropping it gives it back.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        // A client with nothing held is forgotten, so the map is only as
        // large as the set of clients holding something.
        if let Some(held) = counts.per_client.get_mut(&self.key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_client.remove(&self.key);
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
    fn per_client_and_total_caps_and_slots_come_back_on_drop() {
        let slots = ClientSlots::new(3, 2);
        let a1 = slots.try_acquire(ip("10.0.0.1")).expect("first");
        let _a2 = slots.try_acquire(ip("10.0.0.1")).expect("second");
        assert_eq!(slots.try_acquire(ip("10.0.0.1")).err(), Some(Refusal::PerClient));
        let _b1 = slots.try_acquire(ip("10.0.0.2")).expect("another client");
        assert_eq!(slots.try_acquire(ip("10.0.0.3")).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(slots.total(), 2);
        assert_eq!(slots.held_by(ip("10.0.0.1")), 1);
        let _a3 = slots.try_acquire(ip("10.0.0.1")).expect("given back");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let slots = ClientSlots::new(100, 1);
        let _a = slots.try_acquire(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            slots.try_acquire(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::PerClient),
            "same /64"
        );
        let _b = slots.try_acquire(ip("2001:db8:1:3::1")).expect("another /64");
        let _c = slots.try_acquire(ip("192.0.2.7")).expect("v4");
        assert_eq!(
            slots.try_acquire(ip("::ffff:192.0.2.7")).err(),
            Some(Refusal::PerClient)
        );
    }

    #[test]
    fn clients_holding_nothing_are_forgotten() {
        let slots = ClientSlots::new(10, 10);
        for i in 0..5 {
            drop(slots.try_acquire(ip(&format!("10.0.0.{i}"))).expect("slot"));
        }
        assert!(slots.counts.lock().per_client.is_empty());
        assert_eq!(slots.total(), 0);
    }
}
