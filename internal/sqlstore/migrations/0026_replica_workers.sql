-- Network replica workers as they announce themselves: a worker's heartbeats reach whichever server answers
-- (several servers behind one URL, --replica-announce-url), and every server reads this table to hold its own
-- session to every worker. heartbeat_ms is the DATABASE's clock in Unix milliseconds (as in 0009), so that
-- servers whose clocks disagree still agree on which workers are alive.
CREATE TABLE replica_workers (
    deployment   TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
    worker_id    TEXT NOT NULL,
    version      INTEGER NOT NULL,
    address      TEXT NOT NULL,
    runtime      TEXT NOT NULL,
    tls          INTEGER NOT NULL DEFAULT 0,
    pod          TEXT NOT NULL DEFAULT '',
    announced_at TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment, worker_id)
);

CREATE INDEX replica_workers_heartbeat ON replica_workers (heartbeat_ms);
