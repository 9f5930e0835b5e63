//! Assertions shared by the end-to-end tests: what every LL-HLS media
//! playlist we serve must carry, and AES-128 decryption of what it lists.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};

use super::playlist::{attrs, tag_lines, tag_value, MediaPlaylist};

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Checks the LL-HLS tags of one media playlist; returns its SERVER-CONTROL
/// line so callers can compare renditions.
pub fn check_media_playlist(name: &str, text: &str, renditions: usize, encrypted: bool) -> String {
    let ctx = |what: &str| format!("{name}: {what}\n{text}");
    assert!(text.starts_with("#EXTM3U"), "{}", ctx("no #EXTM3U"));
    assert_eq!(
        tag_value(text, "#EXT-X-VERSION"),
        Some("9"),
        "{}",
        ctx("VERSION must be 9")
    );
    let td: f64 = tag_value(text, "#EXT-X-TARGETDURATION")
        .and_then(|v| v.parse().ok())
        .expect("TARGETDURATION");
    let part_target: f64 = tag_lines(text, "#EXT-X-PART-INF")
        .first()
        .and_then(|l| attrs(l).get("PART-TARGET").and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("{}", ctx("PART-INF with PART-TARGET")));
    assert!(part_target <= 0.5, "{}", ctx("part target above 0.5 s"));
    let sc_line = tag_lines(text, "#EXT-X-SERVER-CONTROL")
        .first()
        .map(|s| s.to_string())
        .expect("SERVER-CONTROL");
    let sc = attrs(&sc_line);
    let num = |k: &str| {
        sc.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{}", ctx(k)))
    };
    assert_eq!(
        sc.get("CAN-BLOCK-RELOAD").map(String::as_str),
        Some("YES"),
        "{}",
        ctx("CAN-BLOCK-RELOAD")
    );
    assert!(
        num("PART-HOLD-BACK") >= 3.0 * part_target - 1e-9,
        "{}",
        ctx("PART-HOLD-BACK < 3×PART-TARGET")
    );
    assert!(num("HOLD-BACK") >= 3.0 * td - 1e-9, "{}", ctx("HOLD-BACK < 3×TD"));
    assert!(
        num("CAN-SKIP-UNTIL") >= 6.0 * td - 1e-9,
        "{}",
        ctx("CAN-SKIP-UNTIL < 6×TD")
    );

    // MAP before KEY: the init segment stays clear.
    let first_map = text
        .find("#EXT-X-MAP:")
        .unwrap_or_else(|| panic!("{}", ctx("no EXT-X-MAP")));
    if encrypted {
        let first_key = text
            .find("#EXT-X-KEY:")
            .unwrap_or_else(|| panic!("{}", ctx("no EXT-X-KEY")));
        assert!(first_map < first_key, "{}", ctx("EXT-X-MAP must come before EXT-X-KEY"));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == "#EXT-X-KEY:METHOD=NONE" {
                let next = lines.get(i + 1).copied().unwrap_or("");
                assert!(
                    next.starts_with("#EXT-X-MAP:"),
                    "{}",
                    ctx("METHOD=NONE only ends a key before a new MAP")
                );
            }
        }
        for key in tag_lines(text, "#EXT-X-KEY")
            .into_iter()
            .filter(|k| *k != "#EXT-X-KEY:METHOD=NONE")
        {
            let a = attrs(key);
            assert_eq!(
                a.get("METHOD").map(String::as_str),
                Some("AES-128"),
                "{}",
                ctx("METHOD")
            );
            let iv = a.get("IV").unwrap_or_else(|| panic!("{}", ctx("explicit IV")));
            assert!(
                iv.starts_with("0x") && iv.len() == 34,
                "{}",
                ctx("IV must be 0x + 32 hex digits")
            );
            assert!(
                a.get("URI").is_some_and(|u| u.contains("token=")),
                "{}",
                ctx("key URI must carry the token")
            );
        }
    } else {
        assert!(
            tag_lines(text, "#EXT-X-KEY").is_empty(),
            "{}",
            ctx("clear stream with KEY")
        );
    }

    let pl = MediaPlaylist::parse(text);
    assert!(!pl.segments.is_empty(), "{}", ctx("no segments"));
    for seg in &pl.segments {
        assert!(
            seg.program_date_time.is_some(),
            "{}",
            ctx("segment without PROGRAM-DATE-TIME")
        );
        assert!(
            seg.uri.ends_with(".mp4") && !seg.uri.contains('?'),
            "{}",
            ctx("segment URI must be a bare .mp4")
        );
        assert!(
            seg.duration.round() <= td,
            "{}",
            ctx("rounded EXTINF above TARGETDURATION")
        );
        if encrypted {
            assert!(seg.key_line.is_some(), "{}", ctx("segment without key"));
        }
    }
    let parts: Vec<_> = pl
        .segments
        .iter()
        .flat_map(|s| s.parts.iter())
        .chain(pl.trailing_parts.iter())
        .collect();
    assert!(!parts.is_empty(), "{}", ctx("no EXT-X-PART"));
    for p in &parts {
        assert!(
            p.uri.ends_with(".mp4") && !p.uri.contains('?'),
            "{}",
            ctx("part URI must be a bare .mp4")
        );
        assert!(
            p.duration <= part_target * 1.10 + 1e-6,
            "{}",
            ctx("part longer than PART-TARGET")
        );
    }
    assert!(
        parts.iter().any(|p| p.independent),
        "{}",
        ctx("no INDEPENDENT=YES part")
    );
    let hints = tag_lines(text, "#EXT-X-PRELOAD-HINT");
    assert_eq!(hints.len(), 1, "{}", ctx("exactly one PRELOAD-HINT"));
    assert_eq!(
        attrs(hints[0]).get("TYPE").map(String::as_str),
        Some("PART"),
        "{}",
        ctx("hint type")
    );
    assert_eq!(
        tag_lines(text, "#EXT-X-RENDITION-REPORT").len(),
        renditions - 1,
        "{}",
        ctx("RENDITION-REPORT count")
    );
    sc_line
}

pub fn iv_of(key_line: &str) -> [u8; 16] {
    let hex_iv = attrs(key_line).get("IV").cloned().expect("IV");
    let bytes = hex::decode(hex_iv.trim_start_matches("0x")).expect("hex IV");
    bytes.try_into().expect("16-byte IV")
}

pub fn decrypt(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let key: [u8; 16] = key.try_into().expect("16-byte key");
    Aes128CbcDec::new(&key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .expect("valid AES-128-CBC/PKCS7")
}

/// The ISO BMFF box types at the top level of `data`.
pub fn top_level_boxes(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        out.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}
