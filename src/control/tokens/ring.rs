//! The apps' playback signing keys, held in memory so that checking a token
//! never waits on the store. Rebuilt from the store after every change made
//! through the admin API and periodically, for changes made by the CLI.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

use crate::control::model::{KeyAlgorithm, VerificationKey};

pub(super) struct RingKey {
    pub app_id: String,
    pub decoding: DecodingKey,
    /// Which validation (algorithm) a token under this kid must pass: the
    /// key's own algorithm, never the one the token's header claims.
    pub validation: Validation,
}

#[derive(Default)]
pub(super) struct KeyRing {
    pub keys: HashMap<String, RingKey>,
    /// Per app, the HS256 key used to mint: the newest one.
    pub minting: HashMap<String, (String, EncodingKey)>,
}

impl KeyRing {
    /// Keys whose material does not parse are skipped with a warning: the
    /// store validated them on the way in, so this is corruption, and one bad
    /// row must not take every app's playback down.
    pub fn build(keys: &[VerificationKey], base: &Validation) -> Self {
        let mut ring = Self::default();
        // `keys` come oldest first; later HS256 keys replace earlier ones for minting.
        for key in keys {
            let decoding = match key.algorithm {
                KeyAlgorithm::HS256 => Ok(DecodingKey::from_secret(&key.material)),
                KeyAlgorithm::RS256 => DecodingKey::from_rsa_pem(&key.material),
                KeyAlgorithm::ES256 => DecodingKey::from_ec_pem(&key.material),
            };
            let decoding = match decoding {
                Ok(decoding) => decoding,
                Err(e) => {
                    tracing::warn!(kid = key.kid, app_id = key.app_id, error = %e, "playback key unusable, skipped");
                    continue;
                }
            };
            let mut validation = base.clone();
            validation.algorithms = vec![algorithm(key.algorithm)];
            if key.algorithm == KeyAlgorithm::HS256 {
                ring.minting.insert(
                    key.app_id.clone(),
                    (key.kid.clone(), EncodingKey::from_secret(&key.material)),
                );
            }
            ring.keys.insert(
                key.kid.clone(),
                RingKey {
                    app_id: key.app_id.clone(),
                    decoding,
                    validation,
                },
            );
        }
        ring
    }
}

fn algorithm(alg: KeyAlgorithm) -> Algorithm {
    match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::ES256 => Algorithm::ES256,
    }
}
