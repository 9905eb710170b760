-- Gated rollouts: a deployment moved to a candidate version step by step (shadow, canaries), each step's
-- window judged by gates. The state lives here so that a restarted server resumes a RUNNING rollout.
-- steps, gates and decisions are JSON. At most one rollout per deployment runs at a time (partial index).
CREATE TABLE rollouts (
    id              TEXT PRIMARY KEY,
    deployment      TEXT    NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    model           TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    from_version    INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    steps           TEXT    NOT NULL,
    gates           TEXT    NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0,
    step_phase      TEXT    NOT NULL DEFAULT '',
    step_started_at TEXT,
    decisions       TEXT    NOT NULL DEFAULT '[]',
    created_by      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    ended_at        TEXT
);
CREATE INDEX rollouts_by_deployment ON rollouts (deployment, created_at);
CREATE UNIQUE INDEX rollouts_one_running ON rollouts (deployment) WHERE state = 'RUNNING';
