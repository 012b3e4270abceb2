-- +goose Up

-- Signed webhooks (README, "Webhooks"). A tenant registers endpoints; every
-- operation state change (and, on request, every step event) of the
-- tenant's protections becomes one delivery per subscribed endpoint,
-- written by a trigger on events in the transaction that appended the
-- event: a change that rolls back leaves no delivery, a committed one
-- always has its deliveries (the outbox pattern).
CREATE TABLE webhooks (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL CHECK (tenant <> ''),
    url             text        NOT NULL CHECK (url <> ''),
    -- Event types this endpoint receives (operation.queued, step.started, ...).
    events          text[]      NOT NULL CHECK (cardinality(events) > 0),
    description     text        NOT NULL DEFAULT '',
    -- The signing secret (whsec_...), AES-256-GCM sealed with the webhook
    -- id as associated data, like credentials; never stored in plaintext.
    secret          bytea       NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_at     timestamptz,
    disabled_reason text,
    -- When its deliveries started failing without a success since; cleared
    -- by any successful delivery. Past MCPGUARD_WEBHOOK_DISABLE_AFTER the
    -- endpoint is disabled.
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_disabled_fields CHECK (enabled = (disabled_at IS NULL) AND (disabled_at IS NULL) = (disabled_reason IS NULL))
);

CREATE INDEX webhooks_tenant_idx ON webhooks (tenant, created_at DESC, id DESC);

CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    -- Insertion order: a protection's deliveries to one endpoint are sent
    -- one at a time in this order.
    seq              bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    webhook_id       uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- The webhook-id header: the same on every attempt and on a redelivery,
    -- so receivers deduplicate by it.
    msg_id           text        NOT NULL CHECK (msg_id <> ''),
    -- NULL for an event about the endpoints themselves (webhook.disabled).
    protection_id    uuid,
    event_id         bigint,
    event_type       text        NOT NULL CHECK (event_type <> ''),
    -- The exact bytes that are signed and sent, the same on every attempt.
    payload          text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    -- The latest attempts, newest last: [{at, status?, error?, durationMs}].
    history          jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(history) = 'array'),
    redelivery_of    uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT webhook_deliveries_finished_iff_done CHECK ((finished_at IS NOT NULL) = (state <> 'pending')),
    CONSTRAINT webhook_deliveries_lease_fields_together CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT webhook_deliveries_lease_only_pending CHECK (lease_owner IS NULL OR state = 'pending')
);

-- The claim: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- The order check: an earlier pending delivery of the same endpoint and protection.
CREATE INDEX webhook_deliveries_sequence_idx ON webhook_deliveries (webhook_id, protection_id, seq) WHERE state = 'pending';
-- The list: an endpoint's deliveries, newest first.
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, seq DESC);
-- Maintenance: finished deliveries by age (removed after MCPGUARD_RETENTION).
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (finished_at) WHERE state <> 'pending';

-- +goose StatementBegin
-- webhook_outbox turns an appended event into one delivery per enabled
-- endpoint of the protection's tenant that subscribed to its type, in the
-- event's transaction, and wakes the senders. Operation state changes are
-- the created event (queued) and state_changed (its "to"); step events keep
-- their names under step.
CREATE FUNCTION webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event_type text;
    p          record;
    data       jsonb;
    body       text;
BEGIN
    event_type := CASE NEW.kind
        WHEN 'created' THEN 'operation.queued'
        WHEN 'state_changed' THEN 'operation.' || (NEW.detail ->> 'to')
        WHEN 'step_started' THEN 'step.started'
        WHEN 'step_succeeded' THEN 'step.succeeded'
        WHEN 'step_failed' THEN 'step.failed'
        WHEN 'step_skipped' THEN 'step.skipped'
        WHEN 'retry_scheduled' THEN 'step.retry_scheduled'
    END;
    IF event_type IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT pr.tenant, pr.error, o.kind INTO p
    FROM protections pr LEFT JOIN operations o ON o.id = NEW.operation_id
    WHERE pr.id = NEW.protection_id;
    IF NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.tenant = p.tenant AND w.enabled AND event_type = ANY (w.events)) THEN
        RETURN NULL;
    END IF;
    data := jsonb_build_object('protectionId', NEW.protection_id, 'operationId', NEW.operation_id, 'operation', p.kind);
    IF event_type LIKE 'operation.%' THEN
        data := data || jsonb_build_object('state', substr(event_type, length('operation.') + 1));
        IF NEW.detail ? 'from' THEN
            data := data || jsonb_build_object('from', NEW.detail -> 'from');
        END IF;
        IF NEW.detail ? 'reason' THEN
            data := data || jsonb_build_object('reason', NEW.detail -> 'reason');
        END IF;
        IF event_type = 'operation.failed' AND p.error IS NOT NULL THEN
            data := data || jsonb_build_object('error', p.error);
        END IF;
    ELSE
        data := data || jsonb_build_object('attempt', NEW.attempt);
        IF NEW.detail <> '{}' THEN
            data := data || jsonb_build_object('detail', NEW.detail);
        END IF;
    END IF;
    IF NEW.step <> '' THEN
        data := data || jsonb_build_object('step', NEW.step);
    END IF;
    body := jsonb_build_object('type', event_type,
        'timestamp', to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', data)::text;
    INSERT INTO webhook_deliveries (id, webhook_id, msg_id, protection_id, event_id, event_type, payload)
    SELECT g.id, w.id, 'msg_' || replace(g.id::text, '-', ''), NEW.protection_id, NEW.id, event_type, body
    FROM webhooks w CROSS JOIN LATERAL (SELECT gen_random_uuid() AS id) g
    WHERE w.tenant = p.tenant AND w.enabled AND event_type = ANY (w.events)
    ORDER BY w.id;
    -- One notification per transaction whatever the number of events:
    -- Postgres folds identical notifications of a transaction into one.
    PERFORM pg_notify('mcpguard_webhooks', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER events_webhook_outbox AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_outbox();

-- +goose Down
DROP TRIGGER events_webhook_outbox ON events;
DROP FUNCTION webhook_outbox();
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
