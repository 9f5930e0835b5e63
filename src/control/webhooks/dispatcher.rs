//! Delivers the outbox: one worker per enabled endpoint, so a slow or dead
//! endpoint only ever holds up itself. A worker sends the first pending
//! event of each stream (lane) that is due, a few lanes at a time; a stream's
//! later events wait behind its earlier ones, which keeps them in sequence.
//! Nothing here touches the media path: events are already committed when a
//! worker sees them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::model::{AttemptOutcome, Delivery, RecordedEvent, WebhookEndpoint};
use super::retry::{jitter, RetrySchedule};
use super::sender::Sender;
use crate::control::clock::unix_ms;
use crate::control::store::EventStore;

/// How long an idle worker sleeps before looking again anyway (a redelivery
/// requested from another process, a clock jump).
const IDLE_RECHECK: Duration = Duration::from_secs(30);
const STORE_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub schedule: RetrySchedule,
    /// Requests in flight per endpoint, each for a different stream.
    pub lanes_in_flight: u32,
}

struct Worker {
    wake: Arc<Notify>,
    stop: CancellationToken,
}

pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    sender: Sender,
    settings: DispatchSettings,
    workers: Mutex<HashMap<String, Worker>>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn EventStore>, sender: Sender, settings: DispatchSettings) -> Arc<Self> {
        Arc::new(Self {
            store,
            sender,
            settings,
            workers: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        })
    }

    /// Starts a worker for every enabled endpoint that has none, and stops
    /// those of endpoints that are gone or disabled. Call after any change
    /// to endpoints.
    pub async fn refresh(self: &Arc<Self>) {
        let endpoints = match self.store.webhooks(None).await {
            Ok(endpoints) => endpoints,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot list endpoints; deliveries wait");
                return;
            }
        };
        let enabled: Vec<String> = endpoints.into_iter().filter(|e| e.enabled).map(|e| e.id).collect();
        let mut workers = self.workers.lock();
        workers.retain(|id, worker| {
            let keep = enabled.contains(id) && !worker.stop.is_cancelled();
            if !keep {
                worker.stop.cancel();
            }
            keep
        });
        for id in enabled {
            if let Some(worker) = workers.get(&id) {
                worker.wake.notify_one();
                continue;
            }
            let worker = Worker {
                wake: Arc::new(Notify::new()),
                stop: self.shutdown.child_token(),
            };
            let span = tracing::info_span!("webhook", endpoint_id = %id);
            tokio::spawn(
                self.clone()
                    .work(id.clone(), worker.wake.clone(), worker.stop.clone())
                    .instrument(span),
            );
            workers.insert(id, worker);
        }
    }

    pub fn wake_all(&self) {
        for worker in self.workers.lock().values() {
            worker.wake.notify_one();
        }
    }

    /// Wakes the workers whenever an event is committed.
    pub async fn follow(self: Arc<Self>, mut feed: broadcast::Receiver<Arc<RecordedEvent>>) {
        loop {
            match feed.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.wake_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    async fn work(self: Arc<Self>, endpoint_id: String, wake: Arc<Notify>, stop: CancellationToken) {
        loop {
            if stop.is_cancelled() {
                return;
            }
            let wait = match self.round(&endpoint_id).await {
                Ok(Round::Sent) => continue,
                Ok(Round::Stop) => {
                    stop.cancel();
                    return;
                }
                Ok(Round::Idle(wait)) => wait,
                Err(e) => {
                    tracing::error!(endpoint_id, error = %e, "webhooks: store error; retrying");
                    STORE_RETRY
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn round(&self, endpoint_id: &str) -> Result<Round, crate::control::store::StoreError> {
        let Some(endpoint) = self.store.webhook(endpoint_id).await?.filter(|e| e.enabled) else {
            return Ok(Round::Stop);
        };
        let now = unix_ms();
        let due = self
            .store
            .due_deliveries(endpoint_id, now, self.settings.lanes_in_flight.max(1))
            .await?;
        if due.is_empty() {
            let wait = match self.store.next_attempt_at(endpoint_id).await? {
                Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(IDLE_RECHECK),
                None => IDLE_RECHECK,
            };
            return Ok(Round::Idle(wait));
        }
        let outcomes = futures::future::join_all(due.iter().map(|d| self.attempt(&endpoint, d))).await;
        let mut gone = false;
        for (delivery, outcome) in due.iter().zip(outcomes) {
            gone |= matches!(outcome, AttemptOutcome::Gone { .. });
            self.store
                .finish_attempt(endpoint_id, delivery.event.position, &outcome)
                .await?;
        }
        if gone {
            let reason = format!(
                "the endpoint answered 410 Gone at {}; re-enable it to resume",
                super::envelope::rfc3339_ms(now)
            );
            tracing::warn!(endpoint_id, "webhook endpoint answered 410 Gone; disabled");
            self.store.disable_webhook(endpoint_id, &reason).await?;
            return Ok(Round::Stop);
        }
        Ok(Round::Sent)
    }

    async fn attempt(&self, endpoint: &WebhookEndpoint, delivery: &Delivery) -> AttemptOutcome {
        let answer = self.sender.send(endpoint, &delivery.event, SystemTime::now()).await;
        let attempt = delivery.attempts + 1;
        let event_id = delivery.event.id.as_str();
        let Some(error) = answer.error else {
            tracing::debug!(endpoint_id = endpoint.id, event_id, attempt, "webhook delivered");
            return AttemptOutcome::Delivered {
                status: answer.status.unwrap_or(200),
            };
        };
        if answer.status == Some(410) {
            return AttemptOutcome::Gone { error };
        }
        match self
            .settings
            .schedule
            .delay_after(attempt, jitter(), answer.retry_after)
        {
            Some(delay) => {
                tracing::warn!(endpoint_id = endpoint.id, event_id, attempt, retry_in_ms = delay.as_millis() as u64, %error, "webhook attempt failed");
                AttemptOutcome::Retry {
                    status: answer.status,
                    error,
                    next_attempt_at_ms: unix_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                }
            }
            None => {
                tracing::error!(endpoint_id = endpoint.id, event_id, attempt, %error, "webhook dead-lettered after its last attempt");
                AttemptOutcome::Dead {
                    status: answer.status,
                    error,
                }
            }
        }
    }
}

enum Round {
    Sent,
    Idle(Duration),
    Stop,
}

/// Once an hour: events older than `retention` that no endpoint is still
/// owed leave the store (the event log and the delivery history are kept
/// that long; pending deliveries are never pruned).
pub async fn prune_periodically(store: Arc<dyn EventStore>, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let cutoff = unix_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match store.prune_events(cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old lifecycle events"),
            Err(e) => tracing::error!(error = %e, "pruning old lifecycle events failed; retrying in an hour"),
        }
    }
}
