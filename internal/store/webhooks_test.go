package store_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/transition"
)

func openSealed(t *testing.T) *store.DB {
	t.Helper()
	ctx := context.Background()
	if err := store.Migrate(ctx, testURL); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, testURL, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// deliveryTypes lists the event types of a webhook's deliveries, oldest first.
func deliveryTypes(t *testing.T, db *store.DB, tenant, webhookID string) []string {
	t.Helper()
	list, _, err := db.ListDeliveries(context.Background(), tenant, webhookID, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i := len(list) - 1; i >= 0; i-- {
		types = append(types, list[i].EventType)
	}
	return types
}

// TestWebhookOutboxFollowsTheTransaction: a state change writes its
// deliveries in its own transaction (a rollback leaves none), only for the
// protection's tenant's enabled endpoints that subscribed to the type; the
// secret is stored sealed.
func TestWebhookOutboxFollowsTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "outbox-tenant"
	events := []string{mcpguard.WebhookOperationQueued, mcpguard.WebhookOperationCancelled}
	hook, err := db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: tenant, URL: "https://example.com/a", Events: events, Secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: "outbox-other", URL: "https://example.com/b", Events: events, Secret: "whsec_b3RoZXI="})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: tenant, Actor: tenant, Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
		t.Fatal(err)
	}
	if got := deliveryTypes(t, db, tenant, hook.ID); len(got) != 1 || got[0] != mcpguard.WebhookOperationQueued {
		t.Fatalf("after the create: deliveries %v, want [operation.queued]", got)
	}

	raw, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	change := func(commit bool) {
		tx, err := raw.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events (protection_id, operation_id, kind, actor, detail)
			SELECT id, operation_id, 'state_changed', 'test', '{"from": "queued", "to": "cancelled"}' FROM protections WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	change(false)
	if got := deliveryTypes(t, db, tenant, hook.ID); len(got) != 1 {
		t.Fatalf("a rolled back change left deliveries %v", got)
	}
	change(true)
	if got := deliveryTypes(t, db, tenant, hook.ID); len(got) != 2 || got[1] != mcpguard.WebhookOperationCancelled {
		t.Fatalf("after a committed change: deliveries %v", got)
	}
	list, _, err := db.ListDeliveries(ctx, tenant, hook.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var payload struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(list[0].Payload, &payload); err != nil || payload.Type != mcpguard.WebhookOperationCancelled ||
		payload.Data["protectionId"] != id || payload.Data["state"] != "cancelled" || payload.Data["from"] != "queued" {
		t.Fatalf("payload %s (%v)", list[0].Payload, err)
	}
	if got := deliveryTypes(t, db, "outbox-other", other.ID); len(got) != 0 {
		t.Fatalf("another tenant's endpoint got %v", got)
	}
	// The secret is sealed: the column does not hold it.
	var sealed []byte
	if err := raw.QueryRow(ctx, `SELECT secret FROM webhooks WHERE id = $1`, hook.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if string(sealed) == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" || len(sealed) < 40 {
		t.Fatal("the webhook secret is stored in plaintext")
	}
	// A disabled endpoint gets no new deliveries.
	off := false
	if _, err := db.UpdateWebhook(ctx, tenant, hook.ID, mcpguard.WebhookPatch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	change(true)
	if got := deliveryTypes(t, db, tenant, hook.ID); len(got) != 2 {
		t.Fatalf("a disabled endpoint got deliveries %v", got)
	}
}

// TestDeliveriesInOrderAndTakenOverAfterTheLease: a protection's second
// delivery is not claimable while its first is pending; a claim whose
// lease expired is taken over by another sender, and the first sender's
// late record writes nothing.
func TestDeliveriesInOrderAndTakenOverAfterTheLease(t *testing.T) {
	// Not parallel: claims take any test's due deliveries (see
	// TestRetryForCountsFromTheFirstAttempt).
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "order-tenant"
	secret := "whsec_b3JkZXItb3JkZXItb3JkZXItb3JkZXI="
	hook := cancelledWithWebhook(t, db, tenant, "https://example.com/o", secret)
	mine := func(list []store.ClaimedDelivery) []store.ClaimedDelivery {
		var out []store.ClaimedDelivery
		for _, c := range list {
			if c.WebhookID == hook.ID {
				out = append(out, c)
			}
		}
		return out
	}
	a, err := db.ClaimDeliveries(ctx, "sender-a", 300*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	a = mine(a)
	if len(a) != 1 || a[0].EventType != mcpguard.WebhookOperationQueued || a[0].Attempt != 1 || a[0].Secret != secret {
		t.Fatalf("first claim: %+v, want only operation.queued, attempt 1, with its secret", a)
	}
	if b, err := db.ClaimDeliveries(ctx, "sender-b", time.Minute, 10); err != nil || len(mine(b)) != 0 {
		t.Fatalf("while A holds the first delivery B claimed %+v (%v)", mine(b), err)
	}
	time.Sleep(400 * time.Millisecond) // A's lease expires: A "died"
	b, err := db.ClaimDeliveries(ctx, "sender-b", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	b = mine(b)
	if len(b) != 1 || b[0].ID != a[0].ID || b[0].Attempt != 2 {
		t.Fatalf("after A's lease: B claimed %+v, want A's delivery, attempt 2", b)
	}
	attempt := store.DeliveryAttempt{Status: 204, Succeeded: true, RetryFor: time.Hour, DisableAfter: time.Hour}
	if out, err := db.RecordDelivery(ctx, a[0], "sender-a", attempt); err != nil || !out.Lost {
		t.Fatalf("A's late record: %+v %v, want lost", out, err)
	}
	if out, err := db.RecordDelivery(ctx, b[0], "sender-b", attempt); err != nil || out.State != mcpguard.DeliverySucceeded {
		t.Fatalf("B's record: %+v %v", out, err)
	}
	next, err := db.ClaimDeliveries(ctx, "sender-b", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if next = mine(next); len(next) != 1 || next[0].EventType != mcpguard.WebhookOperationCancelled || next[0].MsgID == a[0].MsgID {
		t.Fatalf("after the first succeeded: claimed %+v, want operation.cancelled", next)
	}
}

// TestMaintenanceRemovesOldDeliveries: deliveries finished longer ago than
// the retention are removed; pending ones and recent ones stay.
func TestMaintenanceRemovesOldDeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "retention-tenant"
	hook, err := db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: tenant, URL: "https://example.com/r",
		Events: []string{mcpguard.WebhookOperationQueued}, Secret: "whsec_cmV0ZW50aW9u"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: uuid.NewString(), Tenant: tenant, Actor: tenant, Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	// One finished two days ago, one finished now, one pending.
	if _, err := raw.Exec(ctx, `
		WITH d AS (SELECT id, row_number() OVER (ORDER BY seq) AS n FROM webhook_deliveries WHERE webhook_id = $1)
		UPDATE webhook_deliveries w SET state = 'succeeded',
			finished_at = CASE WHEN d.n = 1 THEN now() - interval '2 days' ELSE now() END
		FROM d WHERE w.id = d.id AND d.n <= 2`, hook.ID); err != nil {
		t.Fatal(err)
	}
	res, err := db.Maintain(ctx, store.MaintenancePolicy{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Led {
		t.Fatal("maintenance did not run: no other test of this package holds its lock")
	}
	list, _, err := db.ListDeliveries(ctx, tenant, hook.ID, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || res.Deliveries < 1 {
		t.Fatalf("after maintenance: %d deliveries left (want 2), %d removed", len(list), res.Deliveries)
	}
}

// TestWebhookCollectorCountsPending: a pending delivery shows in
// mcpguard_webhook_deliveries_pending with its age.
func TestWebhookCollectorCountsPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "collector-tenant"
	if _, err := db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: tenant, URL: "https://example.com/c",
		Events: []string{mcpguard.WebhookOperationQueued}, Secret: "whsec_Y29sbGVjdG9y"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: uuid.NewString(), Tenant: tenant, Actor: tenant, Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(store.NewWebhookCollector(db))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		values[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	if len(values) != 2 || values["mcpguard_webhook_deliveries_pending"] < 1 || values["mcpguard_webhook_oldest_pending_age_seconds"] < 0 {
		t.Fatalf("gathered %v, want at least this test's pending delivery", values)
	}
}

// cancelledWithWebhook registers an endpoint for every default event type,
// then creates a protection of the tenant and cancels it: two deliveries
// (queued, cancelled) that must be sent in that order.
func cancelledWithWebhook(t *testing.T, db *store.DB, tenant, url, secret string) *mcpguard.Webhook {
	t.Helper()
	ctx := context.Background()
	hook, err := db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: tenant, URL: url, Events: mcpguard.DefaultWebhookEvents, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: tenant, Actor: tenant, Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CancelProtection(ctx, tenant, id, tenant, transition.Rules{}); err != nil {
		t.Fatal(err)
	}
	return hook
}

// claimOurs claims until the endpoint's due delivery comes up (other tests'
// deliveries share the table, and the claims lease them away: the tests
// that call it are not parallel).
func claimOurs(t *testing.T, db *store.DB, webhookID string) store.ClaimedDelivery {
	t.Helper()
	for i := 0; i < 100; i++ {
		claimed, err := db.ClaimDeliveries(context.Background(), "sender", time.Minute, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range claimed {
			if c.WebhookID == webhookID {
				return c
			}
		}
		if len(claimed) == 0 {
			break
		}
	}
	t.Fatal("this test's delivery was never claimed")
	return store.ClaimedDelivery{}
}

// TestLaterDeliveriesWaitForTheRetriedOne: a failed attempt that will be
// retried moves the due time of the protection's later deliveries to its
// own next attempt (they could not be sent before it anyway).
func TestLaterDeliveriesWaitForTheRetriedOne(t *testing.T) {
	// Not parallel: claims take any test's due deliveries (see
	// TestRetryForCountsFromTheFirstAttempt).
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "defer-tenant"
	hook := cancelledWithWebhook(t, db, tenant, "https://example.com/d", "whsec_ZGVmZXI=")
	head := claimOurs(t, db, hook.ID)
	out, err := db.RecordDelivery(ctx, head, "sender", store.DeliveryAttempt{Status: 503, Error: "HTTP 503", RetryAfter: time.Hour, RetryFor: 24 * time.Hour, DisableAfter: 72 * time.Hour})
	if err != nil || out.State != mcpguard.DeliveryPending {
		t.Fatalf("record: %+v %v", out, err)
	}
	list, _, err := db.ListDeliveries(ctx, tenant, hook.ID, 10, 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("deliveries %d (%v), want 2", len(list), err)
	}
	later, first := list[0], list[1]
	if first.ID != head.ID || later.NextAttemptAt == nil || first.NextAttemptAt == nil || later.NextAttemptAt.Before(*first.NextAttemptAt) {
		t.Fatalf("the later delivery is due %v, before the retried one's next attempt %v", later.NextAttemptAt, first.NextAttemptAt)
	}
}

// A delivery held back behind a failing earlier one of the same protection
// keeps its whole retry time: RetryFor counts from its own first attempt,
// so after the earlier one gives up it is retried, not failed at once.
//
// Not parallel: its claims take every due delivery of the table, and
// would lease other tests' deliveries away from them.
func TestRetryForCountsFromTheFirstAttempt(t *testing.T) {
	ctx := context.Background()
	db := openSealed(t)
	const tenant = "first-attempt-tenant"
	hook := cancelledWithWebhook(t, db, tenant, "https://example.com/f", "whsec_Zmlyc3Q=")
	raw, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	failed := store.DeliveryAttempt{Status: 503, Error: "HTTP 503", RetryAfter: time.Millisecond, RetryFor: 24 * time.Hour, DisableAfter: 72 * time.Hour}

	head := claimOurs(t, db, hook.ID)
	// Both were queued 25 hours ago and the first has been failing since.
	if _, err := raw.Exec(ctx, `UPDATE webhook_deliveries SET created_at = created_at - interval '25 hours',
		first_attempt_at = first_attempt_at - interval '25 hours' WHERE webhook_id = $1`, hook.ID); err != nil {
		t.Fatal(err)
	}
	if out, err := db.RecordDelivery(ctx, head, "sender", failed); err != nil || out.State != mcpguard.DeliveryFailed {
		t.Fatalf("the head, failing for 25h: %+v %v, want failed", out, err)
	}
	later := claimOurs(t, db, hook.ID)
	if later.ID == head.ID {
		t.Fatal("the failed head was claimed again")
	}
	out, err := db.RecordDelivery(ctx, later, "sender", failed)
	if err != nil || out.State != mcpguard.DeliveryPending {
		t.Fatalf("the later delivery after its first attempt: %+v %v, want pending (queued 25h ago, first sent now)", out, err)
	}
}
