-- Apps (tenants), their playback keys, admin tokens and the audit log.
-- Written to run on SQLite and PostgreSQL alike: plain types, no
-- engine-specific functions, no AUTOINCREMENT.

CREATE TABLE apps (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL UNIQUE,
    profile                 TEXT,
    custom_ladder           TEXT,
    encrypt                 BOOLEAN NOT NULL,
    key_rotation_segments   BIGINT NOT NULL,
    record                  BOOLEAN NOT NULL,
    max_streams             BIGINT,
    max_ingest_kbps         BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

-- The built-in app. Its creation time is that of the oldest stream, or 0 on
-- a fresh database, which the store replaces with the time of first open
-- (there is no portable "now" in SQL).
INSERT INTO apps (id, name, profile, custom_ladder, encrypt, key_rotation_segments, record,
                  max_streams, max_ingest_kbps, created_at, updated_at)
SELECT 'app_default', 'default', NULL, NULL, TRUE, 10, FALSE, NULL, NULL,
       COALESCE(MIN(created_at), 0), COALESCE(MIN(created_at), 0)
FROM streams;

-- Streams created before apps existed belong to the built-in app.
ALTER TABLE streams ADD COLUMN app_id TEXT NOT NULL DEFAULT 'app_default';
CREATE INDEX streams_app_id ON streams (app_id);

-- `seq` orders keys by creation (the newest HS256 key of an app mints) where
-- second-resolution timestamps tie; assigned as MAX + 1 in the INSERT itself.
CREATE TABLE playback_keys (
    kid             TEXT PRIMARY KEY,
    app_id          TEXT NOT NULL,
    algorithm       TEXT NOT NULL,
    -- HS256: the secret (64 hex characters) the server verifies with.
    secret          TEXT,
    -- RS256/ES256: the app's public key.
    public_key_pem  TEXT,
    created_at      BIGINT NOT NULL,
    seq             BIGINT NOT NULL UNIQUE
);
CREATE INDEX playback_keys_app_id ON playback_keys (app_id);

CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- NULL: a global token.
    app_id      TEXT,
    token_hash  TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX admin_tokens_app_id ON admin_tokens (app_id);

CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    ip      TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    app_id  TEXT,
    result  TEXT NOT NULL,
    -- Newest first even within one millisecond.
    seq     BIGINT NOT NULL UNIQUE
);
CREATE INDEX audit_log_at_ms ON audit_log (at_ms);
CREATE INDEX audit_log_actor ON audit_log (actor);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_app_id ON audit_log (app_id);
CREATE INDEX audit_log_target ON audit_log (target);
