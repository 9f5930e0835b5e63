//! RTSP pull (cameras) with retina: the edge connects out, depacketises
//! H.264/H.265 and AAC, and publishes through the same `PublishGate` as an
//! encoder would, reconnecting with backoff when the camera drops.
//!
//! - `puller.rs`: the reconnect loop and its status
//! - `session.rs`: one RTSP session (DESCRIBE, SETUP, PLAY) into `MediaPacket`s

mod puller;
mod session;

pub use puller::{spawn_pull, PullHandle, PullSettings, PullState, PullStatus, PullTransport};

/// `rtsp://user:pass@cam/path` → (`rtsp://cam/path`, Some((user, pass))).
/// Percent-encoded credentials are decoded, as cameras' URLs often carry them.
pub fn split_credentials(url: &str) -> Result<(url::Url, Option<(String, String)>), String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    // retina speaks plain RTSP only (no RTSP over TLS).
    if parsed.scheme() != "rtsp" {
        return Err("the URL must start with rtsp:// (rtsps:// is not supported)".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    let username = percent_decode(parsed.username());
    let password = parsed.password().map(percent_decode).unwrap_or_default();
    let creds = (!username.is_empty()).then_some((username, password));
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed, creds))
}

/// The URL as operators may see it: credentials replaced by `***`.
pub fn redact(url: &str) -> String {
    match split_credentials(url) {
        Ok((mut parsed, Some(_))) => {
            let _ = parsed.set_username("***");
            parsed.to_string()
        }
        Ok((parsed, None)) => parsed.to_string(),
        Err(_) => "(invalid URL)".into(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_url_and_never_back() -> Result<(), String> {
        let (url, creds) = split_credentials("rtsp://admin:p%40ss@192.0.2.7:554/stream1")?;
        assert_eq!(url.as_str(), "rtsp://192.0.2.7:554/stream1");
        assert_eq!(creds, Some(("admin".into(), "p@ss".into())));
        assert_eq!(
            redact("rtsp://admin:p%40ss@192.0.2.7:554/stream1"),
            "rtsp://***@192.0.2.7:554/stream1"
        );
        assert_eq!(redact("rtsp://cam/live"), "rtsp://cam/live");
        assert!(split_credentials("http://cam/live").is_err());
        assert!(split_credentials("rtsps://cam/live").is_err());
        assert!(split_credentials("rtsp://").is_err());
        assert!(split_credentials("not a url").is_err());
        Ok(())
    }
}
