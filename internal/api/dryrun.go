package api

import (
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/mcpguard/mcpguard"
)

// DryRunParam is the query parameter that turns POST /protections, PATCH
// and DELETE /protections/{id} into dry runs: 200 with a plan, nothing stored.
const DryRunParam = "dryRun"

// dryRun reads ?dryRun=true|false; anything else is 400, never ignored (a
// typo must not start a real operation).
func dryRun(r *http.Request) (bool, error) {
	values, present := r.URL.Query()[DryRunParam]
	if !present {
		return false, nil
	}
	if len(values) == 1 {
		switch values[0] {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The dryRun parameter is invalid.",
		Fields: []mcpguard.FieldError{{Field: DryRunParam, Message: "must be true or false, given once"}}}
}

// unavailable answers a dry run Anypoint throttled: 503 with Retry-After.
// It reports whether err was one.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) bool {
	var u *mcpguard.Unavailable
	if !errors.As(err, &u) {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(u.RetryAfter.Seconds()))))
	s.writeProblem(w, r, Problem{Type: problemTypePrefix + "unavailable", Title: "Service unavailable",
		Status: http.StatusServiceUnavailable, Detail: u.Message})
	return true
}

// plan answers a dry run: 200 with the plan.
func (s *Server) plan(w http.ResponseWriter, r *http.Request, p *mcpguard.Plan, err error) {
	if err != nil {
		if !s.unavailable(w, r, err) {
			s.fail(w, r, err)
		}
		return
	}
	s.encode(w, r, http.StatusOK, p)
}
