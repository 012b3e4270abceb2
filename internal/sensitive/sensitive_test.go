package sensitive

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mcpguard/mcpguard"
)

// TestTemplateSecrets reads every marker of both template forms, nested too.
func TestTemplateSecrets(t *testing.T) {
	t.Parallel()
	legacy := `[{"propertyName":"username","sensitive":false},{"propertyName":"password","sensitive":true},
		{"propertyName":"backends","configuration":[{"propertyName":"apiSecretValue","sensitive":true}]}]`
	schema := `{"type":"object","properties":{
		"introspectionURL":{"type":"string"},
		"authorizationValue":{"type":"string","format":"password"},
		"clientKey":{"type":"string","writeOnly":true},
		"vault":{"type":"object","properties":{"pin":{"type":"string","sensitive":true}}},
		"hooks":{"type":"array","items":{"type":"object","properties":{"hmac":{"type":"string","x-sensitive":true}}}}}}`
	for form, tc := range map[string]struct {
		raw  string
		want map[string]bool
	}{
		"legacy":      {legacy, map[string]bool{"password": true, "apiSecretValue": true}},
		"json schema": {schema, map[string]bool{"authorizationValue": true, "clientKey": true, "pin": true, "hmac": true}},
		"none":        {`null`, map[string]bool{}},
	} {
		if got := TemplateSecrets(json.RawMessage(tc.raw)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", form, got, tc.want)
		}
	}
}

// TestMaskAndRestore: well-known names at any depth are masked, expressions
// and header names are not, a resent mask keeps its sealed value, and a
// mask without one is an error naming the place.
func TestMaskAndRestore(t *testing.T) {
	t.Parallel()
	in := []mcpguard.PolicyInput{
		{AssetID: "client-id-enforcement", Configuration: map[string]any{"clientSecretExpression": "#[attributes.headers['client_secret']]"}},
		{AssetID: "basic", Configuration: map[string]any{"username": "svc", "password": "pw-0123456789", "port": 8080}},
		{AssetID: "header-injection", Configuration: map[string]any{"inboundHeaders": []any{map[string]any{"key": "x-api", "value": "v"}},
			"upstream": map[string]any{"bearer_token": "tok-0123456789"}}},
		{AssetID: "resent", Configuration: map[string]any{"password": Mask}},
	}
	masked, values := MaskPolicies(in, nil)
	want := Values{"/policies/1/configuration/password": "pw-0123456789", "/policies/2/configuration/upstream/bearer_token": "tok-0123456789"}
	if !reflect.DeepEqual(values, want) {
		t.Fatalf("values %v, want %v", values, want)
	}
	if in[1].Configuration["password"] != "pw-0123456789" || masked[1].Configuration["password"] != Mask {
		t.Fatal("MaskPolicies changed its input or did not mask its copy")
	}
	values["/policies/3/configuration/password"] = "kept-from-before"
	restored, err := Restore(masked, values)
	if err != nil {
		t.Fatal(err)
	}
	if restored[1].Configuration["password"] != "pw-0123456789" || restored[3].Configuration["password"] != "kept-from-before" ||
		restored[0].Configuration["clientSecretExpression"] != in[0].Configuration["clientSecretExpression"] {
		t.Fatalf("restored %+v", restored)
	}
	delete(values, "/policies/3/configuration/password")
	if _, err := Restore(masked, values); err == nil || err.Error() != "no sealed value for /policies/3/configuration/password" {
		t.Fatalf("restore without a value: %v", err)
	}
	var doc any
	_ = json.Unmarshal([]byte(`{"policies":[{"configuration":{"textKey":"k-1","a/b":"k-1"}}]}`), &doc)
	if !MaskAt(doc, "/policies/0/configuration/textKey", "k-1") || !MaskAt(doc, "/policies/0/configuration/a~1b", "k-1") ||
		MaskAt(doc, "/policies/0/configuration/textKey", "k-1") {
		t.Fatal("MaskAt did not mask exactly the plaintext it was given")
	}
}
