// Package apispec checks HTTP exchanges with the mcpguard API against the
// repository's openapi.yaml. Tests of the API and the end-to-end tests route
// their clients through Transport so the contract cannot drift from the code.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Check says what the validator expects of a request.
type Check int

const (
	// RequestMatches: the request must validate (the default).
	RequestMatches Check = iota
	// RequestViolates: a deliberately bad request the spec must reject too,
	// proving the spec is as strict as the server.
	RequestViolates
	// RequestUnchecked: a bad request the spec cannot express (a body over
	// 1 MiB, a rule across fields); only the response is checked.
	RequestUnchecked
)

type checkKey struct{}

// WithCheck marks a request's context with what the validator expects of it.
func WithCheck(ctx context.Context, c Check) context.Context {
	return context.WithValue(ctx, checkKey{}, c)
}

var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadSpec reads the repository's openapi.yaml once per test binary.
func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	spec.once.Do(func() {
		path, err := specPath()
		if err != nil {
			spec.err = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(path)
		if err != nil {
			spec.err = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			spec.err = err
			return
		}
		// Match on paths only: the test server's address is not in the spec.
		doc.Servers = nil
		spec.doc = doc
		spec.router, spec.err = legacy.NewRouter(doc)
	})
	if spec.err != nil {
		t.Fatalf("loading openapi.yaml: %v", spec.err)
	}
	return spec.doc, spec.router
}

// specPath finds openapi.yaml at the module root, above the test's directory.
func specPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "openapi.yaml"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Transport validates every request and response it carries against
// openapi.yaml and fails the test on any mismatch, so the spec cannot drift
// from the code.
type Transport struct {
	T    testing.TB
	Next http.RoundTripper
}

// RoundTrip validates the exchange and passes it on.
func (st *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := st.T
	doc, router := loadSpec(t)
	check, _ := req.Context().Value(checkKey{}).(Check)

	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}

	route, params, routeErr := router.FindRoute(req)
	var input *openapi3filter.RequestValidationInput
	if routeErr == nil {
		probe := req.Clone(req.Context())
		probe.Body = io.NopCloser(bytes.NewReader(reqBody))
		input = &openapi3filter.RequestValidationInput{
			Request:    probe,
			PathParams: params,
			Route:      route,
			Options: &openapi3filter.Options{
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
				MultiError:         true,
			},
		}
		err := openapi3filter.ValidateRequest(req.Context(), input)
		switch check {
		case RequestMatches:
			if err != nil {
				t.Errorf("spec: request %s %s does not match openapi.yaml: %v", req.Method, req.URL.Path, err)
			}
		case RequestViolates:
			if err == nil {
				t.Errorf("spec: request %s %s was meant to violate openapi.yaml but matches it; body %s", req.Method, req.URL.Path, truncate(reqBody))
			}
		}
	} else if check == RequestMatches {
		t.Errorf("spec: request %s %s has no route in openapi.yaml: %v", req.Method, req.URL.Path, routeErr)
	}

	resp, err := st.Next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))

	if input != nil {
		// Validate against the request as sent, even when it broke the spec.
		input.Options = &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
		err := openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input,
			Status:                 resp.StatusCode,
			Header:                 resp.Header,
			Body:                   io.NopCloser(bytes.NewReader(respBody)),
			Options:                input.Options,
		})
		if err != nil {
			t.Errorf("spec: response %d to %s %s does not match openapi.yaml: %v\nbody: %s", resp.StatusCode, req.Method, req.URL.Path, err, truncate(respBody))
		}
	} else {
		// Unknown routes and methods have no operation in the spec; their
		// answer must still be a Problem.
		if err := validateProblem(doc, resp, respBody); err != nil {
			t.Errorf("spec: response %d to %s %s: %v", resp.StatusCode, req.Method, req.URL.Path, err)
		}
	}
	return resp, nil
}

func validateProblem(doc *openapi3.T, resp *http.Response, body []byte) error {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "application/problem+json" {
		return errors.New("content type is " + resp.Header.Get("Content-Type") + ", want application/problem+json")
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.MultiErrors())
}

func truncate(b []byte) string {
	s := string(b)
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return strings.TrimSpace(s)
}

func init() {
	// A text/event-stream answer (live events) is checked as a string here;
	// the tests of the stream parse its events strictly and check each
	// one's data with Schema.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
}

// Schema checks a decoded JSON value against a schema of openapi.yaml's
// components (for example "Event"), for content the transport cannot see
// whole, such as one event of a stream.
func Schema(t testing.TB, name string, v any) error {
	t.Helper()
	doc, _ := loadSpec(t)
	ref, ok := doc.Components.Schemas[name]
	if !ok {
		t.Fatalf("openapi.yaml has no schema %s", name)
	}
	return ref.Value.VisitJSON(v, openapi3.MultiErrors())
}
