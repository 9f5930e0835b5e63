//! The SDP we read and write around webrtcbin: which codecs an offer brings,
//! the trickle fragments of PATCH (RFC 8840), and the public address added
//! to our answer for operators behind NAT.

use std::net::IpAddr;

use gstreamer_sdp as gst_sdp;

use super::error::WhipError;

/// Video codecs we decode, in our order of preference when building the ladder.
const VIDEO_CODECS: [&str; 2] = ["H264", "VP8"];
const AUDIO_CODECS: [&str; 1] = ["OPUS"];

/// What an offer brings, checked before webrtcbin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// The `a=mid` of each m-line, in order (trickle candidates name them).
    pub mids: Vec<Option<String>>,
    pub video: bool,
    pub audio: bool,
    /// ICE credentials of the offer: a PATCH with others is an ICE restart.
    pub ice_ufrag: Option<String>,
}

/// Parses and checks an offer. 400 for what is not SDP, 406 for an offer
/// that has no track we can take.
pub fn check_offer(text: &str) -> Result<(gst_sdp::SDPMessage, OfferSummary), WhipError> {
    if text.trim().is_empty() {
        return Err(WhipError::BadOffer("empty body".into()));
    }
    if !text.trim_start().starts_with("v=") {
        return Err(WhipError::BadOffer("an SDP offer starts with \"v=\"".into()));
    }
    let message = gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).map_err(|e| WhipError::BadOffer(e.to_string()))?;
    if message.medias_len() == 0 {
        return Err(WhipError::BadOffer("the offer has no m= section".into()));
    }
    let mut summary = OfferSummary {
        mids: Vec::new(),
        video: false,
        audio: false,
        ice_ufrag: message.attribute_val("ice-ufrag").map(str::to_owned),
    };
    let mut offered = Vec::new();
    for media in message.medias() {
        summary.mids.push(media.attribute_val("mid").map(str::to_owned));
        if summary.ice_ufrag.is_none() {
            summary.ice_ufrag = media.attribute_val("ice-ufrag").map(str::to_owned);
        }
        let kind = media.media().unwrap_or("");
        let sends = !media.attributes().any(|a| matches!(a.key(), "recvonly" | "inactive"));
        let codecs: Vec<String> = media
            .attributes()
            .filter(|a| a.key() == "rtpmap")
            .filter_map(|a| a.value().and_then(rtpmap_codec))
            .collect();
        let wanted: &[&str] = match kind {
            "video" => &VIDEO_CODECS,
            "audio" => &AUDIO_CODECS,
            _ => &[],
        };
        let usable = sends && codecs.iter().any(|c| wanted.contains(&c.as_str()));
        match kind {
            "video" => summary.video |= usable,
            "audio" => summary.audio |= usable,
            _ => {}
        }
        offered.push(format!("{kind}: {}", codecs.join(",")));
    }
    if !summary.video && !summary.audio {
        return Err(WhipError::NotAcceptable(format!(
            "send H.264 or VP8 video and/or Opus audio (offered {})",
            offered.join("; ")
        )));
    }
    Ok((message, summary))
}

/// `96 VP8/90000` → `VP8`.
fn rtpmap_codec(value: &str) -> Option<String> {
    let encoding = value.split_whitespace().nth(1)?;
    Some(encoding.split('/').next()?.to_ascii_uppercase())
}

/// One candidate of a trickle PATCH, for `add-ice-candidate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrickleCandidate {
    pub mline: u32,
    /// `candidate:…` without the `a=`.
    pub candidate: String,
}

/// An `application/trickle-ice-sdpfrag` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    pub ice_ufrag: Option<String>,
    pub candidates: Vec<TrickleCandidate>,
}

/// Parses a trickle fragment; `mids` maps `a=mid` to m-line indexes.
pub fn parse_fragment(text: &str, mids: &[Option<String>]) -> Result<Fragment, WhipError> {
    let mut fragment = Fragment::default();
    let mut mline = 0u32;
    let mut sections = 0u32;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| WhipError::BadFragment(format!("line {}: {why}: {line:?}", number + 1));
        if line.starts_with("m=") {
            // Until an a=mid says otherwise, the section is the next m-line.
            mline = sections;
            sections += 1;
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            return Err(bad("only a= and m= lines belong in a fragment"));
        };
        let (key, value) = attribute.split_once(':').unwrap_or((attribute, ""));
        match key {
            "ice-ufrag" => fragment.ice_ufrag = Some(value.to_owned()),
            "mid" => {
                mline = mids
                    .iter()
                    .position(|m| m.as_deref() == Some(value))
                    .ok_or_else(|| bad("unknown mid"))? as u32;
            }
            "candidate" => {
                check_candidate(value).map_err(bad)?;
                fragment.candidates.push(TrickleCandidate {
                    mline,
                    candidate: attribute.to_owned(),
                });
            }
            // ice-pwd, ice-options, end-of-candidates, group: nothing to do.
            _ => {}
        }
    }
    Ok(fragment)
}

/// RFC 8839 §5.1: foundation, component, transport, priority, address, port, `typ`, type.
fn check_candidate(value: &str) -> Result<(), &'static str> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    if fields.len() < 8 || fields[6] != "typ" {
        return Err("a candidate needs foundation, component, transport, priority, address, port and typ");
    }
    if !matches!(fields[2].to_ascii_lowercase().as_str(), "udp" | "tcp") {
        return Err("candidate transport must be udp or tcp");
    }
    if fields[1].parse::<u16>().is_err() || fields[3].parse::<u32>().is_err() || fields[5].parse::<u16>().is_err() {
        return Err("candidate component, priority and port must be numbers");
    }
    Ok(())
}

/// Adds, after each host UDP candidate, the same candidate at `public`:
/// a 1:1 NAT forwards that address to the port libnice bound, and the
/// peer's checks to it arrive on the socket the host candidate names.
pub fn add_public_candidates(answer: &str, public: IpAddr) -> String {
    let mut out = String::with_capacity(answer.len() + 256);
    let mut added = std::collections::HashSet::new();
    let mut section = 0usize;
    for line in answer.split_inclusive('\n') {
        out.push_str(line);
        if line.starts_with("m=") {
            section += 1;
        }
        let Some(value) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        let mut fields: Vec<&str> = value.split_whitespace().collect();
        let is_host_udp = fields.len() >= 8 && fields[2].eq_ignore_ascii_case("udp") && fields[7] == "host";
        if !is_host_udp || fields[4] == public.to_string() {
            continue;
        }
        let port = fields[5].to_owned();
        let public_text = public.to_string();
        // One public candidate per local port and m-line is enough.
        if !added.insert((port.clone(), fields[1].to_owned(), section)) {
            continue;
        }
        // Slightly below the host candidate, so a peer on the same network still prefers it.
        let priority = fields[3].parse::<u32>().map(|p| p.saturating_sub(1)).unwrap_or(1);
        let priority = priority.to_string();
        let foundation = format!("{}9", fields[0]);
        fields[0] = &foundation;
        fields[3] = &priority;
        fields[4] = &public_text;
        out.push_str("a=candidate:");
        out.push_str(&fields.join(" "));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
        a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
        a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_browser_offer_is_summarised() -> TestResult {
        crate::media::init()?;
        let (_, summary) = check_offer(CHROME_OFFER)?;
        assert_eq!(
            summary,
            OfferSummary {
                mids: vec![Some("0".into()), Some("1".into())],
                video: true,
                audio: true,
                ice_ufrag: Some("abcd".into()),
            }
        );
        Ok(())
    }

    #[test]
    fn offers_that_are_not_sdp_or_bring_nothing_usable_are_refused() -> TestResult {
        crate::media::init()?;
        assert!(matches!(check_offer(""), Err(WhipError::BadOffer(_))));
        assert!(matches!(check_offer("hello"), Err(WhipError::BadOffer(_))));
        assert!(matches!(
            check_offer("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"),
            Err(WhipError::BadOffer(_))
        ));
        let av1_only = CHROME_OFFER
            .replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 AV1/90000")
            .replace("opus/48000/2", "G722/8000");
        let err = check_offer(&av1_only).expect_err("nothing usable");
        assert_eq!(err.status(), 406, "{err}");
        assert!(err.to_string().contains("AV1"), "{err}");
        // A client that only wants to receive is not publishing.
        let receive_only = CHROME_OFFER.replace("a=sendonly", "a=recvonly");
        assert_eq!(check_offer(&receive_only).expect_err("recvonly").status(), 406);
        Ok(())
    }

    #[test]
    fn trickle_fragments_map_mids_and_detect_restarts() -> TestResult {
        let mids = vec![Some("0".into()), Some("1".into())];
        let text = "a=ice-ufrag:abcd\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:1\r\n\
            a=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=end-of-candidates\r\n";
        let fragment = parse_fragment(text, &mids)?;
        assert_eq!(fragment.ice_ufrag.as_deref(), Some("abcd"));
        assert_eq!(
            fragment.candidates,
            vec![TrickleCandidate {
                mline: 1,
                candidate: "candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host generation 0".into()
            }]
        );
        for bad in [
            "a=mid:7\r\n",
            "hello\r\n",
            "a=candidate:1 1 udp\r\n",
            "a=candidate:1 1 sctp 1 192.0.2.1 1 typ host\r\n",
            "a=candidate:1 x udp 1 192.0.2.1 99999 typ host\r\n",
        ] {
            let err = parse_fragment(bad, &mids).expect_err(bad);
            assert_eq!(err.status(), 400, "{bad}: {err}");
        }
        Ok(())
    }

    #[test]
    fn the_public_address_is_added_beside_each_host_candidate() -> TestResult {
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:1 1 UDP 2015363327 10.0.0.5 50002 typ host\r\n\
            a=candidate:2 1 TCP 1015021823 10.0.0.5 9 typ host tcptype active\r\n\
            a=candidate:3 1 UDP 1679819263 198.51.100.1 50002 typ srflx raddr 10.0.0.5 rport 50002\r\n";
        let out = add_public_candidates(answer, "203.0.113.7".parse()?);
        let added: Vec<&str> = out.lines().filter(|l| l.contains("203.0.113.7")).collect();
        assert_eq!(
            added,
            vec!["a=candidate:19 1 UDP 2015363326 203.0.113.7 50002 typ host"]
        );
        assert!(out.starts_with(answer.lines().next().unwrap_or_default()));
        assert_eq!(out.lines().count(), answer.lines().count() + 1);
        Ok(())
    }
}
