//! Packager tests: a synthetic ladder (fake chunk bytes) driven through the
//! same handlers `run_session` uses, an in-memory store, and playlist parsing.

mod blocking;
mod crypto;
mod playlist;
mod real_media;
mod retention;
mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use super::{HlsSettings, Packagers, PlaylistRequest, StreamPackager};
use crate::media::{CmafChunk, RenditionKind, RenditionSpec};
use crate::storage::{ObjectMeta, ObjectStore, StorageError};

#[derive(Default)]
pub(super) struct MemStore {
    pub objects: Mutex<BTreeMap<String, (Bytes, ObjectMeta)>>,
    pub deleted: Mutex<Vec<String>>,
}

impl ObjectStore for MemStore {
    fn put(&self, key: String, data: Bytes, meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>> {
        self.objects.lock().insert(key, (data, meta));
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        let mut objects = self.objects.lock();
        for key in keys {
            objects.remove(&key);
            self.deleted.lock().push(key);
        }
        Box::pin(async { Ok(()) })
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
        let found = self.objects.lock().get(&key).map(|(d, _)| d.clone());
        Box::pin(async move { Ok(found) })
    }

    fn describe(&self) -> String {
        "mem://".into()
    }
}

pub(super) fn video(name: &str, height: u32, bandwidth: u64) -> RenditionSpec {
    RenditionSpec {
        name: name.into(),
        kind: RenditionKind::Video {
            width: height * 16 / 9,
            height,
            framerate: 30.0,
        },
        bandwidth,
        average_bandwidth: bandwidth,
        codecs: "avc1.64001f".into(),
        passthrough: false,
    }
}

pub(super) fn audio() -> RenditionSpec {
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

/// 200 ms parts, 1 s segments: TARGETDURATION 1, parts listed for 3 s.
pub(super) fn settings() -> HlsSettings {
    HlsSettings {
        part_target: Duration::from_millis(200),
        segment_target: Duration::from_secs(1),
        window_segments: 6,
        key_rotation_segments: 3,
        encrypt: true,
        blocking_timeout: Some(Duration::from_millis(300)),
        store_buffer_bytes: 1 << 30,
        store_concurrency: 2,
        ..HlsSettings::default()
    }
}

pub(super) const PART_NS: u64 = 200_000_000;

pub(super) struct Harness {
    pub packagers: Packagers,
    pub store: Arc<MemStore>,
    pub packager: Arc<StreamPackager>,
    pub origin: SystemTime,
    pub ladder: Vec<String>,
    next_pts: HashMap<String, u64>,
    /// Clear bytes of every chunk sent, per rendition, in order.
    pub sent: HashMap<String, Vec<Bytes>>,
    counter: usize,
}

impl Harness {
    pub fn new(settings: HlsSettings) -> Self {
        let store = Arc::new(MemStore::default());
        let packagers = Packagers::new(settings, store.clone());
        let packager = packagers.stream("s1");
        Self {
            packagers,
            store,
            packager,
            origin: UNIX_EPOCH + Duration::from_secs(1_795_428_000),
            ladder: Vec::new(),
            next_pts: HashMap::new(),
            sent: HashMap::new(),
            counter: 0,
        }
    }

    /// Begins a session with these renditions, each with init bytes `init_tag`.
    pub fn start_session(&mut self, specs: Vec<RenditionSpec>, init_tag: &str) {
        assert!(self.packager.begin_session());
        self.ladder = self.packager.set_renditions(specs).expect("renditions");
        self.next_pts.clear();
        for name in self.ladder.clone() {
            self.packager
                .add_init(&name, Bytes::from(format!("init:{name}:{init_tag}")))
                .expect("init");
        }
    }

    pub fn chunk(&mut self, name: &str, starts_segment: bool) {
        self.chunk_with(name, starts_segment, PART_NS);
    }

    pub fn chunk_with(&mut self, name: &str, starts_segment: bool, duration_ns: u64) {
        let pts = *self.next_pts.get(name).unwrap_or(&0);
        self.counter += 1;
        // Varying lengths exercise PKCS7 padding, including exact multiples of 16.
        let len = 160 + (self.counter * 7) % 41;
        let data: Vec<u8> = format!("{name}@{pts};").bytes().cycle().take(len).collect();
        let data = Bytes::from(data);
        self.sent.entry(name.to_string()).or_default().push(data.clone());
        let chunk = CmafChunk {
            source_arrival: None,
            encoder_delay: None,
            data,
            pts_ns: pts,
            duration_ns,
            starts_segment,
            independent: starts_segment,
        };
        self.packager.add_chunk(name, chunk, self.origin).expect("chunk");
        self.next_pts.insert(name.to_string(), pts + duration_ns);
    }

    /// `count` segments of `parts` parts in every rendition, interleaved.
    pub fn segments(&mut self, count: usize, parts: usize) {
        for _ in 0..count {
            self.parts(parts, true);
        }
    }

    /// `parts` parts in every rendition; the first starts a segment if asked.
    pub fn parts(&mut self, parts: usize, first_starts_segment: bool) {
        for p in 0..parts {
            for name in self.ladder.clone() {
                self.chunk(&name, p == 0 && first_starts_segment);
            }
        }
    }

    pub async fn playlist(&self, name: &str, req: PlaylistRequest) -> String {
        self.packager
            .media_playlist(name, req, "token=t")
            .await
            .expect("playlist")
    }
}

pub(super) fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

pub(super) fn tagged<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(tag)).collect()
}

/// An attribute of a tag line (quoted values without quotes).
pub(super) fn attr(line: &str, name: &str) -> Option<String> {
    let (_, list) = line.split_once(':')?;
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

pub(super) fn media_sequence(text: &str) -> u64 {
    tagged(text, "#EXT-X-MEDIA-SEQUENCE:")
        .first()
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.parse().ok())
        .expect("media sequence")
}

/// The segment URIs (lines after EXTINF).
pub(super) fn segment_uris(text: &str) -> Vec<String> {
    let all = lines(text);
    all.windows(2)
        .filter(|w| w[0].starts_with("#EXTINF:"))
        .map(|w| w[1].to_string())
        .collect()
}

pub(super) fn req(msn: Option<u64>, part: Option<u64>) -> PlaylistRequest {
    PlaylistRequest { msn, part, skip: None }
}
