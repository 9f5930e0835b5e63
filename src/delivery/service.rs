use std::collections::HashMap;

use bytes::Bytes;

use super::DeliveryError;
use crate::control::PlaybackTokens;
use crate::hls::{Packagers, PlaylistRequest, SkipRequest, StreamPackager};

/// The query parameters a player may put on a playlist URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistQuery {
    pub token: Option<String>,
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: Option<SkipRequest>,
}

impl PlaylistQuery {
    /// Parses `token`, `_HLS_msn`, `_HLS_part` and `_HLS_skip`; other
    /// parameters (cache busters) are ignored.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, DeliveryError> {
        let number = |name: &str| -> Result<Option<u64>, DeliveryError> {
            params
                .get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| DeliveryError::BadRequest(format!("{name} must be a non-negative integer")))
                })
                .transpose()
        };
        let skip = match params.get("_HLS_skip").map(String::as_str) {
            None => None,
            Some("YES") => Some(SkipRequest::Yes),
            Some("v2") => Some(SkipRequest::V2),
            Some(_) => return Err(DeliveryError::BadRequest("_HLS_skip must be YES or v2".into())),
        };
        Ok(Self {
            token: params.get("token").cloned(),
            msn: number("_HLS_msn")?,
            part: number("_HLS_part")?,
            skip,
        })
    }
}

#[derive(Clone)]
pub struct PlaybackService {
    packagers: Packagers,
    tokens: PlaybackTokens,
}

impl PlaybackService {
    pub fn new(packagers: Packagers, tokens: PlaybackTokens) -> Self {
        Self { packagers, tokens }
    }

    fn authorised(
        &self,
        stream_id: &str,
        token: Option<&str>,
    ) -> Result<std::sync::Arc<StreamPackager>, DeliveryError> {
        self.tokens.verify(token, stream_id)?;
        self.stream(stream_id)
    }

    fn stream(&self, stream_id: &str) -> Result<std::sync::Arc<StreamPackager>, DeliveryError> {
        self.packagers.get(stream_id).ok_or(DeliveryError::NotFound)
    }

    pub fn master_playlist(&self, stream_id: &str, token: Option<&str>) -> Result<String, DeliveryError> {
        let packager = self.authorised(stream_id, token)?;
        let query = token_query(token);
        packager.master_playlist(&query).ok_or(DeliveryError::NotFound)
    }

    pub async fn media_playlist(
        &self,
        stream_id: &str,
        rendition: &str,
        query: PlaylistQuery,
    ) -> Result<String, DeliveryError> {
        let packager = self.authorised(stream_id, query.token.as_deref())?;
        let key_query = token_query(query.token.as_deref());
        let request = PlaylistRequest {
            msn: query.msn,
            part: query.part,
            skip: query.skip,
        };
        Ok(packager.media_playlist(rendition, request, &key_query).await?)
    }

    pub async fn part(&self, stream_id: &str, rendition: &str, msn: u64, part: u64) -> Result<Bytes, DeliveryError> {
        Ok(self.stream(stream_id)?.part(rendition, msn, part).await?)
    }

    pub fn media_content_type(&self, stream_id: &str, rendition: &str) -> &'static str {
        self.stream(stream_id)
            .map(|s| s.media_content_type(rendition))
            .unwrap_or("video/mp4")
    }

    pub fn segment(&self, stream_id: &str, rendition: &str, msn: u64) -> Result<Bytes, DeliveryError> {
        Ok(self.stream(stream_id)?.segment(rendition, msn)?)
    }

    pub fn init(&self, stream_id: &str, rendition: &str, init_id: u64) -> Result<Bytes, DeliveryError> {
        Ok(self.stream(stream_id)?.init(rendition, init_id)?)
    }

    pub fn key(&self, stream_id: &str, key_id: u64, token: Option<&str>) -> Result<[u8; 16], DeliveryError> {
        Ok(self.authorised(stream_id, token)?.key(key_id)?)
    }
}

/// Child URLs carry the viewer's token so that players that never heard of
/// our tokens (ffmpeg, hls.js) play the master URL as given.
fn token_query(token: Option<&str>) -> String {
    match token {
        Some(t) if !t.is_empty() => format!("token={}", percent_encode(t)),
        _ => String::new(),
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_blocking_and_skip_directives() {
        let q = PlaylistQuery::parse(&params(&[
            ("token", "t"),
            ("_HLS_msn", "12"),
            ("_HLS_part", "3"),
            ("_HLS_skip", "YES"),
        ]))
        .expect("valid");
        assert_eq!(
            q,
            PlaylistQuery {
                token: Some("t".into()),
                msn: Some(12),
                part: Some(3),
                skip: Some(SkipRequest::Yes)
            }
        );
        assert!(matches!(
            PlaylistQuery::parse(&params(&[("_HLS_msn", "-1")])),
            Err(DeliveryError::BadRequest(_))
        ));
        assert!(matches!(
            PlaylistQuery::parse(&params(&[("_HLS_part", "x")])),
            Err(DeliveryError::BadRequest(_))
        ));
        assert!(matches!(
            PlaylistQuery::parse(&params(&[("_HLS_skip", "no")])),
            Err(DeliveryError::BadRequest(_))
        ));
    }

    #[test]
    fn token_query_is_url_safe() {
        assert_eq!(token_query(Some("a.b-c_d")), "token=a.b-c_d");
        assert_eq!(token_query(Some("a b&c")), "token=a%20b%26c");
        assert_eq!(token_query(None), "");
    }
}
