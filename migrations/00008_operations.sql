-- +goose Up

-- Every change to a protection is an operation (protect, update, unprotect;
-- docs/architecture.md, "Operations"). The protections row stays the job the
-- engine claims, and holds the latest operation's state, current step, error
-- and lease; its steps and events are keyed by operation. When a new
-- operation starts, the finished one's state, error and finish time are kept
-- here, so the history reads the same whatever came after.
CREATE TABLE operations (
    id            uuid        PRIMARY KEY,
    protection_id uuid        NOT NULL REFERENCES protections (id) ON DELETE CASCADE,
    -- 1 for the protect operation, then one more per operation.
    seq           integer     NOT NULL CHECK (seq >= 1),
    kind          text        NOT NULL CHECK (kind IN ('protect', 'update', 'unprotect')),
    -- The request fields this operation changed (empty for protect and unprotect).
    changes       jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(changes) = 'array'),
    -- Copied from the protections row when a later operation starts; the
    -- latest operation's are the row's own.
    state         text        CHECK (state IN ('succeeded', 'failed', 'cancelled')),
    error         jsonb,
    finished_at   timestamptz,
    -- The Idempotency-Key and body hash of the PATCH that started an update.
    idempotency_key text,
    request_hash  bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT operations_seq_unique UNIQUE (protection_id, seq),
    CONSTRAINT operations_idempotency_key_with_hash CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
);

CREATE UNIQUE INDEX operations_idempotency_idx ON operations (protection_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

ALTER TABLE protections ADD COLUMN operation_id uuid;
ALTER TABLE protections ADD COLUMN operation text NOT NULL DEFAULT 'protect'
    CHECK (operation IN ('protect', 'update', 'unprotect'));
ALTER TABLE steps ADD COLUMN operation_id uuid REFERENCES operations (id) ON DELETE CASCADE;
ALTER TABLE events ADD COLUMN operation_id uuid REFERENCES operations (id) ON DELETE CASCADE;

-- Existing protections become one protect operation each, with their steps
-- and events.
INSERT INTO operations (id, protection_id, seq, kind, created_at)
SELECT gen_random_uuid(), id, 1, 'protect', created_at FROM protections;
UPDATE protections p SET operation_id = o.id FROM operations o WHERE o.protection_id = p.id;
UPDATE steps s SET operation_id = p.operation_id FROM protections p WHERE s.protection_id = p.id;
-- The events table is append-only; this backfill is its one update.
ALTER TABLE events DISABLE TRIGGER events_no_update;
UPDATE events e SET operation_id = p.operation_id FROM protections p WHERE e.protection_id = p.id;
ALTER TABLE events ENABLE TRIGGER events_no_update;

ALTER TABLE protections ALTER COLUMN operation_id SET NOT NULL;
ALTER TABLE steps ALTER COLUMN operation_id SET NOT NULL;
ALTER TABLE events ALTER COLUMN operation_id SET NOT NULL;

-- An operation's steps, in catalogue order.
ALTER TABLE steps DROP CONSTRAINT steps_pkey;
ALTER TABLE steps DROP CONSTRAINT steps_name_unique;
ALTER TABLE steps ADD PRIMARY KEY (operation_id, position);
ALTER TABLE steps ADD CONSTRAINT steps_name_unique UNIQUE (operation_id, name);
CREATE INDEX steps_protection_idx ON steps (protection_id);
CREATE INDEX operations_protection_idx ON operations (protection_id, seq);
-- Deferred: a protection and its first operation refer to each other and
-- are inserted in one transaction. Added last, since a deferred check
-- pending in this transaction would block the ALTERs above.
ALTER TABLE protections ADD CONSTRAINT protections_operation_fk FOREIGN KEY (operation_id)
    REFERENCES operations (id) DEFERRABLE INITIALLY DEFERRED;

-- +goose Down
DROP INDEX steps_protection_idx;
ALTER TABLE steps DROP CONSTRAINT steps_name_unique;
ALTER TABLE steps DROP CONSTRAINT steps_pkey;
DELETE FROM steps s USING protections p WHERE s.protection_id = p.id AND s.operation_id <> p.operation_id;
ALTER TABLE steps ADD PRIMARY KEY (protection_id, position);
ALTER TABLE steps ADD CONSTRAINT steps_name_unique UNIQUE (protection_id, name);
ALTER TABLE events DROP COLUMN operation_id;
ALTER TABLE steps DROP COLUMN operation_id;
ALTER TABLE protections DROP COLUMN operation;
ALTER TABLE protections DROP COLUMN operation_id;
DROP TABLE operations;
