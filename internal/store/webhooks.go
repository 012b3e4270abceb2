package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
)

// WebhooksChannel is the NOTIFY channel that announces deliveries to send:
// the trigger that writes them (migration 00009) and Redeliver notify it.
const WebhooksChannel = "mcpguard_webhooks"

// webhookAD is the associated data a webhook's secret is sealed with: the
// prefix keeps a protection's blob and a webhook's apart even if ids met.
func webhookAD(id string) string { return "webhook:" + id }

// NewWebhookRow is an endpoint to register.
type NewWebhookRow struct {
	Tenant      string
	URL         string
	Events      []string
	Description string
	// Secret is the signing secret (whsec_...), sealed before it is stored.
	Secret string
}

const webhookColumns = `id::text, url, events, description, enabled, disabled_at, disabled_reason, failing_since, created_at`

func scanWebhook(row pgx.Row) (*mcpguard.Webhook, error) {
	var w mcpguard.Webhook
	if err := row.Scan(&w.ID, &w.URL, &w.Events, &w.Description, &w.Enabled, &w.DisabledAt, &w.DisabledReason, &w.FailingSince, &w.CreatedAt); err != nil {
		return nil, err
	}
	w.CreatedAt, w.DisabledAt, w.FailingSince = w.CreatedAt.UTC(), utc(w.DisabledAt), utc(w.FailingSince)
	return &w, nil
}

func webhookNotFound() error {
	return mcpguard.Errorf(mcpguard.ENOTFOUND, "Webhook not found.")
}

// CreateWebhook stores a tenant's endpoint with its secret sealed, and
// returns it (without the secret). A tenant has at most
// mcpguard.MaxWebhooksPerTenant endpoints (EUNPROCESSABLE past it).
func (db *DB) CreateWebhook(ctx context.Context, in NewWebhookRow) (*mcpguard.Webhook, error) {
	if db.sealer == nil {
		return nil, mcpguard.Errorf(mcpguard.EINTERNAL, "Webhook secrets cannot be stored: no credentials key is configured.")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("error generating webhook id: %w", err)
	}
	sealed, err := db.sealer.Seal(webhookAD(id.String()), []byte(in.Secret))
	if err != nil {
		return nil, fmt.Errorf("error sealing webhook secret: %w", err)
	}
	var w *mcpguard.Webhook
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		// Registrations of one tenant take turns, so the count holds.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('mcpguard webhooks ' || $1))`, in.Tenant); err != nil {
			return fmt.Errorf("error locking the tenant's webhooks: %w", err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks WHERE tenant = $1`, in.Tenant).Scan(&n); err != nil {
			return fmt.Errorf("error counting webhooks: %w", err)
		}
		if n >= mcpguard.MaxWebhooksPerTenant {
			return mcpguard.Errorf(mcpguard.EUNPROCESSABLE, "A tenant may register at most %d webhooks; delete one first.", mcpguard.MaxWebhooksPerTenant)
		}
		w, err = scanWebhook(tx.QueryRow(ctx, `
			INSERT INTO webhooks (id, tenant, url, events, description, secret) VALUES ($1, $2, $3, $4, $5, $6)
			RETURNING `+webhookColumns, id, in.Tenant, in.URL, in.Events, in.Description, sealed))
		if err != nil {
			return fmt.Errorf("error inserting webhook: %w", err)
		}
		return nil
	})
	return w, err
}

// ListWebhooks returns a tenant's endpoints, newest first.
func (db *DB) ListWebhooks(ctx context.Context, tenant string) ([]*mcpguard.Webhook, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE tenant = $1 ORDER BY created_at DESC, id DESC`, tenant)
	if err != nil {
		return nil, fmt.Errorf("error listing webhooks: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*mcpguard.Webhook, error) { return scanWebhook(row) })
	if err != nil {
		return nil, fmt.Errorf("error listing webhooks: %w", err)
	}
	return list, nil
}

// FindWebhook returns a tenant's endpoint; ENOTFOUND for another tenant's.
func (db *DB) FindWebhook(ctx context.Context, tenant, id string) (*mcpguard.Webhook, error) {
	if !validID(id) {
		return nil, webhookNotFound()
	}
	w, err := scanWebhook(db.pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1 AND tenant = $2`, id, tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, webhookNotFound()
	} else if err != nil {
		return nil, fmt.Errorf("error finding webhook: %w", err)
	}
	return w, nil
}

// UpdateWebhook changes an endpoint's description, or enables or disables
// it. Enabling clears the failure clock; disabling ends its pending
// deliveries as failed (a redelivery queues them again).
func (db *DB) UpdateWebhook(ctx context.Context, tenant, id string, p mcpguard.WebhookPatch) (*mcpguard.Webhook, error) {
	if !validID(id) {
		return nil, webhookNotFound()
	}
	var w *mcpguard.Webhook
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var enabled bool
		if err := tx.QueryRow(ctx, `SELECT enabled FROM webhooks WHERE id = $1 AND tenant = $2 FOR UPDATE`, id, tenant).Scan(&enabled); errors.Is(err, pgx.ErrNoRows) {
			return webhookNotFound()
		} else if err != nil {
			return fmt.Errorf("error reading webhook: %w", err)
		}
		if p.Description != nil {
			if _, err := tx.Exec(ctx, `UPDATE webhooks SET description = $2 WHERE id = $1`, id, *p.Description); err != nil {
				return fmt.Errorf("error updating webhook: %w", err)
			}
		}
		if p.Enabled != nil && *p.Enabled && !enabled {
			if _, err := tx.Exec(ctx, `UPDATE webhooks SET enabled = true, disabled_at = NULL, disabled_reason = NULL, failing_since = NULL WHERE id = $1`, id); err != nil {
				return fmt.Errorf("error enabling webhook: %w", err)
			}
		}
		if p.Enabled != nil && !*p.Enabled && enabled {
			if err := disableWebhook(ctx, tx, id, "disabled through the API"); err != nil {
				return err
			}
		}
		var err error
		w, err = scanWebhook(tx.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id))
		if err != nil {
			return fmt.Errorf("error reading webhook: %w", err)
		}
		return nil
	})
	return w, err
}

// DeleteWebhook removes a tenant's endpoint and its deliveries.
func (db *DB) DeleteWebhook(ctx context.Context, tenant, id string) error {
	if !validID(id) {
		return webhookNotFound()
	}
	tag, err := db.pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1 AND tenant = $2`, id, tenant)
	if err != nil {
		return fmt.Errorf("error deleting webhook: %w", err)
	} else if tag.RowsAffected() == 0 {
		return webhookNotFound()
	}
	return nil
}

const deliveryColumns = `d.id::text, d.seq, d.webhook_id::text, d.msg_id, d.event_type, d.protection_id::text, d.state, d.attempts,
	d.last_status, d.last_error, d.last_attempt_at, CASE WHEN d.state = 'pending' THEN d.next_attempt_at END,
	d.history, d.redelivery_of::text, d.created_at, d.finished_at, d.payload`

func scanDelivery(row pgx.Row) (*mcpguard.WebhookDelivery, int64, error) {
	var d mcpguard.WebhookDelivery
	var seq int64
	var history []byte
	var payload string
	if err := row.Scan(&d.ID, &seq, &d.WebhookID, &d.MessageID, &d.EventType, &d.ProtectionID, &d.State, &d.Attempts,
		&d.LastStatus, &d.LastError, &d.LastAttemptAt, &d.NextAttemptAt, &history, &d.RedeliveryOf, &d.CreatedAt, &d.FinishedAt, &payload); err != nil {
		return nil, 0, err
	}
	if err := json.Unmarshal(history, &d.History); err != nil {
		return nil, 0, fmt.Errorf("error decoding delivery history: %w", err)
	}
	if d.History == nil {
		d.History = []mcpguard.WebhookDeliveryAttempt{}
	}
	for i := range d.History {
		d.History[i].At = d.History[i].At.UTC()
	}
	d.Payload = json.RawMessage(payload)
	d.CreatedAt, d.FinishedAt, d.LastAttemptAt, d.NextAttemptAt = d.CreatedAt.UTC(), utc(d.FinishedAt), utc(d.LastAttemptAt), utc(d.NextAttemptAt)
	return &d, seq, nil
}

// ListDeliveries returns up to limit of a tenant's endpoint's deliveries
// before position before (0 for the first page), newest first, and the
// position of each (the cursor of the page after it).
func (db *DB) ListDeliveries(ctx context.Context, tenant, webhookID string, limit int, before int64) ([]*mcpguard.WebhookDelivery, []int64, error) {
	if _, err := db.FindWebhook(ctx, tenant, webhookID); err != nil {
		return nil, nil, err
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := db.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d
		WHERE d.webhook_id = $1 AND d.seq < $2 ORDER BY d.seq DESC LIMIT $3`, webhookID, before, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("error listing deliveries: %w", err)
	}
	defer rows.Close()
	var list []*mcpguard.WebhookDelivery
	var seqs []int64
	for rows.Next() {
		d, seq, err := scanDelivery(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("error reading delivery: %w", err)
		}
		list, seqs = append(list, d), append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("error listing deliveries: %w", err)
	}
	return list, seqs, nil
}

// Redeliver queues a finished delivery of a tenant's enabled endpoint again:
// a new delivery with the same payload and webhook-id, after the endpoint's
// other deliveries for the same protection. ECONFLICT while the delivery
// is still pending or the endpoint is disabled.
func (db *DB) Redeliver(ctx context.Context, tenant, webhookID, deliveryID string) (*mcpguard.WebhookDelivery, error) {
	if !validID(deliveryID) {
		return nil, mcpguard.Errorf(mcpguard.ENOTFOUND, "Delivery not found.")
	}
	w, err := db.FindWebhook(ctx, tenant, webhookID)
	if err != nil {
		return nil, err
	}
	if !w.Enabled {
		return nil, mcpguard.Errorf(mcpguard.ECONFLICT, "The webhook is disabled; enable it first (PATCH /webhooks/%s with {\"enabled\": true}).", w.ID)
	}
	var d *mcpguard.WebhookDelivery
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var state string
		err := tx.QueryRow(ctx, `SELECT state FROM webhook_deliveries WHERE id = $1 AND webhook_id = $2`, deliveryID, webhookID).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return mcpguard.Errorf(mcpguard.ENOTFOUND, "Delivery not found.")
		} else if err != nil {
			return fmt.Errorf("error reading delivery: %w", err)
		}
		if state == mcpguard.DeliveryPending {
			return mcpguard.Errorf(mcpguard.ECONFLICT, "The delivery is still pending; it can be redelivered once it succeeded or failed.")
		}
		newID, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("error generating delivery id: %w", err)
		}
		d, _, err = scanDelivery(tx.QueryRow(ctx, `
			WITH d AS (
				INSERT INTO webhook_deliveries (id, webhook_id, msg_id, protection_id, event_id, event_type, payload, redelivery_of)
				SELECT $1, webhook_id, msg_id, protection_id, event_id, event_type, payload, id FROM webhook_deliveries WHERE id = $2
				RETURNING *
			) SELECT `+deliveryColumns+` FROM d`, newID, deliveryID))
		if err != nil {
			return fmt.Errorf("error queuing redelivery: %w", err)
		}
		return notify(ctx, tx, WebhooksChannel, "")
	})
	return d, err
}

// ClaimedDelivery is a delivery a sender holds under a lease: what it
// needs to sign and send it.
type ClaimedDelivery struct {
	ID        string
	WebhookID string
	Tenant    string
	MsgID     string
	EventType string
	URL       string
	// Secret is the opened signing secret; SecretErr is set when it does not open.
	Secret    string
	SecretErr error
	Payload   []byte
	// Attempt is this attempt's number, from 1; the record is conditional on it.
	Attempt   int
	CreatedAt time.Time
}

// ClaimDeliveries takes up to limit due deliveries for owner with one
// statement (FOR UPDATE SKIP LOCKED) and leases them: pending ones whose
// next attempt time has come and that no live lease holds (an expired
// lease is a sender that died: its delivery is taken over), of enabled
// endpoints, and only the first pending delivery of each endpoint and
// protection, so a protection's events arrive in order even across retries.
func (db *DB) ClaimDeliveries(ctx context.Context, owner string, lease time.Duration, limit int) ([]ClaimedDelivery, error) {
	rows, err := db.pool.Query(ctx, `
		WITH due AS (
			SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
			WHERE d.state = 'pending' AND d.next_attempt_at <= now()
			  AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())
			  AND w.enabled
			  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
				WHERE e.webhook_id = d.webhook_id AND e.state = 'pending' AND e.seq < d.seq
				  AND (e.protection_id = d.protection_id OR (e.protection_id IS NULL AND d.protection_id IS NULL)))
			ORDER BY d.next_attempt_at, d.seq
			LIMIT $3
			FOR UPDATE OF d SKIP LOCKED
		)
		UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = now() + $2 * interval '1 microsecond',
			attempts = d.attempts + 1, last_attempt_at = now(), first_attempt_at = COALESCE(d.first_attempt_at, now())
		FROM due, webhooks w WHERE d.id = due.id AND w.id = d.webhook_id
		RETURNING d.id::text, d.webhook_id::text, w.tenant, d.msg_id, d.event_type, w.url, w.secret, d.payload, d.attempts, d.created_at`,
		owner, lease.Microseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("error claiming deliveries: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ClaimedDelivery, error) {
		var c ClaimedDelivery
		var sealed []byte
		var payload string
		if err := row.Scan(&c.ID, &c.WebhookID, &c.Tenant, &c.MsgID, &c.EventType, &c.URL, &sealed, &payload, &c.Attempt, &c.CreatedAt); err != nil {
			return c, err
		}
		c.Payload = []byte(payload)
		if db.sealer == nil {
			c.SecretErr = errors.New("the webhook secret is sealed but no credentials key is configured")
		} else if plain, err := db.sealer.Open(webhookAD(c.WebhookID), sealed); err != nil {
			c.SecretErr = err
		} else {
			c.Secret = string(plain)
		}
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("error claiming deliveries: %w", err)
	}
	return list, nil
}

// DeliveryAttempt is how one attempt ended.
type DeliveryAttempt struct {
	// Status is the receiver's HTTP status, 0 when none arrived.
	Status int
	// Succeeded is a 2xx answer.
	Succeeded bool
	// Error says why the attempt failed (never a secret).
	Error    string
	Duration time.Duration
	// RetryAfter is the delay before the next attempt, if any.
	RetryAfter time.Duration
	// RetryFor is how long after its first attempt a delivery is still retried.
	RetryFor time.Duration
	// DisableAfter disables an endpoint whose deliveries have failed, with
	// no success, for this long.
	DisableAfter time.Duration
}

// DeliveryOutcome is what RecordDelivery did.
type DeliveryOutcome struct {
	// State is the delivery's state afterwards (pending when it will be retried).
	State string
	// Lost is set when the lease had moved on: nothing was written.
	Lost bool
	// Disabled is set when this failure disabled the endpoint.
	Disabled bool
	// DisabledReason is why.
	DisabledReason string
}

// historyLength bounds the attempts a delivery keeps in its history.
const historyLength = 10

// RecordDelivery writes an attempt's end, conditional on the claim (owner
// and attempt): a sender whose lease was taken over writes nothing. A
// success ends the delivery and the endpoint's failure clock; a failure
// schedules the next attempt after a.RetryAfter, or fails the delivery for
// good once its first attempt is a.RetryFor old; an endpoint failing with no
// success for a.DisableAfter is disabled: its pending deliveries fail and
// the tenant's other endpoints that subscribed get webhook.disabled.
func (db *DB) RecordDelivery(ctx context.Context, c ClaimedDelivery, owner string, a DeliveryAttempt) (DeliveryOutcome, error) {
	var out DeliveryOutcome
	entry := map[string]any{"at": time.Now().UTC(), "durationMs": a.Duration.Milliseconds()}
	if a.Status != 0 {
		entry["status"] = a.Status
	}
	if a.Error != "" {
		entry["error"] = a.Error
	}
	entryJSON, err := json.Marshal([]any{entry})
	if err != nil {
		return out, fmt.Errorf("error encoding delivery attempt: %w", err)
	}
	var status, errText any
	if a.Status != 0 {
		status = a.Status
	}
	if a.Error != "" {
		errText = a.Error
	}
	var protectionID *string
	var seq int64
	var next time.Time
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		// The endpoint's row first, as UpdateWebhook and disabling take it
		// before its deliveries: records of one endpoint never deadlock.
		if err := tx.QueryRow(ctx, `SELECT true FROM webhooks WHERE id = $1 FOR NO KEY UPDATE`, c.WebhookID).Scan(new(bool)); errors.Is(err, pgx.ErrNoRows) {
			out.Lost = true // deleted, with its deliveries
			return nil
		} else if err != nil {
			return fmt.Errorf("error locking the delivery's webhook: %w", err)
		}
		err := tx.QueryRow(ctx, `
			UPDATE webhook_deliveries SET
				state = CASE WHEN $4 THEN 'succeeded' WHEN now() - first_attempt_at >= $6 * interval '1 microsecond' THEN 'failed' ELSE 'pending' END,
				finished_at = CASE WHEN $4 OR now() - first_attempt_at >= $6 * interval '1 microsecond' THEN now() END,
				next_attempt_at = now() + $5 * interval '1 microsecond',
				lease_owner = NULL, lease_expires_at = NULL, last_status = $7, last_error = $8,
				history = jsonb_path_query_array(history || $9::jsonb, '$[last - `+fmt.Sprint(historyLength-1)+` to last]')
			WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND state = 'pending'
			RETURNING state, protection_id::text, seq, next_attempt_at`, c.ID, owner, c.Attempt, a.Succeeded, a.RetryAfter.Microseconds(), a.RetryFor.Microseconds(),
			status, errText, entryJSON).Scan(&out.State, &protectionID, &seq, &next)
		if errors.Is(err, pgx.ErrNoRows) {
			out.Lost = true
			return nil
		} else if err != nil {
			return fmt.Errorf("error recording delivery attempt: %w", err)
		}
		if out.State == mcpguard.DeliveryPending {
			// The protection's later deliveries wait for this one anyway;
			// moving their due time to its next attempt keeps them out of
			// every claim's scan until then (the claim's order check is
			// what guarantees the order; this only saves work).
			if _, err := tx.Exec(ctx, `
				UPDATE webhook_deliveries SET next_attempt_at = GREATEST(next_attempt_at, $4)
				WHERE webhook_id = $1 AND state = 'pending' AND seq > $3
				  AND (protection_id = $2 OR ($2::uuid IS NULL AND protection_id IS NULL))`,
				c.WebhookID, protectionID, seq, next); err != nil {
				return fmt.Errorf("error deferring the protection's later deliveries: %w", err)
			}
		}
		if a.Succeeded {
			if _, err := tx.Exec(ctx, `UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, c.WebhookID); err != nil {
				return fmt.Errorf("error clearing the webhook's failure clock: %w", err)
			}
			return nil
		}
		var failingFor time.Duration
		var enabled bool
		var micros int64
		if err := tx.QueryRow(ctx, `
			UPDATE webhooks SET failing_since = COALESCE(failing_since, now()) WHERE id = $1
			RETURNING enabled, (extract(epoch FROM now() - failing_since) * 1000000)::bigint`, c.WebhookID).Scan(&enabled, &micros); errors.Is(err, pgx.ErrNoRows) {
			return nil // deleted meanwhile
		} else if err != nil {
			return fmt.Errorf("error starting the webhook's failure clock: %w", err)
		}
		failingFor = time.Duration(micros) * time.Microsecond
		if !enabled || a.DisableAfter <= 0 || failingFor < a.DisableAfter {
			return nil
		}
		out.Disabled = true
		out.DisabledReason = fmt.Sprintf("every delivery failed for %s (MCPGUARD_WEBHOOK_DISABLE_AFTER is %s); last: %s",
			failingFor.Round(time.Second), a.DisableAfter, a.Error)
		if err := disableWebhook(ctx, tx, c.WebhookID, out.DisabledReason); err != nil {
			return err
		}
		if out.State == mcpguard.DeliveryPending {
			out.State = mcpguard.DeliveryFailed
		}
		return nil
	})
	return out, err
}

// disableWebhook disables an endpoint: its pending deliveries fail, and a
// webhook.disabled event goes to the tenant's other enabled endpoints that
// subscribed to it.
func disableWebhook(ctx context.Context, tx pgx.Tx, id, reason string) error {
	var tenant, rawURL string
	var at time.Time
	if err := tx.QueryRow(ctx, `
		UPDATE webhooks SET enabled = false, disabled_at = now(), disabled_reason = $2 WHERE id = $1
		RETURNING tenant, url, disabled_at`, id, reason).Scan(&tenant, &rawURL, &at); err != nil {
		return fmt.Errorf("error disabling webhook: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE webhook_deliveries SET state = 'failed', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
			last_error = COALESCE(last_error || '; ', '') || 'the webhook was disabled'
		WHERE webhook_id = $1 AND state = 'pending'`, id); err != nil {
		return fmt.Errorf("error ending the disabled webhook's deliveries: %w", err)
	}
	// The URL without its query: a receiver's own token there is not for
	// the tenant's other endpoints.
	if u, err := neturl.Parse(rawURL); err == nil {
		u.RawQuery, u.Fragment = "", ""
		rawURL = u.String()
	}
	body, err := json.Marshal(map[string]any{"type": mcpguard.WebhookDisabled, "timestamp": at.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"data": map[string]any{"webhookId": id, "url": rawURL, "reason": reason}})
	if err != nil {
		return fmt.Errorf("error encoding webhook.disabled: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO webhook_deliveries (id, webhook_id, msg_id, event_type, payload)
		SELECT g.id, w.id, 'msg_' || replace(g.id::text, '-', ''), $3, $4
		FROM webhooks w CROSS JOIN LATERAL (SELECT gen_random_uuid() AS id) g
		WHERE w.tenant = $1 AND w.id <> $2 AND w.enabled AND $3 = ANY (w.events)`,
		tenant, id, mcpguard.WebhookDisabled, string(body)); err != nil {
		return fmt.Errorf("error queuing webhook.disabled: %w", err)
	}
	return notify(ctx, tx, WebhooksChannel, "")
}

// WebhookCollector reports the webhook outbox as the database holds it,
// read at each scrape: every replica reports the same values. A scrape
// whose query fails lacks these series.
type WebhookCollector struct {
	db      *DB
	pending *prometheus.Desc
	oldest  *prometheus.Desc
}

// NewWebhookCollector returns the outbox's collector for db.
func NewWebhookCollector(db *DB) *WebhookCollector {
	return &WebhookCollector{
		db: db,
		pending: prometheus.NewDesc("mcpguard_webhook_deliveries_pending",
			"Webhook deliveries not yet succeeded or failed, of enabled endpoints.", nil, nil),
		oldest: prometheus.NewDesc("mcpguard_webhook_oldest_pending_age_seconds",
			"Age of the oldest pending webhook delivery of an enabled endpoint (0 when none): growing means an endpoint keeps failing or the senders do not keep up.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *WebhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.oldest
}

// Collect implements prometheus.Collector.
func (c *WebhookCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	var pending int64
	var oldest float64
	if err := c.db.pool.QueryRow(ctx, `
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(d.created_at)), 0)::float8
		FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
		WHERE d.state = 'pending' AND w.enabled`).Scan(&pending, &oldest); err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, max(oldest, 0))
}
