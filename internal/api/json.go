package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/strictjson"
)

// MaxBodyBytes is the largest request body accepted (1 MiB, as openapi.yaml
// says).
const MaxBodyBytes = 1 << 20

// validatable is a request body that can check itself after decoding.
type validatable interface {
	Validate() []mcpguard.FieldError
}

// decode reads exactly one JSON value of at most MaxBodyBytes into dst with
// strictjson (exact, case-sensitive names; no unknown or duplicate fields, NUL,
// invalid UTF-8 or out-of-range numbers), then validates it. With optional,
// an empty body leaves dst as it is. A Content-Type other than JSON is a 415
// httpError; every other failure is an EINVALID *mcpguard.Error with field
// paths.
func decode(w http.ResponseWriter, r *http.Request, dst validatable, optional bool) error {
	declared := len(r.Header.Values("Content-Type")) > 0
	if declared {
		if err := checkContentType(r.Header); err != nil {
			return err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return &mcpguard.Error{
				Code:    mcpguard.EINVALID,
				Message: fmt.Sprintf("The body must not exceed %d bytes (1 MiB).", maxErr.Limit),
				Fields:  []mcpguard.FieldError{{Field: strictjson.BodyField, Message: "must not exceed 1 MiB"}},
			}
		}
		return mcpguard.Errorf(mcpguard.EINVALID, "The body could not be read.")
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !declared {
		return checkContentType(r.Header)
	}
	if err := strictjson.Decode(body, dst); err != nil {
		return err
	}
	if fields := dst.Validate(); len(fields) > 0 {
		return &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The request has invalid fields; see errors.", Fields: fields}
	}
	return nil
}

// checkContentType accepts application/json and the structured +json types
// (RFC 6839; PATCH will take application/merge-patch+json), in UTF-8, the
// only encoding JSON has (RFC 8259). Anything else, or none, is 415.
func checkContentType(h http.Header) error {
	values := h.Values("Content-Type")
	if len(values) == 1 {
		mt, params, err := mime.ParseMediaType(values[0])
		charset, hasCharset := params["charset"]
		if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) &&
			(!hasCharset || strings.EqualFold(charset, "utf-8")) {
			return nil
		}
	}
	return &httpError{
		status: http.StatusUnsupportedMediaType,
		kind:   "unsupported_media_type",
		title:  "Unsupported media type",
		detail: "The body must be JSON: send Content-Type: application/json.",
		fields: []mcpguard.FieldError{{Field: "Content-Type", Message: "must be application/json (or an application/*+json type) in UTF-8"}},
	}
}

// encode writes v as JSON with status. It marshals before writing the header
// so a marshalling failure can still become a clean 500.
func (s *Server) encode(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		s.fail(w, r, fmt.Errorf("error encoding response: %w", err))
		return
	}
	writeBody(w, "application/json", status, b)
}

// writeJSON writes a value that always marshals (problem bodies).
func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		b = []byte(`{"type":"urn:mcpguard:problem:internal","title":"Internal error","status":500,"detail":"Internal error."}` + "\n")
		contentType, status = "application/problem+json", http.StatusInternalServerError
	}
	writeBody(w, contentType, status, b)
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeBody(w http.ResponseWriter, contentType string, status int, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
