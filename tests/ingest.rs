//! RTMP ingest end to end: rejection, takeover, odd sources and hostile bytes,
//! with the real binary and real ffmpeg publishers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::checks::check_media_playlist;
use common::playlist::{media_uris, tag_lines, MediaPlaylist};
use common::{ffmpeg_decode, get_text, wait_until_live, Server, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_fails_ffmpeg_quickly_with_a_reason_and_the_server_carries_on() {
    let server = Server::start();
    let good = server.create_stream("good", Some("small"));
    let url = format!("{}/live_not_a_real_key", good.rtmp_url);
    let mut source = Source::small();
    source.seconds = Some(10);
    let started = Instant::now();
    let mut bad = source.publish(&url);
    let status = bad
        .wait_timeout(Duration::from_secs(8))
        .expect("ffmpeg must give up within a few seconds");
    assert!(!status.success(), "ffmpeg must fail on a bad key");
    assert!(started.elapsed() < Duration::from_secs(8));
    let log = bad.log();
    assert!(
        log.contains("unknown stream key"),
        "ffmpeg should print our reason: {log}"
    );
    assert!(
        server.log().contains("publish rejected"),
        "the server logs the rejection"
    );

    // Unharmed: a good key publishes and plays.
    let _publisher = Source::small().publish(&good.publish_url());
    wait_until_live(&server, &good, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_handshakes_leave_the_server_serving() {
    let server = Server::start();
    let stream = server.create_stream("hostile", Some("small"));

    // Garbage instead of a handshake.
    let mut garbage = TcpStream::connect(server.rtmp).expect("connect");
    garbage.write_all(&[0xAB; 4096]).expect("write");
    // A truncated handshake: C0 and half of C1, then silence.
    let mut truncated = TcpStream::connect(server.rtmp).expect("connect");
    truncated.write_all(&[3u8]).expect("c0");
    truncated.write_all(&[0u8; 700]).expect("half c1");
    // A valid C0+C1 followed by garbage chunks.
    let mut chunky = TcpStream::connect(server.rtmp).expect("connect");
    chunky.write_all(&[3u8]).expect("c0");
    chunky.write_all(&[0u8; 1536]).expect("c1");
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    chunky.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    chunky
        .read_exact(&mut s0s1s2)
        .expect("server answers a plain handshake");
    chunky.write_all(&[0u8; 1536]).expect("c2");
    chunky.write_all(&[0xFF; 8192]).expect("junk chunks");
    // Abrupt close mid-stream.
    drop(garbage);

    // Everyone else is served: a real publish plays, HTTP answers.
    let _publisher = Source::small().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let (status, _) = get_text(&format!("{}/healthz", server.base())).await;
    assert_eq!(status, 200);
    drop(truncated);
    drop(chunky);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_with_the_same_key_takes_over_and_playback_continues() {
    let server = Server::start();
    let stream = server.create_stream("takeover", Some("small"));
    let mut first = Source::small().publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let rendition = common::playlist::first_variant_uri(&master);
    let url = stream.url(&server.base(), &rendition);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = MediaPlaylist::parse(&get_text(&url).await.1);
    let msn_before = before.last_msn().expect("segments");

    let second = Source::small().publish(&stream.publish_url());
    let status = first
        .wait_timeout(Duration::from_secs(10))
        .expect("the stale publisher is disconnected");
    assert!(!status.success() || status.code().is_some(), "first publisher ended");
    assert!(
        server.log().contains("Takeover"),
        "takeover is logged as a lifecycle event"
    );

    // The playlist continues: sequence numbers only grow and a discontinuity marks the switch.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_msn = msn_before;
    loop {
        let (status, text) = get_text(&url).await;
        assert_eq!(status, 200);
        let pl = MediaPlaylist::parse(&text);
        let last = pl.last_msn().expect("segments");
        assert!(last >= seen_msn, "media sequence went backwards: {last} < {seen_msn}");
        seen_msn = last;
        if pl.segments.iter().any(|s| s.discontinuity) && last >= msn_before + 3 {
            check_media_playlist(&rendition, &text, media_uris(&master).len(), true);
            break;
        }
        assert!(Instant::now() < deadline, "no discontinuity after takeover:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Players joining now start before the discontinuity and play through it.
    for target in [
        url.clone(),
        stream.url(&server.base(), &media_uris(&master)[0]),
        stream.playback_url.clone(),
    ] {
        let (ok, stderr) = ffmpeg_decode(&target, 4, &[]);
        assert!(ok, "playback of {target} across the takeover: {stderr}");
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_and_video_only_sources_produce_valid_hls() {
    let server = Server::start();
    for (name, video, audio) in [("audio-only", None, true), ("video-only", Some((640, 360)), false)] {
        let stream = server.create_stream(name, Some("small"));
        let source = Source {
            video,
            audio,
            ..Source::small()
        };
        let _publisher = source.publish(&stream.publish_url());
        let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
        let variants = tag_lines(&master, "#EXT-X-STREAM-INF");
        assert!(!variants.is_empty(), "{name}: master without variants:\n{master}");
        if audio && video.is_none() {
            assert!(
                variants.iter().all(|v| !v.contains("avc1")),
                "{name}: no video codec advertised:\n{master}"
            );
        } else {
            assert!(
                variants.iter().all(|v| !v.contains("mp4a")),
                "{name}: no audio codec advertised:\n{master}"
            );
            assert!(
                tag_lines(&master, "#EXT-X-MEDIA").is_empty(),
                "{name}: no audio group:\n{master}"
            );
        }
        let uris = media_uris(&master);
        for uri in &uris {
            let (_, text) = get_text(&stream.url(&server.base(), uri)).await;
            check_media_playlist(uri, &text, uris.len(), true);
        }
        let (ok, stderr) = ffmpeg_decode(&stream.playback_url, 4, &[]);
        assert!(
            ok && stderr.trim().is_empty(),
            "{name}: ffmpeg decode failed:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_audio_is_encoded_to_aac_once_for_every_rendition() {
    let server = Server::start();
    let stream = server.create_stream("mp3", Some("small"));
    let source = Source {
        audio_codec: "libmp3lame",
        ..Source::small()
    };
    let _publisher = source.publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let audio_groups = tag_lines(&master, "#EXT-X-MEDIA");
    assert_eq!(
        audio_groups.len(),
        1,
        "one audio rendition shared by all variants:\n{master}"
    );
    let variants = tag_lines(&master, "#EXT-X-STREAM-INF");
    assert!(variants.len() >= 3, "{master}");
    assert!(
        variants.iter().all(|v| v.contains("mp4a.40.2") && v.contains("AUDIO=")),
        "AAC advertised:\n{master}"
    );
    let audio_uri = common::playlist::attrs(audio_groups[0])["URI"].clone();
    let audio_url = stream.url(&server.base(), &audio_uri);
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &audio_url,
        ])
        .output()
        .expect("ffprobe");
    let codecs = String::from_utf8_lossy(&out.stdout).into_owned();
    let codecs: Vec<&str> = codecs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == "aac"),
        "audio rendition codecs {codecs:?}"
    );
    let (ok, stderr) = ffmpeg_decode(&stream.playback_url, 4, &[]);
    assert!(ok && stderr.trim().is_empty(), "ffmpeg decode failed:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_auto_keyframes_drop_passthrough_and_warn_the_operator() {
    let server = Server::start();
    let stream = server.create_stream("long-gop", Some("small"));
    // OBS's "auto" keyframe interval: IDRs ~8 s apart.
    let source = Source {
        gop: 240,
        ..Source::small()
    };
    let _publisher = source.publish(&stream.publish_url());
    let master = wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let top = common::playlist::first_variant_uri(&master);
    let url = stream.url(&server.base(), &top);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pl = loop {
        let pl = MediaPlaylist::parse(&get_text(&url).await.1);
        let after_switch = pl.segments.iter().skip_while(|s| !s.discontinuity).count();
        if after_switch >= 3 {
            break pl;
        }
        assert!(Instant::now() < deadline, "no switch to encoded keyframes: {pl:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let switched = pl.segments.iter().position(|s| s.discontinuity).expect("discontinuity");
    assert_ne!(
        pl.segments[switched].map_uri, pl.segments[0].map_uri,
        "the encoded top rung has its own init"
    );
    for seg in &pl.segments[switched..] {
        assert!(
            seg.duration <= 2.5,
            "segments follow the 2 s target after the switch: {:?}",
            pl.segments
        );
    }
    check_media_playlist(&top, &get_text(&url).await.1, media_uris(&master).len(), true);
    let log = server.log();
    assert!(
        log.contains("Set the keyframe interval to 2 s"),
        "operator warned in the log"
    );
    let (ok, stderr) = ffmpeg_decode(&url, 4, &[]);
    assert!(ok && stderr.trim().is_empty(), "decode across the switch: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_live_publisher_shuts_down_cleanly() {
    let mut server = Server::start();
    let stream = server.create_stream("shutdown", Some("small"));
    let mut publisher = Source::small().publish(&stream.publish_url());
    wait_until_live(&server, &stream, Duration::from_secs(30)).await;
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success(), "exit status {status}:\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        publisher.wait_timeout(Duration::from_secs(10)).is_some(),
        "the publisher was disconnected"
    );
}
