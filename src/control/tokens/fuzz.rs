//! Entry point for the fuzz harnesses (`fuzz/`, `make fuzz`) and for the
//! replay of their saved corpus (`tests/fuzz_corpus.rs`). It takes any bytes
//! and must never panic. Not an API; hidden from the docs.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::PlaybackTokens;
use crate::control::model::{KeyAlgorithm, VerificationKey};

/// The server's own HS256 secret in the fixed ring.
pub const SERVER_SECRET: [u8; 32] = [0x5e; 32];
/// App `app-a`'s HS256 playback key, named by `kid` `hs-1`.
pub const APP_SECRET: [u8; 32] = [0xa5; 32];
/// The stream tokens are checked for; it belongs to `app-a`.
pub const STREAM: &str = "st-fuzz";

/// Public keys only (the fuzzer cannot sign with them): `es-1` and `rs-1`
/// belong to `app-b`, so a token under them is for another app's stream,
/// and a token naming them with another `alg` is an algorithm confusion.
const ES256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEept8zonVMJ0ABGedjpgR74IqZ0XD
JHyViil5vJvnhXAZOdkfc24iwTT/f5bFeSzgY8UqUvJzJp6Rgeot+wlyHA==
-----END PUBLIC KEY-----
";
const RS256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3fzH3MBkZsta0h6HFiEO
8oo1XImpoBU2BDpeZxap3L/mP9gu9dYugZvX6BpfhRpO4/NoZ7wimA5SZtIZevmv
1oh+6a9D6BSuA/sesI4nWAIxMn0ZitzmJVsNfZFDciol+Nc0KeY80nibCFVRkD90
4O1qA8t143qO2LX0UfKos51aWAqxD+JJMDPSiuBtjcKdowJz5svXlvJfMQSN8wY6
hYd4sjOGXeMvN8bZkRq4s0AhmHU25AcfhMO5zey2bZpZ2zRirqOAAsTjnc+V9Pa5
LIYuYn/hx9h2VwvPxTyWHTMQzSDwrx0Nho885ZkaGnufp948JCDjiEsPzfiFH3Pg
9wIDAQAB
-----END PUBLIC KEY-----
";

/// A token checked against a fixed key ring. `data[0] % 4` says how the
/// rest becomes a token, so that the fuzzer gets past base64 and the
/// signature to the JSON and the claim checks:
/// - 0: the rest is the token text;
/// - 1: `header \n claims \n signature`, each base64url-encoded;
/// - 2: `header \n claims`, signed with the server's secret;
/// - 3: `header \n claims`, signed with app-a's `hs-1` secret.
pub fn token(data: &[u8]) {
    token_against(&fixed_ring(), data);
}

/// [`token`] against a ring built once by the caller ([`fixed_ring`]): the
/// harness keeps one, as the server does, because parsing the PEM keys
/// costs more than checking a token. Its cache of verified tokens then
/// carries over from input to input, as it does between requests.
pub fn token_against(tokens: &PlaybackTokens, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let mut parts = rest.splitn(3, |b| *b == b'\n');
            let mut next = || URL_SAFE_NO_PAD.encode(parts.next().unwrap_or_default());
            let (header, claims, signature) = (next(), next(), next());
            format!("{header}.{claims}.{signature}")
        }
        2 => signed(rest, &SERVER_SECRET),
        _ => signed(rest, &APP_SECRET),
    };
    // Twice: the second check is answered from the verified-token cache.
    for _ in 0..2 {
        let _ = tokens.verify(Some(&text), STREAM);
    }
    let _ = tokens.check(Some(&text), "another-stream");
}

/// The server key, app-a's HS256 key and app-b's public keys, with
/// [`STREAM`] bound to app-a.
pub fn fixed_ring() -> PlaybackTokens {
    let tokens = PlaybackTokens::from_secret(&SERVER_SECRET, Duration::from_secs(5));
    let key = |kid: &str, app_id: &str, algorithm, material: &[u8]| VerificationKey {
        kid: kid.to_owned(),
        app_id: app_id.to_owned(),
        algorithm,
        material: material.to_vec(),
        created_at: 0,
    };
    tokens.install(vec![
        key("hs-1", "app-a", KeyAlgorithm::HS256, &APP_SECRET),
        key("es-1", "app-b", KeyAlgorithm::ES256, ES256_PUBLIC.as_bytes()),
        key("rs-1", "app-b", KeyAlgorithm::RS256, RS256_PUBLIC.as_bytes()),
    ]);
    tokens.bind_stream(STREAM, "app-a");
    tokens
}

/// `header \n claims`, base64url-encoded and signed with HS256 under `secret`.
fn signed(rest: &[u8], secret: &[u8]) -> String {
    let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return input;
    };
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mode(mode: u8, body: &str) -> Vec<u8> {
        let mut input = vec![mode];
        input.extend_from_slice(body.as_bytes());
        input
    }

    #[test]
    fn the_signing_modes_make_tokens_the_ring_accepts() {
        let far = "9999999999";
        let claims = format!(r#"{{"sub":"{STREAM}","exp":{far},"iat":0}}"#);
        let server = signed(format!("{{\"alg\":\"HS256\"}}\n{claims}").as_bytes(), &SERVER_SECRET);
        let app = signed(
            format!("{{\"alg\":\"HS256\",\"kid\":\"hs-1\"}}\n{claims}").as_bytes(),
            &APP_SECRET,
        );
        let ring = fixed_ring();
        assert!(ring.verify(Some(&server), STREAM).is_ok());
        assert!(ring.verify(Some(&app), STREAM).is_ok());
        let confused = signed(
            format!("{{\"alg\":\"HS256\",\"kid\":\"es-1\"}}\n{claims}").as_bytes(),
            &APP_SECRET,
        );
        assert!(ring.verify(Some(&confused), STREAM).is_err());
    }

    #[test]
    fn garbage_and_empty_inputs_return() {
        for input in [
            vec![],
            vec![0],
            with_mode(1, "\n\n"),
            with_mode(2, "{}"),
            with_mode(3, "{\"kid\":\"x\"}\n{}"),
        ] {
            token(&input);
        }
    }
}
