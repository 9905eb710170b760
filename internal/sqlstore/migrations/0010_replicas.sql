-- Network replicas: a deployment's engine ('' = the server's, 'external' = announced workers) and its replica
-- secret, the HMAC key that workers and the server prove to each other. The secret has its own table so that
-- no query of deployments can ever return it.
ALTER TABLE deployments ADD COLUMN engine TEXT NOT NULL DEFAULT '';

CREATE TABLE replica_secrets (
    deployment TEXT PRIMARY KEY REFERENCES deployments (name) ON DELETE CASCADE,
    secret     BLOB NOT NULL,
    created_at TEXT NOT NULL
);
