//! Real peer: ffmpeg decrypts and decodes what we package (it plays parent
//! segments, AES-128 with the clear init), frame for frame like the source.

use std::path::Path;
use std::process::Command;

use super::*;

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Top-level MP4 boxes as (type, bytes).
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        assert!(size >= 8 && at + size <= data.len(), "sane box");
        out.push((data[at + 4..at + 8].try_into().expect("4 bytes"), &data[at..at + size]));
        at += size;
    }
    out
}

#[tokio::test]
async fn ffmpeg_decodes_the_encrypted_output_like_the_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.mp4");
    let source_str = source.to_str().expect("utf8 path");
    // 25 fps, an IDR every second, a fragment (= part) every 5 frames.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-t",
        "4",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-keyint_min",
        "25",
        "-sc_threshold",
        "0",
        "-movflags",
        "cmaf+frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        "200000",
        "-f",
        "mp4",
        source_str,
    ]);
    let data = std::fs::read(&source).expect("source");
    let top = boxes(&data);
    let init: Vec<u8> = top
        .iter()
        .take_while(|(t, _)| t != b"moof")
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    let fragments: Vec<Vec<u8>> = top
        .iter()
        .filter(|(t, _)| t == b"moof" || t == b"mdat")
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.concat_bytes())
        .collect();
    assert_eq!(fragments.len(), 20);

    let mut h = Harness::new(HlsSettings {
        blocking_timeout: None,
        ..settings()
    });
    assert!(h.packager.begin_session());
    h.ladder = h
        .packager
        .set_renditions(vec![video("720p", 240, 500_000)])
        .expect("renditions");
    h.packager.add_init("720p", Bytes::from(init)).expect("init");
    for (i, fragment) in fragments.into_iter().enumerate() {
        let chunk = CmafChunk {
            source_arrival: None,
            encoder_delay: None,
            data: Bytes::from(fragment),
            pts_ns: i as u64 * PART_NS,
            duration_ns: PART_NS,
            starts_segment: i % 5 == 0,
            independent: i % 5 == 0,
        };
        h.packager.add_chunk("720p", chunk, h.origin).expect("chunk");
    }
    h.packager.end_stream();

    let stream_dir = dir.path().join("live/s1");
    let rendition_dir = stream_dir.join("720p");
    std::fs::create_dir_all(&rendition_dir).expect("dirs");
    std::fs::create_dir_all(stream_dir.join("key")).expect("dirs");
    let playlist = h
        .packager
        .media_playlist("720p", PlaylistRequest::default(), "")
        .await
        .expect("playlist");
    std::fs::write(rendition_dir.join("index.m3u8"), &playlist).expect("write");
    for line in playlist.lines() {
        if let Some(uri) =
            attr(line, "URI").filter(|_| line.starts_with("#EXT-X-MAP") || line.starts_with("#EXT-X-KEY"))
        {
            let file = Path::new(&uri)
                .file_name()
                .and_then(|f| f.to_str())
                .expect("file name")
                .to_string();
            let bytes = if let Some(id) = file.strip_suffix(".key") {
                h.packager.key(id.parse().expect("key id")).expect("key").to_vec()
            } else {
                let id = file
                    .trim_start_matches("init")
                    .trim_end_matches(".mp4")
                    .parse()
                    .expect("init id");
                h.packager.init("720p", id).expect("init").to_vec()
            };
            let target = if file.ends_with(".key") {
                stream_dir.join("key").join(&file)
            } else {
                rendition_dir.join(&file)
            };
            std::fs::write(target, bytes).expect("write");
        }
    }
    for uri in segment_uris(&playlist) {
        let msn = uri.trim_end_matches(".mp4").parse().expect("msn");
        std::fs::write(
            rendition_dir.join(&uri),
            h.packager.segment("720p", msn).await.expect("segment"),
        )
        .expect("write");
    }
    assert_eq!(segment_uris(&playlist).len(), 4);
    assert_eq!(tagged(&playlist, "#EXT-X-KEY:METHOD=AES-128").len(), 4);

    let packaged = rendition_dir.join("index.m3u8");
    let ours = ffmpeg(&[
        "-allowed_extensions",
        "ALL",
        "-protocol_whitelist",
        "file,crypto,data",
        "-i",
        packaged.to_str().expect("utf8"),
        "-map",
        "0:v",
        "-f",
        "framemd5",
        "-",
    ]);
    let reference = ffmpeg(&["-i", source_str, "-map", "0:v", "-f", "framemd5", "-"]);
    let frames = |out: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit(',').next().map(|md5| md5.trim().to_string()))
            .collect()
    };
    assert_eq!(frames(&reference).len(), 100);
    assert_eq!(frames(&ours), frames(&reference));
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for [&([u8; 4], &[u8])] {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }
}
