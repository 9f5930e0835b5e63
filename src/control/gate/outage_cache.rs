//! Remembers recent allows of the external control plane, to be used only
//! while it cannot answer: an encoder reconnecting through a control-plane
//! blip keeps streaming, while a deny from a working control plane always
//! wins (a revoked key is never let in from the cache).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::Authorization;
use crate::ingest::PublishRequest;

/// Entries kept at most; past it expired ones go, then new ones are not kept.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub(super) struct OutageCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Authorization, Instant)>>,
}

impl OutageCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Keyed by a hash so that keys are not kept in memory in clear.
    fn key(request: &PublishRequest) -> [u8; 32] {
        Sha256::new()
            .chain_update(request.protocol.as_bytes())
            .chain_update([0])
            .chain_update(request.app.as_bytes())
            .chain_update([0])
            .chain_update(request.stream_key.as_bytes())
            .finalize()
            .into()
    }

    pub fn remember(&self, request: &PublishRequest, granted: &Authorization) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| now.duration_since(*at) <= self.ttl);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(Self::key(request), (granted.clone(), now));
    }

    pub fn forget(&self, request: &PublishRequest) {
        if !self.ttl.is_zero() {
            self.entries.lock().remove(&Self::key(request));
        }
    }

    pub fn recall(&self, request: &PublishRequest) -> Option<Authorization> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.entries.lock();
        let key = Self::key(request);
        match entries.get(&key) {
            Some((granted, at)) if at.elapsed() <= self.ttl => Some(granted.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::gate::LadderChoice;

    fn request(key: &str) -> PublishRequest {
        PublishRequest {
            protocol: "rtmp",
            app: "live".into(),
            stream_key: key.into(),
            client_addr: "10.0.0.1:4000".parse().expect("addr"),
            connection_id: 1,
        }
    }

    fn granted() -> Authorization {
        Authorization {
            stream_id: "s".into(),
            app_id: "a".into(),
            ladder: LadderChoice::ServerDefault,
            encrypt: None,
            key_rotation_segments: None,
            record: false,
            storage: Default::default(),
            max_streams: None,
            max_ingest_kbps: None,
        }
    }

    #[test]
    fn off_by_default_and_expires_after_its_ttl() {
        let off = OutageCache::new(Duration::ZERO);
        off.remember(&request("k"), &granted());
        assert_eq!(off.recall(&request("k")), None);

        let cache = OutageCache::new(Duration::from_millis(80));
        cache.remember(&request("k"), &granted());
        assert_eq!(cache.recall(&request("k")), Some(granted()));
        assert_eq!(cache.recall(&request("other")), None);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.recall(&request("k")), None);
    }

    #[test]
    fn a_deny_forgets_the_allow() {
        let cache = OutageCache::new(Duration::from_secs(60));
        cache.remember(&request("k"), &granted());
        cache.forget(&request("k"));
        assert_eq!(cache.recall(&request("k")), None);
    }
}
