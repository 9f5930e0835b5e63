//! HTTP/1.1 on a raw tokio `TcpStream` and the LL-HLS playlist helpers shared by the bench load
//! clients (`blocking_clients.rs`, `llhls_players.rs`), each of which includes this file with
//! `#[path = "http1.rs"] mod http1;`. Hand-written rather than hyper so that a client costs a
//! socket and a small buffer, and so that the clients see exactly what went over the wire.

// Each including binary uses its own subset of these helpers.
#![allow(dead_code)]

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One HTTP/1.1 response: status and body (Content-Length or chunked).
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close`: it ends the connection after this response.
    pub close: bool,
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; `what` names the place for the error when the peer closed.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, what: &str) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err(format!("connection closed {what}"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Reads one response from a keep-alive connection; `buf` keeps bytes of a following one.
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Response, String> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf, "before the response head").await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "no status line".to_string())?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    buf.drain(..head_end);
    let body = if chunked {
        read_chunked(stream, buf).await?
    } else {
        let length = length.ok_or_else(|| "response has neither Content-Length nor chunked body".to_string())?;
        while buf.len() < length {
            fill(stream, buf, "inside the body").await?;
        }
        buf.drain(..length).collect()
    };
    Ok(Response { status, body, close })
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            fill(stream, buf, "inside a chunked body").await?;
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| "bad chunk size".to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        while buf.len() < line_end + 2 + size + 2 {
            fill(stream, buf, "inside a chunk").await?;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

pub fn request(path_and_query: &str) -> Vec<u8> {
    format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pulse-edge-bench\r\n\r\n").into_bytes()
}

pub fn with_directives(path: &str, msn: u64, part: u64) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}_HLS_msn={msn}&_HLS_part={part}")
}

/// `(msn, part)` of the preload hint in a media playlist.
pub fn preload_hint(playlist: &str) -> Option<(u64, u64)> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    let stem = uri.strip_suffix(".mp4")?;
    let (msn, part) = stem.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}

/// Which published part released a request for `target`: the target itself when listed, else
/// part 0 of the next segment (the target's segment closed with fewer parts).
pub fn released_by(playlist: &str, target: (u64, u64)) -> Option<(u64, u64)> {
    let listed = |msn: u64, part: u64| playlist.contains(&format!("URI=\"{msn}.{part}.mp4\""));
    if listed(target.0, target.1) {
        Some(target)
    } else if listed(target.0 + 1, 0) && playlist.contains(&format!("\n{}.mp4\n", target.0)) {
        Some((target.0 + 1, 0))
    } else {
        None
    }
}
