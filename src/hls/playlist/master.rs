use std::fmt::Write;

use super::{quoted_safe, with_query};
use crate::media::{RenditionKind, RenditionSpec};

/// The multivariant playlist. Audio is its own rendition (cmafmux is
/// single-track), so video variants point at an audio group.
pub(crate) fn render_master(renditions: &[&RenditionSpec], child_query: &str) -> Option<String> {
    let mut videos: Vec<&RenditionSpec> = renditions
        .iter()
        .copied()
        .filter(|r| matches!(r.kind, RenditionKind::Video { .. }))
        .collect();
    let audios: Vec<&RenditionSpec> = renditions
        .iter()
        .copied()
        .filter(|r| matches!(r.kind, RenditionKind::Audio { .. }))
        .collect();
    if videos.is_empty() && audios.is_empty() {
        return None;
    }
    videos.sort_by_key(|r| std::cmp::Reverse(r.bandwidth));
    let uri = |spec: &RenditionSpec| with_query(&format!("{}/index.m3u8", spec.name), child_query);

    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n");
    // cmafmux starts every fragment with a sync sample.
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");

    if videos.is_empty() {
        for audio in &audios {
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}",
                audio.bandwidth,
                audio.average_bandwidth,
                quoted_safe(&audio.codecs),
                uri(audio)
            );
        }
        return Some(out);
    }

    for (index, audio) in audios.iter().enumerate() {
        let channels = match audio.kind {
            RenditionKind::Audio { channels, .. } => channels,
            RenditionKind::Video { .. } => 2,
        };
        let default = if index == 0 { "YES" } else { "NO" };
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"{}\",DEFAULT={default},AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"{}\"",
            quoted_safe(&audio.name),
            quoted_safe(&uri(audio))
        );
    }
    let group_audio = audios.first();
    for video in &videos {
        let (width, height, framerate) = match video.kind {
            RenditionKind::Video {
                width,
                height,
                framerate,
            } => (width, height, framerate),
            RenditionKind::Audio { .. } => continue,
        };
        let bandwidth = video.bandwidth.saturating_add(group_audio.map_or(0, |a| a.bandwidth));
        let average = video
            .average_bandwidth
            .saturating_add(group_audio.map_or(0, |a| a.average_bandwidth));
        let codecs = match group_audio {
            Some(audio) => format!("{},{}", video.codecs, audio.codecs),
            None => video.codecs.clone(),
        };
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS=\"{}\",RESOLUTION={width}x{height}",
            quoted_safe(&codecs)
        );
        if framerate.is_finite() && framerate > 0.0 {
            let _ = write!(out, ",FRAME-RATE={framerate:.3}");
        }
        if group_audio.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{}", uri(video));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(name: &str, height: u32, bandwidth: u64) -> RenditionSpec {
        RenditionSpec {
            name: name.into(),
            kind: RenditionKind::Video {
                width: height * 16 / 9,
                height,
                framerate: 30.0,
            },
            bandwidth,
            average_bandwidth: bandwidth * 8 / 10,
            codecs: "avc1.64001f".into(),
            passthrough: false,
        }
    }

    fn audio() -> RenditionSpec {
        RenditionSpec {
            name: "audio".into(),
            kind: RenditionKind::Audio {
                sample_rate: 48_000,
                channels: 2,
            },
            bandwidth: 128_000,
            average_bandwidth: 128_000,
            codecs: "mp4a.40.2".into(),
            passthrough: false,
        }
    }

    #[test]
    fn video_variants_reference_the_audio_group_highest_first() {
        let (low, high, a) = (video("360p", 360, 600_000), video("720p", 720, 2_500_000), audio());
        let text = render_master(&[&low, &a, &high], "token=abc").expect("has renditions");
        let expected = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8?token=abc\"\n\
#EXT-X-STREAM-INF:BANDWIDTH=2628000,AVERAGE-BANDWIDTH=2128000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"\n\
720p/index.m3u8?token=abc\n\
#EXT-X-STREAM-INF:BANDWIDTH=728000,AVERAGE-BANDWIDTH=608000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"audio\"\n\
360p/index.m3u8?token=abc\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn audio_only_and_video_only_sources() {
        let a = audio();
        let text = render_master(&[&a], "").expect("has renditions");
        assert!(text.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=128000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"
        ));
        assert!(!text.contains("EXT-X-MEDIA"));

        let v = video("1080p", 1080, 5_000_000);
        let text = render_master(&[&v], "").expect("has renditions");
        assert!(text.contains("CODECS=\"avc1.64001f\",RESOLUTION=1920x1080,FRAME-RATE=30.000\n1080p/index.m3u8\n"));
        assert!(!text.contains("AUDIO="));
        assert_eq!(render_master(&[], ""), None);
    }
}
