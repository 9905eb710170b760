-- Runs in progress have one owner server (several servers on one database, internal/cluster): the server that
-- executes a job run, drives a pipeline run or scores a batch run. It holds the run's lease while it renews it;
-- another server that takes the lease over moves the owner with compare-and-set, and every write of a run's
-- progress names its owner, so that a server that lost a run (killed, partitioned) never writes over the new
-- owner's state. '' on one server, where nothing is fenced.
ALTER TABLE job_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE pipeline_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';

-- A deployment's revision counts its stored changes: every write compares it and moves it on (compare-and-set),
-- so that two servers (or two requests) changing one deployment never write over each other's change.
ALTER TABLE deployments ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
