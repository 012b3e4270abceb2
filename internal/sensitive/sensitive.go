// Package sensitive finds the secret values inside policy configurations (a
// basic-authentication password, a JWT signing key), replaces them with a
// mask in the stored request and puts them back for the step that sends
// them to Anypoint. Values are addressed by JSON Pointer (RFC 6901) into the
// request, e.g. /policies/0/configuration/password.
package sensitive

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/mcpguard/mcpguard"
)

// Mask is what a sensitive value reads as in the stored request, and so in
// every API answer, event and log line.
const Mask = "********"

// wellKnown are configuration property names (lower case, without '_' and
// '-') whose string values are secrets whatever the template says: they are
// sealed as soon as a request arrives. A bare "key" is not one: header
// policies use it for header names.
var wellKnown = map[string]bool{
	"password": true, "passwd": true, "pwd": true, "secret": true, "clientsecret": true,
	"token": true, "accesstoken": true, "refreshtoken": true, "bearertoken": true,
	"apikey": true, "privatekey": true, "secretkey": true, "signingkey": true,
	"authorization": true, "authorizationvalue": true, "credentials": true,
}

// IsWellKnown reports whether a property name is a secret by its name alone:
// one of the well-known names, or a name ending in password, secret or token
// (userPassword, sharedSecret, bearerToken; not clientSecretExpression).
func IsWellKnown(name string) bool {
	n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(name))
	return wellKnown[n] || strings.HasSuffix(n, "password") || strings.HasSuffix(n, "secret") || strings.HasSuffix(n, "token")
}

// Values maps JSON Pointers into the request to the secret values there.
type Values map[string]string

// MaskPolicies replaces, in a copy of policies, every string value whose property
// name is secret (IsWellKnown, or secret(i, name) for policy i) with Mask,
// and returns the values it replaced. A value that already reads Mask is
// left as it is: the caller resent what an answer showed.
func MaskPolicies(policies []mcpguard.PolicyInput, secret func(policy int, name string) bool) ([]mcpguard.PolicyInput, Values) {
	values := Values{}
	if len(policies) == 0 {
		return policies, values
	}
	out := make([]mcpguard.PolicyInput, len(policies))
	for i, p := range policies {
		out[i] = p
		if p.Configuration == nil {
			continue
		}
		isSecret := func(name string) bool { return IsWellKnown(name) || (secret != nil && secret(i, name)) }
		masked := maskTree(map[string]any(p.Configuration), fmt.Sprintf("/policies/%d/configuration", i), isSecret, values)
		out[i].Configuration = masked.(map[string]any)
	}
	return out, values
}

// maskTree copies v, masking secret strings under secret names at any depth.
func maskTree(v any, ptr string, isSecret func(string) bool, values Values) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, x := range t {
			p := ptr + "/" + escape(k)
			if s, ok := x.(string); ok && isSecret(k) && s != Mask && s != "" {
				values[p] = s
				c[k] = Mask
				continue
			}
			c[k] = maskTree(x, p, isSecret, values)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, x := range t {
			c[i] = maskTree(x, ptr+"/"+strconv.Itoa(i), isSecret, values)
		}
		return c
	}
	return v
}

// Restore returns a copy of policies with the sealed values back where the
// stored request holds Mask. It fails, naming the place, when a Mask has
// no value: the caller must send the value again.
func Restore(policies []mcpguard.PolicyInput, values Values) ([]mcpguard.PolicyInput, error) {
	out := make([]mcpguard.PolicyInput, len(policies))
	var missing []string
	for i, p := range policies {
		out[i] = p
		if p.Configuration == nil {
			continue
		}
		c := restoreTree(map[string]any(p.Configuration), fmt.Sprintf("/policies/%d/configuration", i), values, &missing)
		out[i].Configuration = c.(map[string]any)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no sealed value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

func restoreTree(v any, ptr string, values Values, missing *[]string) any {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, x := range t {
			c[k] = restoreTree(x, ptr+"/"+escape(k), values, missing)
		}
		return c
	case []any:
		c := make([]any, len(t))
		for i, x := range t {
			c[i] = restoreTree(x, ptr+"/"+strconv.Itoa(i), values, missing)
		}
		return c
	case string:
		if t != Mask {
			return t
		}
		if s, ok := values[ptr]; ok {
			return s
		}
		*missing = append(*missing, ptr)
	}
	return v
}

// Strings returns the values, for redaction.
func (v Values) Strings() []string {
	out := make([]string, 0, len(v))
	for _, s := range v {
		out = append(out, s)
	}
	return out
}

// escape encodes a property name as a JSON Pointer token.
func escape(name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(name, "~", "~0"), "/", "~1")
}

func unescape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
}

// MaskAt replaces the string at ptr in a decoded JSON document with Mask
// when it equals value, reporting whether it did. The store uses it to mask
// what a template marked sensitive without touching anything else.
func MaskAt(doc any, ptr, value string) bool {
	tokens := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	cur := doc
	for i, tok := range tokens {
		last := i == len(tokens)-1
		switch t := cur.(type) {
		case map[string]any:
			k := unescape(tok)
			if last {
				if s, ok := t[k].(string); ok && s == value {
					t[k] = Mask
					return true
				}
				return false
			}
			cur = t[k]
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || n >= len(t) {
				return false
			}
			if last {
				if s, ok := t[n].(string); ok && s == value {
					t[n] = Mask
					return true
				}
				return false
			}
			cur = t[n]
		default:
			return false
		}
	}
	return false
}

// TemplateSecrets returns the property names a policy template marks
// sensitive, at any depth, in either configuration form: the legacy property
// list (`sensitive: true`) or a JSON Schema (`format: password`,
// `writeOnly: true`, `sensitive: true` or `x-sensitive: true`).
func TemplateSecrets(raw json.RawMessage) map[string]bool {
	names := map[string]bool{}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return names
	}
	var walkLegacy func(list []any)
	walkLegacy = func(list []any) {
		for _, item := range list {
			m, _ := item.(map[string]any)
			if m == nil {
				continue
			}
			if name, _ := m["propertyName"].(string); name != "" && m["sensitive"] == true {
				names[name] = true
			}
			if nested, ok := m["configuration"].([]any); ok {
				walkLegacy(nested)
			}
		}
	}
	var walkSchema func(s map[string]any)
	walkSchema = func(s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps, _ := p.(map[string]any)
			if ps == nil {
				continue
			}
			if ps["format"] == "password" || ps["writeOnly"] == true || ps["sensitive"] == true || ps["x-sensitive"] == true {
				names[name] = true
			}
			walkSchema(ps)
		}
		if items, ok := s["items"].(map[string]any); ok {
			walkSchema(items)
		}
	}
	switch t := v.(type) {
	case []any:
		walkLegacy(t)
	case map[string]any:
		walkSchema(t)
	}
	return names
}
