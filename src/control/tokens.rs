//! Signed playback URLs: HS256 JWTs with `sub` = stream id. The secret lives in
//! the data dir, so the CLI and the running server sign and verify alike.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
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

#[derive(Clone)]
pub struct PlaybackTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Built once: every playlist, key and part request is verified, and a
    /// `Validation` allocates its claim and algorithm sets.
    validation: Arc<Validation>,
    leeway: u64,
    verified: Arc<VerifiedTokens>,
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
    tokens: Mutex<HashMap<Box<str>, Arc<PlaybackClaims>>>,
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
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(super::keys::random_hex(32).as_bytes())
                    .map_err(key_err)?;
                file.sync_all().map_err(key_err)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(key_err(e)),
        }
        let text = std::fs::read_to_string(&path).map_err(key_err)?;
        let secret = hex::decode(text.trim())
            .ok()
            .filter(|s| s.len() == 32)
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
        }
    }

    pub fn mint(&self, stream_id: &str, ttl: Duration, sid: Option<String>) -> Result<String, TokenError> {
        let now = unix_now();
        let claims = PlaybackClaims {
            sub: stream_id.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            nbf: None,
            sid,
        };
        self.mint_claims(&claims)
    }

    pub fn mint_claims(&self, claims: &PlaybackClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(TokenError::Sign)
    }

    /// Checks a token for `stream_id`. `None` is a missing token.
    pub fn verify(&self, token: Option<&str>, stream_id: &str) -> Result<PlaybackClaims, TokenRejection> {
        self.verified(token, stream_id).map(|claims| (*claims).clone())
    }

    /// [`Self::verify`] without copying the claims out: what delivery calls
    /// on every request.
    pub fn check(&self, token: Option<&str>, stream_id: &str) -> Result<(), TokenRejection> {
        self.verified(token, stream_id).map(drop)
    }

    fn verified(&self, token: Option<&str>, stream_id: &str) -> Result<Arc<PlaybackClaims>, TokenRejection> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenRejection::Missing)?;
        let known = self.verified.tokens.lock().get(token).cloned();
        let claims = match known {
            Some(claims) => {
                // The same comparisons jsonwebtoken makes.
                let now = unix_now();
                if claims.exp < now.saturating_sub(self.leeway) {
                    return Err(TokenRejection::Expired);
                }
                if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
                    return Err(TokenRejection::NotYetValid);
                }
                claims
            }
            None => {
                let data = jsonwebtoken::decode::<PlaybackClaims>(token, &self.decoding, &self.validation).map_err(
                    |e| match e.kind() {
                        ErrorKind::ExpiredSignature => TokenRejection::Expired,
                        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
                        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                        _ => TokenRejection::Malformed,
                    },
                )?;
                let claims = Arc::new(data.claims);
                let mut tokens = self.verified.tokens.lock();
                if tokens.len() >= VERIFIED_TOKENS_MAX {
                    tokens.clear();
                }
                tokens.insert(token.into(), claims.clone());
                claims
            }
        };
        if claims.sub != stream_id {
            return Err(TokenRejection::WrongStream);
        }
        Ok(claims)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PlaybackTokens {
        PlaybackTokens::from_secret(&[7u8; 32], Duration::from_secs(0))
    }

    #[test]
    fn accepts_its_own_token_for_the_right_stream_only() {
        let t = tokens();
        let jwt = t
            .mint("st1", Duration::from_secs(60), Some("viewer-1".into()))
            .expect("mint");
        let claims = t.verify(Some(&jwt), "st1").expect("valid");
        assert_eq!(claims.sub, "st1");
        assert_eq!(claims.sid.as_deref(), Some("viewer-1"));
        assert_eq!(t.verify(Some(&jwt), "st2"), Err(TokenRejection::WrongStream));
    }

    #[test]
    fn refuses_missing_malformed_tampered_expired_and_early_tokens() {
        let t = tokens();
        assert_eq!(t.verify(None, "s"), Err(TokenRejection::Missing));
        assert_eq!(t.verify(Some(""), "s"), Err(TokenRejection::Missing));
        assert_eq!(t.verify(Some("not.a.jwt"), "s"), Err(TokenRejection::Malformed));

        let jwt = t.mint("s", Duration::from_secs(60), None).expect("mint");
        let other = PlaybackTokens::from_secret(&[8u8; 32], Duration::ZERO);
        assert_eq!(other.verify(Some(&jwt), "s"), Err(TokenRejection::BadSignature));
        let (head, sig) = jwt.rsplit_once('.').expect("three parts");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &sig[1..]);
        assert_eq!(t.verify(Some(&tampered), "s"), Err(TokenRejection::BadSignature));

        let now = unix_now();
        let expired = PlaybackClaims {
            sub: "s".into(),
            iat: now - 100,
            exp: now - 50,
            nbf: None,
            sid: None,
        };
        assert_eq!(
            t.verify(Some(&t.mint_claims(&expired).expect("mint")), "s"),
            Err(TokenRejection::Expired)
        );
        let early = PlaybackClaims {
            sub: "s".into(),
            iat: now,
            exp: now + 500,
            nbf: Some(now + 200),
            sid: None,
        };
        assert_eq!(
            t.verify(Some(&t.mint_claims(&early).expect("mint")), "s"),
            Err(TokenRejection::NotYetValid)
        );
    }

    #[test]
    fn a_known_token_is_still_checked_for_time_and_stream_on_every_use() {
        let t = tokens();
        let jwt = t.mint("s", Duration::from_secs(60), None).expect("mint");
        assert_eq!(t.check(Some(&jwt), "s"), Ok(()));
        assert_eq!(t.verified.tokens.lock().len(), 1, "kept after the first check");
        assert_eq!(t.check(Some(&jwt), "s"), Ok(()));
        assert_eq!(t.check(Some(&jwt), "other"), Err(TokenRejection::WrongStream));
        assert_eq!(t.verify(Some(&jwt), "s").expect("valid").sub, "s");

        // A flipped signature is different text: verified from scratch, refused, not kept.
        let (head, sig) = jwt.rsplit_once('.').expect("three parts");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &sig[1..]);
        assert_eq!(t.check(Some(&tampered), "s"), Err(TokenRejection::BadSignature));
        assert_eq!(t.verified.tokens.lock().len(), 1);

        // Time passes for a token checked earlier.
        let now = unix_now();
        let claims = |exp, nbf| {
            Arc::new(PlaybackClaims {
                sub: "s".into(),
                iat: now - 100,
                exp,
                nbf,
                sid: None,
            })
        };
        let mut known = t.verified.tokens.lock();
        known.insert("expired".into(), claims(now - 1, None));
        known.insert("early".into(), claims(now + 500, Some(now + 200)));
        drop(known);
        assert_eq!(t.check(Some("expired"), "s"), Err(TokenRejection::Expired));
        assert_eq!(t.check(Some("early"), "s"), Err(TokenRejection::NotYetValid));
        let lenient = PlaybackTokens::from_secret(&[7u8; 32], Duration::from_secs(5));
        lenient
            .verified
            .tokens
            .lock()
            .insert("expired".into(), claims(now - 1, None));
        assert_eq!(lenient.check(Some("expired"), "s"), Ok(()), "within the leeway");
    }

    #[test]
    fn secret_file_is_created_once_and_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = PlaybackTokens::load_or_create(dir.path(), Duration::ZERO).expect("create");
        let b = PlaybackTokens::load_or_create(dir.path(), Duration::ZERO).expect("load");
        let jwt = a.mint("s", Duration::from_secs(60), None).expect("mint");
        assert!(b.verify(Some(&jwt), "s").is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret readable by others");
        }
    }
}
