-- Issue 6: per-app object storage and recordings.

-- An app's own bucket (on the server's S3 endpoint and credentials) and key
-- prefix, and the CDN base its playlists point media URIs at.
ALTER TABLE apps ADD COLUMN storage_bucket TEXT;
ALTER TABLE apps ADD COLUMN storage_prefix TEXT;
ALTER TABLE apps ADD COLUMN cdn_base_url TEXT;

-- One recording per live run of a recording stream (stream.connected to
-- stream.idle). The segments stay where the live window stored them.
CREATE TABLE recordings (
    id            TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL,
    stream_id     TEXT NOT NULL,
    -- recording | ready | failed
    status        TEXT NOT NULL,
    -- Where the objects are (the app's overrides when it started) and the CDN base.
    storage_bucket TEXT,
    storage_prefix TEXT,
    cdn_base_url  TEXT,
    -- The multivariant playlist (media playlists at <rendition>/index.m3u8).
    master        TEXT,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    duration_ms   INTEGER NOT NULL DEFAULT 0,
    segments      INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX recordings_by_app ON recordings (app_id, started_at);
CREATE INDEX recordings_open ON recordings (status, stream_id);

CREATE TABLE recording_segments (
    recording_id      TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    rendition         TEXT NOT NULL,
    msn               INTEGER NOT NULL,
    duration_ns       INTEGER NOT NULL,
    discontinuity     INTEGER NOT NULL,
    init_id           INTEGER NOT NULL,
    key_id            INTEGER,
    iv                TEXT,
    program_date_time INTEGER NOT NULL,
    PRIMARY KEY (recording_id, rendition, msn)
);

-- Content keys outlive the live window for a recording's players.
CREATE TABLE recording_keys (
    recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    key_id       INTEGER NOT NULL,
    key          BLOB NOT NULL,
    PRIMARY KEY (recording_id, key_id)
);
