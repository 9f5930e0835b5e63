//! Entry points for the fuzz harnesses (`fuzz/`, `make fuzz`) and for the
//! replay of their saved corpus (`tests/fuzz_corpus.rs`). Each takes any
//! bytes and must never panic. Not an API; hidden from the docs.

use super::codec::{parse_asc, parse_avcc, parse_sps_dimensions};

/// An avcC record (as an RTMP sequence header carries it) and, on its own,
/// an SPS NAL unit (as the first parameter set of a WHIP or RTSP source).
pub fn avc_config(data: &[u8]) {
    if let Ok(info) = parse_avcc(data) {
        let _ = info.codecs();
    }
    let _ = parse_sps_dimensions(data);
}

/// An AAC AudioSpecificConfig.
pub fn aac_config(data: &[u8]) {
    if let Ok(info) = parse_asc(data) {
        let _ = info.codecs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_inputs_return() {
        for input in [
            &[][..],
            &[1],
            &[0x67; 3],
            &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0xff, 0xff],
            &[0xf8, 0xff],
        ] {
            avc_config(input);
            aac_config(input);
        }
    }
}
