-- Deployments: the desired state. Live replica state is kept in memory by the serving pool.
-- The model reference has no ON DELETE CASCADE: deleting a model that a deployment uses is refused.
CREATE TABLE deployments (
    name         TEXT PRIMARY KEY,
    state        TEXT    NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '',
    model        TEXT    NOT NULL REFERENCES models (name),
    version      INTEGER NOT NULL,
    alias        TEXT    NOT NULL DEFAULT '',
    follow_alias INTEGER NOT NULL DEFAULT 0,
    replicas     INTEGER NOT NULL,
    batching     TEXT    NOT NULL DEFAULT 'null',
    timeout_ms   INTEGER NOT NULL,
    max_queue    INTEGER NOT NULL,
    env          TEXT    NOT NULL DEFAULT '{}',
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
