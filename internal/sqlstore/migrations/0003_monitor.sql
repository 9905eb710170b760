-- Monitoring configuration and history (low volume). The append-heavy data (captures, feedback, logs, metric
-- points, drift windows) lives in a second SQLite file, monitor.db (see internal/sqlstore/monitor_data.go).
CREATE TABLE baselines (
    model      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    format     TEXT    NOT NULL,
    ignored    TEXT    NOT NULL DEFAULT '[]',
    profile    TEXT    NOT NULL, -- stats.Profile with its reference summaries (JSON)
    created_at TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (model, version),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
);

CREATE TABLE monitor_settings (
    deployment TEXT PRIMARY KEY REFERENCES deployments (name) ON DELETE CASCADE,
    settings   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE alert_rules (
    id             TEXT PRIMARY KEY,
    deployment     TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    spec           TEXT NOT NULL, -- metric, op, threshold, window, webhook url, action (JSON)
    secret         TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL DEFAULT 'ok',
    value          REAL,
    since          TEXT,
    last_evaluated TEXT,
    created_at     TEXT NOT NULL,
    UNIQUE (deployment, name)
);

CREATE TABLE alert_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id    TEXT    NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    deployment TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    value      REAL,
    threshold  REAL    NOT NULL,
    message    TEXT    NOT NULL,
    at         TEXT    NOT NULL
);
CREATE INDEX alert_events_deployment ON alert_events (deployment, id);
