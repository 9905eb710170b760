-- A job run in progress runs as a process on its owner server only (several servers on one database): a cancel
-- sent to another server sets this flag, with the cancel's reason in reason, and the owner stops the process
-- when it next looks (once a second, one query for all the runs it owns), as pipeline runs are canceled.
ALTER TABLE job_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
