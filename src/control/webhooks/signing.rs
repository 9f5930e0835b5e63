//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! over "id.timestamp.body">`, keyed by the base64 part of a `whsec_` secret.
//! While a secret is being rotated both sign, space-separated, so a receiver
//! holding either one accepts the message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// 192 bits, as the reference implementations generate.
const SECRET_BYTES: usize = 24;

pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a `whsec_` secret; `None` if it is not one.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(PREFIX)?)
        .ok()
        .filter(|k| !k.is_empty())
}

pub fn is_valid_secret(secret: &str) -> bool {
    key_of(secret).is_some_and(|k| (24..=64).contains(&k.len()))
}

/// The `webhook-signature` value for `secrets` (current first). A secret
/// that is not a `whsec_` one is skipped: the store only holds ours.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| key_of(secret))
        .filter_map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_bad_ones_are_skipped() {
        let (a, b) = (new_secret(), new_secret());
        assert!(is_valid_secret(&a) && a != b);
        let both = signature_header(&[&a, &b], "evt", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature_header(&[&a], "evt", 1, b"{}"));
        assert_eq!(parts[1], signature_header(&[&b], "evt", 1, b"{}"));
        assert_eq!(signature_header(&["nope", "whsec_!!"], "evt", 1, b"{}"), "");
        assert!(!is_valid_secret("whsec_c2hvcnQ="));
    }
}
