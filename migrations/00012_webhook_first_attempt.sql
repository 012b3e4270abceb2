-- +goose Up

-- A delivery is retried for MCPGUARD_WEBHOOK_RETRY_FOR from its first
-- attempt, not from its creation: one queued behind a failing delivery of
-- the same protection (they are sent in order) would otherwise have spent
-- its whole retry time waiting and be given up after a single attempt.
ALTER TABLE webhook_deliveries ADD COLUMN first_attempt_at timestamptz;
UPDATE webhook_deliveries SET first_attempt_at = created_at WHERE attempts > 0;

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN first_attempt_at;
