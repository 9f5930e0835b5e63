use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{DeliveryError, SessionsExhausted, ViewerReporter};
use crate::control::PlaybackTokens;
use crate::hls::{Packagers, PlaylistRequest, SkipRequest, StreamPackager};
use crate::slots::{ClientSlots, Slot};

/// The query parameters a player may put on a playlist URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistQuery<'a> {
    pub token: Option<Cow<'a, str>>,
    /// The viewer session the master playlist handed out.
    pub session: Option<Cow<'a, str>>,
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: Option<SkipRequest>,
}

impl<'a> PlaylistQuery<'a> {
    /// Parses `token`, `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a raw
    /// query string (`application/x-www-form-urlencoded`, the last of a
    /// repeated name wins); other parameters (cache busters) are ignored.
    /// Every player request goes through here, so nothing is copied unless
    /// a value is actually percent-encoded.
    pub fn parse(query: &'a str) -> Result<Self, DeliveryError> {
        let mut out = Self::default();
        let number = |name: &str, value: &str| -> Result<Option<u64>, DeliveryError> {
            decode(value)
                .parse::<u64>()
                .map(Some)
                .map_err(|_| DeliveryError::BadRequest(format!("{name} must be a non-negative integer")))
        };
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match &*decode(name) {
                "token" => out.token = Some(decode(value)),
                "vs" => out.session = Some(decode(value)),
                "_HLS_msn" => out.msn = number("_HLS_msn", value)?,
                "_HLS_part" => out.part = number("_HLS_part", value)?,
                "_HLS_skip" => {
                    out.skip = match &*decode(value) {
                        "YES" => Some(SkipRequest::Yes),
                        "v2" => Some(SkipRequest::V2),
                        _ => return Err(DeliveryError::BadRequest("_HLS_skip must be YES or v2".into())),
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The `token` parameter of a raw query string, if any.
pub(super) fn token_param(query: &str) -> Option<Cow<'_, str>> {
    query
        .rsplit('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(decode)
}

/// Form-urlencoded value decoding (`+` is a space, `%XX` a byte); borrowed
/// when there is nothing to decode. Invalid escapes stay as they are and
/// invalid UTF-8 is replaced, as `serde_urlencoded` does.
fn decode(value: &str) -> Cow<'_, str> {
    if !value.contains(['%', '+']) {
        return Cow::Borrowed(value);
    }
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Cloned for every request (axum hands each handler its own state), so
/// the parts are behind `Arc`s: a clone is two reference counts, not copies
/// of the signing keys.
#[derive(Clone)]
pub struct PlaybackService {
    packagers: Arc<Packagers>,
    tokens: Arc<PlaybackTokens>,
    viewers: Option<Arc<dyn ViewerReporter>>,
    vod: Option<Arc<dyn super::VodLibrary>>,
    /// Requests that may be held (blocking reloads, preload-hinted parts)
    /// per client address; `None`: no cap.
    held: Option<ClientSlots>,
}

/// What a client over `http.max_blocking_per_ip` is told to wait: about
/// one part target, after which its own held requests have moved on.
const HELD_RETRY_AFTER_SECS: u64 = 1;

impl PlaybackService {
    pub fn new(packagers: Packagers, tokens: PlaybackTokens) -> Self {
        Self {
            packagers: Arc::new(packagers),
            tokens: Arc::new(tokens),
            viewers: None,
            vod: None,
            held: None,
        }
    }

    /// At most `max_per_client` requests held at once per client address
    /// (`http.max_blocking_per_ip`).
    pub fn with_blocking_cap(mut self, max_per_client: usize) -> Self {
        self.held = Some(ClientSlots::new(usize::MAX, max_per_client));
        self
    }

    /// Requests from `client` held now (for the tests).
    #[cfg(test)]
    pub(super) fn held_by(&self, client: IpAddr) -> usize {
        self.held.as_ref().map_or(0, |held| held.held_by(client))
    }

    /// A slot for a request that may be held, kept until the response (or
    /// the client's going away) drops it; 429 when `client` holds its share.
    /// A request without a known client (no listener in front) is not capped.
    pub fn hold_slot(&self, client: Option<IpAddr>) -> Result<Option<Slot>, DeliveryError> {
        let (Some(held), Some(client)) = (&self.held, client) else {
            return Ok(None);
        };
        held.try_acquire(client).map(Some).map_err(|_| DeliveryError::TooMany {
            what: "blocking requests from this address",
            retry_after_secs: HELD_RETRY_AFTER_SECS,
        })
    }

    /// Recordings are served from `vod`.
    pub fn with_vod(mut self, vod: Arc<dyn super::VodLibrary>) -> Self {
        self.vod = Some(vod);
        self
    }

    /// The library, once the token is checked against the recording's stream.
    async fn vod_authorised(
        &self,
        recording: &str,
        token: Option<&str>,
    ) -> Result<&Arc<dyn super::VodLibrary>, DeliveryError> {
        let vod = self.vod.as_ref().ok_or(DeliveryError::NotFound)?;
        let stream_id = vod.recording_stream(recording).await.ok_or(DeliveryError::NotFound)?;
        self.tokens.check(token, &stream_id)?;
        Ok(vod)
    }

    pub async fn vod_master(&self, recording: &str, token: Option<&str>) -> Result<String, DeliveryError> {
        let vod = self.vod_authorised(recording, token).await?;
        vod.master(recording, &token_query(token))
            .await
            .ok_or(DeliveryError::NotFound)
    }

    pub async fn vod_media_playlist(
        &self,
        recording: &str,
        rendition: &str,
        token: Option<&str>,
    ) -> Result<String, DeliveryError> {
        let vod = self.vod_authorised(recording, token).await?;
        vod.media_playlist(recording, rendition, &token_query(token))
            .await
            .ok_or(DeliveryError::NotFound)
    }

    pub async fn vod_key(&self, recording: &str, key_id: u64, token: Option<&str>) -> Result<[u8; 16], DeliveryError> {
        let vod = self.vod_authorised(recording, token).await?;
        vod.key(recording, key_id).await.ok_or(DeliveryError::NotFound)
    }

    /// Media of a recording is public like live media (it is encrypted, and
    /// a CDN may cache it); only playlists and keys need the token.
    pub async fn vod_media(
        &self,
        recording: &str,
        rendition: &str,
        file: &str,
    ) -> Result<(Bytes, &'static str), DeliveryError> {
        let vod = self.vod.as_ref().ok_or(DeliveryError::NotFound)?;
        match vod.media(recording, rendition, file).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(DeliveryError::NotFound),
            Err(message) => Err(DeliveryError::Hls(crate::hls::HlsError::Unavailable(message))),
        }
    }

    /// Viewer sessions and delivered bytes go to `viewers`.
    pub fn with_viewers(mut self, viewers: Arc<dyn ViewerReporter>) -> Self {
        self.viewers = Some(viewers);
        self
    }

    fn delivered(&self, stream_id: &str, bytes: usize) {
        if let Some(viewers) = &self.viewers {
            viewers.delivered(stream_id, bytes as u64);
        }
    }

    fn authorised(
        &self,
        stream_id: &str,
        token: Option<&str>,
    ) -> Result<std::sync::Arc<StreamPackager>, DeliveryError> {
        self.tokens.check(token, stream_id)?;
        self.stream(stream_id)
    }

    fn stream(&self, stream_id: &str) -> Result<std::sync::Arc<StreamPackager>, DeliveryError> {
        self.packagers.get(stream_id).ok_or(DeliveryError::NotFound)
    }

    pub fn master_playlist(&self, stream_id: &str, token: Option<&str>) -> Result<String, DeliveryError> {
        let packager = self.authorised(stream_id, token)?;
        // A player polling a stream that is still starting must not use up
        // its token's viewer sessions: no session before there is a master.
        if !packager.has_renditions() {
            return Err(DeliveryError::NotFound);
        }
        let mut query = token_query(token);
        let session = match &self.viewers {
            Some(viewers) => viewers
                .session_started(stream_id, token.unwrap_or_default())
                .map_err(too_many_sessions)?,
            None => None,
        };
        if let Some(session) = session {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("vs=");
            query.push_str(&session);
        }
        let body = packager.master_playlist(&query).ok_or(DeliveryError::NotFound)?;
        self.delivered(stream_id, body.len());
        Ok(body)
    }

    pub async fn media_playlist(
        &self,
        stream_id: &str,
        rendition: &str,
        query: PlaylistQuery<'_>,
    ) -> Result<String, DeliveryError> {
        let packager = self.authorised(stream_id, query.token.as_deref())?;
        if let (Some(viewers), Some(session)) = (&self.viewers, query.session.as_deref()) {
            let is_alternate = || packager.media_content_type(rendition) == "audio/mp4";
            let token = query.token.as_deref().unwrap_or_default();
            viewers.playlist_requested(session, stream_id, token, rendition, &is_alternate);
        }
        let key_query = token_query(query.token.as_deref());
        let request = PlaylistRequest {
            msn: query.msn,
            part: query.part,
            skip: query.skip,
        };
        let body = packager.media_playlist(rendition, request, &key_query).await?;
        self.delivered(stream_id, body.len());
        Ok(body)
    }

    pub async fn part(&self, stream_id: &str, rendition: &str, msn: u64, part: u64) -> Result<Bytes, DeliveryError> {
        let body = self.stream(stream_id)?.part(rendition, msn, part).await?;
        self.delivered(stream_id, body.len());
        Ok(body)
    }

    pub fn media_content_type(&self, stream_id: &str, rendition: &str) -> &'static str {
        self.stream(stream_id)
            .map(|s| s.media_content_type(rendition))
            .unwrap_or("video/mp4")
    }

    pub async fn segment(&self, stream_id: &str, rendition: &str, msn: u64) -> Result<Bytes, DeliveryError> {
        let body = self.stream(stream_id)?.segment(rendition, msn).await?;
        self.delivered(stream_id, body.len());
        Ok(body)
    }

    pub fn init(&self, stream_id: &str, rendition: &str, init_id: u64) -> Result<Bytes, DeliveryError> {
        let body = self.stream(stream_id)?.init(rendition, init_id)?;
        self.delivered(stream_id, body.len());
        Ok(body)
    }

    pub fn key(&self, stream_id: &str, key_id: u64, token: Option<&str>) -> Result<[u8; 16], DeliveryError> {
        let key = self.authorised(stream_id, token)?.key(key_id)?;
        self.delivered(stream_id, key.len());
        Ok(key)
    }
}

fn too_many_sessions(exhausted: SessionsExhausted) -> DeliveryError {
    DeliveryError::TooMany {
        what: "viewer sessions for this token",
        retry_after_secs: whole_seconds(exhausted.retry_after),
    }
}

/// `Retry-After` takes whole seconds; rounded up, and at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Child URLs carry the viewer's token so that players that never heard of
/// our tokens (ffmpeg, hls.js) play the master URL as given.
fn token_query(token: Option<&str>) -> String {
    match token {
        Some(t) if !t.is_empty() => format!("token={}", percent_encode(t)),
        _ => String::new(),
    }
}

fn percent_encode(value: &str) -> Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    // JWTs are base64url and dots: the usual case copies nothing here.
    if value.bytes().all(unreserved) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocking_and_skip_directives() {
        let q = PlaylistQuery::parse("token=t&vs=vs_1&_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").expect("valid");
        assert_eq!(
            q,
            PlaylistQuery {
                token: Some("t".into()),
                session: Some("vs_1".into()),
                msn: Some(12),
                part: Some(3),
                skip: Some(SkipRequest::Yes)
            }
        );
        assert_eq!(PlaylistQuery::parse("").expect("empty"), PlaylistQuery::default());
        assert_eq!(
            PlaylistQuery::parse("_HLS_skip=v2&cb=123&flag").expect("valid").skip,
            Some(SkipRequest::V2)
        );
        for bad in ["_HLS_msn=-1", "_HLS_part=x", "_HLS_msn=", "_HLS_skip=no", "_HLS_skip"] {
            assert!(
                matches!(PlaylistQuery::parse(bad), Err(DeliveryError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_values_are_form_decoded_and_borrowed_when_plain() {
        let raw = "token=eyJ.abc-_x&_HLS_msn=%31%32";
        let q = PlaylistQuery::parse(raw).expect("valid");
        assert!(matches!(q.token, Some(Cow::Borrowed("eyJ.abc-_x"))));
        assert_eq!(q.msn, Some(12));
        let q = PlaylistQuery::parse("token=a%20b+c%2&%5FHLS_part=4&token=z%41").expect("valid");
        assert_eq!(q.token.as_deref(), Some("zA"), "the last token wins");
        assert_eq!(q.part, Some(4));
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
        assert_eq!(decode("%zz%"), "%zz%");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(token_param("x=1&token=t%2Eu&y").as_deref(), Some("t.u"));
        assert_eq!(token_param("tokens=1"), None);
    }

    #[test]
    fn token_query_is_url_safe() {
        assert_eq!(token_query(Some("a.b-c_d")), "token=a.b-c_d");
        assert_eq!(token_query(Some("a b&c")), "token=a%20b%26c");
        assert_eq!(token_query(None), "");
    }
}
