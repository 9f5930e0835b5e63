//! Signed playback URLs: JWTs with `sub` = stream id.
//!
//! Two kinds of key sign them. The server's own HS256 secret lives in the
//! data dir, so the CLI and the running server sign and verify alike; its
//! tokens carry no `kid` and are good for any stream. An app's playback keys
//! (a server-held HS256 secret, or the app's RS256/ES256 public key, so that
//! the app's backend signs without calling us) are named by the token's `kid`
//! and are good only for that app's streams.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::{Mutex, RwLock};

#[doc(hidden)]
pub mod fuzz;
mod ring;
#[cfg(test)]
mod tests;

use crate::control::{ControlStore, StoreError};
use ring::KeyRing;
use serde::{Deserialize, Serialize};

const SECRET_FILE: &str = "playback-signing.key";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("playback signing key {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("playback signing key {path} is not 64 hex characters")]
    KeyFormat { path: String },
    #[error("signing a playback token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Why a token was refused. Delivery turns these into 401/403 bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("playback token missing")]
    Missing,
    #[error("playback token malformed")]
    Malformed,
    #[error("playback token signature invalid")]
    BadSignature,
    #[error("playback token expired")]
    Expired,
    #[error("playback token not valid yet")]
    NotYetValid,
    #[error("playback token is for another stream")]
    WrongStream,
    #[error("playback token names an unknown key")]
    UnknownKey,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlaybackClaims {
    /// Stream id.
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Optional viewer / session id chosen by whoever minted the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl PlaybackClaims {
    /// Valid from now for `ttl`.
    pub fn starting_now(stream_id: &str, ttl: Duration, sid: Option<String>) -> Self {
        let now = unix_now();
        Self {
            sub: stream_id.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            nbf: None,
            sid,
        }
    }
}

#[derive(Clone)]
pub struct PlaybackTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: every playlist, key and part request is verified, and a
    /// `Validation` allocates its claim and algorithm sets.
    validation: Arc<Validation>,
    leeway: u64,
    verified: Arc<VerifiedTokens>,
    ring: Arc<RwLock<KeyRing>>,
    /// Which app each stream served here belongs to, as told at publish
    /// time: a token under an app's key is good only for that app's streams.
    stream_apps: Arc<RwLock<HashMap<String, String>>>,
}

/// Tokens whose signature and claims already checked out, by their exact
/// text. A player presents the same token on every reload (several a second
/// at the live edge), and the signature check and JSON parsing were the
/// largest part of a playlist request after the render. A hit still checks
/// the time claims and the stream on every request; only the HMAC and the
/// parsing are skipped, which for the same bytes and the same secret give
/// the same answer. Only valid tokens are kept, so the set holds the tokens
/// of recent viewers; it is emptied when full rather than tracking age.
#[derive(Default)]
struct VerifiedTokens {
    tokens: Mutex<HashMap<Box<str>, Arc<Verified>>>,
}

/// A token that checked out, and the app whose key signed it (`None`: the
/// server's own key).
struct Verified {
    claims: PlaybackClaims,
    app_id: Option<String>,
}

const VERIFIED_TOKENS_MAX: usize = 16_384;

impl std::fmt::Debug for PlaybackTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackTokens").finish_non_exhaustive()
    }
}

impl PlaybackTokens {
    /// Loads the secret from `data_dir`, creating it (mode 0600) on first use.
    /// Creation is exclusive, so a CLI and a server starting together agree.
    pub fn load_or_create(data_dir: &Path, leeway: Duration) -> Result<Self, TokenError> {
        let path = data_dir.join(SECRET_FILE);
        let path_str = path.display().to_string();
        let key_err = |source| TokenError::KeyFile {
            path: path_str.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(key_err)?;
        let secret = super::keys::read_or_create_key_file(&path)
            .map_err(key_err)?
            .ok_or(TokenError::KeyFormat { path: path_str.clone() })?;
        Ok(Self::from_secret(&secret, leeway))
    }

    pub fn from_secret(secret: &[u8], leeway: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: Arc::new(validation),
            leeway: leeway.as_secs(),
            verified: Arc::default(),
            ring: Arc::default(),
            stream_apps: Arc::default(),
        }
    }

    pub fn mint(&self, stream_id: &str, ttl: Duration, sid: Option<String>) -> Result<String, TokenError> {
        self.mint_claims(&PlaybackClaims::starting_now(stream_id, ttl, sid))
    }

    pub fn mint_claims(&self, claims: &PlaybackClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(TokenError::Sign)
    }

    /// Mints a token for a stream of `app_id`: signed with the app's newest
    /// HS256 playback key (its `kid` in the header) when it has one, else
    /// with the server's own key.
    pub fn mint_for_app(
        &self,
        app_id: &str,
        stream_id: &str,
        ttl: Duration,
        sid: Option<String>,
    ) -> Result<String, TokenError> {
        let claims = PlaybackClaims::starting_now(stream_id, ttl, sid);
        let ring = self.ring.read();
        match ring.minting.get(app_id) {
            Some((kid, key)) => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(kid.clone());
                jsonwebtoken::encode(&header, &claims, key).map_err(TokenError::Sign)
            }
            None => self.mint_claims(&claims),
        }
    }

    /// Re-reads the apps' playback keys from the store; call after adding or
    /// deleting one. Tokens signed with a deleted key stop working at once.
    pub async fn reload(&self, store: &dyn ControlStore) -> Result<(), StoreError> {
        self.install(store.verification_keys().await?);
        Ok(())
    }

    fn install(&self, mut keys: Vec<crate::control::model::VerificationKey>) {
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        let ring = KeyRing::build(&keys, &self.validation);
        let changed = {
            let old = self.ring.read();
            old.keys.len() != ring.keys.len()
                || ring.keys.keys().any(|kid| !old.keys.contains_key(kid))
                || ring
                    .minting
                    .iter()
                    .any(|(app, (kid, _))| old.minting.get(app).map(|(k, _)| k) != Some(kid))
        };
        *self.ring.write() = ring;
        if changed {
            // A remembered token may have been signed by a key that is gone.
            self.verified.tokens.lock().clear();
        }
    }

    /// Records which app a stream belongs to; called when a publish is
    /// accepted, before anything of the stream can be served.
    pub fn bind_stream(&self, stream_id: &str, app_id: &str) {
        let known = self.stream_apps.read().get(stream_id).map(|a| a == app_id);
        if known != Some(true) {
            self.stream_apps.write().insert(stream_id.to_owned(), app_id.to_owned());
        }
    }

    /// The app a stream was bound to when its publish was accepted.
    pub fn app_of(&self, stream_id: &str) -> Option<String> {
        self.stream_apps.read().get(stream_id).cloned()
    }

    /// Forgets a stream that is no longer served.
    pub fn unbind_stream(&self, stream_id: &str) {
        self.stream_apps.write().remove(stream_id);
    }

    /// Checks a token for `stream_id`. `None` is a missing token.
    pub fn verify(&self, token: Option<&str>, stream_id: &str) -> Result<PlaybackClaims, TokenRejection> {
        self.verified(token, stream_id).map(|v| v.claims.clone())
    }

    /// [`Self::verify`] without copying the claims out: what delivery calls
    /// on every request.
    pub fn check(&self, token: Option<&str>, stream_id: &str) -> Result<(), TokenRejection> {
        self.verified(token, stream_id).map(drop)
    }

    fn verified(&self, token: Option<&str>, stream_id: &str) -> Result<Arc<Verified>, TokenRejection> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenRejection::Missing)?;
        let known = self.verified.tokens.lock().get(token).cloned();
        let verified = match known {
            Some(verified) => {
                // The same comparisons jsonwebtoken makes.
                let now = unix_now();
                let claims = &verified.claims;
                if claims.exp < now.saturating_sub(self.leeway) {
                    return Err(TokenRejection::Expired);
                }
                if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
                    return Err(TokenRejection::NotYetValid);
                }
                verified
            }
            None => {
                let verified = Arc::new(self.decode(token)?);
                let mut tokens = self.verified.tokens.lock();
                if tokens.len() >= VERIFIED_TOKENS_MAX {
                    tokens.clear();
                }
                tokens.insert(token.into(), verified.clone());
                verified
            }
        };
        if verified.claims.sub != stream_id {
            return Err(TokenRejection::WrongStream);
        }
        if let Some(app_id) = &verified.app_id {
            if self.stream_apps.read().get(stream_id) != Some(app_id) {
                return Err(TokenRejection::WrongStream);
            }
        }
        Ok(verified)
    }

    /// Checks signature and claims; the `kid` picks the key and, with it, the
    /// only algorithm accepted.
    fn decode(&self, token: &str) -> Result<Verified, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        let ring;
        let (decoding, validation, app_id) = match &header.kid {
            None => (&self.decoding, &*self.validation, None),
            Some(kid) => {
                ring = self.ring.read();
                let key = ring.keys.get(kid).ok_or(TokenRejection::UnknownKey)?;
                (&key.decoding, &key.validation, Some(key.app_id.clone()))
            }
        };
        let data = jsonwebtoken::decode::<PlaybackClaims>(token, decoding, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenRejection::BadSignature,
            _ => TokenRejection::Malformed,
        })?;
        Ok(Verified {
            claims: data.claims,
            app_id,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
