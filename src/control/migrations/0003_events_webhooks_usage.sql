-- Lifecycle events (the durable outbox), webhook endpoints and their
-- per-endpoint delivery queues, and hourly usage roll-ups.
-- Same rules as 0002: plain types, no engine-specific functions, no
-- AUTOINCREMENT (positions are assigned as MAX + 1 inside the writing
-- transaction; PostgreSQL would use a sequence).

-- What the control plane last recorded about a stream, changed in the same
-- transaction as the event that reports the change.
CREATE TABLE stream_states (
    stream_id       TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL,
    -- connected | active | disconnected | failed | idle
    state           TEXT NOT NULL,
    session         BIGINT,
    -- The last per-stream sequence number given to an event.
    last_sequence   BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE events (
    position    BIGINT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    -- NULL: not tied to an app (a publish refused before its app was known).
    app_id      TEXT,
    stream_id   TEXT,
    sequence    BIGINT,
    -- Milliseconds since the epoch.
    created_at  BIGINT NOT NULL,
    -- The JSON body exactly as it is sent (and signed).
    payload     TEXT NOT NULL
);
CREATE INDEX events_app_id ON events (app_id, position);
CREATE INDEX events_stream_id ON events (stream_id, position);

CREATE TABLE webhook_endpoints (
    id                          TEXT PRIMARY KEY,
    -- NULL: an operator endpoint that hears every app.
    app_id                      TEXT,
    url                         TEXT NOT NULL,
    description                 TEXT NOT NULL,
    -- whsec_… (Standard Webhooks).
    secret                      TEXT NOT NULL,
    -- During a rotation both secrets sign, until the old one expires.
    previous_secret             TEXT,
    previous_secret_expires_at  BIGINT,
    -- Comma-separated event types; empty: every type.
    event_types                 TEXT NOT NULL,
    enabled                     BOOLEAN NOT NULL,
    disabled_reason             TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_app_id ON webhook_endpoints (app_id);

-- One row per (endpoint, event): the endpoint's queue. `lane` is the stream
-- (or '' for events without one); a lane is delivered strictly in order.
CREATE TABLE webhook_deliveries (
    endpoint_id      TEXT NOT NULL,
    event_position   BIGINT NOT NULL,
    lane             TEXT NOT NULL,
    -- pending | delivered | dead
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_attempt_at  BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT,
    PRIMARY KEY (endpoint_id, event_position)
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, status, lane, event_position);

-- Usage per stream and hour (`hour`: seconds since the epoch at the start of
-- the hour). Counters are added to; the peak keeps the maximum.
CREATE TABLE usage_hourly (
    app_id          TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    ingest_ms       BIGINT NOT NULL,
    rendition_ms    BIGINT NOT NULL,
    delivered_bytes BIGINT NOT NULL,
    viewer_ms       BIGINT NOT NULL,
    peak_viewers    BIGINT NOT NULL,
    PRIMARY KEY (app_id, stream_id, hour)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);
