package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes lists every route of the API in one place. The probes, metrics and
// the contract need no key so that orchestrators, scrapers and client
// generators can reach them.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(s.requestID, s.observe, s.recoverPanic, s.limitRequest)
	r.NotFound(s.handleNotFound)
	r.MethodNotAllowed(s.handleMethodNotAllowed)

	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	r.Get("/openapi.yaml", s.handleOpenAPI)

	r.Group(func(r chi.Router) {
		r.Use(s.authenticate)
		r.Post("/protections", s.handleCreateProtection)
		r.Get("/protections", s.handleListProtections)
		r.Get("/protections/{id}", s.handleGetProtection)
		r.Post("/protections/{id}/retry", s.handleRetryProtection)
		r.Post("/protections/{id}/cancel", s.handleCancelProtection)
		r.Get("/protections/{id}/events", s.handleListEvents)
		r.Get("/protections/{id}/operations", s.handleListOperations)
		r.Delete("/protections/{id}", s.handleUnprotect)
		r.Patch("/protections/{id}", s.handleUpdate)
		s.webhookRoutes(r)
	})
	return r
}
