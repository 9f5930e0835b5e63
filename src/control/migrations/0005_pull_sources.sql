-- Issue 7: RTSP pull sources. Each pulls into a stream of its own app,
-- publishing with that stream's key (kept here, like the camera URL and its
-- credentials; neither is ever returned by the API or the CLI).
CREATE TABLE pull_sources (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    stream_id   TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    stream_key  TEXT NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    -- tcp | udp
    transport   TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Last state the running server saw (connecting | live | retrying | stopped), for the CLI.
    state       TEXT NOT NULL DEFAULT 'stopped',
    last_error  TEXT,
    state_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pull_sources_by_app ON pull_sources (app_id, created_at);
