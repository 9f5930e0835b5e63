//! The audit log as CSV, for spreadsheets and compliance exports.

use super::error::ApiError;
use crate::control::model::AuditEntry;

pub fn audit_csv(entries: &[AuditEntry]) -> Result<String, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| {
        tracing::error!(error = %e, "admin API: writing the audit CSV failed");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not write CSV",
        )
    };
    writer
        .write_record(["id", "at_ms", "actor", "ip", "action", "target", "app_id", "result"])
        .map_err(failed)?;
    for e in entries {
        let at = e.at_ms.to_string();
        writer
            .write_record([
                e.id.as_str(),
                at.as_str(),
                e.actor.as_str(),
                e.ip.as_deref().unwrap_or(""),
                e.action.as_str(),
                e.target.as_str(),
                e.app_id.as_deref().unwrap_or(""),
                e.result.as_str(),
            ])
            .map_err(failed)?;
    }
    let bytes = writer.into_inner().map_err(|e| failed(e.into_error().into()))?;
    String::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "CSV is not UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_quotes_and_newlines_survive_a_round_trip() {
        let entry = AuditEntry {
            id: "au_1".into(),
            at_ms: 1_700_000_000_123,
            actor: "at_9".into(),
            ip: Some("127.0.0.1".into()),
            action: "stream.create".into(),
            target: "stream/st1".into(),
            app_id: None,
            result: "error: 422 name \"x,y\"\nbad".into(),
        };
        let text = audit_csv(std::slice::from_ref(&entry)).expect("csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let row = reader.records().next().expect("one row").expect("parses");
        assert_eq!(&row[0], "au_1");
        assert_eq!(&row[1], "1700000000123");
        assert_eq!(&row[6], "");
        assert_eq!(&row[7], entry.result);
    }
}
