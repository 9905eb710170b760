-- What each replica of a deployment may use: JSON {"cpu": cores, "memory_mb": MiB}, 'null' when not limited.
ALTER TABLE deployments ADD COLUMN resources TEXT NOT NULL DEFAULT 'null';
