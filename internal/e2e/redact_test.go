package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// echoedSecret has characters every escaping changes: a space, a quote,
// HTML-escaped characters, '/', '+' and '%'.
const echoedSecret = `Zq9 "K7<m>&W3/p+Qx%9vT2-rotate-me`

// secretForms are the forms of secret (and of user:secret in Basic auth) an
// upstream can echo; none may show in any output, not even 8 characters of one.
func secretForms(user, secret string) []string {
	j, _ := json.Marshal(secret)
	return []string{
		secret, url.QueryEscape(secret), url.PathEscape(secret), strings.Trim(string(j), `"`),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + secret)),
	}
}

// leaks returns the first 8-character window of a form that text contains.
func leaks(text string, forms []string, skipPrefix int) string {
	for _, f := range forms {
		for i := skipPrefix; i+8 <= len(f); i++ {
			if strings.Contains(text, f[i:i+8]) {
				return f[i : i+8]
			}
		}
	}
	return ""
}

// TestEchoedSecretsAreRedacted: the simulator echoes the request's secret in
// an error body, whole, cut at 1,024 characters, URL-encoded (query and
// path), JSON-escaped, as Basic auth and as the bearer token; the job's
// error, its events, the list and the logs never show any form of it.
func TestEchoedSecretsAreRedacted(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// The cut case: 'rejected request ' (17) + pad + '{"password":"' (13)
	// + 10 characters of the JSON-escaped secret is exactly 1,024.
	const cutPad = 1024 - 17 - 13 - 10
	user := map[string]any{"username": sim.Username, "password": echoedSecret}
	app := map[string]any{"clientId": sim.ClientID, "clientSecret": echoedSecret}
	token := map[string]any{"token": "tok-" + strings.ReplaceAll(echoedSecret, " ", "_")}
	cases := []struct {
		name        string
		route       string
		fault       sim.Fault
		credentials map[string]any
		forms       []string
	}{
		{"whole and json-escaped", sim.RouteLogin, sim.Fault{Echo: sim.EchoBody}, user, nil},
		{"cut at 1024", sim.RouteLogin, sim.Fault{Echo: sim.EchoBody, EchoPad: cutPad}, user, nil},
		{"query escaped", sim.RouteLogin, sim.Fault{Echo: sim.EchoQuery}, user, nil},
		{"path escaped", sim.RouteLogin, sim.Fault{Echo: sim.EchoPath}, user, nil},
		{"basic auth of user", sim.RouteLogin, sim.Fault{Echo: sim.EchoBasic}, user, nil},
		{"basic auth of app", sim.RouteToken, sim.Fault{Echo: sim.EchoBasic}, app, secretForms(sim.ClientID, echoedSecret)},
		{"bearer token", sim.RouteMe, sim.Fault{Echo: sim.EchoHeader}, token, secretForms("", token["token"].(string))},
	}
	for _, c := range cases {
		f := c.fault
		f.Status, f.Times = http.StatusBadRequest, 1
		s.sim.SetFault(c.route, f)
		req := specRequest("echo-mcp")
		req["credentials"] = c.credentials
		p := s.run(req, "failed")
		if p.Error == nil || p.Error.Status != http.StatusBadRequest || !strings.Contains(p.Error.Message, "[redacted]") {
			t.Errorf("%s: error %+v, want the upstream's 400 with the secret redacted", c.name, p.Error)
			continue
		}
		forms := c.forms
		if forms == nil {
			forms = secretForms(sim.Username, echoedSecret)
		}
		// The Basic value's first 8 characters encode the user name only.
		outputs := map[string]string{
			"protection": string(s.do(http.MethodGet, "/protections/"+p.ID, nil, http.StatusOK, nil)),
			"events":     string(s.do(http.MethodGet, "/protections/"+p.ID+"/events", nil, http.StatusOK, nil)),
			"list":       string(s.do(http.MethodGet, "/protections?limit=100", nil, http.StatusOK, nil)),
			"logs":       s.logs.String(),
		}
		for where, text := range outputs {
			if leak := leaks(text, forms[:4], 0); leak != "" {
				t.Errorf("%s: %s shows %q of the secret", c.name, where, leak)
			}
			if leak := leaks(text, forms[4:], 8); leak != "" {
				t.Errorf("%s: %s shows %q of the secret's Basic form", c.name, where, leak)
			}
		}
	}
}
