-- Runs in progress have one owner server (several servers on one database, internal/cluster): the server that
-- executes a job run, drives a pipeline run or scores a batch run. It holds the run's lease while it renews it;
-- another server that takes the lease over moves the owner with compare-and-set, and every write of a run's
-- progress names its owner, so that a server that lost a run (killed, partitioned) never writes over the new
-- owner's state. '' on one server, where nothing is fenced.
ALTER TABLE job_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE pipeline_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
