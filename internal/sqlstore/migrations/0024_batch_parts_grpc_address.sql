-- Batch file outputs are written chunk by chunk to the installation's artifact store (the bucket with several
-- servers): each committed chunk is a blob, and its record here is the chunk's checkpoint. The primary key
-- makes a chunk committed once, whichever server scores it; a run adopted by another server resumes from these
-- records. The merged output file is a blob too, its digest kept beside the run (and in its output's JSON).
CREATE TABLE batch_parts (
    run_id       TEXT    NOT NULL,
    chunk        INTEGER NOT NULL,
    digest       TEXT    NOT NULL DEFAULT '',
    row_count    INTEGER NOT NULL,
    skipped_rows INTEGER NOT NULL,
    errors       TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, chunk)
);
CREATE INDEX batch_parts_digest ON batch_parts (digest);

ALTER TABLE batch_runs ADD COLUMN output_digest TEXT NOT NULL DEFAULT '';
CREATE INDEX batch_runs_output_digest ON batch_runs (output_digest);
CREATE INDEX batch_files_sha256 ON batch_files (sha256);

-- Where each server's gRPC service is reached (grpc://HOST:PORT, grpcs:// with TLS; '' without --grpc-addr):
-- a gRPC call about a deployment another server hosts is forwarded there, as HTTP calls go to advertise_url.
ALTER TABLE servers ADD COLUMN grpc_address TEXT NOT NULL DEFAULT '';
