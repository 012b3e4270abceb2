package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/strictjson"
)

// MergePatchType is the Content-Type of PATCH /protections/{id} (RFC 7396).
const MergePatchType = "application/merge-patch+json"

// handleUpdate serves PATCH /protections/{id}: 202 with the protection when
// an update operation started (or an Idempotency-Key replays one), 200 when
// the patch changes nothing Anypoint holds.
func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	key, err := idempotencyKey(r.Header)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dry, err := dryRun(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	in, err := decodeMergePatch(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if dry {
		plan, err := s.service.PlanUpdate(r.Context(), tenantFrom(r.Context()), id, in)
		s.plan(w, r, plan, err)
		return
	}
	p, started, replayed, err := s.service.UpdateProtection(r.Context(), tenantFrom(r.Context()), id, in, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if started || replayed {
		status = http.StatusAccepted
	}
	if replayed {
		w.Header().Set(IdempotentReplayedHeader, "true")
	}
	s.encode(w, r, status, view(p))
}

// decodeMergePatch reads a JSON merge patch: an object of at most
// MaxBodyBytes, decoded strictly; its credentials member (not part of the
// request) is taken out and checked.
func decodeMergePatch(w http.ResponseWriter, r *http.Request) (mcpguard.UpdateInput, error) {
	var in mcpguard.UpdateInput
	values := r.Header.Values("Content-Type")
	mt, params, perr := "", map[string]string{}, error(nil)
	if len(values) == 1 {
		mt, params, perr = mime.ParseMediaType(values[0])
	}
	if charset, has := params["charset"]; len(values) != 1 || perr != nil || mt != MergePatchType || (has && charset != "utf-8" && charset != "UTF-8") {
		return in, &httpError{status: http.StatusUnsupportedMediaType, kind: "unsupported_media_type", title: "Unsupported media type",
			detail: "A PATCH body is a JSON merge patch: send Content-Type: " + MergePatchType + ".",
			fields: []mcpguard.FieldError{{Field: "Content-Type", Message: "must be " + MergePatchType}}}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return in, &mcpguard.Error{Code: mcpguard.EINVALID, Message: fmt.Sprintf("The body must not exceed %d bytes (1 MiB).", maxErr.Limit),
				Fields: []mcpguard.FieldError{{Field: strictjson.BodyField, Message: "must not exceed 1 MiB"}}}
		}
		return in, mcpguard.Errorf(mcpguard.EINVALID, "The body could not be read.")
	}
	var doc map[string]json.RawMessage
	if err := strictjson.Decode(body, &doc); err != nil {
		return in, err
	}
	if doc == nil {
		return in, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "A merge patch here is a JSON object.",
			Fields: []mcpguard.FieldError{{Field: strictjson.BodyField, Message: "must be an object"}}}
	}
	if raw, has := doc["credentials"]; has {
		delete(doc, "credentials")
		var u mcpguard.UnprotectInput
		if err := strictjson.Decode([]byte(`{"credentials":`+string(raw)+`}`), &u); err != nil {
			return in, err
		}
		if fields := u.Validate(); len(fields) > 0 {
			return in, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The request has invalid fields; see errors.", Fields: fields}
		}
		in.Credentials = u.Credentials
	}
	in.Patch = doc
	return in, nil
}
