-- +goose Up

-- Live events (GET /protections/{id}/events as text/event-stream) resume
-- from the last event id a client saw, so within one protection an event
-- must never become visible after an event with a higher id: a reader that
-- has sent id 101 would never go back for a late 100. A sequence hands out
-- ids in call order, not commit order, so an id alone does not promise
-- that. This trigger does: every insert of an event first takes the
-- protection's row lock (FOR NO KEY UPDATE: it conflicts with every other
-- writer of the row, and not with the foreign keys' KEY SHARE), and only
-- then draws the id. Writers of one protection's events therefore take ids
-- one transaction after the other, each after the previous one committed.
-- Most writers already hold the row (FOR UPDATE, or they updated it) and
-- this costs them nothing; the engine's warnings did not, and drew their
-- id before waiting for the lock in their foreign key check. Doing it here
-- covers every path, present and future, in one place.
--
-- It also announces the event on the mcpguard_events channel with the
-- protection id as payload (36 bytes; Postgres folds repeats within a
-- transaction into one), delivered only when the transaction commits, so
-- streams on any replica wake up without polling.

ALTER TABLE events ALTER COLUMN id DROP DEFAULT;

-- +goose StatementBegin
CREATE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM protections WHERE id = NEW.protection_id FOR NO KEY UPDATE;
    NEW.id := nextval('events_id_seq');
    PERFORM pg_notify('mcpguard_events', NEW.protection_id::text);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER events_sequenced BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_before_insert();

-- +goose Down
DROP TRIGGER events_sequenced ON events;
DROP FUNCTION events_before_insert();
ALTER TABLE events ALTER COLUMN id SET DEFAULT nextval('events_id_seq');
