-- How an ONNX deployment's replicas run: '' or 'process' a process each, 'in-process' inside the server.
ALTER TABLE deployments ADD COLUMN isolation TEXT NOT NULL DEFAULT '';
