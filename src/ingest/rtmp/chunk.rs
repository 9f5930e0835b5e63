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
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
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
    length: u32,
    type_id: u8,
    stream_id: u32,
    partial: Option<BytesMut>,
}

pub(crate) struct ChunkReader {
    chunk_size: usize,
    max_message_size: u32,
    streams: HashMap<u32, ChunkStream>,
    buffer: BytesMut,
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
            streams: HashMap::new(),
            buffer: BytesMut::with_capacity(16 * 1024),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
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
            stream.partial = None;
        }
    }

    /// The next complete message, or `None` when more bytes are needed.
    pub(crate) fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
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
            pos += 4;
            if fmt < 3 {
                timestamp_field = Some(u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]));
            }
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
        let partial_count = self.streams.values().filter(|s| s.partial.is_some()).count();
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
        if !continuing && partial_count >= MAX_PARTIAL_MESSAGES && piece < length as usize {
            return Err(ChunkError::TooManyPartialMessages);
        }

        if !continuing {
            match (header.fmt, header.timestamp_field) {
                (0, Some(absolute)) => {
                    stream.timestamp = absolute;
                    stream.delta = absolute;
                }
                (_, Some(delta)) => {
                    stream.timestamp = stream.timestamp.wrapping_add(delta);
                    stream.delta = delta;
                }
                (_, None) => stream.timestamp = stream.timestamp.wrapping_add(stream.delta),
            }
            if header.fmt < 3 {
                stream.extended = header.has_extended;
            }
            stream.length = length;
            if let Some(type_id) = header.type_id {
                stream.type_id = type_id;
            }
            if let Some(stream_id) = header.stream_id {
                stream.stream_id = stream_id;
            }
        }

        self.buffer.advance(header.len);
        let data = self.buffer.split_to(piece);
        let mut partial = stream.partial.take().unwrap_or_default();
        partial.extend_from_slice(&data);
        if partial.len() < length as usize {
            stream.partial = Some(partial);
            return Ok(Chunk::Partial);
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
}
