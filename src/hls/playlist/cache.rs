//! Media playlists rendered once per change and shared by every request.
//!
//! A live rendition changes a few times a second (a part every PART-TARGET)
//! while players reload it far more often: every viewer every part, and a
//! blocking reload wakes all its waiters at once. Rendering per request made
//! the render the largest cost of serving a playlist; now a request copies a
//! [`MediaTemplate`] and puts its own key query in.
//!
//! When a template is stale: the packager publishes a rendition's [`Edge`]
//! (under the state lock) after every change to what that rendition lists —
//! parts, segments, retention, the end of the stream — so an entry watching
//! that channel sees every such change. The other inputs of a render (stream
//! timing, ENDLIST, the other renditions' reports, the skip mode) are compared
//! by value. Debug builds check every hit against a fresh render, so a change
//! that someday bypasses the edge fails the tests instead of serving a stale
//! playlist.

use std::sync::Arc;

use tokio::sync::watch;

use super::{render_media, MediaPlaylist, MediaTemplate, StreamTiming};
use crate::hls::blocking::SkipRequest;
use crate::hls::rendition::{Edge, Rendition};

/// Per stream: the current template of each (rendition, skip mode) asked for.
/// Lives in the stream state and is used under its lock.
#[derive(Default)]
pub(crate) struct PlaylistCache {
    entries: Vec<Entry>,
}

struct Entry {
    rendition: String,
    skip: Option<SkipRequest>,
    /// Marked seen at render time; changed = the rendition changed since.
    edge: watch::Receiver<Edge>,
    timing: StreamTiming,
    ended: bool,
    /// (name, last part) of the other renditions, in order: the
    /// EXT-X-RENDITION-REPORT lines.
    reports: Vec<(String, Option<(u64, u64)>)>,
    template: Arc<MediaTemplate>,
}

impl Entry {
    fn is_current(&self, renditions: &[Rendition], timing: StreamTiming, ended: bool) -> bool {
        // Err: the rendition was replaced (its edge sender dropped).
        if !matches!(self.edge.has_changed(), Ok(false)) || self.timing != timing || self.ended != ended {
            return false;
        }
        let mut others = renditions.iter().filter(|o| o.name() != self.rendition);
        for (name, last_part) in &self.reports {
            match others.next() {
                Some(other) if other.name() == name && other.visible_last_part() == *last_part => {}
                _ => return false,
            }
        }
        others.next().is_none()
    }
}

impl PlaylistCache {
    /// The media playlist of `name` in the state described by the arguments
    /// (the stream state, whose lock the caller holds). None if there is no
    /// such rendition. The caller decides whether a playlist may be served
    /// at all (e.g. not before the first segment).
    pub(crate) fn media(
        &mut self,
        renditions: &[Rendition],
        name: &str,
        timing: StreamTiming,
        ended: bool,
        skip: Option<SkipRequest>,
    ) -> Option<Arc<MediaTemplate>> {
        let rendition = renditions.iter().find(|r| r.name() == name)?;
        let position = self.entries.iter().position(|e| e.rendition == name && e.skip == skip);
        if let Some(entry) = position.map(|i| &self.entries[i]) {
            if entry.is_current(renditions, timing, ended) {
                #[cfg(debug_assertions)]
                assert_eq!(
                    *entry.template,
                    render(renditions, rendition, timing, ended, skip),
                    "stale cached playlist for {name}: something changed it without publishing its edge"
                );
                return Some(entry.template.clone());
            }
        }
        let template = Arc::new(render(renditions, rendition, timing, ended, skip));
        let entry = Entry {
            rendition: name.to_string(),
            skip,
            // A new receiver has seen the current value.
            edge: rendition.edge.subscribe(),
            timing,
            ended,
            reports: renditions
                .iter()
                .filter(|o| o.name() != name)
                .map(|o| (o.name().to_string(), o.visible_last_part()))
                .collect(),
            template: template.clone(),
        };
        match position {
            Some(i) => self.entries[i] = entry,
            None => {
                // Renditions that left the ladder are not asked for again.
                self.entries
                    .retain(|e| renditions.iter().any(|r| r.name() == e.rendition));
                self.entries.push(entry);
            }
        }
        Some(template)
    }
}

fn render(
    renditions: &[Rendition],
    rendition: &Rendition,
    timing: StreamTiming,
    ended: bool,
    skip: Option<SkipRequest>,
) -> MediaTemplate {
    render_media(&MediaPlaylist {
        rendition,
        others: renditions.iter().filter(|o| o.name() != rendition.name()).collect(),
        timing,
        ended,
        skip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::tests::{audio, req, settings, video, Harness};
    use crate::hls::PlaylistRequest;

    const SKIPS: [Option<SkipRequest>; 3] = [None, Some(SkipRequest::Yes), Some(SkipRequest::V2)];

    /// What the cache serves for every rendition and skip mode, after checking
    /// it against a render from scratch.
    async fn served_equals_fresh(h: &Harness, names: &[&str]) -> Vec<Arc<MediaTemplate>> {
        let mut templates = Vec::new();
        for name in names {
            for skip in SKIPS {
                let served = h
                    .packager
                    .media_playlist(
                        name,
                        PlaylistRequest {
                            skip,
                            ..req(None, None)
                        },
                        "token=a b\"c",
                    )
                    .await
                    .expect("playlist");
                let state = h.packager.state.lock();
                let rendition = state.rendition(name).expect("rendition");
                let fresh = render(&state.renditions, rendition, state.timing, state.ended, skip);
                assert_eq!(served, fresh.assemble("token=a b\"c"), "{name} {skip:?}");
                let cached = state
                    .playlists
                    .entries
                    .iter()
                    .find(|e| e.rendition == *name && e.skip == skip)
                    .expect("cached");
                assert_eq!(*cached.template, fresh);
                templates.push(cached.template.clone());
            }
        }
        templates
    }

    /// Same templates (the very same allocations) = served from the cache.
    fn shared(a: &[Arc<MediaTemplate>], b: &[Arc<MediaTemplate>]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
    }

    #[tokio::test]
    async fn every_kind_of_change_renders_again_and_nothing_else_does() {
        let mut settings = settings();
        settings.window_segments = 3;
        settings.key_rotation_segments = 2;
        let mut h = Harness::new(settings);
        h.start_session(
            vec![video("720p", 720, 2_500_000), video("360p", 360, 600_000), audio()],
            "a",
        );
        let names = ["720p", "360p", "audio"];
        h.segments(1, 1);
        let mut before = served_equals_fresh(&h, &names).await;
        let again = served_equals_fresh(&h, &names).await;
        assert!(shared(&before, &again), "no change, no render");

        type Change = Box<dyn Fn(&mut Harness)>;
        let changes: Vec<(&str, Change)> = vec![
            ("a part in every rendition", Box::new(|h| h.parts(1, false))),
            ("a part in one other rendition", Box::new(|h| h.chunk("360p", false))),
            ("segments close and open", Box::new(|h| h.parts(1, true))),
            ("retention drops segments, keys rotate", Box::new(|h| h.segments(6, 3))),
            (
                "a part longer than PART-TARGET",
                Box::new(|h| {
                    for name in h.ladder.clone() {
                        h.chunk_with(&name, false, 260_000_000);
                    }
                }),
            ),
            ("the stream ends", Box::new(|h| h.packager.end_stream())),
            (
                "a new session: discontinuity",
                Box::new(|h| {
                    h.start_session(
                        vec![video("720p", 720, 2_500_000), video("360p", 360, 600_000), audio()],
                        "b",
                    );
                    h.segments(1, 2);
                }),
            ),
        ];
        for (what, change) in changes {
            change(&mut h);
            let after = served_equals_fresh(&h, &names).await;
            // The rendition reports make every rendition's playlist change
            // with any other rendition's new part.
            assert!(
                after.iter().zip(&before).all(|(a, b)| !Arc::ptr_eq(a, b)),
                "{what}: every playlist must be rendered again"
            );
            before = after;
        }
    }

    #[tokio::test]
    async fn a_rendition_leaving_or_joining_the_ladder_changes_the_reports() {
        let mut h = Harness::new(settings());
        h.start_session(vec![video("720p", 720, 2_500_000), video("360p", 360, 600_000)], "a");
        h.segments(2, 2);
        let both = served_equals_fresh(&h, &["720p"]).await;
        assert!(both[0].assemble("").contains("../360p/index.m3u8"));

        h.start_session(vec![video("720p", 720, 2_500_000)], "a");
        let alone = served_equals_fresh(&h, &["720p"]).await;
        assert!(!alone[0].assemble("").contains("RENDITION-REPORT"));
        assert!(!shared(&both, &alone));

        // Back under the same name: a new rendition with a new edge.
        h.start_session(vec![video("720p", 720, 2_500_000), video("360p", 360, 600_000)], "a");
        h.segments(1, 2);
        served_equals_fresh(&h, &["720p", "360p"]).await;
    }

    #[tokio::test]
    async fn blocked_requests_get_the_playlist_of_the_part_they_waited_for() {
        let mut h = Harness::new(settings());
        h.start_session(vec![video("720p", 720, 2_500_000)], "a");
        h.segments(2, 2);
        let before = served_equals_fresh(&h, &["720p"]).await;
        let (msn, part) = {
            let state = h.packager.state.lock();
            state.rendition("720p").expect("rendition").preload_hint()
        };
        let waiters: Vec<_> = (0..50)
            .map(|i| {
                let packager = h.packager.clone();
                tokio::spawn(async move {
                    packager
                        .media_playlist("720p", req(Some(msn), Some(part)), &format!("token=v{i}"))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        h.chunk("720p", false);
        let fresh = {
            let state = h.packager.state.lock();
            let rendition = state.rendition("720p").expect("rendition");
            render(&state.renditions, rendition, state.timing, state.ended, None)
        };
        assert_ne!(fresh, *before[0]);
        for (i, waiter) in waiters.into_iter().enumerate() {
            let text = waiter.await.expect("joined").expect("playlist");
            assert_eq!(text, fresh.assemble(&format!("token=v{i}")));
            assert!(text.contains(&format!("URI=\"{msn}.{part}.mp4\"")), "{text}");
        }
        let state = h.packager.state.lock();
        let renders = state.playlists.entries.iter().filter(|e| e.rendition == "720p").count();
        assert_eq!(renders, 3, "one entry per skip mode, not per request");
    }

    #[test]
    fn key_queries_go_after_every_key_uri_only() {
        let mut settings = settings();
        settings.key_rotation_segments = 1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut h = Harness::new(settings);
            h.start_session(vec![video("720p", 720, 2_500_000)], "a");
            h.segments(3, 2);
            let template = served_equals_fresh(&h, &["720p"]).await.remove(0);
            let plain = template.assemble("");
            assert_eq!(plain.len(), template.len());
            let keys: Vec<&str> = plain.lines().filter(|l| l.starts_with("#EXT-X-KEY")).collect();
            assert_eq!(keys.len(), 3);
            for line in &keys {
                assert!(line.contains(".key\",IV=0x"), "{line}");
            }
            let signed = template.assemble("token=x.y");
            let signed_keys: Vec<&str> = signed.lines().filter(|l| l.starts_with("#EXT-X-KEY")).collect();
            for (line, plain_line) in signed_keys.iter().zip(&keys) {
                assert_eq!(*line, plain_line.replace(".key\"", ".key?token=x.y\""));
            }
            assert_eq!(signed.len(), plain.len() + 3 * "?token=x.y".len());
            assert_eq!(
                template.assemble("token=\"\r\nx"),
                template.assemble("token=x"),
                "quotes and line breaks never reach a quoted attribute"
            );
        });
    }
}
