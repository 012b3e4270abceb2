package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// templateConfig is a template's configuration parsed for validation: one of
// legacy or schema is set.
type templateConfig struct {
	legacy []legacyPropertyIn
	schema map[string]any
}

// legacyPropertyIn is a legacy property as read back from JSON, with numbers
// kept as json.Number so defaults survive exactly.
type legacyPropertyIn struct {
	PropertyName  string         `json:"propertyName"`
	Type          string         `json:"type"`
	Optional      bool           `json:"optional"`
	DefaultValue  any            `json:"defaultValue"`
	AllowMultiple bool           `json:"allowMultiple"`
	Options       []legacyOption `json:"options"`
	MinimumValue  *json.Number   `json:"minimumValue"`
	MaximumValue  *json.Number   `json:"maximumValue"`
}

func parseTemplateConfig(raw json.RawMessage) (templateConfig, error) {
	raw = bytes.TrimSpace(raw)
	var tc templateConfig
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return tc, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if raw[0] == '[' {
		return tc, dec.Decode(&tc.legacy)
	}
	return tc, dec.Decode(&tc.schema)
}

// configError is one problem with a policy's configurationData.
type configError struct {
	path, message string
}

// validate checks data against the template configuration and returns data
// with the template's defaults filled in for what the caller left out.
func (tc templateConfig) validate(data map[string]any) (map[string]any, []configError) {
	out := cloneMap(data)
	var errs []configError
	switch {
	case tc.legacy != nil:
		known := map[string]legacyPropertyIn{}
		for _, p := range tc.legacy {
			known[p.PropertyName] = p
		}
		for _, k := range sortedKeys(data) {
			if _, ok := known[k]; !ok {
				errs = append(errs, configError{k, fmt.Sprintf("property '%s' is not allowed by the policy template", k)})
			}
		}
		for _, p := range tc.legacy {
			v, present := data[p.PropertyName]
			if !present || v == nil {
				if p.DefaultValue != nil {
					out[p.PropertyName] = p.DefaultValue
				} else if !p.Optional {
					errs = append(errs, configError{p.PropertyName, fmt.Sprintf("must have required property '%s'", p.PropertyName)})
				}
				continue
			}
			errs = append(errs, checkLegacy(p, v)...)
		}
	case tc.schema != nil:
		errs = checkSchema(tc.schema, data, "")
		if props, ok := tc.schema["properties"].(map[string]any); ok {
			for name, ps := range props {
				if _, present := data[name]; present {
					continue
				}
				if def, ok := ps.(map[string]any)["default"]; ok {
					out[name] = def
				}
			}
		}
	}
	return out, errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isInteger(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), n == float64(int64(n))
	case int:
		return int64(n), true
	case int64:
		return n, true
	}
	return 0, false
}

func isNumber(v any) bool {
	switch v.(type) {
	case json.Number, float64, int, int64:
		return true
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64, int, int64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// checkLegacy validates one present value against a legacy property.
func checkLegacy(p legacyPropertyIn, v any) []configError {
	name := p.PropertyName
	bad := func(format string, args ...any) []configError {
		return []configError{{name, fmt.Sprintf("property '%s' "+format, append([]any{name}, args...)...)}}
	}
	switch p.Type {
	case "rateLimits":
		items, ok := v.([]any)
		if !ok || len(items) == 0 {
			return bad("must be a non-empty array of {maximumRequests, timePeriodInMilliseconds}")
		}
		for i, it := range items {
			obj, ok := it.(map[string]any)
			if !ok {
				return bad("item %d must be an object", i)
			}
			for _, k := range sortedKeys(obj) {
				if k != "maximumRequests" && k != "timePeriodInMilliseconds" {
					return bad("item %d has unknown property '%s'", i, k)
				}
			}
			for _, k := range []string{"maximumRequests", "timePeriodInMilliseconds"} {
				n, ok := isInteger(obj[k])
				if !ok || n < 1 {
					return bad("item %d: '%s' must be a positive integer", i, k)
				}
			}
		}
		return nil
	case "keyvalues":
		items, ok := v.([]any)
		if !ok {
			return bad("must be an array of {key, value}")
		}
		for i, it := range items {
			obj, ok := it.(map[string]any)
			_, keyOK := obj["key"].(string)
			_, valOK := obj["value"].(string)
			if !ok || !keyOK || !valOK || len(obj) != 2 {
				return bad("item %d must be {key, value} strings", i)
			}
		}
		return nil
	}
	if p.AllowMultiple {
		items, ok := v.([]any)
		if !ok {
			return bad("must be an array, got %s", typeName(v))
		}
		var errs []configError
		for _, it := range items {
			errs = append(errs, checkScalar(p, it)...)
		}
		return errs
	}
	return checkScalar(p, v)
}

func checkScalar(p legacyPropertyIn, v any) []configError {
	name := p.PropertyName
	bad := func(format string, args ...any) []configError {
		return []configError{{name, fmt.Sprintf("property '%s' "+format, append([]any{name}, args...)...)}}
	}
	switch p.Type {
	case "string", "expression":
		if _, ok := v.(string); !ok {
			return bad("must be a string, got %s", typeName(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("must be a boolean, got %s", typeName(v))
		}
	case "int":
		n, ok := isInteger(v)
		if !ok {
			return bad("must be an integer, got %s", typeName(v))
		}
		if p.MinimumValue != nil {
			if min, err := p.MinimumValue.Int64(); err == nil && n < min {
				return bad("must be >= %d", min)
			}
		}
		if p.MaximumValue != nil {
			if max, err := p.MaximumValue.Int64(); err == nil && n > max {
				return bad("must be <= %d", max)
			}
		}
	case "radio":
		str, ok := v.(string)
		var allowed []string
		for _, o := range p.Options {
			allowed = append(allowed, o.Value)
			if ok && o.Value == str {
				return nil
			}
		}
		return bad("must be one of: %s", strings.Join(allowed, ", "))
	}
	return nil
}

// checkSchema validates v against the subset of JSON Schema the catalogue
// uses: type, enum, minimum, maximum, minItems, properties, required,
// additionalProperties and items.
func checkSchema(sch map[string]any, v any, path string) []configError {
	where := strings.TrimPrefix(path, "/")
	if where == "" {
		where = "configurationData"
	}
	bad := func(format string, args ...any) []configError {
		return []configError{{strings.TrimPrefix(path, "/"), where + " " + fmt.Sprintf(format, args...)}}
	}
	if t, ok := sch["type"].(string); ok {
		okType := false
		switch t {
		case "object":
			_, okType = v.(map[string]any)
		case "array":
			_, okType = v.([]any)
		case "string":
			_, okType = v.(string)
		case "boolean":
			_, okType = v.(bool)
		case "integer":
			_, okType = isInteger(v)
		case "number":
			okType = isNumber(v)
		case "null":
			okType = v == nil
		default:
			okType = true
		}
		if !okType {
			return bad("must be %s, got %s", t, typeName(v))
		}
	}
	if enum, ok := sch["enum"].([]any); ok {
		found := false
		var allowed []string
		for _, e := range enum {
			allowed = append(allowed, fmt.Sprint(e))
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			return bad("must be one of: %s", strings.Join(allowed, ", "))
		}
	}
	if isNumber(v) {
		f, _ := json.Number(fmt.Sprint(v)).Float64()
		if min, ok := sch["minimum"].(json.Number); ok {
			if m, _ := min.Float64(); f < m {
				return bad("must be >= %s", min)
			}
		}
		if max, ok := sch["maximum"].(json.Number); ok {
			if m, _ := max.Float64(); f > m {
				return bad("must be <= %s", max)
			}
		}
	}
	var errs []configError
	switch val := v.(type) {
	case map[string]any:
		props, _ := sch["properties"].(map[string]any)
		if req, ok := sch["required"].([]any); ok {
			for _, r := range req {
				name := fmt.Sprint(r)
				if _, present := val[name]; !present {
					errs = append(errs, configError{strings.TrimPrefix(path+"/"+name, "/"),
						fmt.Sprintf("must have required property '%s'", name)})
				}
			}
		}
		for _, k := range sortedKeys(val) {
			ps, known := props[k].(map[string]any)
			if !known {
				if ap, ok := sch["additionalProperties"].(bool); ok && !ap {
					errs = append(errs, configError{strings.TrimPrefix(path+"/"+k, "/"),
						fmt.Sprintf("property '%s' is not allowed by the policy template", k)})
				}
				continue
			}
			errs = append(errs, checkSchema(ps, val[k], path+"/"+k)...)
		}
	case []any:
		if min, ok := sch["minItems"].(json.Number); ok {
			if m, _ := min.Int64(); int64(len(val)) < m {
				return bad("must NOT have fewer than %d items", m)
			}
		}
		if items, ok := sch["items"].(map[string]any); ok {
			for i, it := range val {
				errs = append(errs, checkSchema(items, it, fmt.Sprintf("%s/%d", path, i))...)
			}
		}
	}
	return errs
}
