//! Secrets and ids of the control plane: stream keys, admin tokens, HS256
//! playback secrets and record ids. Stream keys and admin tokens carry at
//! least 128 random bits and are stored only as a SHA-256 hash: a fast hash
//! is enough because the input is not guessable, and it keeps the lookup on
//! every publish or admin request a single indexed query.

mod public_key;
mod secret;
mod stream_ids;

use rand::RngCore;
use sha2::{Digest, Sha256};

pub use public_key::{check_public_key_pem, PublicKeyError};
pub use secret::Secret;
pub use stream_ids::{KeyFileError, StreamIdKey, STREAM_ID_KEY_FILE};

/// Visible prefix, so a leaked key is recognisable in logs and secret scanners.
pub const STREAM_KEY_PREFIX: &str = "live_";
/// Visible prefix of admin API bearer tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "pe_admin_";
/// Characters of an app id's random part that scope its stream keys.
const APP_SCOPE_CHARS: usize = 8;
/// Characters of a secret shown after its structural prefix when redacted.
const SHOWN_SECRET_CHARS: usize = 4;

/// A stream key scoped to its app: `live_<scope>_<32 hex>`, where the scope
/// is the start of the app id's random part, so an operator sees at a glance
/// which tenant a key belongs to. The scope is a label, not an authority: the
/// key is looked up by hash and its stream names the app.
pub fn new_stream_key(app_id: &str) -> String {
    format!("{STREAM_KEY_PREFIX}{}_{}", app_scope(app_id), random_hex(16))
}

/// The start of an app id's random part (after `app_`), alphanumerics only.
fn app_scope(app_id: &str) -> String {
    let random_part = app_id.strip_prefix("app_").unwrap_or(app_id);
    let scope: String = random_part
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(APP_SCOPE_CHARS)
        .collect();
    if scope.is_empty() {
        "app".into()
    } else {
        scope.to_ascii_lowercase()
    }
}

pub fn new_app_id() -> String {
    format!("app_{}", random_hex(8))
}

pub fn new_stream_id() -> String {
    format!("st{}", random_hex(8))
}

pub fn new_playback_kid() -> String {
    format!("pk_{}", random_hex(8))
}

pub fn new_admin_token_id() -> String {
    format!("at_{}", random_hex(8))
}

pub fn new_webhook_id() -> String {
    format!("wh_{}", random_hex(8))
}

pub fn new_audit_id() -> String {
    format!("au_{}", random_hex(8))
}

/// 160 random bits behind a recognisable prefix.
pub fn new_admin_token_secret() -> String {
    format!("{ADMIN_TOKEN_PREFIX}{}", random_hex(20))
}

/// An HS256 playback secret: 32 random bytes as 64 hex characters. The app
/// signs with the hex text itself (its UTF-8 bytes), which is what JWT
/// libraries do with a string secret, so no decoding step can go wrong.
pub fn new_hs256_secret() -> String {
    random_hex(32)
}

/// SHA-256 of a secret (stream key or admin token), hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn hash_stream_key(key: &str) -> String {
    hash_secret(key)
}

/// What may be logged or listed of a stream key: `live_`, the app scope of a
/// well-formed key, and four characters. The key may come from the network
/// (a refused publish), so anything not shaped like ours shows only as many
/// characters as an old unscoped key would.
pub fn redact_stream_key(key: &str) -> String {
    let structural = key
        .strip_prefix(STREAM_KEY_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .filter(|(scope, _)| {
            (1..=APP_SCOPE_CHARS).contains(&scope.len()) && scope.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .map(|(scope, _)| STREAM_KEY_PREFIX.len() + scope.len() + 1)
        .unwrap_or(STREAM_KEY_PREFIX.len());
    redact(key, structural)
}

/// What may be listed of an admin token.
pub fn redact_admin_token(secret: &str) -> String {
    redact(secret, ADMIN_TOKEN_PREFIX.len())
}

fn redact(secret: &str, structural_chars: usize) -> String {
    let shown: String = secret.chars().take(structural_chars + SHOWN_SECRET_CHARS).collect();
    format!("{shown}…")
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The 32-byte secret kept hex-encoded in `path`, created with 32 random
/// bytes (mode 0600) on first use. Creation is exclusive, so two processes
/// starting together (a CLI and the server) agree on one secret. `Ok(None)`:
/// the file holds something else.
pub fn read_or_create_key_file(path: &std::path::Path) -> std::io::Result<Option<[u8; 32]>> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(random_hex(32).as_bytes())?;
            file.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let text = std::fs::read_to_string(path)?;
    let mut key = [0u8; 32];
    Ok(hex::decode_to_slice(text.trim(), &mut key).ok().map(|()| key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_are_scoped_unique_and_128_bit() {
        let a = new_stream_key("app_1f2e3d4c5b6a7980");
        let b = new_stream_key("app_1f2e3d4c5b6a7980");
        assert!(a.starts_with("live_1f2e3d4c_"), "{a}");
        assert_eq!(a.len(), "live_1f2e3d4c_".len() + 32);
        assert_ne!(a, b);
        assert_ne!(hash_stream_key(&a), hash_stream_key(&b));
        assert_eq!(hash_stream_key(&a), hash_stream_key(&a.clone()));
        assert_eq!(hash_stream_key(&a).len(), 64);
    }

    #[test]
    fn the_default_app_and_odd_ids_get_a_readable_scope() {
        assert!(new_stream_key("app_default").starts_with("live_default_"));
        assert!(new_stream_key("app_").starts_with("live_app_"));
        assert!(new_stream_key("app_A-b/c_d!efghij").starts_with("live_abcdefgh_"));
    }

    #[test]
    fn redaction_shows_the_scope_and_four_characters_only() {
        let key = new_stream_key("app_1f2e3d4c5b6a7980");
        let redacted = redact_stream_key(&key);
        assert_eq!(redacted, format!("{}…", &key[.."live_1f2e3d4c_".len() + 4]));
        assert!(!redacted.contains(&key["live_1f2e3d4c_".len() + 4..]));

        // An unscoped key of an old database.
        let old = format!("live_{}", random_hex(16));
        assert_eq!(redact_stream_key(&old), format!("{}…", &old[..9]));
        // Whatever a stranger sends shows no more than an old key would.
        assert_eq!(redact_stream_key("my_secret_value"), "my_secret…");
        assert_eq!(redact_stream_key("live_not-a-scope_secret"), "live_not-…");
        assert_eq!(redact_stream_key(""), "…");
        assert_eq!(redact_stream_key("é"), "é…");
    }

    #[test]
    fn admin_tokens_are_prefixed_160_bit_and_redacted() {
        let t = new_admin_token_secret();
        assert!(t.starts_with(ADMIN_TOKEN_PREFIX));
        assert_eq!(t.len(), ADMIN_TOKEN_PREFIX.len() + 40);
        assert_ne!(t, new_admin_token_secret());
        let redacted = redact_admin_token(&t);
        assert_eq!(redacted, format!("{}…", &t[..ADMIN_TOKEN_PREFIX.len() + 4]));
    }

    #[test]
    fn ids_and_hs256_secrets_have_their_shapes() {
        assert!(new_app_id().starts_with("app_") && new_app_id().len() == 20);
        assert!(new_playback_kid().starts_with("pk_"));
        assert!(new_admin_token_id().starts_with("at_"));
        assert!(new_audit_id().starts_with("au_"));
        let secret = new_hs256_secret();
        assert_eq!(hex::decode(&secret).expect("hex").len(), 32);
    }
}
