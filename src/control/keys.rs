//! Stream keys and ids. Keys carry 128 random bits and are stored only as a
//! SHA-256 hash: a fast hash is enough because the input is not guessable,
//! and it keeps the per-publish lookup a single indexed query.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Visible prefix, so a leaked key is recognisable in logs and secret scanners.
pub const STREAM_KEY_PREFIX: &str = "live_";

pub fn new_stream_key() -> String {
    format!("{STREAM_KEY_PREFIX}{}", random_hex(16))
}

pub fn new_stream_id() -> String {
    format!("st{}", random_hex(8))
}

pub fn hash_stream_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What may be logged of a key: the prefix and four characters.
pub fn redact_stream_key(key: &str) -> String {
    let shown: String = key.chars().take(STREAM_KEY_PREFIX.len() + 4).collect();
    format!("{shown}…")
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_unique_and_128_bit() {
        let a = new_stream_key();
        let b = new_stream_key();
        assert!(a.starts_with(STREAM_KEY_PREFIX));
        assert_eq!(a.len(), STREAM_KEY_PREFIX.len() + 32);
        assert_ne!(a, b);
        assert_ne!(hash_stream_key(&a), hash_stream_key(&b));
        assert_eq!(hash_stream_key(&a), hash_stream_key(&a.clone()));
        assert!(!redact_stream_key(&a).contains(&a[STREAM_KEY_PREFIX.len() + 4..]));
    }
}
