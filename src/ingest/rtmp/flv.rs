//! FLV audio/video tag bodies as carried in RTMP messages 8 and 9.
//!
//! Only H.264, AAC and MP3 are accepted downstream (MP3 is transcoded to AAC
//! by the media stage); everything else is recognised well enough to be
//! named in an error, including Enhanced RTMP (ExVideoTagHeader with a FourCC).

use bytes::{Bytes, BytesMut};

use super::mpeg_audio;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("{kind} tag too short: {len} bytes, need at least {need}")]
    Truncated {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unsupported video codec {0}; send H.264")]
    UnsupportedVideo(String),
    #[error("unsupported audio codec {0}; send AAC or MP3")]
    UnsupportedAudio(String),
    #[error("malformed AVC data: {0}")]
    MalformedAvc(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VideoTag {
    /// AVCDecoderConfigurationRecord.
    AvcSequenceHeader(Bytes),
    AvcNalus {
        keyframe: bool,
        composition_time_ms: i32,
        data: Bytes,
    },
    /// End of sequence, video info frames, empty tags: nothing to forward.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudioTag {
    /// AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    AacRaw(Bytes),
    /// Raw MPEG audio layer III frames (MP3 has no sequence header).
    Mp3 {
        format: Mp3Format,
        /// `format` was read from an MPEG audio frame header, not guessed
        /// from the FLV tag's rate/type bits.
        from_frame_header: bool,
        data: Bytes,
    },
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mp3Format {
    pub sample_rate: u32,
    pub channels: u32,
}

const FLV_CODEC_AVC: u8 = 7;
const SOUND_FORMAT_MP3: u8 = 2;
const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_MP3_8KHZ: u8 = 14;
const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_INFO: u8 = 5;
const EX_HEADER_FLAG: u8 = 0x80;

pub(crate) fn parse_video(tag: &Bytes) -> Result<VideoTag, FlvError> {
    let Some(&first) = tag.first() else {
        return Ok(VideoTag::Ignored);
    };
    if first & EX_HEADER_FLAG != 0 {
        return Err(FlvError::UnsupportedVideo(enhanced_video_name(tag)));
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != FLV_CODEC_AVC {
        return Err(FlvError::UnsupportedVideo(legacy_video_name(codec_id)));
    }
    if frame_type == FRAME_TYPE_INFO {
        return Ok(VideoTag::Ignored);
    }
    if tag.len() < 5 {
        return Err(FlvError::Truncated {
            kind: "AVC video",
            len: tag.len(),
            need: 5,
        });
    }
    let composition_time_ms = signed_24(tag[2], tag[3], tag[4]);
    let body = tag.slice(5..);
    match tag[1] {
        0 => Ok(VideoTag::AvcSequenceHeader(body)),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == FRAME_TYPE_KEY,
            composition_time_ms,
            data: body,
        }),
        _ => Ok(VideoTag::Ignored),
    }
}

pub(crate) fn parse_audio(tag: &Bytes) -> Result<AudioTag, FlvError> {
    let Some(&first) = tag.first() else {
        return Ok(AudioTag::Ignored);
    };
    let sound_format = first >> 4;
    if sound_format == SOUND_FORMAT_MP3 || sound_format == SOUND_FORMAT_MP3_8KHZ {
        return parse_mp3(first, tag);
    }
    if sound_format != SOUND_FORMAT_AAC {
        return Err(FlvError::UnsupportedAudio(audio_name(sound_format, tag)));
    }
    if tag.len() < 2 {
        return Err(FlvError::Truncated {
            kind: "AAC audio",
            len: tag.len(),
            need: 2,
        });
    }
    let body = tag.slice(2..);
    match tag[1] {
        0 => Ok(AudioTag::AacSequenceHeader(body)),
        1 if body.is_empty() => Ok(AudioTag::Ignored),
        1 => Ok(AudioTag::AacRaw(body)),
        _ => Ok(AudioTag::Ignored),
    }
}

fn parse_mp3(first: u8, tag: &Bytes) -> Result<AudioTag, FlvError> {
    let sound_format = first >> 4;
    let data = tag.slice(1..);
    if data.is_empty() {
        return Ok(AudioTag::Ignored);
    }
    match mpeg_audio::find_header(&data) {
        Some(header) if header.layer != 3 => Err(FlvError::UnsupportedAudio(format!(
            "MPEG audio layer {} (FLV sound format {sound_format})",
            header.layer
        ))),
        Some(header) => Ok(AudioTag::Mp3 {
            format: Mp3Format {
                sample_rate: header.sample_rate,
                channels: header.channels,
            },
            from_frame_header: true,
            data,
        }),
        None => Ok(AudioTag::Mp3 {
            format: flv_mp3_format(first),
            from_frame_header: false,
            data,
        }),
    }
}

/// What the FLV tag header claims; 48 kHz and 32 kHz sources are announced
/// as 44 kHz, which is why the frame header is preferred.
fn flv_mp3_format(first: u8) -> Mp3Format {
    let sample_rate = if first >> 4 == SOUND_FORMAT_MP3_8KHZ {
        8000
    } else {
        match (first >> 2) & 0x03 {
            0 => 5512,
            1 => 11025,
            2 => 22050,
            _ => 44100,
        }
    };
    Mp3Format {
        sample_rate,
        channels: if first & 0x01 == 1 { 2 } else { 1 },
    }
}

fn signed_24(b0: u8, b1: u8, b2: u8) -> i32 {
    // Place the 24 bits at the top of an i32 and shift back to sign-extend.
    i32::from_be_bytes([b0, b1, b2, 0]) >> 8
}

fn enhanced_video_name(tag: &Bytes) -> String {
    match tag.get(1..5) {
        Some(b"hvc1") => "HEVC (Enhanced RTMP hvc1)".to_owned(),
        Some(b"av01") => "AV1 (Enhanced RTMP av01)".to_owned(),
        Some(b"vp09") => "VP9 (Enhanced RTMP vp09)".to_owned(),
        Some(b"avc1") => "H.264 over Enhanced RTMP (avc1)".to_owned(),
        Some(fourcc) => format!("Enhanced RTMP FourCC {:?}", String::from_utf8_lossy(fourcc)),
        None => "Enhanced RTMP (truncated header)".to_owned(),
    }
}

fn legacy_video_name(codec_id: u8) -> String {
    let name = match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen Video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen Video v2",
        12 => "HEVC",
        13 => "AV1",
        other => return format!("FLV video codec id {other}"),
    };
    format!("{name} (FLV codec id {codec_id})")
}

fn audio_name(sound_format: u8, tag: &Bytes) -> String {
    let name = match sound_format {
        0 => "linear PCM",
        1 => "ADPCM",
        2 => "MP3",
        3 => "linear PCM little-endian",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        9 => {
            return match tag.get(1..5) {
                Some(fourcc) => format!("Enhanced RTMP audio FourCC {:?}", String::from_utf8_lossy(fourcc)),
                None => "Enhanced RTMP audio (truncated header)".to_owned(),
            }
        }
        11 => "Speex",
        14 => "MP3 8 kHz",
        other => return format!("FLV sound format {other}"),
    };
    format!("{name} (FLV sound format {sound_format})")
}

/// Bytes used for each NAL unit length in frames that follow this avcC.
pub(crate) fn avcc_nal_length_size(avcc: &[u8]) -> Result<usize, FlvError> {
    let byte = avcc.get(4).ok_or(FlvError::MalformedAvc("avcC shorter than 5 bytes"))?;
    if avcc.first() != Some(&1) {
        return Err(FlvError::MalformedAvc("avcC configurationVersion is not 1"));
    }
    Ok(usize::from(byte & 0x03) + 1)
}

/// Downstream expects 4-byte NAL lengths; encoders may use 1, 2 or 3.
pub(crate) fn to_four_byte_lengths(data: Bytes, length_size: usize) -> Result<Bytes, FlvError> {
    if length_size == 4 {
        return Ok(data);
    }
    if length_size == 0 || length_size > 4 {
        return Err(FlvError::MalformedAvc("NAL length size must be 1..=4"));
    }
    let mut out = BytesMut::with_capacity(data.len() + data.len() / 8 + 8);
    let mut rest = &data[..];
    while !rest.is_empty() {
        let (len_bytes, after) = rest
            .split_at_checked(length_size)
            .ok_or(FlvError::MalformedAvc("truncated NAL length"))?;
        let nal_len = len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let (nal, after_nal) = after
            .split_at_checked(nal_len)
            .ok_or(FlvError::MalformedAvc("NAL unit longer than its frame"))?;
        let nal_len_u32 = u32::try_from(nal_len).map_err(|_| FlvError::MalformedAvc("NAL too long"))?;
        out.extend_from_slice(&nal_len_u32.to_be_bytes());
        out.extend_from_slice(nal);
        rest = after_nal;
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &[u8]) -> Bytes {
        Bytes::copy_from_slice(v)
    }

    #[test]
    fn avc_sequence_header_and_nalus() {
        let header = bytes(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]);
        assert_eq!(
            parse_video(&header),
            Ok(VideoTag::AvcSequenceHeader(bytes(&[1, 0x64, 0, 0x1f, 0xff])))
        );
        let key = bytes(&[0x17, 1, 0, 0, 40, 0, 0, 0, 1, 0x65]);
        assert_eq!(
            parse_video(&key),
            Ok(VideoTag::AvcNalus {
                keyframe: true,
                composition_time_ms: 40,
                data: bytes(&[0, 0, 0, 1, 0x65]),
            })
        );
        let inter = bytes(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        assert_eq!(
            parse_video(&inter),
            Ok(VideoTag::AvcNalus {
                keyframe: false,
                composition_time_ms: -40,
                data: bytes(&[0, 0, 0, 1, 0x41]),
            })
        );
        assert_eq!(parse_video(&bytes(&[0x17, 2, 0, 0, 0])), Ok(VideoTag::Ignored));
        assert_eq!(parse_video(&bytes(&[])), Ok(VideoTag::Ignored));
    }

    #[test]
    fn short_video_tags_are_errors() {
        for len in 1..5 {
            let tag = bytes(&[0x17, 1, 0, 0][..len]);
            assert!(
                matches!(parse_video(&tag), Err(FlvError::Truncated { need: 5, .. })),
                "len {len}"
            );
        }
    }

    #[test]
    fn hevc_legacy_and_enhanced_are_named() {
        let legacy_hevc = bytes(&[0x1c, 0, 0, 0, 0]);
        let err = parse_video(&legacy_hevc).expect_err("HEVC must be refused");
        assert_eq!(
            err.to_string(),
            "unsupported video codec HEVC (FLV codec id 12); send H.264"
        );

        // IsExHeader | keyframe<<4 | PacketTypeSequenceStart, FourCC.
        let enhanced = |fourcc: &[u8; 4]| {
            let mut v = vec![0x80 | 0x10];
            v.extend_from_slice(fourcc);
            bytes(&v)
        };
        for (fourcc, expect) in [(b"hvc1", "HEVC"), (b"av01", "AV1"), (b"vp09", "VP9")] {
            let err = parse_video(&enhanced(fourcc)).expect_err("enhanced refused");
            assert!(
                matches!(&err, FlvError::UnsupportedVideo(name) if name.starts_with(expect)),
                "{err}"
            );
        }
        let truncated = parse_video(&bytes(&[0x90, b'h'])).expect_err("refused");
        assert!(truncated.to_string().contains("truncated"));
        let vp6 = parse_video(&bytes(&[0x14])).expect_err("refused");
        assert!(vp6.to_string().contains("VP6"));
    }

    #[test]
    fn aac_and_other_audio() {
        assert_eq!(
            parse_audio(&bytes(&[0xaf, 0, 0x11, 0x90])),
            Ok(AudioTag::AacSequenceHeader(bytes(&[0x11, 0x90])))
        );
        assert_eq!(
            parse_audio(&bytes(&[0xaf, 1, 0x21, 0x10])),
            Ok(AudioTag::AacRaw(bytes(&[0x21, 0x10])))
        );
        assert!(matches!(
            parse_audio(&bytes(&[0xaf])),
            Err(FlvError::Truncated { need: 2, .. })
        ));
        let opus = parse_audio(&bytes(&[0x90, b'O', b'p', b'u', b's'])).expect_err("refused");
        assert!(opus.to_string().contains("Opus"));
        for (first, name) in [
            (0x72, "G.711 A-law (FLV sound format 7)"),
            (0x82, "G.711 mu-law (FLV sound format 8)"),
            (0x62, "Nellymoser (FLV sound format 6)"),
            (0xb2, "Speex (FLV sound format 11)"),
            (0x3e, "linear PCM little-endian (FLV sound format 3)"),
        ] {
            let err = parse_audio(&bytes(&[first, 0, 0])).expect_err("refused");
            assert_eq!(
                err.to_string(),
                format!("unsupported audio codec {name}; send AAC or MP3")
            );
        }
    }

    #[test]
    fn mp3_format_comes_from_the_frame_header() {
        // FLV says 44 kHz stereo (it cannot say 48 kHz); the frame says 48 kHz mono.
        let frame = [0x2f, 0xff, 0xfb, 0x94, 0xc4, 0x00, 0x11];
        assert_eq!(
            parse_audio(&bytes(&frame)),
            Ok(AudioTag::Mp3 {
                format: Mp3Format {
                    sample_rate: 48000,
                    channels: 1
                },
                from_frame_header: true,
                data: bytes(&frame[1..]),
            })
        );
        // MP3 8 kHz (sound format 14) carrying an MPEG-2.5 frame.
        let eight = [0xe2, 0xff, 0xe3, 0x28, 0xc4];
        assert!(matches!(
            parse_audio(&bytes(&eight)),
            Ok(AudioTag::Mp3 {
                format: Mp3Format {
                    sample_rate: 8000,
                    channels: 1
                },
                from_frame_header: true,
                ..
            })
        ));
    }

    #[test]
    fn mp3_without_a_frame_header_falls_back_to_flv_bits() {
        let tag = bytes(&[0x2b, 0x00, 0x01, 0x02]);
        assert_eq!(
            parse_audio(&tag),
            Ok(AudioTag::Mp3 {
                format: Mp3Format {
                    sample_rate: 22050,
                    channels: 2
                },
                from_frame_header: false,
                data: bytes(&[0x00, 0x01, 0x02]),
            })
        );
        assert!(matches!(
            parse_audio(&bytes(&[0xe2, 0x00])),
            Ok(AudioTag::Mp3 {
                format: Mp3Format {
                    sample_rate: 8000,
                    channels: 1
                },
                ..
            })
        ));
        assert_eq!(parse_audio(&bytes(&[0x2f])), Ok(AudioTag::Ignored));
    }

    #[test]
    fn mpeg_audio_layer_2_in_an_mp3_tag_is_refused_by_name() {
        let err = parse_audio(&bytes(&[0x2f, 0xff, 0xfd, 0x90, 0x00])).expect_err("layer II refused");
        assert_eq!(
            err.to_string(),
            "unsupported audio codec MPEG audio layer 2 (FLV sound format 2); send AAC or MP3"
        );
    }

    #[test]
    fn nal_length_size_conversion() {
        assert_eq!(avcc_nal_length_size(&[1, 0x64, 0, 0x1f, 0xff]), Ok(4));
        assert_eq!(avcc_nal_length_size(&[1, 0x64, 0, 0x1f, 0xfd]), Ok(2));
        assert!(avcc_nal_length_size(&[1, 0x64]).is_err());
        assert!(avcc_nal_length_size(&[0, 0x64, 0, 0x1f, 0xff]).is_err());

        let two = bytes(&[0, 2, 0x65, 0x88, 0, 1, 0x06]);
        assert_eq!(
            to_four_byte_lengths(two, 2),
            Ok(bytes(&[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06]))
        );
        assert!(to_four_byte_lengths(bytes(&[0, 9, 0x65]), 2).is_err());
        assert!(to_four_byte_lengths(bytes(&[0]), 2).is_err());
    }
}
