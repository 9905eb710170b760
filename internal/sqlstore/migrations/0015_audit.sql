-- The audit log: append-only, hash-chained (each row's hash covers the previous row's hash). seq is assigned
-- by the appending transaction (last seq + 1), never by the database, so that a gap shows a removed row.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    token_id   TEXT NOT NULL DEFAULT '',
    token_name TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL,
    method     TEXT NOT NULL DEFAULT '',
    route      TEXT NOT NULL DEFAULT '',
    target     TEXT NOT NULL DEFAULT '',
    status     INTEGER NOT NULL DEFAULT 0,
    problem    TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    client     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);
