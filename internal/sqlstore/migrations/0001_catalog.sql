-- Catalog and auth. Timestamps are RFC 3339 UTC text so that SQLite and PostgreSQL read them the same way.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);

CREATE TABLE models (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE model_versions (
    model      TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    created_by TEXT    NOT NULL DEFAULT '',
    metadata   TEXT    NOT NULL,
    digest     TEXT    NOT NULL DEFAULT '',
    size       INTEGER NOT NULL DEFAULT 0,
    files      TEXT    NOT NULL DEFAULT '[]',
    checks     TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (model, version)
);

CREATE TABLE aliases (
    model      TEXT    NOT NULL,
    alias      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version) ON DELETE CASCADE
);

CREATE TABLE alias_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    model        TEXT    NOT NULL REFERENCES models (name) ON DELETE CASCADE,
    alias        TEXT    NOT NULL,
    version      INTEGER,
    from_version INTEGER,
    moved_at     TEXT    NOT NULL,
    moved_by     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX alias_history_model_alias ON alias_history (model, alias, id);
