//! MPEG-1/2/2.5 audio frame headers (ISO/IEC 11172-3, 13818-3), read only
//! to learn the sample rate and channel count of MP3 in FLV: the FLV tag's
//! own rate bits cannot express 48 kHz or 32 kHz.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MpegAudioHeader {
    /// 1, 2 or 3.
    pub layer: u8,
    pub sample_rate: u32,
    pub channels: u32,
}

const HEADER_LEN: usize = 4;

/// Sample rates by version (MPEG-1, MPEG-2, MPEG-2.5) and index.
const RATES: [[u32; 3]; 3] = [[44100, 48000, 32000], [22050, 24000, 16000], [11025, 12000, 8000]];

/// Parses the header at the start of `data`, if there is a valid one.
pub(crate) fn parse_header(data: &[u8]) -> Option<MpegAudioHeader> {
    let header: [u8; HEADER_LEN] = data.get(..HEADER_LEN)?.try_into().ok()?;
    if header[0] != 0xff || header[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version_row = match (header[1] >> 3) & 0x03 {
        3 => 0,
        2 => 1,
        0 => 2,
        _ => return None,
    };
    let layer = match (header[1] >> 1) & 0x03 {
        3 => 1,
        2 => 2,
        1 => 3,
        _ => return None,
    };
    let bitrate_index = header[2] >> 4;
    if bitrate_index == 0x0f {
        return None;
    }
    let sample_rate = *RATES.get(version_row)?.get(usize::from((header[2] >> 2) & 0x03))?;
    let channels = if header[3] >> 6 == 3 { 1 } else { 2 };
    Some(MpegAudioHeader {
        layer,
        sample_rate,
        channels,
    })
}

/// The first valid header in `data`. Encoders put one whole frame per FLV
/// tag, but a tag that starts mid-frame (after a splice) should still tell
/// us the format.
pub(crate) fn find_header(data: &[u8]) -> Option<MpegAudioHeader> {
    (0..data.len().saturating_sub(HEADER_LEN - 1)).find_map(|at| data.get(at..).and_then(parse_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mpeg1_mpeg2_and_mpeg25_layer3_headers() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo (LAME default).
        assert_eq!(
            parse_header(&[0xff, 0xfb, 0x90, 0x64]),
            Some(MpegAudioHeader {
                layer: 3,
                sample_rate: 44100,
                channels: 2
            })
        );
        // MPEG-1 layer III, 48 kHz, mono.
        assert_eq!(
            parse_header(&[0xff, 0xfb, 0x94, 0xc4]).map(|h| (h.sample_rate, h.channels)),
            Some((48000, 1))
        );
        // MPEG-2 layer III, 22.05 kHz, mono.
        assert_eq!(
            parse_header(&[0xff, 0xf3, 0x40, 0xc4]).map(|h| (h.sample_rate, h.channels)),
            Some((22050, 1))
        );
        // MPEG-2.5 layer III, 8 kHz (what FLV sound format 14 carries).
        assert_eq!(
            parse_header(&[0xff, 0xe3, 0x28, 0xc4]).map(|h| (h.sample_rate, h.channels)),
            Some((8000, 1))
        );
        // MPEG-1 layer II.
        assert_eq!(parse_header(&[0xff, 0xfd, 0x90, 0x00]).map(|h| h.layer), Some(2));
    }

    #[test]
    fn rejects_invalid_headers_without_panicking() {
        for bad in [
            &[][..],
            &[0xff, 0xfb, 0x90][..],
            &[0xfe, 0xfb, 0x90, 0x64][..],
            // reserved version
            &[0xff, 0xeb, 0x90, 0x64][..],
            // reserved layer
            &[0xff, 0xf9, 0x90, 0x64][..],
            // bad bitrate index
            &[0xff, 0xfb, 0xf0, 0x64][..],
            // reserved sample rate index
            &[0xff, 0xfb, 0x9c, 0x64][..],
        ] {
            assert_eq!(parse_header(bad), None, "{bad:02x?}");
        }
    }

    #[test]
    fn finds_a_header_after_leading_garbage() {
        let data = [0x00, 0x12, 0xff, 0xfb, 0x94, 0xc4, 0x00];
        assert_eq!(find_header(&data).map(|h| h.sample_rate), Some(48000));
        assert_eq!(find_header(&[0xff, 0xfb]), None);
        assert_eq!(find_header(&[]), None);
    }
}
