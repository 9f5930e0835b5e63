//! Request URIs as they may reach a span or a log line: the query's values
//! are hidden unless known to be harmless, so `?token=…` (a playback token
//! is a bearer credential) never reaches the log, whatever the level.

use std::fmt::Write;

use axum::http::Uri;

use crate::logging::clip;

/// Query parameters whose values carry no secret (LL-HLS directives and the
/// viewer session id). Matched on the raw, undecoded name: `%5FHLS_msn` is
/// hidden too, which errs on the safe side.
const SHOWN: &[&str] = &["_HLS_msn", "_HLS_part", "_HLS_skip", "vs"];

/// `uri` with every query value outside [`SHOWN`] replaced by `…`, clipped
/// as any network-fed string is.
pub fn redacted_uri(uri: &Uri) -> String {
    let mut out = clip(uri.path()).into_owned();
    let Some(query) = uri.query() else {
        return out;
    };
    for (i, pair) in query.split('&').enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, value)) if SHOWN.contains(&name) => {
                let _ = write!(out, "{name}={}", clip(value));
            }
            Some((name, _)) => {
                let _ = write!(out, "{}=…", clip(name));
            }
            // A bare value may be a credential too (`?<token>`).
            None => out.push('…'),
        }
    }
    clip(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(uri: &str) -> String {
        redacted_uri(&uri.parse::<Uri>().expect("uri"))
    }

    #[test]
    fn tokens_never_show_and_directives_do() {
        let out = redact("/live/s/720p/index.m3u8?token=eyJ.secret.sig&_HLS_msn=12&_HLS_part=3&vs=vs_1");
        assert_eq!(out, "/live/s/720p/index.m3u8?token=…&_HLS_msn=12&_HLS_part=3&vs=vs_1");
        assert!(!redact("/x?%74oken=secret&foo=bar").contains("secret"));
        assert!(!redact("/x?a=1&TOKEN=secret").contains("secret"));
        assert_eq!(redact("/x?eyJ.bare.token"), "/x?…");
        assert_eq!(redact("/healthz"), "/healthz");
    }

    #[test]
    fn long_uris_are_clipped() {
        let long = format!("/live/{}/master.m3u8?_HLS_msn={}", "a".repeat(5000), "9".repeat(5000));
        assert!(redact(&long).len() < 400, "{}", redact(&long).len());
    }
}
