-- Batch predictions. The rows themselves and the per-chunk checkpoints live with the output (the target
-- database, or the run's folder for file outputs); these rows are the runs' description and progress.
-- No foreign key to models: a run's record outlives the model it used.
CREATE TABLE batch_runs (
    id              TEXT PRIMARY KEY,
    state           TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    model           TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    spec            TEXT    NOT NULL,
    rows_total      INTEGER NOT NULL DEFAULT -1,
    rows_done       INTEGER NOT NULL DEFAULT 0,
    rows_skipped    INTEGER NOT NULL DEFAULT 0,
    rows_per_second REAL    NOT NULL DEFAULT 0,
    errors          TEXT    NOT NULL DEFAULT '[]',
    output          TEXT    NOT NULL DEFAULT '{}',
    created_by      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX batch_runs_state ON batch_runs (state, created_at);

CREATE TABLE batch_files (
    id         TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    created_at TEXT    NOT NULL
);
