-- +goose Up

-- A protection row is the job itself: the engine claims it with
-- FOR UPDATE SKIP LOCKED, holds it with a lease and fences every write.
CREATE TABLE protections (
    id               uuid        PRIMARY KEY,
    tenant           text        NOT NULL CHECK (tenant <> ''),
    state            text        NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    current_step     text        NOT NULL DEFAULT '',
    request          jsonb       NOT NULL CHECK (jsonb_typeof(request) = 'object'),
    -- AES-256-GCM sealed credentials, the row id as associated data.
    credentials      bytea,
    variables        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
    error            jsonb,
    lease_owner      text,
    lease_expires_at timestamptz,
    -- Bumped by every claim: a worker's writes are conditional on the value it claimed.
    fence            bigint      NOT NULL DEFAULT 0 CHECK (fence >= 0),
    run_after        timestamptz NOT NULL DEFAULT now(),
    -- How many times the row was claimed, over its whole life.
    claims           bigint      NOT NULL DEFAULT 0 CHECK (claims >= 0),
    cancel_requested boolean     NOT NULL DEFAULT false,
    idempotency_key  text,
    request_hash     bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,

    CONSTRAINT protections_finished_at_iff_finished
        CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'cancelled'))),
    CONSTRAINT protections_lease_fields_together
        CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    -- Only a running job can be leased. A running job without a lease is
    -- waiting for its run_after (a poll or a retry backoff).
    CONSTRAINT protections_lease_only_when_running
        CHECK (lease_owner IS NULL OR state = 'running'),
    CONSTRAINT protections_running_has_step
        CHECK (state NOT IN ('queued', 'running') OR current_step <> ''),
    CONSTRAINT protections_cancel_only_when_running
        CHECK (NOT cancel_requested OR state = 'running'),
    CONSTRAINT protections_error_iff_failed
        CHECK ((error IS NOT NULL) = (state = 'failed')),
    CONSTRAINT protections_error_is_object
        CHECK (error IS NULL OR jsonb_typeof(error) = 'object'),
    CONSTRAINT protections_no_credentials_after_success
        CHECK (state <> 'succeeded' OR credentials IS NULL),
    CONSTRAINT protections_idempotency_key_with_hash
        CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),
    CONSTRAINT protections_idempotency_key_not_empty
        CHECK (idempotency_key IS NULL OR idempotency_key <> ''),
    CONSTRAINT protections_times_ordered
        CHECK (updated_at >= created_at AND (finished_at IS NULL OR finished_at >= created_at)),
    CONSTRAINT protections_tenant_idempotency_key_unique UNIQUE (tenant, idempotency_key)
);

-- The claim query: live rows whose run_after has passed (and whose lease,
-- if any, has expired), oldest run_after first.
CREATE INDEX protections_claimable_idx ON protections (run_after)
    WHERE state IN ('queued', 'running');

-- The list query: a tenant's jobs, newest first, keyset paginated.
CREATE INDEX protections_tenant_created_idx ON protections (tenant, created_at DESC, id DESC);

CREATE TABLE steps (
    protection_id   uuid        NOT NULL REFERENCES protections (id) ON DELETE CASCADE,
    position        integer     NOT NULL CHECK (position >= 0),
    name            text        NOT NULL CHECK (name <> ''),
    state           text        NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    -- Every attempt ever made, for the record.
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Attempts since the job was last queued (create or retry): the retry budget.
    budget_attempts integer     NOT NULL DEFAULT 0 CHECK (budget_attempts >= 0 AND budget_attempts <= attempts),
    -- The step asked to be polled again; its next run is not a new attempt.
    polling         boolean     NOT NULL DEFAULT false,
    started_at      timestamptz,
    finished_at     timestamptz,
    captured        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(captured) = 'object'),
    error           jsonb,

    PRIMARY KEY (protection_id, position),
    CONSTRAINT steps_name_unique UNIQUE (protection_id, name),
    CONSTRAINT steps_finished_at_iff_done
        CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed'))),
    CONSTRAINT steps_started_before_done
        CHECK (state NOT IN ('running', 'succeeded', 'failed') OR started_at IS NOT NULL),
    CONSTRAINT steps_skipped_never_ran
        CHECK (state <> 'skipped' OR (attempts = 0 AND started_at IS NULL)),
    CONSTRAINT steps_failed_has_error
        CHECK (state <> 'failed' OR error IS NOT NULL),
    CONSTRAINT steps_succeeded_has_no_error
        CHECK (state NOT IN ('succeeded', 'skipped') OR error IS NULL),
    CONSTRAINT steps_polling_only_when_running
        CHECK (NOT polling OR state = 'running')
);

-- The audit trail. Append-only: a trigger refuses updates.
CREATE TABLE events (
    id            bigserial   PRIMARY KEY,
    protection_id uuid        NOT NULL REFERENCES protections (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text        NOT NULL CHECK (kind <> ''),
    step          text        NOT NULL DEFAULT '',
    attempt       integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    actor         text        NOT NULL CHECK (actor <> ''),
    detail        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);

CREATE INDEX events_protection_idx ON events (protection_id, id);

-- +goose StatementBegin
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- +goose Down
DROP TABLE events;
DROP FUNCTION events_append_only();
DROP TABLE steps;
DROP TABLE protections;
