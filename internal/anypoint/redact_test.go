package anypoint

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestRedactorForms: every form an upstream can echo a secret in is
// removed, and none of the secret's characters beyond a short tail survive.
func TestRedactorForms(t *testing.T) {
	t.Parallel()
	const user, password = "alice", `p@ss w/rd"<&>+secret-9f8e7d`
	const token = "tok-0123456789abcdef"
	r := NewRedactor([]string{password, token}, [2]string{user, password})
	jsonForm, _ := json.Marshal(password)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cases := map[string]string{
		"whole":          "bad password " + password + " given",
		"query escaped":  "bad password=" + url.QueryEscape(password) + "&x=1",
		"path escaped":   "no such user /users/" + url.PathEscape(password) + "/x",
		"json escaped":   `invalid body {"password":` + string(jsonForm) + `}`,
		"basic auth":     "rejected Authorization: Basic " + basic,
		"base64 alone":   "value " + base64.StdEncoding.EncodeToString([]byte(password)),
		"cut whole":      "body: " + password[:12] + "…",
		"cut query":      "q=" + url.QueryEscape(password)[:10],
		"cut basic":      "Basic " + basic[:20],
		"token":          "token " + token + " expired",
		"cut token":      "token " + token[:9],
		"twice":          password + " and " + password,
		"json in query":  url.QueryEscape(string(jsonForm)),
		"secret at end":  "x" + password,
		"json no escape": `{"p":"` + strings.ReplaceAll(password, `"`, `\"`) + `"}`,
	}
	for name, text := range cases {
		got := r.Redact(text)
		if !strings.Contains(got, Redacted) {
			t.Errorf("%s: nothing redacted in %q", name, got)
		}
		for _, leak := range []string{"secret-9f8e7d", "ss w", "0123456789", basic[8:16]} {
			if strings.Contains(got, leak) {
				t.Errorf("%s: %q still shows %q", name, got, leak)
			}
		}
	}
	// Ordinary text and short prefixes stay.
	for _, keep := range []string{"policy applied", "p@ss", "tok-01"} {
		if got := r.Redact(keep); got != keep {
			t.Errorf("Redact(%q) = %q, want it unchanged", keep, got)
		}
	}
}
