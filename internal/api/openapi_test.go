package api_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// TestOpenAPIServed: GET /openapi.yaml answers, without a key, the
// repository's openapi.yaml byte for byte, and it is a valid OpenAPI
// document that lists its own route.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	resp, err := client.Get(env.server.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, want) {
		t.Fatal("the served contract differs from openapi.yaml")
	}
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("the served contract does not load: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("the served contract is not valid OpenAPI: %v", err)
	}
	for _, path := range []string{"/protections", "/protections/{id}", "/openapi.yaml"} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("the served contract lacks %s", path)
		}
	}
}
