//! Acknowledgement accounting for bytes received from the peer.
//!
//! The RTMP sequence number is the total byte count modulo 2^32. Some
//! encoders stall once a server's counter overflows at 4 GiB (SRS #598,
//! #730), so the count is kept in a u64 and only truncated on the wire.

/// Decides when an Acknowledgement is due and what sequence number it carries.
#[derive(Debug, Clone)]
pub(crate) struct AckCounter {
    window: u64,
    total_received: u64,
    acknowledged: u64,
}

impl AckCounter {
    /// `window` of 0 is treated as 1 so that a hostile peer cannot make us
    /// skip acknowledgements or divide by zero.
    pub(crate) fn new(window: u32) -> Self {
        Self {
            window: u64::from(window.max(1)),
            total_received: 0,
            acknowledged: 0,
        }
    }

    /// The peer announced (Window Acknowledgement Size) how often it wants acks.
    pub(crate) fn set_window(&mut self, window: u32) {
        self.window = u64::from(window.max(1));
    }

    /// Counts `bytes` more received bytes; returns the sequence number to
    /// acknowledge when a window boundary has been crossed.
    pub(crate) fn on_received(&mut self, bytes: usize) -> Option<u32> {
        self.total_received = self.total_received.saturating_add(bytes as u64);
        if self.total_received - self.acknowledged >= self.window {
            self.acknowledged = self.total_received;
            // Truncation is the protocol's wrap-around, not a loss.
            Some(self.total_received as u32)
        } else {
            None
        }
    }

    pub(crate) fn total_received(&self) -> u64 {
        self.total_received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_once_per_window_with_total_count() {
        let mut counter = AckCounter::new(1000);
        assert_eq!(counter.on_received(999), None);
        assert_eq!(counter.on_received(1), Some(1000));
        assert_eq!(counter.on_received(500), None);
        assert_eq!(counter.on_received(700), Some(2200));
        assert_eq!(counter.total_received(), 2200);
    }

    #[test]
    fn sequence_number_wraps_past_four_gib() {
        let window = 2_500_000u32;
        let mut counter = AckCounter::new(window);
        let mut sent = Vec::new();
        // Feed 4 GiB + 10 MB in 1 MB reads and collect every ack.
        let chunk = 1_000_000usize;
        let total: u64 = (1u64 << 32) + 10_000_000;
        let mut fed = 0u64;
        while fed < total {
            if let Some(seq) = counter.on_received(chunk) {
                sent.push((fed + chunk as u64, seq));
            }
            fed += chunk as u64;
        }
        let last_before_wrap = sent
            .iter()
            .rev()
            .find(|(real, _)| *real < (1u64 << 32))
            .expect("acks before wrap");
        let first_after_wrap = sent
            .iter()
            .find(|(real, _)| *real >= (1u64 << 32))
            .expect("acks after wrap");
        assert_eq!(u64::from(last_before_wrap.1), last_before_wrap.0);
        assert_eq!(u64::from(first_after_wrap.1), first_after_wrap.0 - (1u64 << 32));
        assert!(first_after_wrap.1 < last_before_wrap.1, "sequence wrapped");
        // Every window produced exactly one ack, none were lost at the wrap.
        for pair in sent.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= u64::from(window));
            assert!(pair[1].0 - pair[0].0 < u64::from(window) + chunk as u64);
        }
    }

    #[test]
    fn zero_window_does_not_panic_and_acks_every_read() {
        let mut counter = AckCounter::new(0);
        assert_eq!(counter.on_received(1), Some(1));
        counter.set_window(0);
        assert_eq!(counter.on_received(2), Some(3));
    }
}
