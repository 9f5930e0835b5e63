//! The audit log as CSV, for spreadsheets and compliance exports.

use super::error::ApiError;
use crate::control::model::AuditEntry;
use crate::control::usage::model::UsageRow;

/// A header and rows as CSV (RFC 4180 quoting by the csv crate), each
/// cell defused against formula injection.
pub fn to_csv(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<String, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| {
        tracing::error!(error = %e, "admin API: writing a CSV export failed");
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not write CSV",
        )
    };
    writer.write_record(header).map_err(failed)?;
    for row in rows {
        writer
            .write_record(row.iter().map(|cell| defuse(cell).into_owned()))
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

/// A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (or a tab
/// or carriage return before one) as a formula, and audit rows carry text a
/// client chose (names, error messages). OWASP's rule: prefix such a cell
/// with `'`, which spreadsheets show as text and do not evaluate.
fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

pub fn audit_csv(entries: &[AuditEntry]) -> Result<String, ApiError> {
    let rows = entries.iter().map(|e| {
        vec![
            e.id.clone(),
            e.at_ms.to_string(),
            e.actor.clone(),
            e.ip.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone(),
            e.app_id.clone().unwrap_or_default(),
            e.result.clone(),
        ]
    });
    to_csv(
        &["id", "at_ms", "actor", "ip", "action", "target", "app_id", "result"],
        rows,
    )
}

pub fn usage_csv(rows: &[UsageRow]) -> Result<String, ApiError> {
    let rows = rows.iter().map(|r| {
        vec![
            r.app_id.clone(),
            r.stream_id.clone().unwrap_or_default(),
            r.hour.to_string(),
            format!("{:.3}", r.ingest_minutes),
            format!("{:.3}", r.rendition_minutes),
            r.delivered_bytes.to_string(),
            format!("{:.3}", r.viewer_seconds),
            r.peak_viewers.to_string(),
        ]
    });
    to_csv(
        &[
            "app_id",
            "stream_id",
            "hour",
            "ingest_minutes",
            "rendition_minutes",
            "delivered_bytes",
            "viewer_seconds",
            "peak_viewers",
        ],
        rows,
    )
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

    #[test]
    fn cells_that_a_spreadsheet_would_run_as_formulas_are_prefixed() {
        let cells = [
            "=1+1", "+cmd", "-2+3", "@SUM(A1)", "\t=x", "\r=x", "ok", "", "a=b", "'quoted",
        ];
        let text = to_csv(&["c"], cells.iter().map(|c| vec![c.to_string()])).expect("csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let got: Vec<String> = reader.records().map(|r| r.expect("parses")[0].to_owned()).collect();
        assert_eq!(
            got,
            [
                "'=1+1",
                "'+cmd",
                "'-2+3",
                "'@SUM(A1)",
                "'\t=x",
                "'\r=x",
                "ok",
                "",
                "a=b",
                "'quoted"
            ]
        );
    }
}
