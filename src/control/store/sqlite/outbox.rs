//! The outbox: events with the stream state that caused them, and the
//! deliveries they fan out to, in one transaction.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{corrupt, unix_now, unix_now_ms, SqliteStore};
use crate::control::keys;
use crate::control::store::{EventStore, StoreError};
use crate::control::webhooks::envelope::{new_event_id, Envelope};
use crate::control::webhooks::model::*;

/// Event columns, aliased `e`, in the order [`event_from_row`] reads them.
pub(super) const EVENT_COLUMNS: &str =
    "e.position, e.id, e.event_type, e.app_id, e.stream_id, e.sequence, e.created_at, e.payload";

pub(super) fn event_from_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        id: row.try_get("id")?,
        event_type: row.try_get("event_type")?,
        app_id: row.try_get("app_id")?,
        stream_id: row.try_get("stream_id")?,
        sequence: row.try_get("sequence")?,
        created_at_ms: row.try_get("created_at")?,
        payload: row.try_get("payload")?,
    })
}

fn split_types(text: &str) -> Vec<String> {
    text.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

pub(super) fn webhook_from_row(row: &SqliteRow) -> Result<WebhookEndpoint, StoreError> {
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: split_types(row.try_get("event_types")?),
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        previous_secret_expires_at: row.try_get("previous_secret_expires_at")?,
        secret: row.try_get::<String, _>("secret")?.into(),
        previous_secret: row.try_get::<Option<String>, _>("previous_secret")?.map(Into::into),
    })
}

const WEBHOOK_COLUMNS: &str = "id, app_id, url, description, event_types, enabled, disabled_reason, created_at, \
     updated_at, previous_secret_expires_at, secret, previous_secret";

fn session_of(value: Option<i64>) -> Option<u64> {
    value.and_then(|s| u64::try_from(s).ok())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn record_event(&self, event: NewEvent, max_backlog: i64) -> Result<RecordedEvent, StoreError> {
        // IMMEDIATE: take the write lock first (waiting out the busy
        // timeout), so that the reads below cannot go stale.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = unix_now_ms();
        let sequence: Option<i64> = match &event.stream_id {
            Some(stream_id) => {
                let (state, session) = match event.state {
                    Some((state, session)) => (Some(state), session),
                    None => (None, None),
                };
                let session = session.and_then(|s| i64::try_from(s).ok());
                let seq = sqlx::query_scalar(
                    "INSERT INTO stream_states (stream_id, app_id, state, session, last_sequence, updated_at) \
                     VALUES (?, ?, ?, ?, 1, ?) \
                     ON CONFLICT (stream_id) DO UPDATE SET \
                       last_sequence = stream_states.last_sequence + 1, \
                       app_id = excluded.app_id, \
                       state = CASE WHEN ? THEN excluded.state ELSE stream_states.state END, \
                       session = CASE WHEN ? THEN excluded.session ELSE stream_states.session END, \
                       updated_at = excluded.updated_at \
                     RETURNING last_sequence",
                )
                .bind(stream_id)
                .bind(event.app_id.as_deref().unwrap_or(""))
                .bind(state.unwrap_or(StreamState::Idle).as_str())
                .bind(session)
                .bind(now)
                .bind(state.is_some())
                .bind(state.is_some())
                .fetch_one(&mut *tx)
                .await?;
                Some(seq)
            }
            None => None,
        };
        let id = new_event_id();
        let event_type = event.event_type.as_str();
        let payload = Envelope {
            id: &id,
            event_type,
            created_at_ms: now,
            app_id: event.app_id.as_deref(),
            stream_id: event.stream_id.as_deref(),
            sequence,
            data: &event.data,
        }
        .to_json();
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO events (position, id, event_type, app_id, stream_id, sequence, created_at, payload) \
             SELECT COALESCE(MAX(position), 0) + 1, ?, ?, ?, ?, ?, ?, ? FROM events \
             RETURNING position",
        )
        .bind(&id)
        .bind(event_type)
        .bind(&event.app_id)
        .bind(&event.stream_id)
        .bind(sequence)
        .bind(now)
        .bind(&payload)
        .fetch_one(&mut *tx)
        .await?;

        let endpoints: Vec<(String, String)> = match (&event.only_endpoint, &event.app_id) {
            (Some(only), _) => sqlx::query_as("SELECT id, event_types FROM webhook_endpoints WHERE id = ?")
                .bind(only)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id, _): (String, String)| (id, String::new()))
                .collect(),
            (None, Some(app_id)) => {
                sqlx::query_as("SELECT id, event_types FROM webhook_endpoints WHERE app_id = ? AND enabled = TRUE")
                    .bind(app_id)
                    .fetch_all(&mut *tx)
                    .await?
            }
            (None, None) => Vec::new(),
        };
        let lane = event.stream_id.clone().unwrap_or_default();
        for (endpoint_id, types) in endpoints {
            let types = split_types(&types);
            if !types.is_empty() && !types.iter().any(|t| t == event_type) {
                continue;
            }
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'pending'",
            )
            .bind(&endpoint_id)
            .fetch_one(&mut *tx)
            .await?;
            let (status, error) = if pending >= max_backlog {
                tracing::error!(
                    endpoint_id,
                    pending,
                    event_id = id,
                    "webhook queue full; event dead-lettered"
                );
                (
                    DeliveryStatus::Dead,
                    Some(format!("the endpoint's queue was full ({pending} pending events)")),
                )
            } else {
                (DeliveryStatus::Pending, None)
            };
            sqlx::query(
                "INSERT INTO webhook_deliveries (endpoint_id, event_position, lane, status, attempts, next_attempt_at, \
                 last_error) VALUES (?, ?, ?, ?, 0, ?, ?)",
            )
            .bind(&endpoint_id)
            .bind(position)
            .bind(&lane)
            .bind(status.as_str())
            .bind(now)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RecordedEvent {
            position,
            id,
            event_type: event_type.to_owned(),
            app_id: event.app_id,
            stream_id: event.stream_id,
            sequence,
            created_at_ms: now,
            payload,
        })
    }

    async fn open_streams(&self) -> Result<Vec<OpenStream>, StoreError> {
        sqlx::query(
            "SELECT stream_id, app_id, state, session FROM stream_states WHERE state <> 'idle' ORDER BY stream_id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok(OpenStream {
                stream_id: row.try_get("stream_id")?,
                app_id: row.try_get("app_id")?,
                state: StreamState::parse(&state).ok_or_else(|| corrupt("stream state"))?,
                session: session_of(row.try_get("session")?),
            })
        })
        .collect()
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events e WHERE 1 = 1");
        if filter.app_id.is_some() {
            sql.push_str(" AND e.app_id = ?");
        }
        if filter.stream_id.is_some() {
            sql.push_str(" AND e.stream_id = ?");
        }
        sql.push_str(" ORDER BY e.position DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(app) = &filter.app_id {
            query = query.bind(app);
        }
        if let Some(stream) = &filter.stream_id {
            query = query.bind(stream);
        }
        query
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn create_webhook(&self, app_id: &str, new: NewWebhook) -> Result<WebhookEndpoint, StoreError> {
        let id = keys::new_webhook_id();
        let now = unix_now();
        let done = sqlx::query(
            "INSERT INTO webhook_endpoints (id, app_id, url, description, secret, previous_secret, \
             previous_secret_expires_at, event_types, enabled, disabled_reason, created_at, updated_at) \
             SELECT ?, id, ?, ?, ?, NULL, NULL, ?, TRUE, NULL, ?, ? FROM apps WHERE id = ?",
        )
        .bind(&id)
        .bind(&new.url)
        .bind(&new.description)
        .bind(new.secret.expose())
        .bind(new.event_types.join(","))
        .bind(now)
        .bind(now)
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no app with id {app_id:?}")));
        }
        self.webhook(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("webhook {id} vanished after creation")))
    }

    async fn webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        sqlx::query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(webhook_from_row)
            .transpose()
    }

    async fn webhooks(&self, app_id: Option<&str>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let rows = match app_id {
            Some(app) => {
                sqlx::query(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE app_id = ? ORDER BY created_at, id"
                ))
                .bind(app)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(webhook_from_row).collect()
    }

    async fn update_webhook(&self, id: &str, patch: WebhookPatch) -> Result<Option<WebhookEndpoint>, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = COALESCE(?, url), description = COALESCE(?, description), \
             event_types = COALESCE(?, event_types), enabled = COALESCE(?, enabled), \
             disabled_reason = CASE WHEN ? THEN NULL ELSE disabled_reason END, updated_at = ? WHERE id = ?",
        )
        .bind(patch.url)
        .bind(patch.description)
        .bind(patch.event_types.map(|t| t.join(",")))
        .bind(patch.enabled)
        .bind(patch.enabled == Some(true))
        .bind(unix_now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.webhook_if_updated(done.rows_affected(), id).await
    }

    async fn rotate_webhook_secret(
        &self,
        id: &str,
        secret: &str,
        previous_expires_at: i64,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = ?, secret = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(previous_expires_at)
        .bind(secret)
        .bind(unix_now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.webhook_if_updated(done.rows_affected(), id).await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn disable_webhook(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = ?, updated_at = ? WHERE id = ?")
            .bind(reason)
            .bind(unix_now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn due_deliveries(&self, endpoint_id: &str, now_ms: i64, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS}, {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN events e ON e.position = d.event_position \
             WHERE d.endpoint_id = ? AND d.status = 'pending' AND d.next_attempt_at <= ? AND {LANE_HEAD} \
             ORDER BY d.event_position LIMIT ?"
        ))
        .bind(endpoint_id)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn next_attempt_at(&self, endpoint_id: &str) -> Result<Option<i64>, StoreError> {
        // Over lane heads only: a later event's time means nothing while an
        // earlier one of its stream waits.
        Ok(sqlx::query_scalar(&format!(
            "SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d \
             WHERE d.endpoint_id = ? AND d.status = 'pending' AND {LANE_HEAD}"
        ))
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn finish_attempt(
        &self,
        endpoint_id: &str,
        event_position: i64,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let now = unix_now_ms();
        let (status, http_status, error, next, delivered_at) = match outcome {
            AttemptOutcome::Delivered { status } => (DeliveryStatus::Delivered, Some(*status), None, now, Some(now)),
            AttemptOutcome::Retry {
                status,
                error,
                next_attempt_at_ms,
            } => (DeliveryStatus::Pending, *status, Some(error), *next_attempt_at_ms, None),
            AttemptOutcome::Dead { status, error } => (DeliveryStatus::Dead, *status, Some(error), now, None),
            AttemptOutcome::Gone { error } => (DeliveryStatus::Pending, Some(410), Some(error), now, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_attempt_at = ?, \
             last_status = ?, last_error = ?, next_attempt_at = ?, delivered_at = ? \
             WHERE endpoint_id = ? AND event_position = ?",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(next)
        .bind(delivered_at)
        .bind(endpoint_id)
        .bind(event_position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliveries(&self, endpoint_id: &str, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let status_clause = if filter.status.is_some() {
            " AND d.status = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             JOIN events e ON e.position = d.event_position \
             WHERE d.endpoint_id = ?{status_clause} ORDER BY d.event_position DESC LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(endpoint_id);
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        query
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn redeliver(&self, endpoint_id: &str, event_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ? \
             WHERE endpoint_id = ? AND event_position = (SELECT position FROM events WHERE id = ?)",
        )
        .bind(unix_now_ms())
        .bind(endpoint_id)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn redeliver_dead(&self, endpoint_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ? \
             WHERE endpoint_id = ? AND status = 'dead'",
        )
        .bind(unix_now_ms())
        .bind(endpoint_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn backlog(&self, endpoint_id: &str) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
               COALESCE(SUM(CASE WHEN d.status = 'dead' THEN 1 ELSE 0 END), 0) AS dead, \
               MIN(CASE WHEN d.status = 'pending' THEN e.created_at END) AS oldest \
             FROM webhook_deliveries d JOIN events e ON e.position = d.event_position \
             WHERE d.endpoint_id = ? AND d.status <> 'delivered'",
        )
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            pending: row.try_get("pending")?,
            dead: row.try_get("dead")?,
            oldest_pending_at_ms: row.try_get("oldest")?,
        })
    }

    async fn prune_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(&format!(
            "DELETE FROM webhook_deliveries WHERE event_position IN ({PRUNABLE})"
        ))
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(&format!("DELETE FROM events WHERE position IN ({PRUNABLE})"))
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

const PRUNABLE: &str = "SELECT position FROM events WHERE created_at < ? AND NOT EXISTS \
     (SELECT 1 FROM webhook_deliveries d WHERE d.event_position = events.position AND d.status = 'pending')";

impl SqliteStore {
    /// The endpoint as it is now, if the statement touched it.
    async fn webhook_if_updated(&self, rows: u64, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        if rows == 0 {
            return Ok(None);
        }
        self.webhook(id).await
    }
}

const DELIVERY_COLUMNS: &str = "d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, \
     d.last_error, d.delivered_at";

/// `d` is the first pending delivery of its lane.
const LANE_HEAD: &str = "NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id \
     AND p.status = 'pending' AND p.lane = d.lane AND p.event_position < d.event_position)";

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery, StoreError> {
    let status: String = row.try_get("status")?;
    let status = DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status"))?;
    Ok(Delivery {
        event: event_from_row(row)?,
        status,
        attempts: row.try_get("attempts")?,
        next_attempt_at_ms: (status == DeliveryStatus::Pending)
            .then(|| row.try_get("next_attempt_at"))
            .transpose()?,
        last_attempt_at_ms: row.try_get("last_attempt_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at_ms: row.try_get("delivered_at")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::open;
    use super::*;
    use crate::control::model::DEFAULT_APP_ID;

    fn stream_event(kind: EventType, stream: &str, state: Option<StreamState>) -> NewEvent {
        NewEvent {
            event_type: kind,
            app_id: Some(DEFAULT_APP_ID.into()),
            stream_id: Some(stream.into()),
            state: state.map(|s| (s, Some(1))),
            data: json!({ "n": 1 }),
            only_endpoint: None,
        }
    }

    async fn endpoint(store: &SqliteStore, types: &[&str]) -> WebhookEndpoint {
        store
            .create_webhook(
                DEFAULT_APP_ID,
                NewWebhook {
                    url: "http://127.0.0.1:9/".into(),
                    description: String::new(),
                    event_types: types.iter().map(|t| t.to_string()).collect(),
                    secret: "whsec_x".into(),
                },
            )
            .await
            .expect("endpoint")
    }

    #[tokio::test]
    async fn events_get_per_stream_sequences_and_leave_the_stream_in_their_state() {
        let (_dir, store) = open().await;
        let a1 = store
            .record_event(
                stream_event(EventType::StreamConnected, "a", Some(StreamState::Connected)),
                10,
            )
            .await
            .expect("record");
        let b1 = store
            .record_event(
                stream_event(EventType::StreamConnected, "b", Some(StreamState::Connected)),
                10,
            )
            .await
            .expect("record");
        let a2 = store
            .record_event(stream_event(EventType::ViewersUpdated, "a", None), 10)
            .await
            .expect("record");
        assert_eq!((a1.sequence, b1.sequence, a2.sequence), (Some(1), Some(1), Some(2)));
        assert!(a1.position < b1.position && b1.position < a2.position);
        let body: serde_json::Value = serde_json::from_str(&a2.payload).expect("json");
        assert_eq!(
            (body["sequence"].as_i64(), body["id"].as_str()),
            (Some(2), Some(a2.id.as_str()))
        );
        // An event without a state change leaves the state alone.
        let open = store.open_streams().await.expect("open");
        assert_eq!(open.len(), 2);
        assert!(open.iter().all(|s| s.state == StreamState::Connected), "{open:?}");
        store
            .record_event(stream_event(EventType::StreamIdle, "a", Some(StreamState::Idle)), 10)
            .await
            .expect("record");
        let open = store.open_streams().await.expect("open");
        assert_eq!(open.iter().map(|s| s.stream_id.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[tokio::test]
    async fn each_lane_offers_only_its_first_pending_event_and_filters_apply() {
        let (_dir, store) = open().await;
        let all = endpoint(&store, &[]).await;
        let idle_only = endpoint(&store, &["stream.idle"]).await;
        let mut recorded = Vec::new();
        for (kind, stream) in [
            (EventType::StreamConnected, "a"),
            (EventType::StreamConnected, "b"),
            (EventType::StreamActive, "a"),
            (EventType::StreamIdle, "a"),
        ] {
            recorded.push(
                store
                    .record_event(stream_event(kind, stream, None), 10)
                    .await
                    .expect("record"),
            );
        }
        let due = store.due_deliveries(&all.id, i64::MAX, 10).await.expect("due");
        let heads: Vec<&str> = due.iter().map(|d| d.event.id.as_str()).collect();
        assert_eq!(
            heads,
            [recorded[0].id.as_str(), recorded[1].id.as_str()],
            "a's head and b's head"
        );
        // A retry pushes a's head into the future: a's later events wait behind it.
        let later = unix_now_ms() + 60_000;
        let retry = AttemptOutcome::Retry {
            status: Some(500),
            error: "HTTP 500".into(),
            next_attempt_at_ms: later,
        };
        store
            .finish_attempt(&all.id, recorded[0].position, &retry)
            .await
            .expect("finish");
        let due = store.due_deliveries(&all.id, unix_now_ms(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event.id, recorded[1].id);
        assert_eq!(
            store.next_attempt_at(&all.id).await.expect("next"),
            Some(recorded[1].created_at_ms)
        );
        store
            .finish_attempt(
                &all.id,
                recorded[1].position,
                &AttemptOutcome::Delivered { status: 200 },
            )
            .await
            .expect("finish");
        assert_eq!(store.next_attempt_at(&all.id).await.expect("next"), Some(later));
        let backlog = store.backlog(&all.id).await.expect("backlog");
        assert_eq!((backlog.pending, backlog.dead), (3, 0));
        // The filtered endpoint got the idle event only.
        let idle = store
            .deliveries(
                &idle_only.id,
                &DeliveryFilter {
                    status: None,
                    limit: 10,
                },
            )
            .await
            .expect("list");
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].event.event_type, "stream.idle");
    }

    #[tokio::test]
    async fn pruning_keeps_events_still_owed_to_an_endpoint() {
        let (_dir, store) = open().await;
        let hook = endpoint(&store, &[]).await;
        let owed = store
            .record_event(stream_event(EventType::StreamConnected, "a", None), 10)
            .await
            .expect("record");
        let done = store
            .record_event(stream_event(EventType::StreamIdle, "b", None), 10)
            .await
            .expect("record");
        store
            .finish_attempt(&hook.id, done.position, &AttemptOutcome::Delivered { status: 200 })
            .await
            .expect("finish");
        assert_eq!(
            store.prune_events(done.created_at_ms).await.expect("prune"),
            0,
            "nothing old enough"
        );
        assert_eq!(store.prune_events(i64::MAX).await.expect("prune"), 1);
        let left = store
            .events(&EventFilter {
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .expect("events");
        assert_eq!(
            left.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            [owed.id.as_str()]
        );
        assert_eq!(store.backlog(&hook.id).await.expect("backlog").pending, 1);
    }

    #[tokio::test]
    async fn a_full_queue_dead_letters_and_redelivery_requeues() {
        let (_dir, store) = open().await;
        let hook = endpoint(&store, &[]).await;
        for _ in 0..3 {
            store
                .record_event(stream_event(EventType::ViewersUpdated, "s", None), 2)
                .await
                .expect("record");
        }
        let backlog = store.backlog(&hook.id).await.expect("backlog");
        assert_eq!((backlog.pending, backlog.dead), (2, 1));
        let dead = store
            .deliveries(
                &hook.id,
                &DeliveryFilter {
                    status: Some(DeliveryStatus::Dead),
                    limit: 10,
                },
            )
            .await
            .expect("dead");
        assert!(dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("queue was full")));
        assert_eq!(store.redeliver_dead(&hook.id).await.expect("redeliver"), 1);
        assert_eq!(store.backlog(&hook.id).await.expect("backlog").pending, 3);
        assert!(!store.redeliver(&hook.id, "evt_nope").await.expect("redeliver"));
        assert!(store.delete_webhook(&hook.id).await.expect("delete"));
        assert_eq!(store.backlog(&hook.id).await.expect("backlog").pending, 0);
    }
}
