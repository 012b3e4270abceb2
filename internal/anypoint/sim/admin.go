package sim

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// adminFault is a Fault as the admin API takes it: latency as a Go duration
// string ("250ms") instead of nanoseconds.
type adminFault struct {
	Fault
	Latency string `json:"latency,omitempty"`
}

// adminRoutes serves the /_sim/ prefix: faults, calls, state, reset and
// token expiry, target status, for demos and for tests of other processes.
func (s *Server) adminRoutes(r chi.Router) {
	r.Get("/faults", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]adminFault{}
		for route, f := range s.Faults() {
			af := adminFault{Fault: f}
			if f.Latency > 0 {
				af.Latency = f.Latency.String()
			}
			out[route] = af
		}
		writeJSON(w, http.StatusOK, out)
	})
	setFault := func(w http.ResponseWriter, req *http.Request) {
		route := chi.URLParam(req, "route")
		if !knownRoute(route) {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "unknown route " + route, "routes": Routes()})
			return
		}
		var af adminFault
		if err := decodeJSON(req, &af); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "invalid fault: " + err.Error()})
			return
		}
		f := af.Fault
		if af.Latency != "" {
			d, err := time.ParseDuration(af.Latency)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"message": "invalid latency: " + err.Error()})
				return
			}
			f.Latency = d
		}
		s.SetFault(route, f)
		w.WriteHeader(http.StatusNoContent)
	}
	r.Put("/faults/{route}", setFault)
	r.Post("/faults/{route}", setFault)
	r.Delete("/faults/{route}", func(w http.ResponseWriter, req *http.Request) {
		s.ClearFault(chi.URLParam(req, "route"))
		w.WriteHeader(http.StatusNoContent)
	})
	r.Delete("/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/calls", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]int{}
		for _, route := range Routes() {
			out[route] = 0
		}
		for route, n := range s.AllCalls() {
			out[route] = n
		}
		writeJSON(w, http.StatusOK, out)
	})
	r.Delete("/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.State())
	})
	r.Post("/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	r.Post("/expire-tokens", func(w http.ResponseWriter, _ *http.Request) {
		s.ExpireTokens()
		w.WriteHeader(http.StatusNoContent)
	})
	r.Put("/targets/{id}/status", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Status string `json:"status"`
		}
		if err := decodeJSON(req, &body); err != nil || body.Status == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": "want {\"status\": \"RUNNING\"} or another status"})
			return
		}
		if !s.SetTargetStatus(chi.URLParam(req, "id"), body.Status) {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "no gateway target " + chi.URLParam(req, "id")})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/routes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, Routes())
	})
}
