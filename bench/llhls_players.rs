//! Issue 14, "load held": many LL-HLS players on a list of media playlists, for a long run, with
//! every error counted. Built and run by `bench/loadheld.py` (`cargo bench --no-run --bench
//! llhls_players`).
//!
//! Each client is one player on one keep-alive HTTP/1.1 connection (clients are spread evenly
//! over the playlists in `--paths`, round-robin). It sends a plain GET first, then forever: it
//! reads the `#EXT-X-PRELOAD-HINT` (`M.P`) of the playlist it last got, sends the blocking reload
//! `?_HLS_msn=M&_HLS_part=P` for that part, and checks the answer is a 200 listing that part (or
//! part 0 of the next segment, when the hinted part's segment closed first: RFC 8216bis releases
//! the request then). Players do NOT fetch media parts: media fan-out belongs to the CDN tier in
//! front of an edge; the edge's per-viewer work is the blocking playlist.
//!
//! `--plain` is for a server without blocking reloads (nginx-rtmp's plain HLS): each client
//! reloads the playlist every `--reload-ms` (hls.js reloads a live playlist about every half
//! target duration) and checks for a 200 whose `#EXTM3U` body lists at least one segment.
//!
//! Errors, by kind: `connect` (connect failed or took over 10 s), `status` (not 200), `timeout`
//! (no complete response within `--timeout-s`), `playlist` (the playlist lacks the requested part,
//! its preload hint or any segment), `protocol` (read/write failure, a malformed response, the
//! connection closed after a request was sent, bytes nobody asked for). After an error the client
//! drops its connection, waits 1 s and starts again with a plain GET on a new one. A connection
//! the server closed cleanly between two responses (`Connection: close`, or end of stream seen
//! before the next request) is reopened and counted as a reconnect, not an error.
//!
//! New connections go through a semaphore: at most 256 are waiting for their first answer, so the
//! server's accept queue never overflows even when the server is slow to accept; first requests
//! are staggered over 1 s.
//!
//! Usage: llhls_players --addr HOST:PORT --paths FILE [--clients N] [--seconds S]
//!                      [--report-every S] [--timeout-s S] [--plain] [--reload-ms MS]
//! Every `--report-every` seconds, and once at the end (`"final": true`), one JSON line on stdout:
//! elapsed, responses ok (total and in the interval), errors by kind (totals) with the first few
//! messages, reconnects, and p50/p99/max of request sent -> complete response over the interval
//! (the final line: over the run). Exit 1 if any error occurred, 2 on bad arguments.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{sleep_until, Instant};

#[path = "http1.rs"]
mod http1;
use http1::{preload_hint, read_response, released_by, request, with_directives, Response};

/// First requests are spread over this long, so 5,000 players do not start in one burst.
const STAGGER: Duration = Duration::from_secs(1);
const CONNECTS_AT_ONCE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After an error a player waits this long, so a failing server sees a bounded retry rate.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Error messages kept for the report (the counts cover all of them).
const MAX_SAMPLES: usize = 8;

#[derive(Debug)]
struct Options {
    addr: SocketAddr,
    paths: Vec<Arc<str>>,
    clients: usize,
    run: Duration,
    report_every: Duration,
    timeout: Duration,
    plain: bool,
    reload: Duration,
}

fn usage(why: &str) -> ! {
    eprintln!("llhls_players: {why}");
    eprintln!(
        "usage: llhls_players --addr HOST:PORT --paths FILE [--clients N] [--seconds S] [--report-every S] \
         [--timeout-s S] [--plain] [--reload-ms MS]"
    );
    std::process::exit(2)
}

fn read_paths(file: &str) -> Vec<Arc<str>> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| usage(&format!("reading {file}: {e}")));
    let paths: Vec<Arc<str>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Arc::from)
        .collect();
    if paths.is_empty() {
        usage(&format!("{file} lists no playlist"));
    }
    paths
}

fn parse_options() -> Options {
    let mut values = BTreeMap::<String, String>::new();
    let mut plain = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            // cargo passes --bench to bench targets; it means nothing here.
            "--bench" => {}
            "--plain" => plain = true,
            "--addr" | "--paths" | "--clients" | "--seconds" | "--report-every" | "--timeout-s" | "--reload-ms" => {
                let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
                values.insert(flag, value);
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    // Every number is at least 1: a zero would mean no clients, no run or a busy loop.
    let number = |flag: &str, default: u64| match values.get(flag) {
        None => default,
        Some(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
            .max(1),
    };
    let required = |flag: &str| {
        values
            .get(flag)
            .unwrap_or_else(|| usage(&format!("{flag} is required")))
    };
    let addr = required("--addr");
    Options {
        addr: addr.parse().unwrap_or_else(|_| usage(&format!("bad --addr {addr}"))),
        paths: read_paths(required("--paths")),
        clients: number("--clients", 5000) as usize,
        run: Duration::from_secs(number("--seconds", 60)),
        report_every: Duration::from_secs(number("--report-every", 60)),
        timeout: Duration::from_secs(number("--timeout-s", 10)),
        plain,
        reload: Duration::from_millis(number("--reload-ms", 1000)),
    }
}

// ---- accounting -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Connect,
    Status,
    Timeout,
    Playlist,
    Protocol,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Status => "status",
            Kind::Timeout => "timeout",
            Kind::Playlist => "playlist",
            Kind::Protocol => "protocol",
        }
    }
}

#[derive(Debug)]
struct Failure {
    kind: Kind,
    message: String,
}

fn failure(kind: Kind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
    }
}

/// Response times in 1 ms buckets up to 10 s; the last bucket holds everything slower.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: Duration,
}

impl Histogram {
    const BUCKETS: usize = 10_001;

    fn new() -> Self {
        Histogram {
            counts: vec![0; Self::BUCKETS],
            total: 0,
            max: Duration::ZERO,
        }
    }

    fn record(&mut self, d: Duration) {
        let ms = (d.as_millis() as usize).min(Self::BUCKETS - 1);
        self.counts[ms] += 1;
        self.total += 1;
        self.max = self.max.max(d);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The upper edge (ms) of the bucket holding quantile `q`; None when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        let rank = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64 + 1);
            }
        }
        None
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.quantile(0.50),
            "p99": self.quantile(0.99),
            // 0.1 ms is all a reader needs.
            "max": (self.total > 0).then(|| (self.max.as_secs_f64() * 10_000.0).round() / 10.0),
            "n": self.total,
        })
    }
}

struct Stats {
    ok: u64,
    ok_interval: u64,
    errors: BTreeMap<Kind, u64>,
    samples: Vec<String>,
    reconnects: u64,
    interval: Histogram,
    run: Histogram,
}

/// Shared by every player; each holds the lock only to bump a counter.
#[derive(Clone)]
struct Shared(Arc<Mutex<Stats>>);

impl Shared {
    fn new() -> Self {
        Shared(Arc::new(Mutex::new(Stats {
            ok: 0,
            ok_interval: 0,
            errors: BTreeMap::new(),
            samples: Vec::new(),
            reconnects: 0,
            interval: Histogram::new(),
            run: Histogram::new(),
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        // A panicking player cannot leave the counters half-updated: keep counting.
        let mut stats = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut stats)
    }

    fn ok(&self, latency: Duration) {
        self.with(|s| {
            s.ok += 1;
            s.ok_interval += 1;
            s.interval.record(latency);
        });
    }

    fn error(&self, f: Failure) {
        self.with(|s| {
            *s.errors.entry(f.kind).or_default() += 1;
            if s.samples.len() < MAX_SAMPLES {
                s.samples.push(format!("{}: {}", f.kind.name(), f.message));
            }
        });
    }

    fn reconnect(&self) {
        self.with(|s| s.reconnects += 1);
    }

    /// One report line; the interval's figures start again afterwards.
    fn report(&self, elapsed: Duration, clients: usize, last: bool) -> (serde_json::Value, bool) {
        self.with(|s| {
            let interval = std::mem::replace(&mut s.interval, Histogram::new());
            s.run.merge(&interval);
            let mut line = serde_json::json!({
                "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                "final": last,
                "clients": clients,
                "ok": s.ok,
                "ok_interval": std::mem::take(&mut s.ok_interval),
                "errors": s.errors.iter().map(|(k, n)| (k.name().to_string(), serde_json::json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
                "error_samples": s.samples,
                "reconnects": s.reconnects,
                "latency_ms": interval.json(),
            });
            if last {
                line["run_latency_ms"] = s.run.json();
            }
            (line, s.errors.is_empty())
        })
    }
}

// ---- one player -----------------------------------------------------------------------------

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A new connection and its admission permit. The caller holds the permit until the first
/// answer: a connect completes in the kernel before the server accepts it, so only an answer
/// proves the server took the connection off its (1,024-deep) accept queue.
async fn connect(addr: SocketAddr, gate: &Semaphore) -> Result<(Conn, SemaphorePermit<'_>), Failure> {
    let permit = gate
        .acquire()
        .await
        .map_err(|e| failure(Kind::Connect, e.to_string()))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| failure(Kind::Connect, format!("connect took over {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| failure(Kind::Connect, format!("{addr}: {e}")))?;
    // Requests are small and answered one at a time: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        stream,
        buf: Vec::with_capacity(8192),
    };
    Ok((conn, permit))
}

/// Whether the server ended the idle connection (end of stream before we sent anything). Bytes
/// nobody asked for, or a reset, are protocol errors.
fn closed_between_responses(conn: &Conn) -> Result<bool, Failure> {
    let mut byte = [0u8; 1];
    match conn.stream.try_read(&mut byte) {
        Ok(0) => Ok(true),
        Ok(_) => Err(failure(Kind::Protocol, "bytes received between responses")),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(failure(Kind::Protocol, format!("between responses: {e}"))),
    }
}

async fn exchange(conn: &mut Conn, path: &str, timeout: Duration) -> Result<Response, Failure> {
    let round = async {
        conn.stream
            .write_all(&request(path))
            .await
            .map_err(|e| failure(Kind::Protocol, format!("write: {e}")))?;
        read_response(&mut conn.stream, &mut conn.buf)
            .await
            .map_err(|e| failure(Kind::Protocol, e))
    };
    tokio::time::timeout(timeout, round)
        .await
        .map_err(|_| failure(Kind::Timeout, format!("no complete response within {timeout:?}")))?
}

/// Checks one answer; in LL-HLS mode returns the part the next blocking reload asks for.
fn check(plain: bool, response: &Response, asked: Option<(u64, u64)>) -> Result<Option<(u64, u64)>, Failure> {
    let text = String::from_utf8_lossy(&response.body);
    if response.status != 200 {
        let start: String = text.chars().take(120).collect();
        return Err(failure(Kind::Status, format!("status {}: {start}", response.status)));
    }
    if plain {
        if !text.starts_with("#EXTM3U") || !text.contains("#EXTINF:") {
            return Err(failure(Kind::Playlist, "no #EXTM3U playlist with a segment"));
        }
        return Ok(None);
    }
    if let Some(target) = asked {
        if released_by(&text, target).is_none() {
            return Err(failure(
                Kind::Playlist,
                format!("playlist does not list part {}.{}", target.0, target.1),
            ));
        }
    }
    preload_hint(&text)
        .map(Some)
        .ok_or_else(|| failure(Kind::Playlist, "no EXT-X-PRELOAD-HINT"))
}

struct Player {
    index: usize,
    path: Arc<str>,
    opts: Arc<Options>,
    gate: Arc<Semaphore>,
    stats: Shared,
    start: Instant,
    end: Instant,
}

impl Player {
    async fn run(self) {
        let offset = STAGGER.mul_f64(self.index as f64 / self.opts.clients as f64);
        sleep_until(self.start + offset).await;
        let mut conn: Option<Conn> = None;
        // The part the next blocking reload asks for; None: a plain GET.
        let mut next: Option<(u64, u64)> = None;
        while Instant::now() < self.end {
            let sent = Instant::now();
            match self.step(&mut conn, next).await {
                Ok(target) => next = target,
                Err(f) => {
                    self.stats.error(f);
                    conn = None;
                    next = None;
                    sleep_until((Instant::now() + ERROR_BACKOFF).min(self.end)).await;
                    continue;
                }
            }
            if self.opts.plain {
                sleep_until((sent + self.opts.reload).min(self.end)).await;
            }
        }
    }

    /// One request and its check, on the open connection or a new one.
    async fn step(&self, conn: &mut Option<Conn>, next: Option<(u64, u64)>) -> Result<Option<(u64, u64)>, Failure> {
        if let Some(open) = conn.as_ref() {
            if closed_between_responses(open)? {
                self.stats.reconnect();
                *conn = None;
            }
        }
        let mut admission = None;
        let open = match conn {
            Some(open) => open,
            None => {
                let (new, permit) = connect(self.opts.addr, &self.gate).await?;
                admission = Some(permit);
                conn.insert(new)
            }
        };
        let asked = if self.opts.plain { None } else { next };
        let path = match asked {
            Some((msn, part)) => with_directives(&self.path, msn, part),
            None => self.path.to_string(),
        };
        let sent = Instant::now();
        let response = exchange(open, &path, self.opts.timeout).await?;
        let latency = sent.elapsed();
        drop(admission);
        if response.close {
            // The server ends the connection after this answer, as it may: open another next time.
            self.stats.reconnect();
            *conn = None;
        }
        let target = check(self.opts.plain, &response, asked)?;
        self.stats.ok(latency);
        Ok(target)
    }
}

// ---- the run --------------------------------------------------------------------------------

async fn reporter(stats: Shared, start: Instant, end: Instant, every: Duration, clients: usize) {
    let mut at = start + every;
    while at < end {
        sleep_until(at).await;
        let (line, _) = stats.report(at - start, clients, false);
        println!("{line}");
        at += every;
    }
}

async fn run(opts: Options) -> bool {
    let opts = Arc::new(opts);
    let stats = Shared::new();
    let gate = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    let start = Instant::now();
    let end = start + opts.run;
    let mut players = Vec::with_capacity(opts.clients);
    for index in 0..opts.clients {
        let player = Player {
            index,
            path: opts.paths[index % opts.paths.len()].clone(),
            opts: opts.clone(),
            gate: gate.clone(),
            stats: stats.clone(),
            start,
            end,
        };
        players.push(tokio::spawn(player.run()));
    }
    let report = tokio::spawn(reporter(stats.clone(), start, end, opts.report_every, opts.clients));
    // Every exchange is bounded by the timeout and every connect by CONNECT_TIMEOUT.
    let bound = end + opts.timeout + CONNECT_TIMEOUT + Duration::from_secs(2);
    for player in players {
        if tokio::time::timeout_at(bound, player).await.is_err() {
            stats.error(failure(Kind::Timeout, "a player did not stop by the end of the run"));
        }
    }
    report.abort();
    let (line, clean) = stats.report(start.elapsed(), opts.clients, true);
    println!("{line}");
    clean
}

fn main() -> std::process::ExitCode {
    let opts = parse_options();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("llhls_players: starting tokio: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if runtime.block_on(run(opts)) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
