package api

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpguard/mcpguard"
)

// readyTimeout bounds the readiness check so a hung database answers 503
// before the orchestrator's probe times out.
const readyTimeout = 2 * time.Second

// Status is the body of the health and readiness probes.
type Status struct {
	Status string `json:"status"`
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	s.encode(w, r, http.StatusOK, Status{Status: "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			// The cause may name hosts or users; it goes to the log only.
			s.logger.Warn().Err(err).Str("request_id", requestIDFrom(r.Context())).Msg("not ready")
			s.writeProblem(w, r, Problem{
				Type:   problemTypePrefix + "not_ready",
				Title:  "Not ready",
				Status: http.StatusServiceUnavailable,
				Detail: "The service cannot take work yet: its database is unreachable or not migrated.",
			})
			return
		}
	}
	s.encode(w, r, http.StatusOK, Status{Status: "ready"})
}

// handleOpenAPI serves the contract this binary implements (application/yaml,
// RFC 9512), so a client can be generated from the server it will call.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(mcpguard.OpenAPI)
}
