package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// BenchmarkGetProtection measures one authenticated GET /protections/{id}
// through the real server and Postgres: the API's own latency.
func BenchmarkGetProtection(b *testing.B) {
	body, _ := json.Marshal(newRequest())
	id := benchCreate(b, body)
	req, _ := http.NewRequest("GET", env.server.URL+"/protections/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+env.keys["tenant-b"])
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkCreateProtection measures POST /protections: decode, validate,
// seal credentials and insert the job with its steps.
func BenchmarkCreateProtection(b *testing.B) {
	req := newRequest()
	req["credentials"] = map[string]any{"token": "bench-token"}
	req["organizationId"] = "bench"
	body, _ := json.Marshal(req)
	b.ResetTimer()
	for b.Loop() {
		benchCreate(b, body)
	}
}

func benchCreate(b *testing.B, body []byte) string {
	b.Helper()
	req, _ := http.NewRequest("POST", env.server.URL+"/protections", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+env.keys["tenant-b"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusAccepted {
		b.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	return p.ID
}
