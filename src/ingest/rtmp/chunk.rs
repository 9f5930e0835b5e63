//! Inbound RTMP chunk stream → messages.
//!
//! Ours rather than rml_rtmp's `ChunkDeserializer`, which keeps a single
//! partial message for all chunk streams (interleaved messages corrupt each
//! other), has no message size limit, and underflows (panics in debug, huge
//! allocation in release) when a header shrinks a message mid-way.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("message of {length} bytes on chunk stream {csid} exceeds the limit of {limit}")]
    MessageTooLarge { csid: u32, length: u32, limit: u32 },
    #[error("chunk stream {csid} continues with header type {fmt} before any type 0 header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("chunk stream {csid} got a type {fmt} header in the middle of a message")]
    HeaderMidMessage { csid: u32, fmt: u8 },
    #[error("more than {MAX_PARTIAL_MESSAGES} partially received messages at once")]
    TooManyPartialMessages,
    #[error("more than {limit} bytes of partially received messages at once")]
    TooManyPartialBytes { limit: usize },
    #[error("more than {limit} chunk streams opened on one connection")]
    TooManyChunkStreams { limit: usize },
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    #[error("{buffered} bytes waiting to be parsed exceed the limit of {limit}")]
    BufferFull { buffered: usize, limit: usize },
}

/// A complete message as reassembled from chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawMessage {
    pub(crate) type_id: u8,
    pub(crate) stream_id: u32,
    /// Absolute RTMP timestamp (ms, wraps at 2^32).
    pub(crate) timestamp: u32,
    pub(crate) payload: Bytes,
}

const DEFAULT_CHUNK_SIZE: usize = 128;
const MAX_PARTIAL_MESSAGES: usize = 8;
/// Real encoders use fewer than 10 chunk streams; the protocol allows 65,599.
pub(crate) const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;
/// The most a caller pushes between two drains (the connection's read buffer).
pub(crate) const MAX_PUSH: usize = 64 * 1024;
/// Basic header (3) + type 0 message header (11) + extended timestamp (4).
const MAX_HEADER_LEN: usize = 18;
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;
/// Chunk sizes above 2^24 buy nothing (messages are at most 2^24-1 bytes).
const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;

#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// What a type 3 header that starts a new message adds to the timestamp:
    /// the last delta, or the absolute value after a type 0 (as ffmpeg and
    /// librtmp do).
    delta: u32,
    extended: bool,
    /// The extended timestamp field of the last type 0/1/2 header: what a
    /// type 3 chunk repeats when the peer follows the spec.
    extended_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    partial: Option<BytesMut>,
}

impl ChunkStream {
    /// Applies the header of a chunk that starts a new message.
    fn begin_message(&mut self, header: &Header, length: u32) {
        match (header.fmt, header.timestamp_field) {
            (0, Some(absolute)) => {
                self.timestamp = absolute;
                self.delta = absolute;
            }
            (_, Some(delta)) => {
                self.timestamp = self.timestamp.wrapping_add(delta);
                self.delta = delta;
            }
            (_, None) => self.timestamp = self.timestamp.wrapping_add(self.delta),
        }
        if header.fmt < 3 {
            self.extended = header.has_extended;
            if let (true, Some(field)) = (header.has_extended, header.timestamp_field) {
                self.extended_field = field;
            }
        }
        self.length = length;
        if let Some(type_id) = header.type_id {
            self.type_id = type_id;
        }
        if let Some(stream_id) = header.stream_id {
            self.stream_id = stream_id;
        }
    }

    /// Whether `value`, read where a type 3 chunk may carry an extended
    /// timestamp, is that repeat. librtmp and FFmpeg repeat the last header's
    /// field (a delta after type 1/2); some servers' clients send the
    /// message's absolute timestamp.
    fn repeats_extended(&self, value: u32) -> bool {
        value == self.extended_field || value == self.timestamp
    }
}

pub(crate) struct ChunkReader {
    chunk_size: usize,
    max_message_size: u32,
    max_chunk_streams: usize,
    streams: HashMap<u32, ChunkStream>,
    /// How many `streams` hold a partial message. Kept as we go: counting on
    /// every chunk made a connection with thousands of streams quadratic.
    partial_messages: usize,
    /// Bytes held in those partial messages, bounded by twice the message
    /// size limit (a keyframe and the audio interleaved with it fit).
    partial_bytes: usize,
    buffer: BytesMut,
    /// Set when a push was refused; the stream is broken from there on.
    overflow: Option<ChunkError>,
}

enum Chunk {
    NeedMoreBytes,
    Partial,
    Complete(RawMessage),
}

struct Header {
    fmt: u8,
    has_extended: bool,
    csid: u32,
    len: usize,
    timestamp_field: Option<u32>,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

impl ChunkReader {
    pub(crate) fn new(max_message_size: u32) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_size,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
            streams: HashMap::new(),
            partial_messages: 0,
            partial_bytes: 0,
            buffer: BytesMut::with_capacity(16 * 1024),
            overflow: None,
        }
    }

    pub(crate) fn with_max_chunk_streams(mut self, limit: usize) -> Self {
        self.max_chunk_streams = limit;
        self
    }

    /// Raised once a publish is accepted: a keyframe needs more room than
    /// the commands that come before it.
    pub(crate) fn set_max_message_size(&mut self, limit: u32) {
        self.max_message_size = limit;
    }

    /// Appends bytes read from the peer. Between two drains with
    /// [`ChunkReader::next_message`] the buffer holds at most one incomplete
    /// chunk (a header and at most one message) plus one push of at most
    /// [`MAX_PUSH`] bytes. Anything beyond is a caller bug that must not turn
    /// into unbounded memory: the bytes are refused and the next
    /// `next_message` fails.
    pub(crate) fn push(&mut self, data: &[u8]) {
        let limit = self.max_message_size as usize + MAX_HEADER_LEN + MAX_PUSH;
        let buffered = self.buffer.len().saturating_add(data.len());
        if buffered > limit {
            self.overflow.get_or_insert(ChunkError::BufferFull { buffered, limit });
            return;
        }
        self.buffer.extend_from_slice(data);
    }

    pub(crate) fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size.min(MAX_CHUNK_SIZE) as usize;
        Ok(())
    }

    /// Abort Message: drop the partial message of `csid`.
    pub(crate) fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.get_mut(&csid) {
            if let Some(partial) = stream.partial.take() {
                self.partial_messages = self.partial_messages.saturating_sub(1);
                self.partial_bytes = self.partial_bytes.saturating_sub(partial.len());
            }
        }
    }

    /// The next complete message, or `None` when more bytes are needed.
    pub(crate) fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        if let Some(err) = &self.overflow {
            return Err(err.clone());
        }
        loop {
            let Some(header) = self.peek_header()? else {
                return Ok(None);
            };
            match self.consume_chunk(header)? {
                Chunk::NeedMoreBytes => return Ok(None),
                Chunk::Partial => continue,
                Chunk::Complete(message) => return Ok(Some(message)),
            }
        }
    }

    fn peek_header(&self) -> Result<Option<Header>, ChunkError> {
        let buf = &self.buffer[..];
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(b1) => (64 + u32::from(*b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(b1), Some(b2)) => (64 + u32::from(*b1) + 256 * u32::from(*b2), 3),
                _ => return Ok(None),
            },
            small => (u32::from(small), 1),
        };
        let field_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(fields) = buf.get(pos..pos + field_len) else {
            return Ok(None);
        };
        pos += field_len;
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let previous = self.streams.get(&csid);
        if fmt != 0 && previous.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if previous.is_none() && self.streams.len() >= self.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                limit: self.max_chunk_streams,
            });
        }
        let timestamp_field = (fmt < 3).then(|| u24(&fields[0..3]));
        let length = (fmt < 2).then(|| u24(&fields[3..6]));
        let type_id = (fmt < 2).then(|| fields[6]);
        let stream_id = (fmt == 0).then(|| u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]));
        let has_extended = match timestamp_field {
            Some(field) => field == EXTENDED_TIMESTAMP,
            None => previous.is_some_and(|p| p.extended),
        };
        let mut timestamp_field = timestamp_field;
        if has_extended {
            let Some(ext) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            if fmt < 3 {
                timestamp_field = Some(ext);
                pos += 4;
            } else if previous.is_some_and(|p| p.repeats_extended(ext)) {
                pos += 4;
            }
            // Otherwise a type 3 chunk without the repeat the spec asks for
            // (some encoders omit it): the 4 bytes are payload, as FFmpeg,
            // nginx-rtmp and SRS read it.
        }
        Ok(Some(Header {
            fmt,
            has_extended,
            csid,
            len: pos,
            timestamp_field,
            length,
            type_id,
            stream_id,
        }))
    }

    fn consume_chunk(&mut self, header: Header) -> Result<Chunk, ChunkError> {
        let stream = self.streams.entry(header.csid).or_default();
        let continuing = stream.partial.is_some();
        if continuing && header.fmt != 3 {
            return Err(ChunkError::HeaderMidMessage {
                csid: header.csid,
                fmt: header.fmt,
            });
        }
        let length = header.length.unwrap_or(stream.length);
        if length > self.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                csid: header.csid,
                length,
                limit: self.max_message_size,
            });
        }
        let received = stream.partial.as_ref().map_or(0, BytesMut::len);
        let piece = (length as usize).saturating_sub(received).min(self.chunk_size);
        if self.buffer.len() < header.len + piece {
            return Ok(Chunk::NeedMoreBytes);
        }
        let stays_partial = received + piece < length as usize;
        if !continuing && self.partial_messages >= MAX_PARTIAL_MESSAGES && stays_partial {
            return Err(ChunkError::TooManyPartialMessages);
        }
        let max_partial_bytes = 2 * self.max_message_size as usize;
        if stays_partial && self.partial_bytes + piece > max_partial_bytes {
            return Err(ChunkError::TooManyPartialBytes {
                limit: max_partial_bytes,
            });
        }
        if !continuing {
            stream.begin_message(&header, length);
        }

        self.buffer.advance(header.len);
        let data = self.buffer.split_to(piece);
        let mut partial = stream.partial.take().unwrap_or_default();
        partial.extend_from_slice(&data);
        if stays_partial {
            if !continuing {
                self.partial_messages += 1;
            }
            self.partial_bytes += piece;
            stream.partial = Some(partial);
            return Ok(Chunk::Partial);
        }
        if continuing {
            self.partial_messages = self.partial_messages.saturating_sub(1);
            self.partial_bytes = self.partial_bytes.saturating_sub(received);
        }
        Ok(Chunk::Complete(RawMessage {
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload: partial.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type0(csid: u8, ts: u32, type_id: u8, sid: u32, payload_len: usize) -> Vec<u8> {
        let mut v = vec![csid & 0x3f];
        let field = ts.min(EXTENDED_TIMESTAMP);
        v.extend_from_slice(&field.to_be_bytes()[1..]);
        v.extend_from_slice(&(payload_len as u32).to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&sid.to_le_bytes());
        if ts >= EXTENDED_TIMESTAMP {
            v.extend_from_slice(&ts.to_be_bytes());
        }
        v
    }

    fn read_all(reader: &mut ChunkReader) -> Vec<RawMessage> {
        let mut out = Vec::new();
        while let Some(m) = reader.next_message().expect("valid stream") {
            out.push(m);
        }
        out
    }

    #[test]
    fn reassembles_across_default_chunk_size_and_split_reads() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut wire = type0(6, 1000, 9, 1, payload.len());
        wire.extend_from_slice(&payload[..128]);
        wire.push(0xc6);
        wire.extend_from_slice(&payload[128..256]);
        wire.push(0xc6);
        wire.extend_from_slice(&payload[256..]);
        let mut reader = ChunkReader::new(1 << 20);
        // Feed byte by byte: partial headers must never be consumed.
        let mut out = Vec::new();
        for b in &wire {
            reader.push(&[*b]);
            out.extend(read_all(&mut reader));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.as_ref(), &payload[..]);
        assert_eq!((out[0].timestamp, out[0].type_id, out[0].stream_id), (1000, 9, 1));
    }

    #[test]
    fn deltas_type3_new_message_and_interleaving() {
        let mut reader = ChunkReader::new(1 << 20);
        reader.set_chunk_size(4).expect("valid");
        let mut wire = type0(4, 100, 8, 1, 6);
        wire.extend_from_slice(b"AAAA");
        // Interleave a whole message on another chunk stream.
        wire.extend(type0(6, 90, 9, 1, 2));
        wire.extend_from_slice(b"VV");
        wire.push(0xc4);
        wire.extend_from_slice(b"AA");
        // Type 2: delta 23, same length/type.
        wire.extend_from_slice(&[0x84, 0, 0, 23]);
        wire.extend_from_slice(b"BBBB");
        wire.push(0xc4);
        wire.extend_from_slice(b"BB");
        // Type 3 starting a new message: repeats the delta.
        wire.push(0xc4);
        wire.extend_from_slice(b"CCCC");
        wire.push(0xc4);
        wire.extend_from_slice(b"CC");
        // Type 1: delta 7, new length 1 and type.
        wire.extend_from_slice(&[0x44, 0, 0, 7, 0, 0, 1, 18]);
        wire.extend_from_slice(b"D");
        reader.push(&wire);
        let got: Vec<(u32, u8, Vec<u8>)> = read_all(&mut reader)
            .into_iter()
            .map(|m| (m.timestamp, m.type_id, m.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (90, 9, b"VV".to_vec()),
                (100, 8, b"AAAAAA".to_vec()),
                (123, 8, b"BBBBBB".to_vec()),
                (146, 8, b"CCCCCC".to_vec()),
                (153, 18, b"D".to_vec()),
            ]
        );
    }

    #[test]
    fn extended_timestamps_and_wrap() {
        let mut reader = ChunkReader::new(1 << 20);
        let mut wire = type0(6, u32::MAX - 5, 9, 1, 1);
        wire.push(1);
        // Type 2 with an extended delta of 0x01000000 wraps the u32.
        wire.extend_from_slice(&[0x86, 0xff, 0xff, 0xff]);
        wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        wire.push(2);
        reader.push(&wire);
        let got = read_all(&mut reader);
        assert_eq!(got[0].timestamp, u32::MAX - 5);
        assert_eq!(got[1].timestamp, (u32::MAX - 5).wrapping_add(0x0100_0000));
    }

    #[test]
    fn two_and_three_byte_csids() {
        let mut reader = ChunkReader::new(1 << 20);
        let mut wire = vec![0x00, 10];
        wire.extend_from_slice(&type0(0, 1, 9, 1, 1)[1..]);
        wire.push(7);
        wire.extend_from_slice(&[0x01, 0x10, 0x02]);
        wire.extend_from_slice(&type0(0, 2, 8, 1, 1)[1..]);
        wire.push(8);
        reader.push(&wire);
        let got = read_all(&mut reader);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload.as_ref(), &[8]);
    }

    #[test]
    fn hostile_input_errors_without_panicking() {
        let mut reader = ChunkReader::new(1000);
        reader.push(&type0(3, 0, 9, 1, 5000));
        assert!(matches!(
            reader.next_message(),
            Err(ChunkError::MessageTooLarge { length: 5000, .. })
        ));

        let mut reader = ChunkReader::new(1000);
        reader.push(&[0xc5, 1, 2, 3]);
        assert!(matches!(
            reader.next_message(),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 })
        ));

        let mut reader = ChunkReader::new(1000);
        let mut wire = type0(4, 0, 8, 1, 200);
        wire.extend_from_slice(&[0u8; 128]);
        // Type 1 shrinking the message mid-way.
        wire.extend_from_slice(&[0x44, 0, 0, 1, 0, 0, 1, 8, 0]);
        reader.push(&wire);
        assert!(matches!(
            reader.next_message(),
            Err(ChunkError::HeaderMidMessage { csid: 4, fmt: 1 })
        ));

        let mut reader = ChunkReader::new(1000);
        assert!(reader.set_chunk_size(0).is_err());
        assert!(reader.set_chunk_size(0x8000_0000).is_err());

        let mut reader = ChunkReader::new(1 << 20);
        let mut wire = Vec::new();
        for csid in 3..(3 + MAX_PARTIAL_MESSAGES as u8 + 1) {
            wire.extend(type0(csid, 0, 9, 1, 500));
            wire.extend_from_slice(&[0u8; 128]);
        }
        reader.push(&wire);
        assert_eq!(reader.next_message(), Err(ChunkError::TooManyPartialMessages));
    }

    #[test]
    fn abort_discards_partial_message() {
        let mut reader = ChunkReader::new(1000);
        let mut wire = type0(4, 0, 8, 1, 200);
        wire.extend_from_slice(&[0u8; 128]);
        reader.push(&wire);
        assert_eq!(reader.next_message(), Ok(None));
        reader.abort(4);
        let mut wire = type0(4, 5, 8, 1, 1);
        wire.push(9);
        reader.push(&wire);
        let got = read_all(&mut reader);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload.as_ref(), &[9]);
    }

    #[test]
    fn zero_length_message() {
        let mut reader = ChunkReader::new(1000);
        reader.push(&type0(4, 7, 8, 1, 0));
        let got = read_all(&mut reader);
        assert_eq!(got.len(), 1);
        assert!(got[0].payload.is_empty());
    }

    /// A type 0 header on a three-byte chunk stream id (64..=65599).
    fn type0_wide(csid: u32, type_id: u8, payload_len: usize) -> Vec<u8> {
        let rest = csid - 64;
        let mut v = vec![0x01, rest as u8, (rest >> 8) as u8];
        v.extend_from_slice(&type0(0, 0, type_id, 1, payload_len)[1..]);
        v
    }

    fn scanned_partials(reader: &ChunkReader) -> usize {
        reader.streams.values().filter(|s| s.partial.is_some()).count()
    }

    #[test]
    fn thousands_of_chunk_streams_are_refused_quickly() {
        let started = std::time::Instant::now();
        let mut reader = ChunkReader::new(1 << 16);
        let mut read = 0;
        let mut outcome = Ok(None);
        'feed: for csid in 64..65_064u32 {
            reader.push(&type0_wide(csid, 20, 0));
            loop {
                match reader.next_message() {
                    Ok(Some(_)) => read += 1,
                    Ok(None) => break,
                    err @ Err(_) => {
                        outcome = err;
                        break 'feed;
                    }
                }
            }
        }
        assert_eq!(
            outcome,
            Err(ChunkError::TooManyChunkStreams {
                limit: DEFAULT_MAX_CHUNK_STREAMS
            })
        );
        assert_eq!(read, DEFAULT_MAX_CHUNK_STREAMS);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn chunk_cost_does_not_grow_with_the_number_of_streams() {
        // With the cap lifted, 65,000 open streams and then 20,000 more
        // chunks: counting partial messages by scanning every stream on
        // every chunk took over a billion steps here.
        let mut reader = ChunkReader::new(1 << 16).with_max_chunk_streams(70_000);
        let started = std::time::Instant::now();
        for csid in 64..65_064u32 {
            reader.push(&type0_wide(csid, 20, 0));
            assert!(reader.next_message().expect("valid").is_some());
        }
        for _ in 0..20_000 {
            // Type 3 on the last stream: a new zero-length message each time.
            reader.push(&[0xc1, 0xe7, 0xfd]);
            assert!(reader.next_message().expect("valid").is_some());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn partial_message_count_follows_completion_and_abort() {
        let mut reader = ChunkReader::new(1 << 16);
        let step = |reader: &mut ChunkReader, wire: &[u8]| {
            reader.push(wire);
            let got = read_all(reader).len();
            assert_eq!(reader.partial_messages, scanned_partials(reader));
            (got, reader.partial_messages)
        };
        let mut a = type0(4, 0, 9, 1, 200);
        a.extend_from_slice(&[1; 128]);
        assert_eq!(step(&mut reader, &a), (0, 1));
        let mut b = type0(5, 0, 9, 1, 300);
        b.extend_from_slice(&[2; 128]);
        assert_eq!(step(&mut reader, &b), (0, 2));
        let mut c = type0(6, 0, 8, 1, 10);
        c.extend_from_slice(&[3; 10]);
        assert_eq!(step(&mut reader, &c), (1, 2));
        let mut a_end = vec![0xc4];
        a_end.extend_from_slice(&[1; 72]);
        assert_eq!(step(&mut reader, &a_end), (1, 1));
        for csid in [5, 5, 99, 4] {
            reader.abort(csid);
            assert_eq!(reader.partial_messages, scanned_partials(&reader));
        }
        assert_eq!(reader.partial_messages, 0);
        let mut b_new = type0(5, 10, 9, 1, 1);
        b_new.push(4);
        assert_eq!(step(&mut reader, &b_new), (1, 0));
        // The freed slots are usable again: exactly MAX_PARTIAL_MESSAGES fit.
        for csid in 10..(10 + MAX_PARTIAL_MESSAGES as u8) {
            let mut wire = type0(csid, 0, 9, 1, 500);
            wire.extend_from_slice(&[0u8; 128]);
            step(&mut reader, &wire);
        }
        assert_eq!(reader.partial_messages, MAX_PARTIAL_MESSAGES);
        let mut wire = type0(30, 0, 9, 1, 500);
        wire.extend_from_slice(&[0u8; 128]);
        reader.push(&wire);
        assert_eq!(reader.next_message(), Err(ChunkError::TooManyPartialMessages));
    }

    #[test]
    fn bytes_held_in_partial_messages_are_bounded() {
        let mut reader = ChunkReader::new(64 * 1024);
        reader.set_chunk_size(60_000).expect("valid");
        let mut results = Vec::new();
        for csid in 3..6u8 {
            reader.push(&type0(csid, 0, 18, 1, 64 * 1024));
            reader.push(&vec![0u8; 60_000]);
            results.push(reader.next_message());
        }
        assert_eq!(results[..2], [Ok(None), Ok(None)]);
        assert_eq!(results[2], Err(ChunkError::TooManyPartialBytes { limit: 128 * 1024 }));
        assert_eq!(reader.partial_bytes, 120_000);
        // Completing and aborting give the bytes back.
        reader.buffer.clear();
        let mut rest = vec![0xc3];
        rest.extend_from_slice(&[0u8; 64 * 1024 - 60_000]);
        reader.push(&rest);
        assert_eq!(read_all(&mut reader).len(), 1);
        assert_eq!(reader.partial_bytes, 60_000);
        reader.abort(4);
        assert_eq!((reader.partial_bytes, reader.partial_messages), (0, 0));
    }

    /// A 200-byte message at an extended timestamp, split over a type 0 and
    /// a type 3 chunk, with or without the repeated extended timestamp.
    fn extended_message(ts: u32, repeat: bool, payload: &[u8]) -> Vec<u8> {
        let mut wire = type0(6, ts, 9, 1, payload.len());
        wire.extend_from_slice(&payload[..128]);
        wire.push(0xc6);
        if repeat {
            wire.extend_from_slice(&ts.to_be_bytes());
        }
        wire.extend_from_slice(&payload[128..]);
        wire
    }

    #[test]
    fn type3_chunks_with_and_without_the_repeated_extended_timestamp() {
        let payload: Vec<u8> = (0..200u32).map(|i| (i % 251) as u8).collect();
        let ts = 0x0123_4567;
        for repeat in [true, false] {
            let mut reader = ChunkReader::new(1 << 16);
            let mut wire = extended_message(ts, repeat, &payload);
            // A second message on the same stream, again in both forms.
            wire.extend(extended_message(ts + 40, repeat, &payload));
            reader.push(&wire);
            let got = read_all(&mut reader);
            assert_eq!(got.len(), 2, "repeat={repeat}");
            for (message, expect_ts) in got.iter().zip([ts, ts + 40]) {
                assert_eq!(message.payload.as_ref(), &payload[..], "repeat={repeat}");
                assert_eq!(message.timestamp, expect_ts);
            }
            assert!(reader.buffer.is_empty());
        }
    }

    #[test]
    fn type3_new_message_after_an_extended_delta_with_and_without_the_repeat() {
        for repeat in [true, false] {
            let mut reader = ChunkReader::new(1 << 16);
            let mut wire = type0(4, 0, 8, 1, 2);
            wire.extend_from_slice(b"AA");
            // Type 2 with an extended delta of 0x01000000.
            wire.extend_from_slice(&[0x84, 0xff, 0xff, 0xff]);
            wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
            wire.extend_from_slice(b"BB");
            // Type 3 starting a new message: the same delta again.
            wire.push(0xc4);
            if repeat {
                wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
            }
            wire.extend_from_slice(b"CC");
            // Whether 4 bytes are a repeat can only be told once 4 bytes are
            // there: real publishers always send more.
            wire.extend(type0(5, 9, 8, 1, 1));
            wire.push(b'D');
            reader.push(&wire);
            let got: Vec<(u32, Vec<u8>)> = read_all(&mut reader)
                .into_iter()
                .map(|m| (m.timestamp, m.payload.to_vec()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, b"AA".to_vec()),
                    (0x0100_0000, b"BB".to_vec()),
                    (0x0200_0000, b"CC".to_vec()),
                    (9, b"D".to_vec())
                ],
                "repeat={repeat}"
            );
        }
    }

    #[test]
    fn message_limit_is_raised_only_when_asked_and_the_buffer_is_bounded() {
        let mut reader = ChunkReader::new(64 * 1024);
        reader.push(&type0(4, 0, 9, 1, 100_000));
        assert!(matches!(
            reader.next_message(),
            Err(ChunkError::MessageTooLarge { length: 100_000, .. })
        ));

        let mut reader = ChunkReader::new(64 * 1024);
        reader.set_max_message_size(1 << 20);
        reader.set_chunk_size(1 << 20).expect("valid");
        reader.push(&type0(4, 0, 9, 1, 100_000));
        reader.push(&vec![7u8; 100_000]);
        assert_eq!(read_all(&mut reader).len(), 1);

        let mut reader = ChunkReader::new(64 * 1024);
        let limit = 64 * 1024 + MAX_HEADER_LEN + MAX_PUSH;
        reader.push(&vec![0u8; MAX_PUSH]);
        reader.push(&vec![0u8; 64 * 1024]);
        assert_eq!(reader.overflow, None);
        reader.push(&[0u8; MAX_HEADER_LEN + 1]);
        assert_eq!(reader.buffer.len(), limit - MAX_HEADER_LEN);
        assert_eq!(
            reader.next_message(),
            Err(ChunkError::BufferFull {
                buffered: limit + 1,
                limit
            })
        );
    }
}
