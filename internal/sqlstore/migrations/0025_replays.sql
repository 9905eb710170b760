-- Replays: the captured requests of a window sent to a candidate version offline, and its answers compared
-- with the captured live ones. spec and report are JSON. attempt fences the servers that drive a replay: a
-- server resuming it after a restart takes a new attempt, and the writes of an older one are refused.
CREATE TABLE replays (
    id         TEXT PRIMARY KEY,
    deployment TEXT    NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    model      TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    sent       INTEGER NOT NULL DEFAULT 0,
    total      INTEGER NOT NULL DEFAULT 0,
    attempt    INTEGER NOT NULL DEFAULT 0,
    report     TEXT    NOT NULL DEFAULT 'null',
    owner      TEXT    NOT NULL DEFAULT '',
    created_by TEXT    NOT NULL DEFAULT '',
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    ended_at   TEXT
);
CREATE INDEX replays_by_deployment ON replays (deployment, created_at);
CREATE INDEX replays_by_state ON replays (state);

-- A deployment's holdout: the share of its requests whose application withholds its action ('null': none).
ALTER TABLE deployments ADD COLUMN holdout TEXT NOT NULL DEFAULT 'null';
