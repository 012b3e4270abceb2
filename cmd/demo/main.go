// Command demo submits one protection to a running mcpguard server and shows
// its steps live until the job ends. `make demo` runs it against the
// simulator; it also works against a real deployment.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demoRequest protects a spec with client-id-enforcement and rate limiting,
// the guide's two most common policies.
const demoRequest = `{
  "environment": {"name": "Sandbox"},
  "source": {"spec": {"assetId": "orders-mcp", "version": "%s", "name": "Orders MCP",
                      "description": "Orders MCP server (mcpguard demo)",
                      "metadata": {"transport": {"kind": "streamable-http", "url": "https://orders.internal/mcp"}}}},
  "target": {"name": "flex-sandbox"},
  "instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
  "policies": [
    {"assetId": "rate-limiting",
     "configuration": {"rateLimits": [{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}]}},
    {"assetId": "client-id-enforcement",
     "configuration": {"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}}
  ],
  "credentials": {"username": "%s", "password": "%s"}
}`

type step struct {
	Name     string         `json:"name"`
	State    string         `json:"state"`
	Attempts int            `json:"attempts"`
	Captured map[string]any `json:"captured"`
	Error    *jobError      `json:"error"`
}

type jobError struct {
	Step    string `json:"step"`
	Status  int    `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

type protection struct {
	ID          string         `json:"id"`
	State       string         `json:"state"`
	CurrentStep string         `json:"currentStep"`
	Variables   map[string]any `json:"variables"`
	Steps       []step         `json:"steps"`
	Error       *jobError      `json:"error"`
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:18080", "mcpguard base URL")
	version := fs.String("version", fmt.Sprintf("1.0.%d", time.Now().Unix()), "asset version to publish")
	user := fs.String("user", "alice", "Anypoint username")
	timeout := fs.Duration("timeout", 90*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key := getenv("MCPGUARD_DEMO_API_KEY")
	password := getenv("MCPGUARD_DEMO_PASSWORD")
	if key == "" || password == "" {
		return errors.New("MCPGUARD_DEMO_API_KEY and MCPGUARD_DEMO_PASSWORD must be set")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	body := fmt.Sprintf(demoRequest, *version, *user, password)
	var p protection
	if err := call(ctx, http.MethodPost, *server+"/protections", key, body, &p); err != nil {
		return fmt.Errorf("error submitting the protection: %w", err)
	}
	fmt.Fprintf(out, "submitted protection %s (asset orders-mcp %s, policies rate-limiting + client-id-enforcement)\n\n", p.ID, *version)

	seen := map[string]string{}
	start := time.Now()
	for {
		if err := call(ctx, http.MethodGet, *server+"/protections/"+p.ID, key, "", &p); err != nil {
			return fmt.Errorf("error polling the protection: %w", err)
		}
		for _, s := range p.Steps {
			line := fmt.Sprintf("%s/%d", s.State, s.Attempts)
			if seen[s.Name] == line {
				continue
			}
			seen[s.Name] = line
			fmt.Fprintf(out, "%6.1fs  %-9s %-9s %s\n", time.Since(start).Seconds(), s.Name, s.State, summary(s))
		}
		switch p.State {
		case "succeeded":
			fmt.Fprintf(out, "\nprotection %s succeeded in %.1fs\n", p.ID, time.Since(start).Seconds())
			vars, _ := json.MarshalIndent(p.Variables, "", "  ")
			fmt.Fprintf(out, "variables:\n%s\n", vars)
			return nil
		case "failed", "cancelled":
			if p.Error != nil {
				return fmt.Errorf("protection %s: step %s: %s (hint: %s)", p.State, p.Error.Step, p.Error.Message, p.Error.Hint)
			}
			return fmt.Errorf("protection %s", p.State)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("protection still %s at step %s: %w", p.State, p.CurrentStep, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func summary(s step) string {
	if s.Error != nil {
		return "error: " + s.Error.Message
	}
	if len(s.Captured) == 0 {
		return ""
	}
	var parts []string
	for _, k := range []string{"organizationId", "groupId", "assetId", "assetVersion", "environmentId", "targetName", "gatewayVersion",
		"environmentApiId", "deploymentId", "deploymentStatus", "apiVersionStatus", "apiStatus", "publicationStatus"} {
		if v, ok := s.Captured[k]; ok {
			if v == "" || v == nil {
				v = "null" // not reported yet, as Anypoint says while a deployment propagates
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if ps, ok := s.Captured["policies"].([]any); ok {
		for _, p := range ps {
			if m, ok := p.(map[string]any); ok {
				parts = append(parts, fmt.Sprintf("%v#%v", m["policyAssetId"], m["policyId"]))
			}
		}
	}
	return strings.Join(parts, " ")
}

func call(ctx context.Context, method, url, key, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // ids are integers; keep them as Anypoint wrote them
	return dec.Decode(out)
}
