//! Entry points for the fuzz harnesses (`fuzz/`, `make fuzz`) and for the
//! replay of their saved corpus (`tests/fuzz_corpus.rs`). Each takes any
//! bytes and must never panic: an error is a correct answer to garbage.
//! Not an API; hidden from the docs.

use std::time::Instant;

use bytes::Bytes;

use super::chunk::{ChunkReader, RawMessage};
use super::timestamp::TrackClock;
use super::{amf0, flv, mpeg_audio};

/// The message size limits the chunk reader runs with here, before and
/// after a `publish` command. Smaller than the server's defaults so that the
/// fuzzer reaches the "too large" paths with inputs of a few KiB.
const FUZZ_MAX_MESSAGE_SIZE_BEFORE_PUBLISH: u32 = 4 * 1024;
const FUZZ_MAX_MESSAGE_SIZE: u32 = 64 * 1024;
/// The server's default `max_timestamp_jump_ms`.
const MAX_TIMESTAMP_JUMP_MS: u32 = 10_000;

/// The chunk reader as a connection drives it: bytes arrive in pieces
/// (`data[0]` picks the piece size, since a header or a chunk cut across two
/// reads is where reassembly goes wrong), Set Chunk Size and Abort messages
/// take effect at once, a `publish` command raises the message size limit,
/// every message body goes to the parser that would read it, and the
/// timestamps of media messages go through the tracks' clocks. The first
/// error ends the stream, as it ends a connection.
pub fn rtmp_chunk_stream(data: &[u8]) {
    let Some((&pattern, wire)) = data.split_first() else {
        return;
    };
    let step = match pattern & 0x03 {
        0 => wire.len().max(1),
        1 => 1,
        2 => 7,
        _ => 1 + usize::from(pattern >> 2),
    };
    let mut connection = Connection {
        reader: ChunkReader::new(FUZZ_MAX_MESSAGE_SIZE_BEFORE_PUBLISH),
        video_clock: TrackClock::new("video", MAX_TIMESTAMP_JUMP_MS),
        audio_clock: TrackClock::new("audio", MAX_TIMESTAMP_JUMP_MS),
        // Fixed: time only paces the clocks' warnings.
        now: Instant::now(),
    };
    for piece in wire.chunks(step) {
        connection.reader.push(piece);
        loop {
            match connection.reader.next_message() {
                Ok(Some(message)) => {
                    if !connection.on_message(&message) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// What a connection keeps while reading, minus the I/O.
struct Connection {
    reader: ChunkReader,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    now: Instant,
}

impl Connection {
    /// What the connection does with a message. `false` ends the stream.
    fn on_message(&mut self, message: &RawMessage) -> bool {
        let payload = &message.payload;
        let be_u32 = |p: &[u8]| p.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match message.type_id {
            1 => match be_u32(payload) {
                Some(size) => self.reader.set_chunk_size(size & 0x7fff_ffff).is_ok(),
                None => false,
            },
            2 => match be_u32(payload) {
                Some(csid) => {
                    self.reader.abort(csid);
                    true
                }
                None => false,
            },
            8 => self.on_audio(message.timestamp, payload),
            9 => self.on_video(message.timestamp, payload),
            15 | 17 => self.on_amf(payload.get(1..).unwrap_or_default()),
            18 | 20 => self.on_amf(payload),
            _ => true,
        }
    }

    fn on_amf(&mut self, body: &[u8]) -> bool {
        let Ok(values) = amf0::decode_all(body) else {
            return false;
        };
        if values.first().and_then(amf0::Amf::as_str) == Some("publish") {
            self.reader.set_max_message_size(FUZZ_MAX_MESSAGE_SIZE);
        }
        true
    }

    fn on_video(&mut self, timestamp: u32, payload: &Bytes) -> bool {
        match flv::parse_video(payload) {
            Ok(flv::VideoTag::AvcNalus {
                composition_time_ms, ..
            }) => match self.video_clock.dts_at(timestamp, self.now) {
                Ok(dts) => {
                    let _ = self.video_clock.pts_at(dts, composition_time_ms, self.now);
                    true
                }
                Err(_) => false,
            },
            Ok(_) => true,
            Err(_) => false,
        }
    }

    fn on_audio(&mut self, timestamp: u32, payload: &Bytes) -> bool {
        match flv::parse_audio(payload) {
            Ok(flv::AudioTag::AacRaw(_) | flv::AudioTag::Mp3 { .. }) => {
                self.audio_clock.dts_at(timestamp, self.now).is_ok()
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// AMF0 values of a command or data message, and the lookups the
/// connection makes on them.
pub fn amf0_values(data: &[u8]) {
    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    for value in &values {
        let _ = (value.as_str(), value.as_number());
        let _ = value.property("app").and_then(amf0::Amf::as_str);
    }
}

/// An FLV tag body as carried by RTMP message 8 or 9, including the
/// Enhanced RTMP video header. `data[0]`: bit 0 picks audio or video, bits
/// 1-2 the NAL length size (1-4) that AVC frames are rewritten from.
pub fn flv_tag(data: &[u8]) {
    let Some((&selector, tag)) = data.split_first() else {
        return;
    };
    let tag = Bytes::copy_from_slice(tag);
    if selector & 1 == 0 {
        let _ = flv::parse_audio(&tag);
        return;
    }
    let length_size = usize::from((selector >> 1) & 0x03) + 1;
    match flv::parse_video(&tag) {
        Ok(flv::VideoTag::AvcSequenceHeader(avcc)) => {
            let _ = flv::avcc_nal_length_size(&avcc);
        }
        Ok(flv::VideoTag::AvcNalus { data, .. }) => {
            let _ = flv::to_four_byte_lengths(data, length_size);
        }
        Ok(flv::VideoTag::Ignored) | Err(_) => {}
    }
}

/// An MPEG audio frame header, at the start and anywhere in `data`.
pub fn mpeg_audio_header(data: &[u8]) {
    let _ = mpeg_audio::parse_header(data);
    let _ = mpeg_audio::find_header(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_inputs_return() {
        for input in [
            &[][..],
            &[0],
            &[0xff; 64],
            &[3, 0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10],
        ] {
            rtmp_chunk_stream(input);
            amf0_values(input);
            flv_tag(input);
            mpeg_audio_header(input);
        }
    }
}
