-- A token's own limit on prediction calls: a token bucket of rate_limit_burst refilled at rate_limit_rps.
ALTER TABLE tokens ADD COLUMN rate_limit_rps REAL;
ALTER TABLE tokens ADD COLUMN rate_limit_burst INTEGER;
