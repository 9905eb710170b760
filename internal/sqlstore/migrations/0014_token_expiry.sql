-- Token lifetimes and rotation: a token may expire, and a rotated token's old secret keeps working until
-- previous_valid_until so that its clients can move to the new secret without an outage.
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN rotated_at TEXT;
ALTER TABLE tokens ADD COLUMN previous_hash TEXT;
ALTER TABLE tokens ADD COLUMN previous_valid_until TEXT;
CREATE INDEX tokens_previous_hash ON tokens (previous_hash);
