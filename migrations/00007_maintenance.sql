-- +goose Up

-- Maintenance (one replica at a time) removes the history of protections
-- finished longer ago than MCPGUARD_RETENTION, and the stored credentials of
-- failed or cancelled jobs after MCPGUARD_CREDENTIALS_TTL. The protection row
-- and its final state stay; these columns say what was removed and when, so
-- a retry can explain why it needs fresh credentials or cannot run.
ALTER TABLE protections
    ADD COLUMN history_removed_at     timestamptz,
    ADD COLUMN credentials_removed_at timestamptz;

-- The maintenance queries: finished rows by age.
CREATE INDEX protections_finished_idx ON protections (finished_at)
    WHERE finished_at IS NOT NULL;

-- +goose Down
DROP INDEX protections_finished_idx;
ALTER TABLE protections
    DROP COLUMN credentials_removed_at,
    DROP COLUMN history_removed_at;
