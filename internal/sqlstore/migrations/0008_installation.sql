-- One row naming this installation: an artifact store in a shared bucket is claimed by this id, so that two
-- installations never garbage-collect each other's blobs.
CREATE TABLE installation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    uid        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
