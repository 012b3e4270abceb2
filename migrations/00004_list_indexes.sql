-- +goose Up

-- The filtered list query (GET /protections?state=...): a tenant's jobs in
-- one state, newest first, keyset paginated. Without it a filter on a rare
-- state (failed) walks every row of the tenant.
CREATE INDEX protections_tenant_state_created_idx ON protections (tenant, state, created_at DESC, id DESC);

-- +goose Down
DROP INDEX protections_tenant_state_created_idx;
