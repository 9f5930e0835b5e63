use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::httpd::with_request_timeout;

/// Upper bound for anything a test waits on: far above every timeout used
/// here, so reaching it means the behaviour is missing, not slow.
const PATIENCE: Duration = Duration::from_secs(10);

fn settings() -> ListenerSettings {
    ListenerSettings {
        header_read_timeout: Duration::from_millis(300),
        max_head_bytes: 16 * 1024,
        max_connections: 100,
        max_connections_per_ip: 100,
    }
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(app: Router, settings: ListenerSettings) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, app, settings, shutdown.clone()));
    Server { addr, shutdown, task }
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

/// Everything the server sends until it closes; panics if it does not.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// One response on a kept-alive connection, read up to `ends_with`.
async fn response(stream: &mut TcpStream, path: &str, ends_with: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&out).ends_with(ends_with) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_once(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    until_closed(&mut stream).await
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let server = start(app(), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let t0 = Instant::now();
    assert_eq!(until_closed(&mut stream).await, "", "closed without an answer");
    assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn a_trickled_request_head_is_cut() {
    let server = start(app(), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.expect("write");
    let trickle = async {
        // One header byte at a time, never the blank line that ends the head.
        for _ in 0..1000 {
            if stream.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(tokio::time::timeout(PATIENCE, trickle).await.is_ok(), "still writing");
    assert_eq!(until_closed(&mut stream).await, "", "closed without an answer");
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle() {
    let server = start(app(), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for _ in 0..3 {
        let answer = response(&mut stream, "/", "ok").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
    let t0 = Instant::now();
    assert_eq!(until_closed(&mut stream).await, "", "closed without a word");
    assert!(t0.elapsed() >= Duration::from_millis(250), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn handlers_see_the_client_address() {
    let server = start(app(), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let local = stream.local_addr().expect("local").to_string();
    let answer = response(&mut stream, "/peer", &local).await;
    assert!(answer.ends_with(&local), "{answer}");
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = start(app(), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

/// Opens connections until one is closed by the server at once.
async fn open_until_refused(addr: SocketAddr, expected_open: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..expected_open {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // A request answered proves the connection was admitted.
        let answer = response(&mut stream, "/", "ok").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(stream);
    }
    let mut refused = TcpStream::connect(addr).await.expect("connect");
    let _ = refused.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(until_closed(&mut refused).await, "", "over the cap: closed unanswered");
    open
}

/// A connection is admitted again once a slot is free (the server notices
/// the close of a client's socket on its own schedule).
async fn admitted_again(addr: SocketAddr) {
    let again = tokio::time::timeout(PATIENCE, async {
        loop {
            if get_once(addr, "/").await.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(again.is_ok(), "never admitted again");
}

#[tokio::test]
async fn connections_over_the_per_client_cap_are_closed_at_once() {
    let capped = ListenerSettings {
        header_read_timeout: Duration::from_secs(30),
        max_connections_per_ip: 3,
        ..settings()
    };
    let server = start(app(), capped).await;
    let mut open = open_until_refused(server.addr, 3).await;
    open.pop();
    admitted_again(server.addr).await;
}

#[tokio::test]
async fn connections_over_the_total_cap_are_closed_at_once() {
    let capped = ListenerSettings {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..settings()
    };
    let server = start(app(), capped).await;
    let mut open = open_until_refused(server.addr, 2).await;
    open.pop();
    admitted_again(server.addr).await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_then_returns() {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (r, e) = (release.clone(), entered.clone());
    let app = app().route(
        "/held",
        get(move || {
            let (r, e) = (r.clone(), e.clone());
            async move {
                e.notify_one();
                r.notified().await;
                "done"
            }
        }),
    );
    let server = start(app, settings()).await;
    let mut held = TcpStream::connect(server.addr).await.expect("connect");
    held.write_all(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    entered.notified().await;
    server.shutdown.cancel();
    // New connections are no longer accepted once the loop has stopped.
    let stopped = tokio::time::timeout(PATIENCE, async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "still accepting");
    assert!(!server.task.is_finished(), "a request is in flight");
    release.notify_one();
    let answer = until_closed(&mut held).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
        "{answer}"
    );
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve returned")
        .expect("join");
}

fn timed_app(limit: Duration) -> Router {
    let app = app()
        .route("/slow", get(std::future::pending::<&'static str>))
        .route(
            "/held/{n}",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "held"
            }),
        )
        .route(
            "/feed",
            get(|| async {
                let chunks = futures::stream::unfold(0u8, |n| async move {
                    if n == 2 {
                        return None;
                    }
                    if n == 1 {
                        tokio::time::sleep(Duration::from_millis(600)).await;
                    }
                    Some((Ok::<_, std::convert::Infallible>(format!("chunk{n};")), n + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
    with_request_timeout(app, limit, &["/held/{n}"])
}

#[tokio::test]
async fn a_request_not_answered_in_time_gets_408_and_the_connection_closes() {
    let server = start(timed_app(Duration::from_millis(200)), settings()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn exempt_routes_and_streamed_bodies_outlive_the_request_timeout() {
    let server = start(timed_app(Duration::from_millis(200)), settings()).await;
    let held = get_once(server.addr, "/held/1").await;
    assert!(held.starts_with("HTTP/1.1 200") && held.ends_with("held"), "{held}");
    let feed = get_once(server.addr, "/feed").await;
    assert!(feed.starts_with("HTTP/1.1 200") && feed.contains("chunk1;"), "{feed}");
}

#[test]
fn the_connection_cap_is_checked_against_the_open_file_limit() {
    assert!(!too_close_to(10_000, 1_048_576));
    assert!(!too_close_to(8_000, 10_000));
    assert!(too_close_to(8_001, 10_000));
    assert!(too_close_to(10_000, 1024));
}

#[test]
fn only_per_connection_accept_errors_are_retried_at_once() {
    assert!(is_connection_error(&io::Error::from(io::ErrorKind::ConnectionAborted)));
    assert!(
        !is_connection_error(&io::Error::from_raw_os_error(24)),
        "EMFILE backs off"
    );
}
