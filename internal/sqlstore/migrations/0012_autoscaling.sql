-- A deployment's autoscaling policy ('null': a fixed replica count).
ALTER TABLE deployments ADD COLUMN autoscaling TEXT NOT NULL DEFAULT 'null';
-- When a deployment's replicas start: '' or 'eager' with the deployment, 'lazy' on its first request.
ALTER TABLE deployments ADD COLUMN load_mode TEXT NOT NULL DEFAULT '';
