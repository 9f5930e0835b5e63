//! Entry points for the fuzz harnesses (`fuzz/`, `make fuzz`) and for the
//! replay of their saved corpus (`tests/fuzz_corpus.rs`). Each takes any
//! bytes and must never panic. Not an API; hidden from the docs.

use super::{sdp, vp8};

/// A WHIP offer body as the POST handler reads it (UTF-8, else refused
/// before parsing), then a PATCH trickle fragment of the same bytes against
/// the offer's mids, as a session would see it.
pub fn whip_offer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The SDP parser is GStreamer's; its Rust bindings want it initialised.
    if gstreamer::init().is_err() {
        return;
    }
    let mids = match sdp::check_offer(text) {
        Ok((_, summary)) => summary.mids,
        Err(_) => vec![Some("0".to_owned()), None],
    };
    let _ = sdp::parse_fragment(text, &mids);
}

/// A VP8 frame's keyframe header.
pub fn vp8_frame(data: &[u8]) {
    let _ = vp8::keyframe_size(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_inputs_return() {
        for input in [
            &b""[..],
            b"v=0\r\n",
            b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n",
            &[0xff; 4],
        ] {
            whip_offer(input);
            vp8_frame(input);
        }
    }
}
