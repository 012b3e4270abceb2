package anypoint

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
)

// Redacted replaces a secret in texts.
const Redacted = "[redacted]"

// minSecretLen is the shortest secret redacted at all: shorter values match
// ordinary words. minPrefixLen is the shortest cut-off prefix of a secret
// (or of one of its encodings) that counts as the secret: an upstream
// message truncated in the middle of a secret still leaks its start.
const (
	minSecretLen = 4
	minPrefixLen = 8
)

// Redactor removes secrets from texts in every form an upstream can echo
// them: whole, URL-encoded (query and path escaping), JSON-escaped, as
// base64 (alone, or as the user:password of Basic auth), and cut, i.e. any
// prefix of at least 8 characters of one of those forms, such as a message
// truncated at 1,024 characters in the middle of a secret.
type Redactor struct {
	forms []string
}

// NewRedactor returns a Redactor for the secrets and for the Basic-auth
// pairs (user, password) whose base64 may be echoed; empty values are skipped.
func NewRedactor(secrets []string, pairs ...[2]string) *Redactor {
	seen := map[string]bool{}
	r := &Redactor{}
	add := func(f string) {
		if len(f) >= minSecretLen && !seen[f] {
			seen[f] = true
			r.forms = append(r.forms, f)
		}
	}
	addBase64 := func(b []byte) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString(b))
		}
	}
	for _, s := range secrets {
		if len(s) < minSecretLen {
			continue
		}
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		add(jsonEscape(s, true))
		add(jsonEscape(s, false))
		add(url.QueryEscape(jsonEscape(s, true)))
		addBase64([]byte(s))
	}
	for _, p := range pairs {
		if p[0] == "" || len(p[1]) < minSecretLen {
			continue
		}
		addBase64([]byte(p[0] + ":" + p[1]))
	}
	return r
}

// jsonEscape is s as it appears inside a JSON string, with or without the
// HTML escaping of Go's encoder (<, >, & as \u003c...).
func jsonEscape(s string, html bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	_ = enc.Encode(s)
	out := strings.TrimSuffix(b.String(), "\n")
	return strings.TrimSuffix(strings.TrimPrefix(out, `"`), `"`)
}

// Empty reports whether the Redactor has nothing to remove.
func (r *Redactor) Empty() bool { return r == nil || len(r.forms) == 0 }

// Redact returns text without any form of any secret. At each position the
// longest match wins, whole form or cut-off prefix, so one form's prefix
// cannot leave the rest of a longer form behind.
func (r *Redactor) Redact(text string) string {
	if r.Empty() || text == "" {
		return text
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(text); {
		best := 0
		for _, f := range r.forms {
			if n := matchAt(text[i:], f); n > best {
				best = n
			}
		}
		if best == 0 {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		i += best
		changed = true
	}
	if !changed {
		return text
	}
	return b.String()
}

// matchAt is how many bytes at the start of text are form, or a cut-off
// prefix of it of at least minPrefixLen bytes; 0 when neither.
func matchAt(text, form string) int {
	if text[0] != form[0] {
		return 0
	}
	n := 0
	for n < len(form) && n < len(text) && text[n] == form[n] {
		n++
	}
	if n == len(form) || n >= minPrefixLen {
		return n
	}
	return 0
}
