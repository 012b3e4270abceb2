package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/sensitive"
)

// storedRow is what the database holds for a protection, read with SQL.
func storedRow(t *testing.T, s *stack, id string) (request string, sealed []byte) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `SELECT request::text, sensitive FROM protections WHERE id = $1`, id).Scan(&request, &sealed); err != nil {
		t.Fatal(err)
	}
	return request, sealed
}

// TestSensitivePolicyValues: a basic-authentication password (secret by its
// name) is sealed when the request arrives, a JWT text key (secret because
// its template says so) when the policies step has read the templates;
// neither is ever in the request column, an answer, an event or a log line,
// not even when Anypoint echoes them in an error; a retry that resends the
// masks keeps the sealed values, and the simulator gets the real ones.
func TestSensitivePolicyValues(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const password, textKey = "Bas1c-Pa55w0rd-7f3e9c21", "jwt-text-key-4b8d2a6e91"
	req := specRequest("sensitive-mcp")
	req["policies"] = append([]any{
		map[string]any{"assetId": "http-basic-authentication", "configuration": map[string]any{"username": "svc", "password": password}},
		map[string]any{"assetId": "jwt-validation", "configuration": map[string]any{"textKey": textKey, "jwtKeyOrigin": "text", "signingMethod": "hmac"}},
	}, req["policies"].([]any)...)

	// After mcp-support, the basic-authentication post fails with an error
	// that echoes the request body, password included.
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Status: http.StatusBadRequest, Echo: sim.EchoBody, Skip: 1, Times: 1})
	var created struct {
		ID      string         `json:"id"`
		Request map[string]any `json:"request"`
	}
	answer := string(s.do(http.MethodPost, "/protections", req, http.StatusAccepted, &created))
	if strings.Contains(answer, password) || !strings.Contains(answer, sensitive.Mask) {
		t.Fatalf("the POST answer shows the password or no mask: %s", answer)
	}
	if request, sealed := storedRow(t, s, created.ID); strings.Contains(request, password) || sealed == nil {
		t.Fatalf("after POST the request column holds the password (%v) or nothing is sealed (%v)", strings.Contains(request, password), sealed == nil)
	}

	failed := s.wait(created.ID)
	if failed.State != "failed" || failed.Error == nil || failed.Error.Step != "policies" || !strings.Contains(failed.Error.Message, "[redacted]") {
		t.Fatalf("want a failed policies step with the echoed body redacted, got %s %+v", failed.State, failed.Error)
	}
	// The retry resends the policies as the answer shows them, masks and all.
	var shown struct {
		Request struct {
			Policies []any `json:"policies"`
		} `json:"request"`
	}
	s.do(http.MethodGet, "/protections/"+created.ID, nil, http.StatusOK, &shown)
	s.do(http.MethodPost, "/protections/"+created.ID+"/retry", map[string]any{"policies": shown.Request.Policies}, http.StatusAccepted, nil)
	p := s.wait(created.ID)
	if p.State != "succeeded" {
		t.Fatalf("retry ended %s: %+v", p.State, p.Error)
	}

	// The database, every answer, the events and the logs.
	request, sealed := storedRow(t, s, created.ID)
	outputs := map[string]string{
		"request column": request,
		"sealed column":  string(sealed),
		"GET":            string(s.do(http.MethodGet, "/protections/"+created.ID, nil, http.StatusOK, nil)),
		"list":           string(s.do(http.MethodGet, "/protections?limit=100", nil, http.StatusOK, nil)),
		"events":         string(s.do(http.MethodGet, "/protections/"+created.ID+"/events", nil, http.StatusOK, nil)),
		"logs":           s.logs.String(),
	}
	for where, text := range outputs {
		for name, secret := range map[string]string{"password": password, "text key": textKey} {
			if leak := leaks(text, []string{secret}, 0); leak != "" {
				t.Errorf("%s shows %q of the %s", where, leak, name)
			}
		}
	}
	if strings.Count(outputs["GET"], sensitive.Mask) != 2 {
		t.Errorf("GET shows %d masks, want the password's and the text key's:\n%s", strings.Count(outputs["GET"], sensitive.Mask), outputs["GET"])
	}

	// Anypoint received the real values.
	got := map[string]any{}
	for _, pol := range s.sim.State().PoliciesOf(number(p.Variables["environmentApiId"])) {
		for k, v := range pol.ConfigurationData {
			got[pol.AssetID+"."+k] = v
		}
	}
	if got["http-basic-authentication.password"] != password || got["jwt-validation.textKey"] != textKey {
		t.Fatalf("the simulator holds password %v and text key %v, want the real values", got["http-basic-authentication.password"], got["jwt-validation.textKey"])
	}
}
