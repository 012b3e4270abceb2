-- +goose Up

-- When each tenant last had a job claimed: the claim serves the tenant with
-- due work whose turn is oldest, so tenants take turns and one tenant's
-- burst does not queue another's single protection behind it.
CREATE TABLE tenant_turns (
    tenant          text        PRIMARY KEY,
    last_claimed_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE tenant_turns;
