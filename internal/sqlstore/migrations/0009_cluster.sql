-- Several servers on one database. Each server is a row, heartbeating; each piece of work with one owner (a
-- deployment's replicas, alert evaluation) is a lease row taken and renewed with compare-and-set. Times that
-- decide ownership (heartbeat_ms, expires_ms) are the DATABASE's clock in Unix milliseconds, computed by the
-- statement that writes them, so that the servers' clocks never have to agree.
CREATE TABLE servers (
    id            TEXT NOT NULL PRIMARY KEY,
    advertise_url TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_ms  INTEGER NOT NULL
);

-- previous is the server that last released the lease: during a hand-over (SIGTERM) it still serves while the
-- new holder starts, and the new holder forwards to it meanwhile.
CREATE TABLE leases (
    name       TEXT NOT NULL PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    epoch      INTEGER NOT NULL,
    previous   TEXT NOT NULL DEFAULT ''
);
