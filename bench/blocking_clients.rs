//! Issue 3, figure 6 (blocking half): many LL-HLS clients each holding a blocking playlist
//! request (`_HLS_msn` / `_HLS_part`) for a part that is not published yet, and the wall clock
//! at which each one got its complete response.
//!
//! Built and run by `bench/playlist.py` (`cargo bench --no-run --bench blocking_clients`); the
//! script joins the receipt times printed here with the server's own log line for the part
//! ("part published", with microsecond timestamps, same machine and clock).
//!
//! Plain HTTP/1.1 over tokio `TcpStream`: one keep-alive connection per client, opened before
//! the first round. Per round:
//!   1. a plain reload on a separate connection reads the preload hint `M.P`;
//!   2. every client sends `?_HLS_msn=M&_HLS_part=P+ahead` (a part ~`ahead` part-durations in
//!      the future, so that every request is held before the part exists);
//!   3. each client records `SystemTime::now()` when the last byte of its response arrived and
//!      checks it is a 200 whose playlist lists the target part (or, when the target's segment
//!      closed before it, part 0 of the next segment: RFC 8216bis releases the request then).
//!
//! Usage: blocking_clients --addr 127.0.0.1:PORT --path '/live/ID/REND/index.m3u8?token=T'
//!                         [--clients N] [--rounds K] [--ahead A] [--timeout-s S]
//! Prints one JSON object per round on stdout; diagnostics on stderr. Exit 1 on any failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

#[path = "http1.rs"]
mod http1;
use http1::{preload_hint, read_response, released_by, request, with_directives};

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    path: String,
    clients: usize,
    rounds: usize,
    ahead: u64,
    timeout: Duration,
}

fn usage(why: &str) -> ! {
    eprintln!("blocking_clients: {why}");
    eprintln!(
        "usage: blocking_clients --addr HOST:PORT --path PATH?token=T [--clients N] [--rounds K] [--ahead A] [--timeout-s S]"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut addr = None;
    let mut path = None;
    let mut clients = 5000usize;
    let mut rounds = 5usize;
    let mut ahead = 3u64;
    let mut timeout_s = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // cargo passes --bench to bench targets; it means nothing here.
        if flag == "--bench" {
            continue;
        }
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| {
            v.parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().unwrap_or_else(|_| usage(&format!("bad --addr {value}")))),
            "--path" => path = Some(value),
            "--clients" => clients = number(&value) as usize,
            "--rounds" => rounds = number(&value) as usize,
            "--ahead" => ahead = number(&value),
            "--timeout-s" => timeout_s = number(&value),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    Options {
        addr: addr.unwrap_or_else(|| usage("--addr is required")),
        path: path.unwrap_or_else(|| usage("--path is required")),
        clients: clients.max(1),
        rounds: rounds.max(1),
        ahead,
        timeout: Duration::from_secs(timeout_s.max(1)),
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Outcome {
    received_us: u64,
    result: Result<(u64, u64), String>,
}

async fn client(
    index: usize,
    mut stream: TcpStream,
    path: Arc<String>,
    mut go: watch::Receiver<Option<(usize, (u64, u64))>>,
    sent: mpsc::UnboundedSender<()>,
    done: mpsc::UnboundedSender<(usize, Outcome)>,
    timeout: Duration,
) {
    let mut buf = Vec::with_capacity(8192);
    let mut alive = true;
    while go.changed().await.is_ok() {
        let Some((_, target)) = *go.borrow_and_update() else {
            continue;
        };
        let outcome = if !alive {
            let _ = sent.send(());
            Outcome {
                received_us: 0,
                result: Err("connection lost in an earlier round".into()),
            }
        } else {
            let written = stream
                .write_all(&request(&with_directives(&path, target.0, target.1)))
                .await;
            let _ = sent.send(());
            match written {
                Err(e) => Outcome {
                    received_us: 0,
                    result: Err(format!("write: {e}")),
                },
                Ok(()) => match tokio::time::timeout(timeout, read_response(&mut stream, &mut buf)).await {
                    Err(_) => Outcome {
                        received_us: 0,
                        result: Err(format!("no response within {timeout:?}")),
                    },
                    Ok(Err(e)) => Outcome {
                        received_us: 0,
                        result: Err(e),
                    },
                    Ok(Ok(response)) => {
                        let received_us = unix_us();
                        let text = String::from_utf8_lossy(&response.body);
                        let result = if response.status != 200 {
                            Err(format!(
                                "status {}: {}",
                                response.status,
                                text.chars().take(200).collect::<String>()
                            ))
                        } else {
                            released_by(&text, target)
                                .ok_or_else(|| format!("playlist does not list part {}.{}", target.0, target.1))
                        };
                        Outcome { received_us, result }
                    }
                },
            }
        };
        alive &= outcome.result.is_ok();
        if done.send((index, outcome)).is_err() {
            return;
        }
    }
}

async fn plain_reload(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(&request(path))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let response = tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream, &mut buf))
        .await
        .map_err(|_| "plain reload timed out".to_string())??;
    if response.status != 200 {
        return Err(format!("plain reload: status {}", response.status));
    }
    String::from_utf8(response.body).map_err(|_| "playlist is not UTF-8".to_string())
}

async fn run(opts: Options) -> Result<bool, String> {
    // Connect everyone first, a bounded number at a time so the listen backlog never overflows.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let mut connecting = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let gate = gate.clone();
        let addr = opts.addr;
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            Ok::<_, String>(stream)
        }));
    }
    let mut streams = Vec::with_capacity(opts.clients);
    for handle in connecting {
        streams.push(handle.await.map_err(|e| e.to_string())??);
    }
    eprintln!(
        "blocking_clients: {} connections open in {:.2} s",
        streams.len(),
        started.elapsed().as_secs_f64()
    );

    let path = Arc::new(opts.path.clone());
    let (go_tx, go_rx) = watch::channel(None);
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for (index, stream) in streams.into_iter().enumerate() {
        tokio::spawn(client(
            index,
            stream,
            path.clone(),
            go_rx.clone(),
            sent_tx.clone(),
            done_tx.clone(),
            opts.timeout,
        ));
    }
    drop(go_rx);

    let mut all_ok = true;
    for round in 0..opts.rounds {
        let playlist = plain_reload(opts.addr, &opts.path).await?;
        let (msn, part) = preload_hint(&playlist).ok_or("the playlist has no EXT-X-PRELOAD-HINT")?;
        let target = (msn, part + opts.ahead);
        go_tx.send_replace(Some((round, target)));
        for _ in 0..opts.clients {
            tokio::time::timeout(opts.timeout, sent_rx.recv())
                .await
                .map_err(|_| "clients did not all send their request in time".to_string())?
                .ok_or("client tasks gone")?;
        }
        let sent_done_us = unix_us();
        let mut received = Vec::with_capacity(opts.clients);
        let mut released = std::collections::BTreeMap::<(u64, u64), usize>::new();
        let mut errors = std::collections::BTreeMap::<String, usize>::new();
        let deadline = tokio::time::Instant::now() + opts.timeout + Duration::from_secs(2);
        for _ in 0..opts.clients {
            let (_, outcome) = tokio::time::timeout_at(deadline, done_rx.recv())
                .await
                .map_err(|_| "clients did not all finish the round in time".to_string())?
                .ok_or("client tasks gone")?;
            match outcome.result {
                Ok(by) => {
                    received.push(outcome.received_us);
                    *released.entry(by).or_default() += 1;
                }
                Err(e) => *errors.entry(e).or_default() += 1,
            }
        }
        all_ok &= errors.is_empty() && !received.is_empty();
        let line = serde_json::json!({
            "round": round,
            "target": [target.0, target.1],
            "sent_done_us": sent_done_us,
            "released_by": released.iter().map(|((m, p), n)| serde_json::json!([m, p, n])).collect::<Vec<_>>(),
            "ok": received.len(),
            "errors": errors.iter().map(|(e, n)| serde_json::json!([e, n])).collect::<Vec<_>>(),
            "received_us": received,
        });
        println!("{line}");
    }
    Ok(all_ok)
}

fn main() -> std::process::ExitCode {
    let opts = parse_options();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("blocking_clients: starting tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("blocking_clients: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
