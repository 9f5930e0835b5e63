//! What `serve` prints after it creates the demo stream on first start.
//! The stream key is a credential, and a service's stdout lands in journald
//! or `docker logs`, readable by whoever reads logs: the key is printed only
//! to a terminal, or when the operator asks with `serve --demo`.

/// The demo stream as `serve` created it.
pub struct DemoStream<'a> {
    pub stream_id: &'a str,
    pub key: &'a str,
    pub rtmp_url: &'a str,
    pub playback_url: &'a str,
}

/// Whether the key may be printed: asked for, or stdout is a terminal.
pub fn shows_key(demo_flag: bool, stdout_is_terminal: bool) -> bool {
    demo_flag || stdout_is_terminal
}

pub fn banner(demo: &DemoStream<'_>, show_key: bool) -> String {
    let DemoStream {
        stream_id,
        key,
        rtmp_url,
        playback_url,
    } = demo;
    if !show_key {
        return format!(
            "\nCreated a demo stream ({stream_id}). Its key is not printed: stdout is not a terminal, \
             and logs are no place for a credential (start with `serve --demo` to print it).\n  \
             A key for it:  pulse-edge stream rotate-key {stream_id}\n  \
             A new stream:  pulse-edge stream create --name NAME   (prints its key and playback URL)\n"
        );
    }
    format!(
        "\nCreated a demo stream (the key is shown only this once):\n  \
         RTMP URL:     {rtmp_url}\n  \
         Stream key:   {key}\n  \
         Playback URL: {playback_url}\n  \
         Try: ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast \
         -tune zerolatency -g 60 -c:a aac -f flv {rtmp_url}/{key}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: DemoStream<'static> = DemoStream {
        stream_id: "st0123",
        key: "live_default_0123456789abcdef",
        rtmp_url: "rtmp://127.0.0.1:1935/live",
        playback_url: "http://127.0.0.1:8080/live/st0123/master.m3u8?token=tok",
    };

    #[test]
    fn the_key_reaches_a_log_only_when_asked_for() {
        assert!(!shows_key(false, false));
        assert!(shows_key(true, false));
        assert!(shows_key(false, true));
        let quiet = banner(&DEMO, false);
        assert!(!quiet.contains(DEMO.key), "{quiet}");
        assert!(!quiet.contains("token=tok"), "{quiet}");
        assert!(quiet.contains("pulse-edge stream create") && quiet.contains("rotate-key st0123"));
        let shown = banner(&DEMO, true);
        assert!(shown.contains("Stream key:   live_default_0123456789abcdef"), "{shown}");
        assert!(shown.contains(DEMO.playback_url));
    }
}
