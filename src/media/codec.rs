//! Just enough H.264 / AAC header parsing to plan a ladder before any media
//! flows: source resolution, RFC 6381 codec strings, and the H.264 level an
//! encoded rung needs (pinned in x264 so the advertised string is exact).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> CodecError {
    CodecError(what.into())
}

/// What we need from an avcC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl AvcInfo {
    pub fn codecs(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// Parses an AVCDecoderConfigurationRecord and its first SPS.
pub fn parse_avcc(avcc: &[u8]) -> Result<AvcInfo, CodecError> {
    if avcc.len() < 7 {
        return Err(bad(format!("avcC too short ({} bytes)", avcc.len())));
    }
    if avcc[0] != 1 {
        return Err(bad(format!("avcC version {} is not 1", avcc[0])));
    }
    let length_size = (avcc[4] & 0x03) + 1;
    if length_size != 4 {
        // Ingest hands us 4-byte length prefixes; a different size in the
        // record would make every downstream parser misread the frames.
        return Err(bad(format!("avcC NAL length size {length_size} unsupported (need 4)")));
    }
    let sps_count = avcc[5] & 0x1f;
    if sps_count == 0 {
        return Err(bad("avcC carries no SPS"));
    }
    let sps_len = usize::from(u16::from_be_bytes([avcc[6], *avcc.get(7).unwrap_or(&0)]));
    let sps = avcc
        .get(8..8 + sps_len)
        .ok_or_else(|| bad(format!("avcC SPS length {sps_len} runs past the record")))?;
    let (width, height) = parse_sps_dimensions(sps)?;
    Ok(AvcInfo {
        profile_idc: avcc[1],
        constraint_flags: avcc[2],
        level_idc: avcc[3],
        width,
        height,
    })
}

struct BitReader {
    data: Vec<u8>,
    pos: usize,
}

impl BitReader {
    fn bit(&mut self) -> Result<u32, CodecError> {
        let byte = self.data.get(self.pos / 8).ok_or_else(|| bad("SPS truncated"))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, CodecError> {
        let mut value = 0;
        for _ in 0..n {
            value = (value << 1) | self.bit()?;
        }
        Ok(value)
    }

    fn ue(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(bad("SPS exp-Golomb code too long"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Result<i64, CodecError> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

/// Coded picture size after cropping, from an SPS NAL unit (with header).
pub fn parse_sps_dimensions(nal: &[u8]) -> Result<(u32, u32), CodecError> {
    if nal.first().map(|h| h & 0x1f) != Some(7) {
        return Err(bad("first parameter set is not an SPS"));
    }
    // Strip emulation-prevention bytes (00 00 03).
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal.iter().skip(1) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = BitReader { data: rbsp, pos: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags + level
    r.ue()?; // sps id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate colour planes
        }
        r.ue()?; // bit depth luma
        r.ue()?; // bit depth chroma
        r.bit()?; // qpprime bypass
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(bad("SPS POC cycle too long"));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max refs
    r.bit()?; // gaps allowed
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct 8x8
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.bit()? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (unit_x, unit_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        crop_x = unit_x * (u64::from(left) + u64::from(right));
        crop_y = unit_y * (u64::from(top) + u64::from(bottom));
    }
    let width = (width_mbs * 16).checked_sub(crop_x);
    let height = (height_map_units * 16 * (2 - frame_mbs_only)).checked_sub(crop_y);
    match (width, height) {
        (Some(w), Some(h)) if (16..=16384).contains(&w) && (16..=16384).contains(&h) => Ok((w as u32, h as u32)),
        _ => Err(bad("SPS picture size out of range")),
    }
}

fn skip_scaling_list(r: &mut BitReader, size: usize) -> Result<(), CodecError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// What we need from an AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacInfo {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u32,
}

impl AacInfo {
    pub fn codecs(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

pub fn parse_asc(asc: &[u8]) -> Result<AacInfo, CodecError> {
    let mut r = BitReader {
        data: asc.to_vec(),
        pos: 0,
    };
    let short = |_| bad(format!("AudioSpecificConfig too short ({} bytes)", asc.len()));
    let mut object_type = r.bits(5).map_err(short)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6).map_err(short)?;
    }
    if object_type == 0 {
        return Err(bad("AudioSpecificConfig object type 0"));
    }
    let rate_index = r.bits(4).map_err(short)?;
    let sample_rate = if rate_index == 15 {
        r.bits(24).map_err(short)?
    } else {
        *AAC_RATES
            .get(rate_index as usize)
            .ok_or_else(|| bad(format!("AAC sample rate index {rate_index} reserved")))?
    };
    let channel_config = r.bits(4).map_err(short)?;
    let channels = match channel_config {
        1..=6 => channel_config,
        7 => 8,
        // 0 means "defined in the stream"; stereo is the safe guess for RTMP.
        _ => 2,
    };
    Ok(AacInfo {
        object_type: object_type as u8,
        sample_rate,
        channels,
    })
}

/// `profile_idc` and constraint flags x264 writes for a profile name.
pub fn x264_profile_bytes(profile: &str) -> Option<(u8, u8)> {
    match profile {
        "high" => Some((100, 0x00)),
        "main" => Some((77, 0x40)),
        "baseline" | "constrained-baseline" => Some((66, 0xc0)),
        _ => None,
    }
}

/// The lowest H.264 level (Table A-1) whose frame size, macroblock rate,
/// DPB and bitrate limits fit this encode.
pub fn h264_level_for(width: u32, height: u32, fps: f64, refs: u32, max_kbps: u32, high: bool) -> u8 {
    // (level_idc, MaxMBPS, MaxFS, MaxDpbMbs, MaxBR kbit/s)
    const LEVELS: [(u8, u64, u64, u64, u64); 16] = [
        (10, 1485, 99, 396, 64),
        (11, 3000, 396, 900, 192),
        (12, 6000, 396, 2376, 384),
        (13, 11880, 396, 2376, 768),
        (20, 11880, 396, 2376, 2000),
        (21, 19800, 792, 4752, 4000),
        (22, 20250, 1620, 8100, 4000),
        (30, 40500, 1620, 8100, 10000),
        (31, 108000, 3600, 18000, 14000),
        (32, 216000, 5120, 20480, 20000),
        (40, 245760, 8192, 32768, 20000),
        (41, 245760, 8192, 32768, 50000),
        (42, 522240, 8704, 34816, 50000),
        (50, 589824, 22080, 110400, 135000),
        (51, 983040, 36864, 184320, 240000),
        (52, 2073600, 36864, 184320, 240000),
    ];
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let mbps = (mbs as f64 * fps.max(1.0)).ceil() as u64;
    let br_factor = if high { 1.25 } else { 1.0 };
    let side = u64::from(width.div_ceil(16).max(height.div_ceil(16)));
    for (level, max_mbps, max_fs, max_dpb, max_br) in LEVELS {
        let fits = mbs <= max_fs
            && side * side <= 8 * max_fs
            && mbps <= max_mbps
            && mbs * u64::from(refs.max(1)) <= max_dpb
            && f64::from(max_kbps) <= max_br as f64 * br_factor;
        if fits {
            return level;
        }
    }
    52
}

#[cfg(test)]
mod tests {
    use super::*;

    // avcC written by ffmpeg/libx264 for 640x360 High@3.0 (SPS has frame cropping).
    const AVCC_640X360: [u8; 47] = [
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9,
        0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96, 0x01, 0x00,
        0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn parses_real_x264_avcc() {
        let info = parse_avcc(&AVCC_640X360).expect("valid avcC");
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.codecs(), "avc1.64001e");
    }

    #[test]
    fn rejects_garbage_avcc_without_panicking() {
        for garbage in [
            &[][..],
            &[1, 2, 3][..],
            &[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x40, 0x67][..],
            &[0, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x01, 0x67][..],
            &[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x02, 0x67, 0x64][..],
            &[1, 0x64, 0, 0x1e, 0xfd, 0xe1, 0x00, 0x01, 0x67][..],
        ] {
            assert!(parse_avcc(garbage).is_err(), "{garbage:?} accepted");
        }
    }

    #[test]
    fn parses_asc() {
        let lc = parse_asc(&[0x12, 0x10]).expect("AAC-LC 44.1k stereo");
        assert_eq!(
            lc,
            AacInfo {
                object_type: 2,
                sample_rate: 44100,
                channels: 2
            }
        );
        assert_eq!(lc.codecs(), "mp4a.40.2");
        let he = parse_asc(&[0x2b, 0x8a, 0x08, 0x00]).expect("HE-AAC");
        assert_eq!(he.object_type, 5);
        assert!(parse_asc(&[0x12]).is_err());
        assert!(parse_asc(&[]).is_err());
    }

    #[test]
    fn level_follows_table_a1() {
        assert_eq!(h264_level_for(1920, 1080, 30.0, 1, 4500, true), 40);
        assert_eq!(h264_level_for(1280, 720, 30.0, 1, 2500, true), 31);
        assert_eq!(h264_level_for(640, 360, 30.0, 1, 800, true), 30);
        assert_eq!(h264_level_for(426, 240, 30.0, 1, 400, true), 21);
        assert_eq!(h264_level_for(1920, 1080, 60.0, 1, 6000, true), 42);
    }
}
