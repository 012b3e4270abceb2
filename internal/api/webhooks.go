package api

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/mcpguard/mcpguard"
)

// Page sizes of GET /webhooks/{id}/deliveries.
const (
	DefaultDeliveryLimit = 50
	MaxDeliveryLimit     = 200
)

// WebhookList is the body of GET /webhooks.
type WebhookList struct {
	Items []*mcpguard.Webhook `json:"items"`
}

// DeliveryList is the body of GET /webhooks/{id}/deliveries: newest first;
// NextCursor is null on the last page.
type DeliveryList struct {
	Items      []*mcpguard.WebhookDelivery `json:"items"`
	NextCursor *string                     `json:"nextCursor"`
}

// webhookRoutes adds the /webhooks routes (README, "Webhooks") to the
// authenticated group when the server has a webhooks service.
func (s *Server) webhookRoutes(r chi.Router) {
	if s.webhooks == nil {
		return
	}
	r.Post("/webhooks", s.handleCreateWebhook)
	r.Get("/webhooks", s.handleListWebhooks)
	r.Get("/webhooks/{id}", s.handleGetWebhook)
	r.Patch("/webhooks/{id}", s.handleUpdateWebhook)
	r.Delete("/webhooks/{id}", s.handleDeleteWebhook)
	r.Get("/webhooks/{id}/deliveries", s.handleListDeliveries)
	r.Post("/webhooks/{id}/deliveries/{deliveryId}/redeliver", s.handleRedeliver)
}

func (s *Server) handleCreateWebhook(w http.ResponseWriter, r *http.Request) {
	var in mcpguard.NewWebhook
	if err := decode(w, r, &in, false); err != nil {
		s.fail(w, r, err)
		return
	}
	var hook *mcpguard.Webhook
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		hook, err = s.webhooks.CreateWebhook(ctx, tenantFrom(ctx), in)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/webhooks/"+hook.ID)
	s.encode(w, r, http.StatusCreated, webhookView(hook))
}

func (s *Server) handleListWebhooks(w http.ResponseWriter, r *http.Request) {
	var list []*mcpguard.Webhook
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		list, err = s.webhooks.ListWebhooks(ctx, tenantFrom(ctx))
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := WebhookList{Items: make([]*mcpguard.Webhook, 0, len(list))}
	for _, h := range list {
		out.Items = append(out.Items, storedWebhookView(h))
	}
	s.encode(w, r, http.StatusOK, out)
}

func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	s.answerWebhook(w, r, func(ctx context.Context) (*mcpguard.Webhook, error) {
		return s.webhooks.FindWebhook(ctx, tenantFrom(ctx), id)
	})
}

func (s *Server) handleUpdateWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	var in mcpguard.WebhookPatch
	if err := decode(w, r, &in, false); err != nil {
		s.fail(w, r, err)
		return
	}
	s.answerWebhook(w, r, func(ctx context.Context) (*mcpguard.Webhook, error) {
		return s.webhooks.UpdateWebhook(ctx, tenantFrom(ctx), id, in)
	})
}

// answerWebhook runs one store call within the database timeout and answers
// 200 with the webhook it returns, without its secret.
func (s *Server) answerWebhook(w http.ResponseWriter, r *http.Request, call func(ctx context.Context) (*mcpguard.Webhook, error)) {
	var hook *mcpguard.Webhook
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		hook, err = call(ctx)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.encode(w, r, http.StatusOK, storedWebhookView(hook))
}

func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	err := s.withDatabaseTimeout(r, func(ctx context.Context) error {
		return s.webhooks.DeleteWebhook(ctx, tenantFrom(ctx), id)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	var fields []mcpguard.FieldError
	q := r.URL.Query()
	limit, cursor := pageLimit(q, DefaultDeliveryLimit, MaxDeliveryLimit, &fields), pageCursor(q, &fields)
	if len(fields) > 0 {
		s.fail(w, r, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The query has invalid parameters; see errors.", Fields: fields})
		return
	}
	var items []*mcpguard.WebhookDelivery
	var next string
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		items, next, err = s.webhooks.ListDeliveries(ctx, tenantFrom(ctx), id, limit, cursor)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := DeliveryList{Items: items}
	if out.Items == nil {
		out.Items = []*mcpguard.WebhookDelivery{}
	}
	if next != "" {
		out.NextCursor = &next
	}
	s.encode(w, r, http.StatusOK, out)
}

func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookID(w, r)
	if !ok {
		return
	}
	deliveryID, err := uuid.Parse(chi.URLParam(r, "deliveryId"))
	if err != nil {
		s.fail(w, r, mcpguard.Errorf(mcpguard.ENOTFOUND, "Delivery not found."))
		return
	}
	var d *mcpguard.WebhookDelivery
	err = s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		d, err = s.webhooks.Redeliver(ctx, tenantFrom(ctx), id, deliveryID.String())
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.encode(w, r, http.StatusAccepted, d)
}

// webhookID reads the {id} path parameter: anything but a UUID is a 404.
func (s *Server) webhookID(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		s.fail(w, r, mcpguard.Errorf(mcpguard.ENOTFOUND, "Webhook not found."))
		return "", false
	}
	return id.String(), true
}

// webhookView copies a webhook with times in UTC and events never null.
func webhookView(h *mcpguard.Webhook) *mcpguard.Webhook {
	v := *h
	v.CreatedAt, v.DisabledAt, v.FailingSince = v.CreatedAt.UTC(), utc(v.DisabledAt), utc(v.FailingSince)
	if v.Events == nil {
		v.Events = []string{}
	}
	return &v
}

// storedWebhookView is webhookView without the secret: it is shown once, in
// the answer to the registration, and never again.
func storedWebhookView(h *mcpguard.Webhook) *mcpguard.Webhook {
	v := webhookView(h)
	v.Secret = ""
	return v
}
