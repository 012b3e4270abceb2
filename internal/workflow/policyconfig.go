package workflow

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// propertySpec is one configuration property of a policy template, in a form
// common to the two shapes Anypoint returns (docs/architecture.md,
// "Anypoint: instances, deployments and policies"): the legacy
// property list and the JSON Schema object.
type propertySpec struct {
	Name     string
	Kind     string // string, integer, number, boolean, array, object, or "" when any value goes
	Required bool
	// Default is the template's default; HasDefault tells a null default from none.
	Default    any
	HasDefault bool
	// Enum lists the allowed values (legacy radio options, JSON Schema enum).
	Enum []any
	// Items describes array elements that are objects with properties of their own.
	Items []propertySpec
	// Fields describes the properties of an object value.
	Fields []propertySpec
	// Closed objects reject property names not listed in Fields.
	Closed bool
}

// templateSchema is a parsed template configuration.
type templateSchema struct {
	Props []propertySpec
	// Closed is false when the schema says nothing about its properties, so
	// any name is accepted.
	Closed bool
}

// legacyProperty is the legacy (mule3/mule4-era) property descriptor.
type legacyProperty struct {
	PropertyName  string           `json:"propertyName"`
	Type          string           `json:"type"`
	Optional      *bool            `json:"optional"`
	DefaultValue  json.RawMessage  `json:"defaultValue"`
	AllowMultiple bool             `json:"allowMultiple"`
	Options       []legacyOption   `json:"options"`
	Configuration []legacyProperty `json:"configuration"`
}

type legacyOption struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// jsonSchema is the subset of JSON Schema that policy templates use.
type jsonSchema struct {
	Type                 json.RawMessage        `json:"type"`
	Properties           map[string]*jsonSchema `json:"properties"`
	Required             []string               `json:"required"`
	Default              json.RawMessage        `json:"default"`
	Enum                 []any                  `json:"enum"`
	Items                *jsonSchema            `json:"items"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
}

// parseTemplateConfiguration reads a template's configuration in either form.
// An empty configuration means the policy takes no parameters.
func parseTemplateConfiguration(raw json.RawMessage) (*templateSchema, error) {
	trimmed := strings.TrimSpace(string(raw))
	switch {
	case trimmed == "" || trimmed == "null":
		return &templateSchema{Closed: false}, nil
	case strings.HasPrefix(trimmed, "["):
		var props []legacyProperty
		if err := json.Unmarshal(raw, &props); err != nil {
			return nil, fmt.Errorf("error reading legacy policy configuration: %w", err)
		}
		return &templateSchema{Props: legacySpecs(props), Closed: true}, nil
	case strings.HasPrefix(trimmed, "{"):
		var s jsonSchema
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("error reading policy configuration schema: %w", err)
		}
		props, closed := schemaSpecs(&s)
		return &templateSchema{Props: props, Closed: closed}, nil
	}
	return nil, fmt.Errorf("policy configuration is neither a property list nor a JSON Schema")
}

func legacySpecs(props []legacyProperty) []propertySpec {
	out := make([]propertySpec, 0, len(props))
	for _, p := range props {
		if p.PropertyName == "" {
			continue
		}
		spec := propertySpec{Name: p.PropertyName, Required: p.Optional == nil || !*p.Optional}
		if d := strings.TrimSpace(string(p.DefaultValue)); d != "" && d != "null" {
			var v any
			if json.Unmarshal(p.DefaultValue, &v) == nil {
				spec.Default, spec.HasDefault = v, true
			}
		}
		for _, o := range p.Options {
			spec.Enum = append(spec.Enum, o.Value)
		}
		switch strings.ToLower(p.Type) {
		case "int", "integer", "long":
			spec.Kind = "integer"
		case "number", "double", "float":
			spec.Kind = "number"
		case "boolean", "bool":
			spec.Kind = "boolean"
		case "string", "expression", "radio", "text", "dw", "dataweave", "ipaddress", "regex", "url":
			spec.Kind = "string"
		case "keyvalues", "ratelimits", "array", "list":
			spec.Kind = "array"
		}
		if len(p.Configuration) > 0 {
			spec.Items = legacySpecs(p.Configuration)
			spec.Kind = "array"
		} else if strings.EqualFold(p.Type, "rateLimits") {
			spec.Items = []propertySpec{
				{Name: "maximumRequests", Kind: "integer", Required: true},
				{Name: "timePeriodInMilliseconds", Kind: "integer", Required: true},
			}
		} else if strings.EqualFold(p.Type, "keyvalues") {
			spec.Items = []propertySpec{{Name: "key", Kind: "string", Required: true}, {Name: "value", Kind: "string"}}
		}
		if p.AllowMultiple && spec.Kind != "array" {
			// allowMultiple turns a scalar property into a list of such scalars.
			spec.Kind = "array"
		}
		out = append(out, spec)
	}
	return out
}

func schemaSpecs(s *jsonSchema) ([]propertySpec, bool) {
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]propertySpec, 0, len(names))
	for _, n := range names {
		out = append(out, schemaSpec(n, s.Properties[n], required[n]))
	}
	// A schema that lists properties rejects others unless it says
	// additionalProperties is allowed; one without properties accepts {} only.
	closed := string(s.AdditionalProperties) != "true" && !strings.HasPrefix(strings.TrimSpace(string(s.AdditionalProperties)), "{")
	return out, closed
}

func schemaSpec(name string, s *jsonSchema, required bool) propertySpec {
	spec := propertySpec{Name: name, Required: required}
	if s == nil {
		return spec
	}
	spec.Kind = schemaKind(s.Type)
	if d := strings.TrimSpace(string(s.Default)); d != "" {
		var v any
		if json.Unmarshal(s.Default, &v) == nil {
			spec.Default, spec.HasDefault = v, true
		}
	}
	spec.Enum = s.Enum
	if s.Items != nil && len(s.Items.Properties) > 0 {
		spec.Items, _ = schemaSpecs(s.Items)
	}
	if len(s.Properties) > 0 {
		spec.Fields, spec.Closed = schemaSpecs(s)
	}
	return spec
}

func schemaKind(raw json.RawMessage) string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one
	}
	// A type list such as ["string","null"]: keep the first non-null type.
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, t := range many {
			if t != "null" {
				return t
			}
		}
	}
	return ""
}

// knownRenames maps property names of the generic (non-gateway) policy
// templates to their Flex Gateway names, the guide's most common mistake.
var knownRenames = map[string]string{
	"credentialsOrigin": "credentialsOriginHasHttpBasicAuthenticationHeader",
}

// validateConfiguration checks a caller's configuration against the template
// and returns it with the template's defaults filled in, or every problem
// found, each naming the property path.
func validateConfiguration(schema *templateSchema, given map[string]any) (map[string]any, []string) {
	out := map[string]any{}
	for k, v := range given {
		out[k] = v
	}
	problems := checkObject("", schema.Props, schema.Closed, out, true)
	return out, problems
}

func checkObject(prefix string, props []propertySpec, closed bool, obj map[string]any, fillDefaults bool) []string {
	var problems []string
	byName := map[string]propertySpec{}
	for _, p := range props {
		byName[p.Name] = p
	}
	names := make([]string, 0, len(obj))
	for n := range obj {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p, ok := byName[n]
		if !ok {
			if closed {
				problems = append(problems, unknownProperty(prefix+n, n, props))
			}
			continue
		}
		problems = append(problems, checkValue(prefix+n, p, obj[n])...)
	}
	for _, p := range props {
		if _, ok := obj[p.Name]; ok {
			continue
		}
		if p.HasDefault {
			if fillDefaults {
				obj[p.Name] = p.Default
			}
			continue
		}
		if p.Required {
			problems = append(problems, fmt.Sprintf("missing required property %q", prefix+p.Name))
		}
	}
	return problems
}

func unknownProperty(path, name string, props []propertySpec) string {
	msg := fmt.Sprintf("unknown property %q", path)
	if s := suggest(name, props); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// suggest finds the closest property name: a known rename, a name that starts
// with the given one, or the nearest by edit distance.
func suggest(name string, props []propertySpec) string {
	if to, ok := knownRenames[name]; ok {
		for _, p := range props {
			if p.Name == to {
				return to
			}
		}
	}
	lower := strings.ToLower(name)
	best, bestDist := "", math.MaxInt
	for _, p := range props {
		pl := strings.ToLower(p.Name)
		if strings.HasPrefix(pl, lower) || strings.HasPrefix(lower, pl) {
			return p.Name
		}
		if d := editDistance(lower, pl); d < bestDist {
			best, bestDist = p.Name, d
		}
	}
	if best != "" && bestDist <= max(2, len(name)/3) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func checkValue(path string, p propertySpec, v any) []string {
	if v == nil {
		if p.Required && !p.HasDefault {
			return []string{fmt.Sprintf("property %q must not be null", path)}
		}
		return nil
	}
	if msg := kindMismatch(p.Kind, v); msg != "" {
		return []string{fmt.Sprintf("property %q %s, got %s", path, msg, describe(v))}
	}
	if len(p.Enum) > 0 && !inEnum(p.Enum, v) {
		return []string{fmt.Sprintf("property %q must be one of %s, got %s", path, listEnum(p.Enum), describe(v))}
	}
	var problems []string
	if arr, ok := v.([]any); ok && len(p.Items) > 0 {
		for i, item := range arr {
			itemPath := fmt.Sprintf("%s[%d]", path, i)
			obj, ok := item.(map[string]any)
			if !ok {
				problems = append(problems, fmt.Sprintf("property %q must be an object, got %s", itemPath, describe(item)))
				continue
			}
			problems = append(problems, checkObject(itemPath+".", p.Items, true, obj, false)...)
		}
	}
	if obj, ok := v.(map[string]any); ok && len(p.Fields) > 0 {
		problems = append(problems, checkObject(path+".", p.Fields, p.Closed, obj, false)...)
	}
	return problems
}

func kindMismatch(kind string, v any) string {
	switch kind {
	case "string":
		if _, ok := v.(string); !ok {
			return "must be a string"
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return "must be a boolean"
		}
	case "integer":
		if !isInteger(v) {
			return "must be an integer"
		}
	case "number":
		if _, ok := asFloat(v); !ok {
			return "must be a number"
		}
	case "array":
		if _, ok := v.([]any); !ok {
			return "must be an array"
		}
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return "must be an object"
		}
	}
	return ""
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func isInteger(v any) bool {
	f, ok := asFloat(v)
	return ok && f == math.Trunc(f)
}

func inEnum(enum []any, v any) bool {
	for _, e := range enum {
		if fmt.Sprint(e) == fmt.Sprint(v) {
			return true
		}
	}
	return false
}

func listEnum(enum []any) string {
	parts := make([]string, len(enum))
	for i, e := range enum {
		parts[i] = fmt.Sprintf("%q", fmt.Sprint(e))
	}
	return strings.Join(parts, ", ")
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, json.Number, int, int64:
		return fmt.Sprintf("the number %v", v)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
