package policyschema

import (
	"encoding/json"
	"sort"
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// LegacyProperty is one descriptor of a legacy (mule3/mule4-era) template
// configuration (docs/architecture.md, "Anypoint: instances, deployments and policies"): field names from anypoint-client-go's
// PolicyConfiguration and MuleSoft's policy YAMLs.
type LegacyProperty struct {
	PropertyName  string           `json:"propertyName"`
	Name          string           `json:"name,omitempty"`
	Description   string           `json:"description,omitempty"`
	Type          string           `json:"type"`
	Optional      *bool            `json:"optional,omitempty"`
	DefaultValue  json.RawMessage  `json:"defaultValue,omitempty"`
	Sensitive     bool             `json:"sensitive,omitempty"`
	AllowMultiple bool             `json:"allowMultiple,omitempty"`
	Options       []LegacyOption   `json:"options,omitempty"`
	MinimumValue  *json.Number     `json:"minimumValue,omitempty"`
	MaximumValue  *json.Number     `json:"maximumValue,omitempty"`
	Configuration []LegacyProperty `json:"configuration,omitempty"`
}

// LegacyOption is one choice of a radio property.
type LegacyOption struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// LegacySchema converts a legacy property list to the JSON Schema it means.
// Legacy lists are closed (unknown names are refused); a property is required
// unless optional is true; radio options become an enum; minimumValue and
// maximumValue become minimum and maximum; allowMultiple turns a scalar into
// a list; sensitive becomes writeOnly with the password format.
func LegacySchema(props []LegacyProperty) map[string]any {
	properties := map[string]any{}
	var required []string
	for _, p := range props {
		if p.PropertyName == "" {
			continue
		}
		properties[p.PropertyName] = legacyProperty(p)
		if p.Optional == nil || !*p.Optional {
			required = append(required, p.PropertyName)
		}
	}
	s := map[string]any{
		"$schema":              "https://json-schema.org/draft/2019-09/schema",
		"type":                 "object",
		"properties":           properties,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}

func legacyProperty(p LegacyProperty) map[string]any {
	s := map[string]any{}
	if p.Name != "" {
		s["title"] = p.Name
	}
	switch strings.ToLower(p.Type) {
	case "ratelimits":
		s["type"] = "array"
		s["minItems"] = 1
		s["items"] = map[string]any{
			"type": "object",
			"properties": map[string]any{
				"maximumRequests":          map[string]any{"type": "integer", "minimum": 1},
				"timePeriodInMilliseconds": map[string]any{"type": "integer", "minimum": 1},
			},
			"required":             []string{"maximumRequests", "timePeriodInMilliseconds"},
			"additionalProperties": false,
		}
	case "keyvalues":
		s["type"] = "array"
		s["items"] = map[string]any{
			"type": "object",
			"properties": map[string]any{
				"key":   map[string]any{"type": "string"},
				"value": map[string]any{"type": "string"},
			},
			"required":             []string{"key"},
			"additionalProperties": false,
		}
	default:
		scalar := legacyScalar(p)
		switch {
		case len(p.Configuration) > 0:
			// Nested descriptors: a list of objects with those properties.
			item := LegacySchema(p.Configuration)
			delete(item, "$schema")
			s["type"] = "array"
			s["items"] = item
		case p.AllowMultiple && scalar["type"] != "array":
			s["type"] = "array"
			s["items"] = scalar
		default:
			for k, v := range scalar {
				s[k] = v
			}
		}
	}
	if d := strings.TrimSpace(string(p.DefaultValue)); d != "" && d != "null" {
		var v any
		if json.Unmarshal(p.DefaultValue, &v) == nil {
			s["default"] = v
		}
	}
	if p.Sensitive {
		s["writeOnly"] = true
		if s["type"] == "string" {
			s["format"] = "password"
		}
	}
	if p.Description != "" {
		s["description"] = p.Description
	}
	return s
}

// legacyScalar is the schema of one value of a legacy property.
func legacyScalar(p LegacyProperty) map[string]any {
	s := map[string]any{}
	switch strings.ToLower(p.Type) {
	case "int", "integer", "long":
		s["type"] = "integer"
	case "number", "double", "float":
		s["type"] = "number"
	case "boolean", "bool":
		s["type"] = "boolean"
	case "string", "expression", "radio", "text", "dw", "dataweave", "ipaddress", "regex", "url", "password":
		s["type"] = "string"
	case "array", "list":
		s["type"] = "array"
	}
	if len(p.Options) > 0 {
		enum := make([]any, len(p.Options))
		for i, o := range p.Options {
			enum[i] = o.Value
		}
		s["enum"] = enum
	}
	if p.MinimumValue != nil {
		s["minimum"] = *p.MinimumValue
	}
	if p.MaximumValue != nil {
		s["maximum"] = *p.MaximumValue
	}
	return s
}

// Sensitive lists the configuration properties whose values are secrets:
// marked `sensitive: true` (legacy), `writeOnly: true` or `format: password`.
// Nested properties are dotted ("a.b"); properties of array items carry "[]"
// ("originGroups[].secret"). Properties under allOf, oneOf, anyOf, if/then/else
// and local $ref count too. The list is sorted and free of duplicates.
func (t *Template) Sensitive() []string {
	if t.open || t.doc == nil {
		return nil
	}
	found := map[string]bool{}
	t.walkSensitive(t.doc, "", found, 0)
	out := make([]string, 0, len(found))
	for p := range found {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func (t *Template) walkSensitive(s map[string]any, prefix string, found map[string]bool, depth int) {
	if s == nil || depth > 32 {
		return
	}
	if ref, ok := s["$ref"].(string); ok {
		t.walkSensitive(t.localRef(ref), prefix, found, depth+1)
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for name, raw := range props {
			ps, _ := raw.(map[string]any)
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			if isSensitive(ps) || isSensitive(t.refTarget(ps)) {
				found[path] = true
			}
			t.walkSensitive(ps, path, found, depth+1)
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		t.walkSensitive(items, prefix+"[]", found, depth+1)
	}
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := s[kw].([]any); ok {
			for _, sub := range list {
				m, _ := sub.(map[string]any)
				t.walkSensitive(m, prefix, found, depth+1)
			}
		}
	}
	for _, kw := range []string{"if", "then", "else"} {
		m, _ := s[kw].(map[string]any)
		t.walkSensitive(m, prefix, found, depth+1)
	}
}

func isSensitive(s map[string]any) bool {
	if s == nil {
		return false
	}
	return s["sensitive"] == true || s["writeOnly"] == true || s["format"] == "password"
}

func (t *Template) refTarget(s map[string]any) map[string]any {
	if s == nil {
		return nil
	}
	if ref, ok := s["$ref"].(string); ok {
		return t.localRef(ref)
	}
	return nil
}

// localRef resolves a "#/..." reference inside the template document.
func (t *Template) localRef(ref string) map[string]any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	var cur any = t.doc
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[tok]
	}
	m, _ := cur.(map[string]any)
	return m
}

// Schema returns the template's configuration as a JSON Schema document
// (a legacy list converted), nil when the template has none.
func (t *Template) Schema() json.RawMessage {
	if t.open || t.doc == nil {
		return nil
	}
	b, err := json.Marshal(t.doc)
	if err != nil {
		return nil
	}
	return b
}

// Check compiles a template configuration and validates config against it in
// one call: the pure function a dry run needs.
func Check(templateConfiguration json.RawMessage, config map[string]any) (map[string]any, []Problem, error) {
	t, err := Compile(templateConfiguration)
	if err != nil {
		return nil, nil, err
	}
	filled, problems := t.Validate(config)
	return filled, problems, nil
}
