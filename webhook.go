package mcpguard

import (
	"context"
	"encoding/json"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Webhook event types (README, "Webhooks"). An operation's state changes are
// operation.<state>; step events are step.<kind>; webhook.disabled tells a
// tenant's other endpoints that one was disabled after failing for long.
const (
	WebhookOperationQueued    = "operation.queued"
	WebhookOperationRunning   = "operation.running"
	WebhookOperationSucceeded = "operation.succeeded"
	WebhookOperationFailed    = "operation.failed"
	WebhookOperationCancelled = "operation.cancelled"
	WebhookStepStarted        = "step.started"
	WebhookStepSucceeded      = "step.succeeded"
	WebhookStepFailed         = "step.failed"
	WebhookStepSkipped        = "step.skipped"
	WebhookStepRetryScheduled = "step.retry_scheduled"
	WebhookDisabled           = "webhook.disabled"
)

// WebhookEventTypes lists every event type an endpoint may subscribe to.
var WebhookEventTypes = []string{
	WebhookOperationQueued, WebhookOperationRunning, WebhookOperationSucceeded, WebhookOperationFailed, WebhookOperationCancelled,
	WebhookStepStarted, WebhookStepSucceeded, WebhookStepFailed, WebhookStepSkipped, WebhookStepRetryScheduled,
	WebhookDisabled,
}

// DefaultWebhookEvents are the types of an endpoint registered without
// events: every operation state change, and webhook.disabled.
var DefaultWebhookEvents = []string{
	WebhookOperationQueued, WebhookOperationRunning, WebhookOperationSucceeded, WebhookOperationFailed, WebhookOperationCancelled,
	WebhookDisabled,
}

// Bounds of a webhook registration (openapi.yaml states the same).
const (
	MaxWebhookURLLength         = 2048
	MaxWebhookDescriptionLength = 500
	// MaxWebhooksPerTenant bounds a tenant's endpoints: every event is
	// copied once per endpoint.
	MaxWebhooksPerTenant = 20
)

// NewWebhook is the body of POST /webhooks.
type NewWebhook struct {
	URL         string   `json:"url"`
	Events      []string `json:"events,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Validate checks a registration's shape; whether its host may be called
// is CheckWebhookURL's, which needs the server's allow-list.
func (n *NewWebhook) Validate() []FieldError {
	var v validator
	switch {
	case n.URL == "":
		v.add("url", "is required")
	case v.tooLong("url", n.URL, MaxWebhookURLLength):
	}
	v.tooLong("description", n.Description, MaxWebhookDescriptionLength)
	if n.Events != nil && len(n.Events) == 0 {
		v.add("events", "must not be empty; omit it for every operation state change")
	}
	seen := map[string]bool{}
	for i, e := range n.Events {
		field := "events[" + strconv.Itoa(i) + "]"
		switch {
		case !slices.Contains(WebhookEventTypes, e):
			v.add(field, "must be one of %s", strings.Join(WebhookEventTypes, ", "))
		case seen[e]:
			v.add(field, "repeats %s", e)
		}
		seen[e] = true
	}
	return v.errs
}

// WebhookPatch is the body of PATCH /webhooks/{id}: enabled true re-enables
// a disabled endpoint (its failure clock starts again).
type WebhookPatch struct {
	Enabled     *bool   `json:"enabled,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Validate checks a patch.
func (p *WebhookPatch) Validate() []FieldError {
	var v validator
	if p.Description != nil {
		v.tooLong("description", *p.Description, MaxWebhookDescriptionLength)
	}
	return v.errs
}

// Webhook is a registered endpoint as the API shows it. Secret is set only
// in the answer to its registration.
type Webhook struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Description    string     `json:"description"`
	Enabled        bool       `json:"enabled"`
	DisabledAt     *time.Time `json:"disabledAt"`
	DisabledReason *string    `json:"disabledReason"`
	FailingSince   *time.Time `json:"failingSince"`
	CreatedAt      time.Time  `json:"createdAt"`
	Secret         string     `json:"secret,omitempty"`
}

// WebhookDelivery is one event on its way to one endpoint.
type WebhookDelivery struct {
	ID        string `json:"id"`
	WebhookID string `json:"webhookId"`
	// MessageID is the webhook-id header, the same on every attempt and redelivery.
	MessageID     string                   `json:"messageId"`
	EventType     string                   `json:"eventType"`
	ProtectionID  *string                  `json:"protectionId"`
	State         string                   `json:"state"`
	Attempts      int                      `json:"attempts"`
	LastStatus    *int                     `json:"lastStatus"`
	LastError     *string                  `json:"lastError"`
	LastAttemptAt *time.Time               `json:"lastAttemptAt"`
	NextAttemptAt *time.Time               `json:"nextAttemptAt"`
	History       []WebhookDeliveryAttempt `json:"history"`
	RedeliveryOf  *string                  `json:"redeliveryOf"`
	CreatedAt     time.Time                `json:"createdAt"`
	FinishedAt    *time.Time               `json:"finishedAt"`
	Payload       json.RawMessage          `json:"payload"`
}

// WebhookDeliveryAttempt is one attempt of a delivery.
type WebhookDeliveryAttempt struct {
	At         time.Time `json:"at"`
	Status     *int      `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"durationMs"`
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// WebhookService is what the HTTP API needs for webhooks. Every method is
// scoped to a tenant: another tenant's id is ENOTFOUND.
type WebhookService interface {
	// CreateWebhook registers an endpoint and returns it with its signing
	// secret, the only time the secret is shown.
	CreateWebhook(ctx context.Context, tenant string, in NewWebhook) (*Webhook, error)
	// ListWebhooks returns the tenant's endpoints, newest first.
	ListWebhooks(ctx context.Context, tenant string) ([]*Webhook, error)
	// FindWebhook returns one endpoint.
	FindWebhook(ctx context.Context, tenant, id string) (*Webhook, error)
	// UpdateWebhook changes its description or re-enables it.
	UpdateWebhook(ctx context.Context, tenant, id string, in WebhookPatch) (*Webhook, error)
	// DeleteWebhook removes an endpoint and its deliveries.
	DeleteWebhook(ctx context.Context, tenant, id string) error
	// ListDeliveries returns a page of an endpoint's deliveries, newest
	// first, and the cursor of the next page ("" at the end).
	ListDeliveries(ctx context.Context, tenant, id string, limit int, cursor string) ([]*WebhookDelivery, string, error)
	// Redeliver queues a finished delivery again, same payload and webhook-id.
	Redeliver(ctx context.Context, tenant, id, deliveryID string) (*WebhookDelivery, error)
}

// CheckWebhookURL says why mcpguard must not call raw, "" when it may: it
// must be an absolute https URL without user information, unless its host
// is in allow (MCPGUARD_WEBHOOK_ALLOW_HOSTS), which also permits http. A
// host that is an IP address of this machine or of a private network
// (loopback, private, link-local, unspecified, multicast) is refused unless
// allowed, whatever the scheme: endpoints are chosen by tenants, and must
// not reach what only the server can (the delivery's dialer checks the
// resolved address again).
func CheckWebhookURL(raw string, allow []string) string {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL such as https://hooks.example.com/mcpguard"
	}
	if u.User != nil {
		return "must not carry a user name or password; authenticate the request by its signature"
	}
	if u.Fragment != "" {
		return "must not have a fragment"
	}
	host := u.Hostname()
	if host == "" {
		return "must name a host"
	}
	allowed := WebhookHostAllowed(host, allow)
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowed:
	case u.Scheme == "http":
		return "must be https: host " + host + " is not in MCPGUARD_WEBHOOK_ALLOW_HOSTS"
	default:
		return "must be an https URL"
	}
	if !allowed {
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !PublicAddr(ip) {
			return "must not name a loopback, private or link-local address: host " + host + " is not in MCPGUARD_WEBHOOK_ALLOW_HOSTS"
		}
		if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
			return "must not name this machine: host " + host + " is not in MCPGUARD_WEBHOOK_ALLOW_HOSTS"
		}
	}
	return ""
}

// WebhookHostAllowed reports whether host (a URL's host name, without port)
// is in the allow-list, compared case-insensitively.
func WebhookHostAllowed(host string, allow []string) bool {
	host = strings.Trim(host, "[]")
	for _, a := range allow {
		if strings.EqualFold(strings.Trim(a, "[]"), host) {
			return true
		}
	}
	return false
}

// PublicAddr reports whether ip may be called for a host not in the
// allow-list: not loopback, private, link-local, unspecified, multicast or
// in the shared address space of carrier-grade NAT.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	cgnat := netip.MustParsePrefix("100.64.0.0/10")
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() &&
		!ip.IsInterfaceLocalMulticast() && !ip.IsMulticast() && !ip.IsUnspecified() && !cgnat.Contains(ip)
}
