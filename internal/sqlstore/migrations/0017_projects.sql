-- Projects: namespaces of models, deployments, jobs, pipelines, schedules, batch predictions and files.
-- 'default' exists from the start without a row (the store answers for it: an installation's tables stay empty
-- until it is used, which db copy relies on), and every row older than projects belongs to it (the columns'
-- default).
-- Names stay unique across the installation (prediction URLs name deployments without a project); the
-- project column is what scopes reads, lists and creations.
CREATE TABLE projects (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT ''
);

ALTER TABLE models ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE deployments ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE job_runs ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE pipelines ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE pipeline_runs ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE schedules ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE batch_runs ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE batch_files ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
CREATE INDEX models_project ON models (project, name);
CREATE INDEX deployments_project ON deployments (project, name);
CREATE INDEX jobs_project ON jobs (project, name);
CREATE INDEX job_runs_project ON job_runs (project, created_at);
CREATE INDEX pipelines_project ON pipelines (project, name);
CREATE INDEX pipeline_runs_project ON pipeline_runs (project, created_at);
CREATE INDEX schedules_project ON schedules (project, name);
CREATE INDEX batch_runs_project ON batch_runs (project, created_at);
CREATE INDEX batch_files_project ON batch_files (project, created_at);

-- A token limited to projects has an empty global role and its roles per project here, as JSON
-- ({"risk": "editor"}); '{}' for a token with a global role.
ALTER TABLE tokens ADD COLUMN projects TEXT NOT NULL DEFAULT '{}';

-- The project an audited call worked in.
ALTER TABLE audit_log ADD COLUMN project TEXT NOT NULL DEFAULT '';
