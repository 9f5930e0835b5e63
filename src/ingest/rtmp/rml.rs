//! The only file that touches rml_rtmp: the handshake (plain and FP9
//! digest C1) and outbound chunk serialisation. Inbound chunk parsing and
//! AMF0 decoding are ours (see `chunk.rs`, `amf0.rs` for why), so replacing
//! rml_rtmp means replacing this file.

use std::collections::HashMap;

use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use super::amf0::Amf;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(String);

#[derive(Debug, thiserror::Error)]
#[error("cannot serialise outbound {what}: {reason}")]
pub struct OutboundError {
    what: &'static str,
    reason: String,
}

pub(crate) enum HandshakeProgress {
    InProgress {
        reply: Vec<u8>,
    },
    Done {
        reply: Vec<u8>,
        /// Chunk bytes the client sent right behind C2.
        leftover: Vec<u8>,
    },
}

pub(crate) struct ServerHandshake(Handshake);

impl ServerHandshake {
    pub(crate) fn new() -> Self {
        Self(Handshake::new(PeerType::Server))
    }

    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<HandshakeProgress, HandshakeError> {
        match self.0.process_bytes(data) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                Ok(HandshakeProgress::InProgress { reply: response_bytes })
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => Ok(HandshakeProgress::Done {
                reply: response_bytes,
                leftover: remaining_bytes,
            }),
            Err(err) => Err(HandshakeError(err.to_string())),
        }
    }
}

/// Serialises our outbound messages into chunks; owns the outbound chunk
/// stream state, so every byte it returns must be sent, in order.
pub(crate) struct Outbound {
    serializer: ChunkSerializer,
}

impl Outbound {
    pub(crate) fn new() -> Self {
        Self {
            serializer: ChunkSerializer::new(),
        }
    }

    pub(crate) fn set_chunk_size(&mut self, size: u32) -> Result<Vec<u8>, OutboundError> {
        self.serializer
            .set_max_chunk_size(size, RtmpTimestamp::new(0))
            .map(|packet| packet.bytes)
            .map_err(|err| OutboundError {
                what: "Set Chunk Size",
                reason: err.to_string(),
            })
    }

    pub(crate) fn window_ack_size(&mut self, size: u32) -> Result<Vec<u8>, OutboundError> {
        self.message(
            "Window Acknowledgement Size",
            0,
            RtmpMessage::WindowAcknowledgement { size },
        )
    }

    pub(crate) fn set_peer_bandwidth(&mut self, size: u32) -> Result<Vec<u8>, OutboundError> {
        self.message(
            "Set Peer Bandwidth",
            0,
            RtmpMessage::SetPeerBandwidth {
                size,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
        )
    }

    pub(crate) fn stream_begin(&mut self, stream_id: u32) -> Result<Vec<u8>, OutboundError> {
        self.message(
            "Stream Begin",
            0,
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamBegin,
                stream_id: Some(stream_id),
                buffer_length: None,
                timestamp: None,
            },
        )
    }

    pub(crate) fn acknowledgement(&mut self, sequence_number: u32) -> Result<Vec<u8>, OutboundError> {
        self.message("Acknowledgement", 0, RtmpMessage::Acknowledgement { sequence_number })
    }

    pub(crate) fn command(
        &mut self,
        message_stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf,
        arguments: Vec<Amf>,
    ) -> Result<Vec<u8>, OutboundError> {
        self.message(
            "command",
            message_stream_id,
            RtmpMessage::Amf0Command {
                command_name: name.to_owned(),
                transaction_id,
                command_object: to_rml(command_object),
                additional_arguments: arguments.into_iter().map(to_rml).collect(),
            },
        )
    }

    /// Tests play the publisher's side with the same serialiser.
    #[cfg(test)]
    pub(crate) fn video_data(
        &mut self,
        message_stream_id: u32,
        timestamp: u32,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, OutboundError> {
        self.message_at(
            "video",
            message_stream_id,
            timestamp,
            RtmpMessage::VideoData { data: data.into() },
        )
    }

    fn message(
        &mut self,
        what: &'static str,
        message_stream_id: u32,
        message: RtmpMessage,
    ) -> Result<Vec<u8>, OutboundError> {
        self.message_at(what, message_stream_id, 0, message)
    }

    fn message_at(
        &mut self,
        what: &'static str,
        message_stream_id: u32,
        timestamp: u32,
        message: RtmpMessage,
    ) -> Result<Vec<u8>, OutboundError> {
        let payload = message
            .into_message_payload(RtmpTimestamp::new(timestamp), message_stream_id)
            .map_err(|err| OutboundError {
                what,
                reason: err.to_string(),
            })?;
        // Not `force_uncompressed`: rml_rtmp then writes a type 0 header on
        // every continuation chunk too, which splits long messages (a long
        // error description) into garbage for the peer.
        self.serializer
            .serialize(&payload, false, false)
            .map(|packet| packet.bytes)
            .map_err(|err| OutboundError {
                what,
                reason: err.to_string(),
            })
    }
}

fn to_rml(value: Amf) -> Amf0Value {
    match value {
        Amf::Number(n) => Amf0Value::Number(n),
        Amf::Boolean(b) => Amf0Value::Boolean(b),
        Amf::String(s) => Amf0Value::Utf8String(s),
        Amf::Object(props) => Amf0Value::Object(
            props
                .into_iter()
                .map(|(k, v)| (k, to_rml(v)))
                .collect::<HashMap<_, _>>(),
        ),
        Amf::Null => Amf0Value::Null,
        Amf::Undefined => Amf0Value::Undefined,
        Amf::Array(items) => Amf0Value::StrictArray(items.into_iter().map(to_rml).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::amf0;
    use super::super::chunk::ChunkReader;
    use super::*;

    #[test]
    fn outbound_commands_read_back_through_our_chunk_reader() {
        let mut out = Outbound::new();
        let mut wire = out.set_chunk_size(4096).expect("serialise");
        let long_description = "x".repeat(5000);
        wire.extend(
            out.command(
                1,
                "onStatus",
                0.0,
                Amf::Null,
                vec![Amf::Object(vec![
                    ("level".into(), Amf::String("error".into())),
                    ("description".into(), Amf::String(long_description.clone())),
                ])],
            )
            .expect("serialise"),
        );
        let mut reader = ChunkReader::new(1 << 20);
        reader.push(&wire);
        let set_chunk = reader.next_message().expect("ok").expect("message");
        assert_eq!(set_chunk.type_id, 1);
        assert_eq!(set_chunk.payload.as_ref(), &4096u32.to_be_bytes());
        reader.set_chunk_size(4096).expect("valid");
        let status = reader.next_message().expect("ok").expect("message");
        assert_eq!((status.type_id, status.stream_id), (20, 1));
        let values = amf0::decode_all(&status.payload).expect("amf");
        assert_eq!(values[0].as_str(), Some("onStatus"));
        assert_eq!(
            values[3].property("description").and_then(Amf::as_str),
            Some(long_description.as_str())
        );
    }

    #[test]
    fn handshake_rejects_wrong_version_byte() {
        let mut handshake = ServerHandshake::new();
        assert!(handshake.feed(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn plain_handshake_completes_and_keeps_leftover() {
        let mut handshake = ServerHandshake::new();
        let mut c0c1 = vec![3u8];
        c0c1.extend(std::iter::repeat_n(0u8, 1536));
        let s0s1s2 = match handshake.feed(&c0c1).expect("c0c1") {
            HandshakeProgress::InProgress { reply } => reply,
            HandshakeProgress::Done { .. } => panic!("done too early"),
        };
        assert_eq!(s0s1s2.len(), 1 + 1536 * 2);
        let mut c2 = s0s1s2[1..1537].to_vec();
        c2.extend_from_slice(&[0x02, 0xaa]);
        match handshake.feed(&c2).expect("c2") {
            HandshakeProgress::Done { leftover, .. } => assert_eq!(leftover, vec![0x02, 0xaa]),
            HandshakeProgress::InProgress { .. } => panic!("not done"),
        }
    }
}
