-- +goose Up

-- The Anypoint call budget of each organization, shared by every replica.
-- Anypoint limits calls per organization in fixed windows (anypoint-api.md
-- 0.6), so replicas pace themselves here rather than each on its own.
CREATE TABLE anypoint_budget (
    -- The organization the calls count against ('' until a credential's
    -- organization is known).
    organization text PRIMARY KEY,
    -- When each of the most recent calls was allowed to go, oldest first,
    -- never decreasing: a call is granted only when fewer than the allowed
    -- number were granted in the window before it.
    granted      timestamptz[] NOT NULL DEFAULT '{}',
    -- Share of the configured rate in force after the last 429 (1 = all of
    -- it); it grows back linearly once Anypoint stops answering 429.
    factor       double precision NOT NULL DEFAULT 1 CHECK (factor > 0 AND factor <= 1),
    throttled_at timestamptz,
    -- No call is granted before this: the reset Anypoint named in a 429.
    paused_until timestamptz,
    CONSTRAINT anypoint_budget_factor_lowered_when_throttled CHECK (factor = 1 OR throttled_at IS NOT NULL)
);

-- anypoint_budget_factor is the share of the rate in force at t: the factor
-- set by the last 429, recovering to 1 over `recovery`.
-- +goose StatementBegin
CREATE FUNCTION anypoint_budget_factor(b anypoint_budget, t timestamptz, recovery interval)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN b.throttled_at IS NULL THEN 1
        ELSE least(1, b.factor + greatest(0, extract(epoch FROM t - b.throttled_at)) / extract(epoch FROM recovery)) END
$$;
-- +goose StatementEnd

-- Calls made before a credential's organization is known (the first
-- GET /accounts/api/me of a credential) count against this row; they also
-- count against every organization, since any of them may be theirs.
INSERT INTO anypoint_budget (organization) VALUES ('');

-- anypoint_budget_slot is when the next call may go, given the grants in
-- force (sorted), how many are allowed in a window, and the pause.
-- +goose StatementBegin
CREATE FUNCTION anypoint_budget_slot(grants timestamptz[], allowed integer, win interval, t timestamptz, paused timestamptz)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    cnt  integer := cardinality(grants);
    slot timestamptz := greatest(t, paused, grants[cnt]);
BEGIN
    IF cnt >= allowed THEN
        slot := greatest(slot, grants[cnt - allowed + 1] + win);
    END IF;
    RETURN slot;
END;
$$;
-- +goose StatementEnd

-- anypoint_budget_take asks for one call of org: at most n calls (times the
-- factor in force) in any window of length win. It answers when the caller
-- may send it (slot, wait from now), and whether the call was granted: a call
-- that would wait longer than max_wait is not granted (nothing is recorded),
-- so the caller reschedules its work instead of holding a worker. Rows are
-- locked in organization order ('' first), so takers never deadlock.
-- +goose StatementBegin
CREATE FUNCTION anypoint_budget_take(org text, n integer, win interval, max_wait interval, recovery interval,
    OUT slot timestamptz, OUT wait interval, OUT granted boolean)
LANGUAGE plpgsql AS $$
DECLARE
    u       anypoint_budget;
    b       anypoint_budget;
    t       timestamptz;
    merged  timestamptz[];
BEGIN
    IF org <> '' THEN
        INSERT INTO anypoint_budget (organization) VALUES (org) ON CONFLICT (organization) DO NOTHING;
    END IF;
    SELECT * INTO u FROM anypoint_budget WHERE organization = '' FOR UPDATE;
    -- The time after the lock is ours, not the transaction's start.
    t := clock_timestamp();
    IF org <> '' THEN
        SELECT * INTO b FROM anypoint_budget WHERE organization = org FOR UPDATE;
        merged := ARRAY(SELECT g FROM unnest(b.granted || u.granted) g ORDER BY g);
        slot := anypoint_budget_slot(merged,
            greatest(1, floor(n * anypoint_budget_factor(b, t, recovery)))::integer,
            win, t, greatest(b.paused_until, u.paused_until));
    ELSE
        -- An unknown organization's call must fit every organization's budget.
        slot := anypoint_budget_slot(u.granted,
            greatest(1, floor(n * anypoint_budget_factor(u, t, recovery)))::integer, win, t, u.paused_until);
        FOR b IN SELECT * FROM anypoint_budget WHERE organization <> '' ORDER BY organization FOR UPDATE LOOP
            merged := ARRAY(SELECT g FROM unnest(b.granted || u.granted) g ORDER BY g);
            slot := greatest(slot, anypoint_budget_slot(merged,
                greatest(1, floor(n * anypoint_budget_factor(b, t, recovery)))::integer,
                win, t, b.paused_until));
        END LOOP;
        b := u;
    END IF;
    wait := slot - t;
    granted := wait <= max_wait;
    IF granted THEN
        -- Keep the last n grants: enough for the largest allowed count.
        UPDATE anypoint_budget SET granted = (b.granted || slot)[greatest(1, cardinality(b.granted) + 2 - n):cardinality(b.granted) + 1]
        WHERE organization = org;
    END IF;
END;
$$;
-- +goose StatementEnd

-- anypoint_budget_throttled records a 429 for org: no call is granted for
-- the next `pause`, and the rate is halved (down to min_factor). 429s within
-- one window of each other are one signal: the calls were already in flight.
-- +goose StatementBegin
CREATE FUNCTION anypoint_budget_throttled(org text, pause interval, win interval, recovery interval, min_factor double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    b anypoint_budget;
    t timestamptz;
    f double precision;
BEGIN
    INSERT INTO anypoint_budget (organization) VALUES (org) ON CONFLICT (organization) DO NOTHING;
    SELECT * INTO b FROM anypoint_budget WHERE organization = org FOR UPDATE;
    t := clock_timestamp();
    IF b.throttled_at IS NOT NULL AND t - b.throttled_at < win THEN
        f := b.factor;
    ELSE
        f := greatest(min_factor, anypoint_budget_factor(b, t, recovery) / 2);
        b.throttled_at := t;
    END IF;
    UPDATE anypoint_budget SET factor = f, throttled_at = b.throttled_at,
        paused_until = greatest(b.paused_until, t + pause)
    WHERE organization = org;
    RETURN f;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION anypoint_budget_throttled(text, interval, interval, interval, double precision);
DROP FUNCTION anypoint_budget_take(text, integer, interval, interval, interval);
DROP FUNCTION anypoint_budget_slot(timestamptz[], integer, interval, timestamptz, timestamptz);
DROP FUNCTION anypoint_budget_factor(anypoint_budget, timestamptz, interval);
DROP TABLE anypoint_budget;
