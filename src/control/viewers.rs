//! Viewer sessions and counts.
//!
//! A session starts when a signed master playlist is fetched; the child
//! playlist URLs we write carry its id (`vs=`), so one player counts once
//! however many renditions and requests it makes. Only playlist requests
//! keep a session alive (parts and segments may come from a CDN cache); it
//! ends `session_timeout` after the last one. Viewer time is credited up
//! to each session's last request, so the timeout tail is not billed.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;
use serde::Serialize;
use utoipa::ToSchema;

use crate::delivery::SessionsExhausted;

const SESSION_PREFIX: &str = "vs_";
/// 96 random bits, base32-ish hex.
const SESSION_HEX: usize = 24;

#[derive(Debug, Clone)]
pub struct ViewerSettings {
    pub session_timeout: Duration,
    /// Sessions beyond this are not counted (memory stays bounded).
    pub max_sessions: usize,
    /// `viewers.updated` at most this often per stream.
    pub event_interval: Duration,
    /// New sessions one playback token may open per `token_window`: a token
    /// is normally one viewer, whose player may reload the master playlist
    /// now and then, not thousands of times (one token opened 20,000
    /// sessions in 2 s, each a counted and billed viewer).
    pub max_sessions_per_token: u32,
    pub token_window: Duration,
}

impl Default for ViewerSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(30),
            max_sessions: 200_000,
            event_interval: Duration::from_secs(5),
            max_sessions_per_token: 20,
            token_window: Duration::from_secs(60),
        }
    }
}

/// The live count of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ViewerCount {
    pub stream_id: String,
    pub app_id: String,
    pub viewers: u64,
    /// The most at once since the stream last had none (in this server
    /// run); each hour's peak is kept in the usage rows.
    pub peak_viewers: u64,
    /// Viewers by the rendition they last asked for.
    pub renditions: BTreeMap<String, u64>,
}

/// What one sweep found.
#[derive(Debug, Default, PartialEq)]
pub struct Sweep {
    /// Streams whose count changed since the previous sweep.
    pub changed: Vec<ViewerCount>,
    /// Of those, the ones due a `viewers.updated` event.
    pub events: Vec<ViewerCount>,
    /// Viewer time to bill since the previous sweep: (app, stream, ms, concurrent).
    pub credited: Vec<(String, String, u64, u64)>,
    pub expired: usize,
}

struct Session {
    stream_id: String,
    app_id: String,
    rendition: Option<String>,
    last_seen: Instant,
    credited_until: Instant,
}

#[derive(Default)]
struct StreamViewers {
    count: Option<ViewerCount>,
    last_event: Option<(u64, Instant)>,
}

/// The sessions a token opened in its current window.
struct TokenWindow {
    start: Instant,
    opened: u32,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    streams: HashMap<String, StreamViewers>,
    /// By a keyed hash of the token text: tokens are credentials, and a
    /// hash is all the window needs.
    token_windows: HashMap<u64, TokenWindow>,
    refused: u64,
}

/// A child playlist request as the tracker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// The `vs=` the request carried.
    pub session: &'a str,
    pub stream_id: &'a str,
    pub token: &'a str,
    pub rendition: &'a str,
}

pub struct ViewerTracker {
    state: Mutex<State>,
    settings: ViewerSettings,
    token_hasher: std::collections::hash_map::RandomState,
}

/// Ids we hand out look like this; anything else in `vs=` is ignored.
pub fn is_session_id(id: &str) -> bool {
    id.strip_prefix(SESSION_PREFIX)
        .is_some_and(|hex| hex.len() == SESSION_HEX && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn new_session_id() -> String {
    let mut bytes = [0u8; SESSION_HEX / 2];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{SESSION_PREFIX}{}", hex::encode(bytes))
}

impl ViewerTracker {
    pub fn new(settings: ViewerSettings) -> Self {
        Self {
            state: Mutex::new(State::default()),
            settings,
            token_hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn token_key(&self, token: &str) -> u64 {
        self.token_hasher.hash_one(token)
    }

    /// `Err` when the token opened its share of sessions in its window.
    fn token_has_room(&self, state: &State, key: u64, now: Instant) -> Result<(), SessionsExhausted> {
        let window = self.settings.token_window;
        match state.token_windows.get(&key) {
            Some(w)
                if now.saturating_duration_since(w.start) < window
                    && w.opened >= self.settings.max_sessions_per_token =>
            {
                Err(SessionsExhausted {
                    retry_after: window.saturating_sub(now.saturating_duration_since(w.start)),
                })
            }
            _ => Ok(()),
        }
    }

    fn charge_token(&self, state: &mut State, key: u64, now: Instant) {
        let fresh = TokenWindow { start: now, opened: 0 };
        let w = state.token_windows.entry(key).or_insert(fresh);
        if now.saturating_duration_since(w.start) >= self.settings.token_window {
            *w = TokenWindow { start: now, opened: 0 };
        }
        w.opened = w.opened.saturating_add(1);
    }

    fn admit(&self, state: &mut State, id: String, stream_id: &str, app_id: &str, now: Instant) -> bool {
        if state.sessions.len() >= self.settings.max_sessions {
            state.refused += 1;
            if state.refused.is_power_of_two() {
                tracing::warn!(
                    max = self.settings.max_sessions,
                    refused = state.refused,
                    "viewer sessions at their limit; new viewers are not counted"
                );
            }
            return false;
        }
        state.sessions.insert(
            id,
            Session {
                stream_id: stream_id.to_owned(),
                app_id: app_id.to_owned(),
                rendition: None,
                last_seen: now,
                credited_until: now,
            },
        );
        true
    }

    /// A master playlist was fetched with `token`: a new viewer session,
    /// `None` when sessions are at their limit (served, not counted), `Err`
    /// when the token opened its share of sessions in its window.
    pub fn start(
        &self,
        stream_id: &str,
        app_id: &str,
        token: &str,
        now: Instant,
    ) -> Result<Option<String>, SessionsExhausted> {
        let id = new_session_id();
        let key = self.token_key(token);
        let mut state = self.state.lock();
        self.token_has_room(&state, key, now)?;
        if !self.admit(&mut state, id.clone(), stream_id, app_id, now) {
            return Ok(None);
        }
        self.charge_token(&mut state, key, now);
        Ok(Some(id))
    }

    /// A child playlist request carrying `session` and `token`. An id we do
    /// not know (the server restarted under a playing viewer) starts that
    /// session again, as a new one of the token's; one for another stream,
    /// not of our format, or of a token out of sessions is ignored (served,
    /// not counted).
    ///
    /// `rendition` is what the viewer watches, unless it is an alternate
    /// (an audio rendition a player loads beside its video one): that one
    /// only names the session's rendition while it has none (audio-only
    /// streams). `is_alternate` is asked only when the rendition changes:
    /// a player reloading the same playlist costs a map lookup.
    pub fn touch(
        &self,
        visit: Visit<'_>,
        app_of: impl FnOnce() -> Option<String>,
        is_alternate: impl FnOnce() -> bool,
        now: Instant,
    ) {
        let Visit {
            session,
            stream_id,
            token,
            rendition,
        } = visit;
        if !is_session_id(session) {
            return;
        }
        let mut state = self.state.lock();
        match state.sessions.get_mut(session) {
            Some(s) if s.stream_id == stream_id => {
                s.last_seen = now;
                let changed = s.rendition.as_deref() != Some(rendition);
                if changed && (s.rendition.is_none() || !is_alternate()) {
                    s.rendition = Some(rendition.to_owned());
                }
            }
            Some(_) => {}
            None => {
                let key = self.token_key(token);
                if self.token_has_room(&state, key, now).is_err() {
                    return;
                }
                let Some(app_id) = app_of() else {
                    return;
                };
                if self.admit(&mut state, session.to_owned(), stream_id, &app_id, now) {
                    self.charge_token(&mut state, key, now);
                    if let Some(s) = state.sessions.get_mut(session) {
                        s.rendition = Some(rendition.to_owned());
                    }
                }
            }
        }
    }

    /// Ends idle sessions, credits viewer time and recounts. Run once a second.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let mut sweep = Sweep::default();
        let mut state = self.state.lock();
        let timeout = self.settings.session_timeout;
        let mut counts: HashMap<String, ViewerCount> = HashMap::new();
        // stream -> (app, ms). Looked up before inserting: this runs over
        // every session every second, and should not allocate per session.
        let mut credited: HashMap<String, (String, u64)> = HashMap::new();
        let before = state.sessions.len();
        state.sessions.retain(|_, s| {
            let ms = s.last_seen.saturating_duration_since(s.credited_until).as_millis() as u64;
            if ms > 0 {
                match credited.get_mut(s.stream_id.as_str()) {
                    Some((_, total)) => *total += ms,
                    None => {
                        credited.insert(s.stream_id.clone(), (s.app_id.clone(), ms));
                    }
                }
                s.credited_until = s.last_seen;
            }
            if now.saturating_duration_since(s.last_seen) > timeout {
                return false;
            }
            if !counts.contains_key(s.stream_id.as_str()) {
                counts.insert(
                    s.stream_id.clone(),
                    ViewerCount {
                        stream_id: s.stream_id.clone(),
                        app_id: s.app_id.clone(),
                        viewers: 0,
                        peak_viewers: 0,
                        renditions: BTreeMap::new(),
                    },
                );
            }
            if let Some(count) = counts.get_mut(s.stream_id.as_str()) {
                count.viewers += 1;
                if let Some(r) = &s.rendition {
                    match count.renditions.get_mut(r.as_str()) {
                        Some(n) => *n += 1,
                        None => {
                            count.renditions.insert(r.clone(), 1);
                        }
                    }
                }
            }
            true
        });
        sweep.expired = before - state.sessions.len();
        let window = self.settings.token_window;
        state
            .token_windows
            .retain(|_, w| now.saturating_duration_since(w.start) < window);
        // Streams that had viewers and have none now count as 0 once.
        let stream_ids: std::collections::BTreeSet<String> =
            state.streams.keys().chain(counts.keys()).cloned().collect();
        for stream_id in stream_ids {
            let entry = state.streams.entry(stream_id.clone()).or_default();
            let previous = entry.count.clone();
            let mut count = match counts.remove(&stream_id) {
                Some(count) => count,
                None => match &previous {
                    Some(p) if p.viewers > 0 => ViewerCount {
                        viewers: 0,
                        renditions: BTreeMap::new(),
                        ..p.clone()
                    },
                    _ => continue,
                },
            };
            count.peak_viewers = previous.as_ref().map_or(0, |p| p.peak_viewers).max(count.viewers);
            if previous.as_ref() == Some(&count) {
                continue;
            }
            sweep.changed.push(count.clone());
            entry.count = Some(count);
        }
        // Events: throttled, and only when the number differs from the last one sent.
        for entry in state.streams.values_mut() {
            let Some(count) = &entry.count else { continue };
            let due = match entry.last_event {
                Some((sent, at)) => {
                    sent != count.viewers && now.saturating_duration_since(at) >= self.settings.event_interval
                }
                None => count.viewers > 0,
            };
            if due {
                entry.last_event = Some((count.viewers, now));
                sweep.events.push(count.clone());
            }
        }
        // A stream back at zero with its last event sent is forgotten.
        state.streams.retain(|_, e| {
            !(e.count.as_ref().is_some_and(|c| c.viewers == 0) && e.last_event.is_some_and(|(sent, _)| sent == 0))
        });
        for (stream_id, (app_id, ms)) in credited {
            let concurrent = state
                .streams
                .get(&stream_id)
                .and_then(|e| e.count.as_ref())
                .map_or(0, |c| c.viewers);
            sweep.credited.push((app_id, stream_id, ms, concurrent));
        }
        sweep.changed.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        sweep.events.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        sweep
    }

    pub fn count(&self, stream_id: &str) -> Option<ViewerCount> {
        self.state.lock().streams.get(stream_id).and_then(|e| e.count.clone())
    }

    /// Concurrent viewers per app, for the metrics.
    pub fn per_app(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock();
        let mut apps = BTreeMap::new();
        for count in state.streams.values().filter_map(|e| e.count.as_ref()) {
            *apps.entry(count.app_id.clone()).or_default() += count.viewers;
        }
        apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> ViewerTracker {
        ViewerTracker::new(ViewerSettings {
            session_timeout: Duration::from_secs(30),
            max_sessions: 3,
            event_interval: Duration::from_secs(5),
            ..ViewerSettings::default()
        })
    }

    fn visit<'a>(session: &'a str, stream_id: &'a str, token: &'a str, rendition: &'a str) -> Visit<'a> {
        Visit {
            session,
            stream_id,
            token,
            rendition,
        }
    }

    /// A session under the token every test uses, which has room.
    fn start(t: &ViewerTracker, stream_id: &str, now: Instant) -> Option<String> {
        t.start(stream_id, "app", "tok", now).expect("the token has room")
    }

    #[test]
    fn one_player_counts_once_across_renditions_and_requests() {
        let t = tracker();
        let t0 = Instant::now();
        let id = start(&t, "s", t0).expect("session");
        assert!(is_session_id(&id), "{id}");
        t.touch(visit(&id, "s", "tok", "audio"), || Some("app".into()), || true, t0);
        for (i, rendition) in ["720p", "720p", "360p"].iter().enumerate() {
            t.touch(
                visit(&id, "s", "tok", rendition),
                || Some("app".into()),
                || false,
                t0 + Duration::from_secs(i as u64),
            );
        }
        t.touch(
            visit(&id, "s", "tok", "audio"),
            || Some("app".into()),
            || true,
            t0 + Duration::from_secs(2),
        );
        let unchanged = || panic!("asked although the rendition did not change");
        t.touch(
            visit(&id, "s", "tok", "360p"),
            || None,
            unchanged,
            t0 + Duration::from_secs(2),
        );
        let sweep = t.sweep(t0 + Duration::from_secs(3));
        assert_eq!(sweep.changed.len(), 1);
        let count = &sweep.changed[0];
        assert_eq!((count.viewers, count.peak_viewers), (1, 1));
        assert_eq!(count.renditions, BTreeMap::from([("360p".to_owned(), 1)]));
        assert_eq!(sweep.events, sweep.changed, "the first count is an event at once");
        assert_eq!(sweep.credited, [("app".to_owned(), "s".to_owned(), 2000, 1)]);
        // Nothing changed: nothing reported.
        let quiet = t.sweep(t0 + Duration::from_secs(4));
        assert!(quiet.changed.is_empty() && quiet.events.is_empty(), "{quiet:?}");
    }

    #[test]
    fn sessions_end_after_the_timeout_and_the_tail_is_not_billed() {
        let t = tracker();
        let t0 = Instant::now();
        let id = start(&t, "s", t0).expect("session");
        t.touch(
            visit(&id, "s", "tok", "720p"),
            || Some("app".into()),
            || false,
            t0 + Duration::from_secs(10),
        );
        t.sweep(t0 + Duration::from_secs(11));
        let gone = t.sweep(t0 + Duration::from_secs(41));
        assert_eq!(gone.expired, 1);
        assert_eq!(gone.changed[0].viewers, 0);
        assert_eq!(gone.changed[0].peak_viewers, 1);
        assert_eq!(gone.events[0].viewers, 0, "the drop to zero is reported");
        assert!(gone.credited.is_empty(), "no time after the last request");
        assert_eq!(t.count("s"), None, "a stream back at zero is forgotten");
    }

    #[test]
    fn events_are_throttled_and_sent_only_for_a_changed_number() {
        let t = tracker();
        let t0 = Instant::now();
        start(&t, "s", t0);
        assert_eq!(t.sweep(t0).events.len(), 1);
        let second = start(&t, "s", t0 + Duration::from_secs(1));
        let sweep = t.sweep(t0 + Duration::from_secs(1));
        assert_eq!(sweep.changed[0].viewers, 2, "the feed hears at once");
        assert!(sweep.events.is_empty(), "the webhook waits out the 5 s");
        let sweep = t.sweep(t0 + Duration::from_secs(5));
        assert_eq!(sweep.events[0].viewers, 2);
        let third = start(&t, "s", t0 + Duration::from_secs(6));
        assert!(second.is_some() && third.is_some());
        let sweep = t.sweep(t0 + Duration::from_secs(6));
        assert_eq!((sweep.changed.len(), sweep.events.len()), (1, 0));
        let sweep = t.sweep(t0 + Duration::from_secs(10));
        assert_eq!(sweep.events[0].viewers, 3);
    }

    #[test]
    fn unknown_ids_restart_their_session_and_foreign_or_malformed_ones_are_ignored() {
        let t = tracker();
        let t0 = Instant::now();
        let survivor = format!("vs_{}", "ab".repeat(12));
        t.touch(
            visit(&survivor, "s", "tok", "720p"),
            || Some("app".into()),
            || false,
            t0,
        );
        t.touch(
            visit("vs_short", "s", "tok", "720p"),
            || Some("app".into()),
            || false,
            t0,
        );
        t.touch(
            visit("../../etc", "s", "tok", "720p"),
            || Some("app".into()),
            || false,
            t0,
        );
        let id = start(&t, "other", t0).expect("session");
        t.touch(visit(&id, "s", "tok", "720p"), || Some("app".into()), || false, t0);
        let sweep = t.sweep(t0);
        let s = sweep.changed.iter().find(|c| c.stream_id == "s").expect("s");
        assert_eq!(s.viewers, 1);
        // The cap: three sessions exist, a fourth is refused.
        start(&t, "s", t0).expect("third");
        assert_eq!(start(&t, "s", t0), None);
    }

    #[test]
    fn one_token_opens_at_most_its_share_of_sessions_per_window() {
        let t = ViewerTracker::new(ViewerSettings::default());
        let t0 = Instant::now();
        // The reported attack: 20,000 master playlist requests in 2 s.
        let opened = (0..20_000u64)
            .filter(|i| {
                let now = t0 + Duration::from_micros(100 * i);
                matches!(t.start("s", "app", "one-token", now), Ok(Some(_)))
            })
            .count();
        assert_eq!(opened, 20);
        let refused = t.start("s", "app", "one-token", t0 + Duration::from_secs(45));
        assert_eq!(
            refused,
            Err(SessionsExhausted {
                retry_after: Duration::from_secs(15)
            })
        );
        assert!(matches!(t.start("s", "app", "another", t0), Ok(Some(_))), "per token");
        assert!(
            matches!(
                t.start("s", "app", "one-token", t0 + Duration::from_secs(60)),
                Ok(Some(_))
            ),
            "a new window"
        );
    }

    #[test]
    fn a_token_out_of_sessions_keeps_its_sessions_but_forges_no_new_ones() {
        let t = ViewerTracker::new(ViewerSettings {
            max_sessions_per_token: 2,
            ..ViewerSettings::default()
        });
        let t0 = Instant::now();
        let first = t.start("s", "app", "tok", t0).expect("room").expect("session");
        t.start("s", "app", "tok", t0).expect("room").expect("session");
        assert!(t.start("s", "app", "tok", t0).is_err());
        // Made-up ids of our format would each be a session restarted.
        for i in 0..100u32 {
            let forged = format!("vs_{i:024x}");
            t.touch(visit(&forged, "s", "tok", "720p"), || Some("app".into()), || false, t0);
        }
        t.touch(
            visit(&first, "s", "tok", "720p"),
            || Some("app".into()),
            || false,
            t0 + Duration::from_secs(20),
        );
        let sweep = t.sweep(t0 + Duration::from_secs(40));
        assert_eq!(
            sweep.changed[0].viewers, 1,
            "the touched session lives on; nothing forged"
        );
        assert_eq!(t.state.lock().token_windows.len(), 1);
        t.sweep(t0 + Duration::from_secs(61));
        assert!(t.state.lock().token_windows.is_empty(), "old windows are forgotten");
    }
}
