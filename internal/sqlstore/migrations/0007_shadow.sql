-- A deployment's shadow: another version of its model that gets a copy of every request ('null': none).
ALTER TABLE deployments ADD COLUMN shadow TEXT NOT NULL DEFAULT 'null';
