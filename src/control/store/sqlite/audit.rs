//! The audit log of admin mutations.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{is_unique_violation, unix_now_ms, SqliteStore, SEQ_ATTEMPTS};
use crate::control::keys;
use crate::control::model::{AuditEntry, AuditFilter, AuditRecord};
use crate::control::store::StoreError;

pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1000;

impl SqliteStore {
    pub(super) async fn insert_audit(&self, record: AuditRecord) -> Result<AuditEntry, StoreError> {
        let entry = AuditEntry {
            id: keys::new_audit_id(),
            at_ms: unix_now_ms(),
            actor: record.actor,
            ip: record.ip,
            action: record.action,
            target: record.target,
            app_id: record.app_id,
            result: record.result,
        };
        for attempt in 1..=SEQ_ATTEMPTS {
            let inserted = sqlx::query(
                "INSERT INTO audit_log (id, at_ms, actor, ip, action, target, app_id, result, seq) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log))",
            )
            .bind(&entry.id)
            .bind(entry.at_ms)
            .bind(&entry.actor)
            .bind(&entry.ip)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.app_id)
            .bind(&entry.result)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(entry),
                Err(e) if is_unique_violation(&e) && attempt < SEQ_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict("audit record collision, try again".into()))
    }

    pub(super) async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, at_ms, actor, ip, action, target, app_id, result FROM audit_log WHERE 1 = 1",
        );
        let exact = [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("app_id", &filter.app_id),
            ("target", &filter.target),
        ];
        for (column, value) in exact {
            if let Some(value) = value {
                query.push(format_args!(" AND {column} = ")).push_bind(value);
            }
        }
        if let Some(prefix) = &filter.result {
            // substr, not LIKE: no wildcard escaping, and case-sensitive on both engines.
            let chars = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
            query
                .push(" AND substr(result, 1, ")
                .push_bind(chars)
                .push(") = ")
                .push_bind(prefix);
        }
        if let Some(since) = filter.since_ms {
            query.push(" AND at_ms >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            query.push(" AND at_ms <= ").push_bind(until);
        }
        let limit = filter.limit.unwrap_or(AUDIT_DEFAULT_LIMIT).min(AUDIT_MAX_LIMIT);
        query.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(limit));
        query
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
    }
}

fn entry_from_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        ip: row.try_get("ip")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        app_id: row.try_get("app_id")?,
        result: row.try_get("result")?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::open;
    use super::AUDIT_MAX_LIMIT;
    use crate::control::model::*;
    use crate::control::store::ControlStore;

    fn record(actor: &str, action: &str, app_id: Option<&str>, result: &str) -> AuditRecord {
        AuditRecord {
            actor: actor.into(),
            ip: Some("192.0.2.7".into()),
            action: action.into(),
            target: format!("stream/{action}"),
            app_id: app_id.map(Into::into),
            result: result.into(),
        }
    }

    #[tokio::test]
    async fn append_assigns_id_and_time_and_returns_what_is_stored() {
        let (_dir, store) = open().await;
        let before = super::unix_now_ms();
        let entry = store
            .append_audit(record("at_1", "stream.create", Some("app_a"), "ok"))
            .await
            .expect("append");
        assert!(entry.id.starts_with("au_"));
        assert!(entry.at_ms >= before && entry.at_ms <= super::unix_now_ms());
        assert_eq!(entry.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(store.audit(&AuditFilter::default()).await.expect("query"), vec![entry]);
    }

    #[tokio::test]
    async fn filters_combine_and_the_newest_comes_first() {
        let (_dir, store) = open().await;
        let a = store
            .append_audit(record("at_1", "stream.create", Some("app_a"), "ok"))
            .await
            .expect("append");
        let b = store
            .append_audit(record("at_1", "stream.delete", Some("app_b"), "error: 404 not found"))
            .await
            .expect("append");
        let c = store
            .append_audit(record("cli", "stream.create", Some("app_a"), "error: 409 conflict"))
            .await
            .expect("append");
        let d = store
            .append_audit(record("at_2", "app.create", None, "ok"))
            .await
            .expect("append");
        let query = |filter: AuditFilter| {
            let store = store.clone();
            async move {
                store
                    .audit(&filter)
                    .await
                    .expect("query")
                    .into_iter()
                    .map(|e| e.id)
                    .collect::<Vec<_>>()
            }
        };
        let ids = |entries: &[&AuditEntry]| entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(query(AuditFilter::default()).await, ids(&[&d, &c, &b, &a]));
        let by_actor = AuditFilter {
            actor: Some("at_1".into()),
            ..AuditFilter::default()
        };
        assert_eq!(query(by_actor).await, ids(&[&b, &a]));
        let by_app_and_action = AuditFilter {
            app_id: Some("app_a".into()),
            action: Some("stream.create".into()),
            ..AuditFilter::default()
        };
        assert_eq!(query(by_app_and_action).await, ids(&[&c, &a]));
        let errors = AuditFilter {
            result: Some("error".into()),
            ..AuditFilter::default()
        };
        assert_eq!(query(errors).await, ids(&[&c, &b]));
        let ok_of_at1 = AuditFilter {
            result: Some("ok".into()),
            actor: Some("at_1".into()),
            ..AuditFilter::default()
        };
        assert_eq!(query(ok_of_at1).await, ids(&[&a]));
        let by_target = AuditFilter {
            target: Some("stream/stream.delete".into()),
            ..AuditFilter::default()
        };
        assert_eq!(query(by_target).await, ids(&[&b]));
        let wildcard_is_literal = AuditFilter {
            result: Some("%".into()),
            ..AuditFilter::default()
        };
        assert!(query(wildcard_is_literal).await.is_empty());
        let window = AuditFilter {
            since_ms: Some(a.at_ms),
            until_ms: Some(d.at_ms),
            ..AuditFilter::default()
        };
        assert_eq!(query(window).await.len(), 4, "both ends inclusive");
        let future = AuditFilter {
            since_ms: Some(d.at_ms + 1),
            ..AuditFilter::default()
        };
        assert!(query(future).await.is_empty());
        let past = AuditFilter {
            until_ms: Some(a.at_ms - 1),
            ..AuditFilter::default()
        };
        assert!(query(past).await.is_empty());
        let two = AuditFilter {
            limit: Some(2),
            ..AuditFilter::default()
        };
        assert_eq!(query(two).await, ids(&[&d, &c]));
    }

    #[tokio::test]
    async fn the_limit_defaults_to_100_and_is_capped() {
        let (_dir, store) = open().await;
        for _ in 0..(AUDIT_MAX_LIMIT + 5) {
            store
                .append_audit(record("cli", "stream.create", None, "ok"))
                .await
                .expect("append");
        }
        assert_eq!(store.audit(&AuditFilter::default()).await.expect("query").len(), 100);
        let huge = AuditFilter {
            limit: Some(u32::MAX),
            ..AuditFilter::default()
        };
        assert_eq!(store.audit(&huge).await.expect("query").len(), AUDIT_MAX_LIMIT as usize);
    }
}
