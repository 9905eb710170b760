-- A deployment's canary: another version of its model that takes a share of the traffic ('null': none).
ALTER TABLE deployments ADD COLUMN canary TEXT NOT NULL DEFAULT 'null';
