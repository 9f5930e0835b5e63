//! The JSON body of an event, fixed at commit: a redelivery sends (and
//! signs) the very same bytes.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub struct Envelope<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub created_at_ms: i64,
    pub app_id: Option<&'a str>,
    pub stream_id: Option<&'a str>,
    pub sequence: Option<i64>,
    pub data: &'a Value,
}

impl Envelope<'_> {
    pub fn to_json(&self) -> String {
        json!({
            "id": self.id,
            "type": self.event_type,
            "timestamp": rfc3339_ms(self.created_at_ms),
            "app_id": self.app_id,
            "stream_id": self.stream_id,
            "sequence": self.sequence,
            "data": self.data,
        })
        .to_string()
    }
}

pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// `2026-11-22T12:00:00.123Z`; the epoch for a time that cannot be shown.
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.replace_nanosecond((ms.rem_euclid(1000) as u32) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_every_field_with_a_millisecond_timestamp() {
        let data = json!({ "session": 3 });
        let body = Envelope {
            id: "evt_1",
            event_type: "stream.connected",
            created_at_ms: 1_795_000_000_123,
            app_id: Some("app_x"),
            stream_id: Some("st1"),
            sequence: Some(7),
            data: &data,
        }
        .to_json();
        let parsed: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(parsed["id"], "evt_1");
        assert_eq!(parsed["type"], "stream.connected");
        assert_eq!(parsed["timestamp"], "2026-11-18T11:06:40.123Z");
        assert_eq!(parsed["app_id"], "app_x");
        assert_eq!(parsed["stream_id"], "st1");
        assert_eq!(parsed["sequence"], 7);
        assert_eq!(parsed["data"]["session"], 3);
        assert!(new_event_id().starts_with("evt_") && new_event_id().len() == 36);
    }
}
