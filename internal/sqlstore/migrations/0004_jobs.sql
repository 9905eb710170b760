-- Jobs, pipelines and schedules. Specs and small structured values are JSON text; times are RFC 3339 UTC text.
-- Runs keep their job's name as text (no foreign key): a run's record outlives the job it ran.
CREATE TABLE jobs (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    files      TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT ''
);

CREATE TABLE job_runs (
    id            TEXT PRIMARY KEY,
    job           TEXT    NOT NULL DEFAULT '',
    pipeline_run  TEXT    NOT NULL DEFAULT '',
    step          TEXT    NOT NULL DEFAULT '',
    attempt       INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    exit_code     INTEGER,
    reason        TEXT    NOT NULL DEFAULT '',
    args          TEXT    NOT NULL DEFAULT '[]',
    env           TEXT    NOT NULL DEFAULT '{}',
    spec          TEXT    NOT NULL,
    outputs       TEXT    NOT NULL DEFAULT '{}',
    output_digest TEXT    NOT NULL DEFAULT '',
    pid           INTEGER NOT NULL DEFAULT 0,
    proc_start    INTEGER NOT NULL DEFAULT 0,
    token_id      TEXT    NOT NULL DEFAULT '',
    created_at    TEXT    NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    created_by    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_runs_state ON job_runs (state, created_at);
CREATE INDEX job_runs_job ON job_runs (job, created_at);
CREATE INDEX job_runs_pipeline_run ON job_runs (pipeline_run, created_at);

CREATE TABLE pipelines (
    name            TEXT PRIMARY KEY,
    spec            TEXT NOT NULL,
    artifact_digest TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE pipeline_runs (
    id               TEXT PRIMARY KEY,
    pipeline         TEXT    NOT NULL,
    spec             TEXT    NOT NULL,
    artifact_digest  TEXT    NOT NULL DEFAULT '',
    params           TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT '',
    trigger          TEXT    NOT NULL DEFAULT '',
    retries          INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    created_by       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX pipeline_runs_pipeline ON pipeline_runs (pipeline, created_at);
CREATE INDEX pipeline_runs_state ON pipeline_runs (state);

CREATE TABLE pipeline_steps (
    run_id          TEXT    NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    depends_on      TEXT    NOT NULL DEFAULT '[]',
    on_exit         INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_base      INTEGER NOT NULL DEFAULT 0,
    job_run         TEXT    NOT NULL DEFAULT '',
    cached          INTEGER NOT NULL DEFAULT 0,
    cache_key       TEXT    NOT NULL DEFAULT '',
    outputs         TEXT    NOT NULL DEFAULT '{}',
    output_dir      TEXT    NOT NULL DEFAULT '',
    output_digest   TEXT    NOT NULL DEFAULT '',
    history         TEXT    NOT NULL DEFAULT '[]',
    started_at      TEXT,
    finished_at     TEXT,
    next_attempt_at TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX pipeline_steps_cache ON pipeline_steps (cache_key, state);

CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    cron         TEXT    NOT NULL,
    timezone     TEXT    NOT NULL,
    target_kind  TEXT    NOT NULL,
    target_name  TEXT    NOT NULL,
    input        TEXT    NOT NULL DEFAULT '{}',
    policy       TEXT    NOT NULL,
    catch_up     INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT    NOT NULL,
    created_by   TEXT    NOT NULL DEFAULT '',
    last_tick_at TEXT,
    last_run_id  TEXT    NOT NULL DEFAULT ''
);

-- One row per decided tick, written before the run it starts: a tick is never acted on twice.
CREATE TABLE schedule_ticks (
    schedule    TEXT NOT NULL REFERENCES schedules (name) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    action      TEXT NOT NULL,
    run_id      TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (schedule, at)
);
