//! Handing freed heap back to the operating system.
//!
//! glibc's allocator keeps pages it got for a burst (thousands of viewers'
//! requests and responses in flight at once) after they are freed, for reuse.
//! The process's resident size then follows the highest burst so far, not
//! what is in use: under a steady load it creeps up as ever rarer, slightly
//! larger bursts come along (measured: the live heap flat for 25 minutes
//! while RSS grew 2.8 %; see bench/RESULTS.md, issue 14 "load held"). An
//! operator reading RSS as "what the server uses" would see a leak that is
//! not there, and the machine lends those pages to nothing else.
//!
//! So a thread of its own asks glibc to return free pages every
//! `TRIM_EVERY` (`malloc_trim`, which also releases free pages inside its
//! arenas, not only at their tops). It runs off the Tokio workers: a trim
//! takes each arena's lock in turn for a few milliseconds.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Trims until dropped.
pub struct Trimmer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Trimmer {
    /// Starts the trimming thread (a no-op where the allocator is not glibc's).
    pub fn start() -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("pulse-trim".into()).spawn(move || {
            // Any message, or the sender dropped, ends the loop.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TRIM_EVERY) {
                trim();
            }
        })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Returns free heap pages to the kernel; returns whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes a byte count, touches only the allocator's
    // own state under its own locks, and is safe to call from any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Freed pages come back: resident size drops after a large freed burst.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_freed_burst_is_returned_to_the_kernel() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .expect("a number")
        }
        // Many small blocks (below the mmap threshold, so they live in the
        // arena), touched, then freed except the last one, which pins the
        // arena's top: only a trim releases the pages beneath it.
        let mut blocks: Vec<Vec<u8>> = (0..25_000).map(|i| vec![(i % 255 + 1) as u8; 4000]).collect();
        let pin = blocks.pop();
        let before = rss_kib();
        drop(blocks);
        trim();
        let after = rss_kib();
        drop(pin);
        assert!(
            after + 60_000 < before,
            "RSS {before} KiB with the burst, {after} KiB after freeing and trimming"
        );
    }

    #[test]
    fn the_trimmer_stops_when_dropped() {
        let trimmer = Trimmer::start().expect("thread");
        drop(trimmer);
    }
}
