package policyschema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const legacyClientID = `[
 {"propertyName":"credentialsOriginHasHttpBasicAuthenticationHeader","type":"radio","optional":false,
  "defaultValue":"customExpression","options":[{"name":"Custom","value":"customExpression"},{"name":"Basic","value":"httpBasicAuthenticationHeader"}]},
 {"propertyName":"clientIdExpression","type":"expression","optional":false,"defaultValue":"#[attributes.headers['client_id']]"},
 {"propertyName":"clientSecretExpression","type":"expression","optional":true,"sensitive":true}
]`

const legacyRateLimit = `[
 {"propertyName":"rateLimits","type":"rateLimits","allowMultiple":true},
 {"propertyName":"exposeHeaders","type":"boolean","optional":true,"defaultValue":false},
 {"propertyName":"clusterizable","type":"boolean","optional":true,"defaultValue":true},
 {"propertyName":"queuingLimit","type":"int","optional":true,"minimumValue":0,"maximumValue":10}
]`

// corsSchema has the shape of the CORS template: originGroups is required,
// with a minimum length, only when publicResource is false (if/then).
const corsSchema = `{"$schema":"https://json-schema.org/draft/2019-09/schema","type":"object",
 "properties":{"publicResource":{"type":"boolean","default":true},"supportCredentials":{"type":"boolean","default":false},
  "originGroups":{"type":"array","items":{"$ref":"#/$defs/originGroup"}}},
 "if":{"properties":{"publicResource":{"const":false}},"required":["publicResource"]},
 "then":{"required":["originGroups"],"properties":{"originGroups":{"minItems":1}}},
 "$defs":{"originGroup":{"type":"object","additionalProperties":false,"required":["origins"],
  "properties":{"name":{"type":"string"},"origins":{"type":"array","minItems":1,"items":{"type":"string","pattern":"^https?://"}},
   "accessControlMaxAge":{"type":"integer","minimum":0,"maximum":86400,"default":30}}}}}`

const oneOfSchema = `{"type":"object","properties":{"jwksUrl":{"type":"string","format":"uri"},"textKey":{"type":"string","writeOnly":true}},
 "oneOf":[{"required":["jwksUrl"]},{"required":["textKey"]}]}`

const allOfSchema = `{"type":"object","allOf":[
  {"properties":{"maximumTokens":{"type":"integer","minimum":1},"keySelector":{"type":"string","default":"#[attributes.remoteAddress]"}},"required":["maximumTokens"]},
  {"properties":{"timePeriodInMilliseconds":{"type":"integer","minimum":1000,"maximum":86400000}},"required":["timePeriodInMilliseconds"]}],
 "unevaluatedProperties":false}`

func compile(t *testing.T, raw string) *Template {
	t.Helper()
	tpl, err := Compile(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return tpl
}

func messages(ps []Problem) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Message)
	}
	return strings.Join(out, "; ")
}

func TestLegacyDidYouMeanDefaultsAndEnum(t *testing.T) {
	t.Parallel()
	tpl := compile(t, legacyClientID)
	_, ps := tpl.Validate(map[string]any{"credentialsOrigin": "customExpression"})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, `unknown property "credentialsOrigin" (did you mean "credentialsOriginHasHttpBasicAuthenticationHeader"?)`) {
		t.Fatalf("problems %q", messages(ps))
	}
	got, ps := tpl.Validate(map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "httpBasicAuthenticationHeader"})
	if len(ps) != 0 || got["clientIdExpression"] != "#[attributes.headers['client_id']]" {
		t.Fatalf("got %v problems %q", got, messages(ps))
	}
	if _, ok := got["clientSecretExpression"]; ok {
		t.Fatalf("optional property without a default was filled: %v", got)
	}
	_, ps = tpl.Validate(map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "header"})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, `must be one of "customExpression", "httpBasicAuthenticationHeader", got a string`) {
		t.Fatalf("enum problems %q", messages(ps))
	}
	if s := tpl.Sensitive(); !reflect.DeepEqual(s, []string{"clientSecretExpression"}) {
		t.Fatalf("sensitive %v", s)
	}
}

func TestLegacyTypesRangesAllAtOnce(t *testing.T) {
	t.Parallel()
	tpl := compile(t, legacyRateLimit)
	_, ps := tpl.Validate(map[string]any{})
	if len(ps) != 1 || ps[0].Message != `missing required property "rateLimits"` || ps[0].Pointer != "/rateLimits" {
		t.Fatalf("problems %q", messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{
		"rateLimits":    []any{map[string]any{"maximumRequests": "100", "timePeriodInMilliseconds": 0.0}},
		"exposeHeaders": "yes",
		"queuingLimit":  11,
	})
	want := []string{
		`property "exposeHeaders" must be a boolean, got a string`,
		`property "queuingLimit" must be <= 10, got 11`,
		`property "rateLimits[0].maximumRequests" must be an integer, got a string`,
		`property "rateLimits[0].timePeriodInMilliseconds" must be >= 1, got 0`,
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Message)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n%q\nwant\n%q", got, want)
	}
	_, ps = tpl.Validate(map[string]any{"rateLimits": []any{}})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "at least 1 item") {
		t.Fatalf("minItems problems %q", messages(ps))
	}
	filled, ps := tpl.Validate(map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}})
	if len(ps) != 0 || filled["clusterizable"] != true || filled["exposeHeaders"] != false {
		t.Fatalf("filled %v problems %q", filled, messages(ps))
	}
}

func TestConditionalRefPatternAndRange(t *testing.T) {
	t.Parallel()
	tpl := compile(t, corsSchema)
	filled, ps := tpl.Validate(map[string]any{})
	if len(ps) != 0 || filled["publicResource"] != true {
		t.Fatalf("public CORS: filled %v problems %q", filled, messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"publicResource": false})
	if len(ps) != 1 || ps[0].Message != `missing required property "originGroups"` {
		t.Fatalf("if/then required: %q", messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"publicResource": false, "originGroups": []any{}})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, `"originGroups" must have at least 1 item`) {
		t.Fatalf("then minItems: %q", messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"publicResource": false, "originGroups": []any{
		map[string]any{"origin": []any{"https://a.example"}, "accessControlMaxAge": 90000},
		map[string]any{"origins": []any{"ftp://b.example"}},
	}})
	joined := messages(ps)
	for _, want := range []string{
		`unknown property "originGroups[0].origin" (did you mean "origins"?)`,
		`missing required property "originGroups[0].origins"`,
		`property "originGroups[0].accessControlMaxAge" must be <= 86400, got 90000`,
		`property "originGroups[1].origins[0]" must match the pattern "^https?://"`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", joined, want)
		}
	}
	if len(ps) != 4 {
		t.Errorf("want 4 problems, got %d: %q", len(ps), joined)
	}
	_, ps = tpl.Validate(map[string]any{"publicResource": false, "originGroups": []any{map[string]any{"origins": []any{"https://a.example"}}}})
	if len(ps) != 0 {
		t.Fatalf("valid conditional configuration refused: %q", messages(ps))
	}
	// The schema is open: it says nothing about additionalProperties.
	if _, ps := tpl.Validate(map[string]any{"somethingNew": 1}); len(ps) != 0 {
		t.Fatalf("open schema refused an extra property: %q", messages(ps))
	}
}

func TestOneOfAndFormat(t *testing.T) {
	t.Parallel()
	tpl := compile(t, oneOfSchema)
	if _, ps := tpl.Validate(map[string]any{"jwksUrl": "https://idp.example/jwks"}); len(ps) != 0 {
		t.Fatalf("one branch: %q", messages(ps))
	}
	_, ps := tpl.Validate(map[string]any{})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "matches none of the alternatives") ||
		!strings.Contains(ps[0].Message, `alternative 1: missing required property "jwksUrl"`) ||
		!strings.Contains(ps[0].Message, `alternative 2: missing required property "textKey"`) {
		t.Fatalf("oneOf none: %q", messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"jwksUrl": "https://idp.example/jwks", "textKey": "k"})
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "more than one of the alternatives") {
		t.Fatalf("oneOf both: %q", messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"jwksUrl": "not a uri"})
	if len(ps) != 1 || !strings.Contains(messages(ps), `must be a valid uri`) {
		t.Fatalf("format: %q", messages(ps))
	}
	if s := tpl.Sensitive(); !reflect.DeepEqual(s, []string{"textKey"}) {
		t.Fatalf("sensitive %v", s)
	}
}

func TestAllOfDefaultsAndUnevaluated(t *testing.T) {
	t.Parallel()
	tpl := compile(t, allOfSchema)
	filled, ps := tpl.Validate(map[string]any{"maximumTokens": 100, "timePeriodInMilliseconds": 60000})
	if len(ps) != 0 || filled["keySelector"] != "#[attributes.remoteAddress]" {
		t.Fatalf("filled %v problems %q", filled, messages(ps))
	}
	_, ps = tpl.Validate(map[string]any{"maximumTokens": 0, "timePeriodInMilliseconds": 10, "maximumToken": 5})
	want := []string{
		`unknown property "maximumToken" (did you mean "maximumTokens"?)`,
		`property "maximumTokens" must be >= 1, got 0`,
		`property "timePeriodInMilliseconds" must be >= 1000, got 10`,
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Message)
	}
	// A property of a failed allOf branch is not also called unevaluated.
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems\n%q\nwant\n%q", got, want)
	}
}

func TestOpenAndEmptyTemplates(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "null"} {
		tpl := compile(t, raw)
		if _, ps := tpl.Validate(map[string]any{"x": 1}); len(ps) != 0 {
			t.Fatalf("template %q refused a configuration: %q", raw, messages(ps))
		}
	}
	closed := compile(t, `{"type":"object","properties":{},"additionalProperties":false}`)
	if _, ps := closed.Validate(map[string]any{"x": 1}); len(ps) != 1 {
		t.Fatalf("a parameterless policy must refuse properties: %q", messages(ps))
	}
	if _, err := Compile(json.RawMessage(`{"$ref":"https://example.com/remote.json"}`)); err == nil {
		t.Fatal("a remote $ref was loaded")
	}
	if _, err := Compile(json.RawMessage(`"text"`)); err == nil {
		t.Fatal("a string configuration compiled")
	}
}

func TestCheckIsPure(t *testing.T) {
	t.Parallel()
	in := map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 1, "timePeriodInMilliseconds": 1000}}}
	filled, ps, err := Check(json.RawMessage(legacyRateLimit), in)
	if err != nil || len(ps) != 0 || len(in) != 1 || filled["clusterizable"] != true {
		t.Fatalf("filled %v problems %q err %v input %v", filled, messages(ps), err, in)
	}
}

// TestCompiledTemplatesAreSharedAndUnchanged: the same configuration text
// compiles once, and a caller changing a filled-in default (a list) does not
// change what the next caller gets.
func TestCompiledTemplatesAreSharedAndUnchanged(t *testing.T) {
	t.Parallel()
	raw := `{"type":"object","properties":{"methods":{"type":"array","items":{"type":"string"},"default":["GET"]}}}`
	a, b := compile(t, raw), compile(t, "  "+raw+"\n")
	if a != b {
		t.Fatal("the same configuration compiled twice")
	}
	first, _ := a.Validate(map[string]any{})
	first["methods"].([]any)[0] = "DELETE"
	second, _ := b.Validate(map[string]any{})
	if got := second["methods"].([]any)[0]; got != "GET" {
		t.Fatalf("the template's default became %v", got)
	}
}
