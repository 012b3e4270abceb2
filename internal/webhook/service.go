// Package webhook delivers mcpguard's signed webhooks (README, "Webhooks"):
// the service behind /webhooks, and the Deliverer each replica runs, which
// sends the outbox's deliveries signed as the Standard Webhooks
// specification describes, with retries, leases and ordering per
// protection.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
)

// secretBytes is the signing secret's size: 32 random bytes (256 bits, the
// HMAC-SHA256 key size; the specification asks for 24 to 64).
const secretBytes = 32

// NewSecret returns a fresh signing secret in the specification's form:
// whsec_ and the base64 of the key.
func NewSecret() (string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("error reading random bytes for a webhook secret: %w", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), nil
}

// Service implements mcpguard.WebhookService on the store.
type Service struct {
	db    *store.DB
	allow []string
}

// NewService returns the webhooks service; allow is
// MCPGUARD_WEBHOOK_ALLOW_HOSTS.
func NewService(db *store.DB, allow []string) *Service {
	return &Service{db: db, allow: allow}
}

var _ mcpguard.WebhookService = (*Service)(nil)

// CreateWebhook checks the URL against the allow-list, makes a secret and
// stores the endpoint; the answer is the only one that shows the secret.
func (s *Service) CreateWebhook(ctx context.Context, tenant string, in mcpguard.NewWebhook) (*mcpguard.Webhook, error) {
	if problem := mcpguard.CheckWebhookURL(in.URL, s.allow); problem != "" {
		return nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The webhook URL is refused: it " + problem + ".",
			Fields: []mcpguard.FieldError{{Field: "url", Message: problem}}}
	}
	events := in.Events
	if len(events) == 0 {
		events = mcpguard.DefaultWebhookEvents
	}
	secret, err := NewSecret()
	if err != nil {
		return nil, err
	}
	w, err := s.db.CreateWebhook(ctx, store.NewWebhookRow{Tenant: tenant, URL: in.URL, Events: events, Description: in.Description, Secret: secret})
	if err != nil {
		return nil, err
	}
	w.Secret = secret
	return w, nil
}

// ListWebhooks returns the tenant's endpoints.
func (s *Service) ListWebhooks(ctx context.Context, tenant string) ([]*mcpguard.Webhook, error) {
	return s.db.ListWebhooks(ctx, tenant)
}

// FindWebhook returns one endpoint.
func (s *Service) FindWebhook(ctx context.Context, tenant, id string) (*mcpguard.Webhook, error) {
	return s.db.FindWebhook(ctx, tenant, id)
}

// UpdateWebhook changes the description or enables/disables the endpoint.
func (s *Service) UpdateWebhook(ctx context.Context, tenant, id string, in mcpguard.WebhookPatch) (*mcpguard.Webhook, error) {
	return s.db.UpdateWebhook(ctx, tenant, id, in)
}

// DeleteWebhook removes the endpoint and its deliveries.
func (s *Service) DeleteWebhook(ctx context.Context, tenant, id string) error {
	return s.db.DeleteWebhook(ctx, tenant, id)
}

// ListDeliveries returns a page of the endpoint's deliveries, newest first.
func (s *Service) ListDeliveries(ctx context.Context, tenant, id string, limit int, cursor string) ([]*mcpguard.WebhookDelivery, string, error) {
	var before int64
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n <= 0 {
			return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid cursor.",
				Fields: []mcpguard.FieldError{{Field: "cursor", Message: "is not a cursor this server issued"}}}
		}
		before = n
	}
	list, seqs, err := s.db.ListDeliveries(ctx, tenant, id, limit+1, before)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > limit {
		list, next = list[:limit], strconv.FormatInt(seqs[limit-1], 10)
	}
	return list, next, nil
}

// Redeliver queues a finished delivery again with the same webhook-id.
func (s *Service) Redeliver(ctx context.Context, tenant, id, deliveryID string) (*mcpguard.WebhookDelivery, error) {
	return s.db.Redeliver(ctx, tenant, id, deliveryID)
}
