-- +goose Up

-- The token of the last fenced write of a claim (the claim itself or a step
-- result). A worker whose write's answer was lost (connection reset at
-- commit) reads it back to learn whether the write landed, instead of
-- running the step again.
ALTER TABLE protections ADD COLUMN write_token uuid;

-- +goose Down
ALTER TABLE protections DROP COLUMN write_token;
