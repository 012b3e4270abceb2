package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mcpguard/mcpguard"
)

// MaxBodyBytes is the largest request body accepted (1 MiB, as openapi.yaml
// says).
const MaxBodyBytes = 1 << 20

// validatable is a request body that can check itself after decoding.
type validatable interface {
	Validate() []mcpguard.FieldError
}

// decode reads exactly one JSON value of at most MaxBodyBytes into dst,
// rejecting unknown fields, then validates it. With optional, an empty body
// leaves dst as it is. Every failure is an EINVALID *mcpguard.Error.
func decode(w http.ResponseWriter, r *http.Request, dst validatable, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if optional && errors.Is(err, io.EOF) {
			return nil
		}
		return decodeError(err)
	}
	// A second value (or trailing garbage) is as wrong as a malformed first one.
	if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
		if err == nil {
			return mcpguard.Errorf(mcpguard.EINVALID, "The body must contain a single JSON value.")
		}
		return decodeError(err)
	}
	if fields := dst.Validate(); len(fields) > 0 {
		return &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The request has invalid fields; see errors.", Fields: fields}
	}
	return nil
}

// decodeError turns a JSON decoding error into a message that says what is
// wrong and where, without echoing the body.
func decodeError(err error) error {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return mcpguard.Errorf(mcpguard.EINVALID, "The body must not exceed %d bytes (1 MiB).", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return mcpguard.Errorf(mcpguard.EINVALID, "The body is empty; a JSON object is required.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return mcpguard.Errorf(mcpguard.EINVALID, "The body is malformed JSON: it ends too early.")
	case errors.As(err, &syntaxErr):
		return mcpguard.Errorf(mcpguard.EINVALID, "The body is malformed JSON at byte %d.", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		field := jsonPath(typeErr.Field)
		if field == "" {
			field = "(body)"
		}
		return &mcpguard.Error{
			Code:    mcpguard.EINVALID,
			Message: "The request has a field of the wrong type; see errors.",
			Fields: []mcpguard.FieldError{{
				Field:   field,
				Message: fmt.Sprintf("must be %s, not %s", jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value),
			}},
		}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := truncate(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), 100)
		return &mcpguard.Error{
			Code:    mcpguard.EINVALID,
			Message: fmt.Sprintf("The request has an unknown field %q.", name),
			Fields:  []mcpguard.FieldError{{Field: name, Message: "is not a known field"}},
		}
	}
	return mcpguard.Errorf(mcpguard.EINVALID, "The body is not valid JSON for this request.")
}

// jsonPath drops the Go names of embedded structs (NewProtection embeds
// Request) from a decoder field path; every JSON name of the API starts with a
// lower-case letter, so an upper-case segment is always a Go name.
func jsonPath(goPath string) string {
	var kept []string
	for _, seg := range strings.Split(goPath, ".") {
		if seg != "" && (seg[0] < 'A' || seg[0] > 'Z') {
			kept = append(kept, seg)
		}
	}
	return strings.Join(kept, ".")
}

// jsonTypeName names a Go kind the way a JSON author thinks of it.
func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "another type"
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
