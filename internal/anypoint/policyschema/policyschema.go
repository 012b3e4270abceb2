// Package policyschema checks a policy's configurationData against its Exchange
// policy template (docs/architecture.md, "Anypoint: instances, deployments and
// policies"). It is the one validator of the
// project: the workflow uses it before anything is posted or deployed, and the
// simulator uses it to answer a policy POST the way the platform does.
//
// Templates come in two forms. The legacy form, a list of property descriptors,
// is converted to a JSON Schema first; the modern form is a JSON Schema (draft
// 2019-09) that may put properties under allOf, oneOf, anyOf, if/then/else or
// $ref and may leave the object open. Both are validated by
// github.com/santhosh-tekuri/jsonschema/v6, not by a hand-written subset.
//
// Everything here is a pure function of the template and the configuration,
// so a dry run can call it without touching Anypoint.
package policyschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// resourceURL names the template's schema inside the compiler; nothing is
// ever loaded from it.
const resourceURL = "urn:mcpguard:policy-template"

// Template is a compiled policy template configuration.
type Template struct {
	// open is true when the template has no configuration at all: anything
	// the caller sends is passed on unchecked.
	open   bool
	schema *jsonschema.Schema
	// doc is the configuration as a JSON Schema document (legacy lists
	// converted), kept for the sensitive-property walk.
	doc map[string]any
	// index maps a compiled schema's location to the schema, so an error can
	// be turned back into the property names it could have meant.
	index map[string]*jsonschema.Schema
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is where in configurationData the problem is, e.g.
	// "rateLimits[0].maximumRequests"; "" is the configuration itself.
	Path string
	// Pointer is the same place as a JSON Pointer ("/rateLimits/0/maximumRequests"),
	// the form API Manager's validation errors use.
	Pointer string
	// Message says what is wrong, naming the path.
	Message string
}

// String returns the message.
func (p Problem) String() string { return p.Message }

// compiled caches templates by their configuration text: compiling checks
// the schema against its meta-schema, which costs far more than validating,
// and the workflow checks the same few templates in every job. A Template is
// read-only once built, so one is shared by every caller.
var compiled = struct {
	sync.Mutex
	byText map[string]*Template
}{byText: map[string]*Template{}}

// maxCompiled bounds the cache; past it the cache starts again empty.
const maxCompiled = 512

// Compile reads a template's configuration in either form. An empty or null
// configuration means the template says nothing, and any configuration passes.
func Compile(raw json.RawMessage) (*Template, error) {
	key := string(bytes.TrimSpace(raw))
	compiled.Lock()
	t := compiled.byText[key]
	compiled.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := compileTemplate(raw)
	if err != nil {
		return nil, err
	}
	compiled.Lock()
	if len(compiled.byText) >= maxCompiled {
		compiled.byText = map[string]*Template{}
	}
	compiled.byText[key] = t
	compiled.Unlock()
	return t, nil
}

func compileTemplate(raw json.RawMessage) (*Template, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return &Template{open: true}, nil
	}
	var doc map[string]any
	switch trimmed[0] {
	case '[':
		var props []LegacyProperty
		if err := json.Unmarshal(trimmed, &props); err != nil {
			return nil, fmt.Errorf("error reading legacy policy configuration: %w", err)
		}
		doc = LegacySchema(props)
	case '{':
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fmt.Errorf("error reading policy configuration schema: %w", err)
		}
		doc = v.(map[string]any)
	default:
		return nil, errors.New("policy configuration is neither a property list nor a JSON Schema")
	}
	return compileDoc(doc)
}

// refuseLoader keeps the compiler from fetching anything: a template's $ref
// must resolve inside the template, and the draft meta-schemas are built in.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("policy template schemas may not load %s", url)
}

func compileDoc(doc map[string]any) (*Template, error) {
	// Round-trip through JSON so numbers are json.Number, as the compiler wants.
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("error encoding policy configuration schema: %w", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("error encoding policy configuration schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2019)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(resourceURL, v); err != nil {
		return nil, fmt.Errorf("error reading policy configuration schema: %w", err)
	}
	sch, err := c.Compile(resourceURL)
	if err != nil {
		return nil, fmt.Errorf("error compiling policy configuration schema: %w", err)
	}
	t := &Template{schema: sch, doc: v.(map[string]any), index: map[string]*jsonschema.Schema{}}
	t.indexSchema(sch, 0)
	return t, nil
}

func (t *Template) indexSchema(s *jsonschema.Schema, depth int) {
	if s == nil || depth > 32 || t.index[s.Location] != nil {
		return
	}
	t.index[s.Location] = s
	for _, sub := range subschemas(s) {
		t.indexSchema(sub, depth+1)
	}
	for _, p := range s.Properties {
		t.indexSchema(p, depth+1)
	}
	if items, ok := s.Items.(*jsonschema.Schema); ok {
		t.indexSchema(items, depth+1)
	}
	t.indexSchema(s.Items2020, depth+1)
}

// subschemas are the schemas that apply to the same value as s.
func subschemas(s *jsonschema.Schema) []*jsonschema.Schema {
	out := append([]*jsonschema.Schema{}, s.AllOf...)
	out = append(out, s.AnyOf...)
	out = append(out, s.OneOf...)
	for _, x := range []*jsonschema.Schema{s.Ref, s.If, s.Then, s.Else} {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

// Validate checks a configuration and returns it with the template's
// defaults filled in for what the caller left out, or every problem found.
// The input map is not changed.
func (t *Template) Validate(config map[string]any) (map[string]any, []Problem) {
	filled := make(map[string]any, len(config))
	for k, v := range config {
		filled[k] = v
	}
	if t.open {
		return filled, nil
	}
	t.fillDefaults(t.schema, filled, 0)
	value, err := normalize(filled)
	if err != nil {
		return filled, []Problem{{Message: fmt.Sprintf("configuration is not JSON: %v", err)}}
	}
	err = t.schema.Validate(value)
	if err == nil {
		return filled, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return filled, []Problem{{Message: err.Error()}}
	}
	problems := t.problems(ve, value)
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Path < problems[j].Path })
	return filled, dedupe(problems)
}

// fillDefaults sets the defaults of the properties that apply to every
// configuration: the top-level ones and those under allOf or $ref. Defaults
// inside oneOf, anyOf or a conditional branch depend on which branch
// applies, so the platform is left to fill them.
func (t *Template) fillDefaults(s *jsonschema.Schema, obj map[string]any, depth int) {
	if s == nil || depth > 16 {
		return
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := obj[n]; ok {
			continue
		}
		if d := defaultOf(s.Properties[n]); d != nil {
			// A copy: the template is shared and must not change through
			// what a caller does with its configuration.
			obj[n] = deepCopy(*d)
		}
	}
	for _, sub := range s.AllOf {
		t.fillDefaults(sub, obj, depth+1)
	}
	t.fillDefaults(s.Ref, obj, depth+1)
}

func deepCopy(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

func defaultOf(s *jsonschema.Schema) *any {
	for i := 0; s != nil && i < 8; i++ {
		if s.Default != nil {
			return s.Default
		}
		s = s.Ref
	}
	return nil
}

// normalize turns a configuration decoded any way (float64 or json.Number
// numbers, typed slices) into what the validator reads.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func dedupe(ps []Problem) []Problem {
	seen := map[string]bool{}
	out := ps[:0]
	for _, p := range ps {
		if seen[p.Message] {
			continue
		}
		seen[p.Message] = true
		out = append(out, p)
	}
	return out
}

// problems flattens the validator's error tree into one problem per leaf.
// A failed oneOf or anyOf becomes one problem listing what each alternative
// wanted, since no single branch is "the" error.
func (t *Template) problems(e *jsonschema.ValidationError, root any) []Problem {
	switch k := e.ErrorKind.(type) {
	case *kind.OneOf:
		if len(k.Subschemas) > 0 {
			return []Problem{t.problem(e, fmt.Sprintf("matches more than one of the alternatives (%d and %d) where exactly one is allowed",
				k.Subschemas[0]+1, k.Subschemas[1]+1))}
		}
		return []Problem{t.alternatives(e, "oneOf", root)}
	case *kind.AnyOf:
		return []Problem{t.alternatives(e, "anyOf", root)}
	}
	if len(e.Causes) > 0 {
		var out []Problem
		for _, c := range e.Causes {
			out = append(out, t.problems(c, root)...)
		}
		return out
	}
	return t.leaf(e, root)
}

func (t *Template) alternatives(e *jsonschema.ValidationError, keyword string, root any) Problem {
	var parts []string
	for i, c := range e.Causes {
		var msgs []string
		for _, p := range t.problems(c, root) {
			msgs = append(msgs, p.Message)
		}
		parts = append(parts, fmt.Sprintf("alternative %d: %s", i+1, strings.Join(msgs, ", ")))
	}
	what := "matches none of the alternatives"
	if keyword == "oneOf" {
		what = "matches none of the alternatives (exactly one must match)"
	}
	return t.problem(e, fmt.Sprintf("%s: %s", what, strings.Join(parts, "; ")))
}

// problem builds a problem about the value at e's instance location.
func (t *Template) problem(e *jsonschema.ValidationError, msg string) Problem {
	path := dotted(e.InstanceLocation)
	if path == "" {
		return Problem{Message: "configuration " + msg}
	}
	return Problem{Path: path, Pointer: pointer(e.InstanceLocation), Message: fmt.Sprintf("property %q %s", path, msg)}
}

func (t *Template) leaf(e *jsonschema.ValidationError, root any) []Problem {
	base := dotted(e.InstanceLocation)
	join := func(name string) string {
		if base == "" {
			return name
		}
		return base + "." + name
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		var out []Problem
		for _, m := range k.Missing {
			out = append(out, Problem{Path: join(m), Pointer: pointer(append(e.InstanceLocation[:len(e.InstanceLocation):len(e.InstanceLocation)], m)),
				Message: fmt.Sprintf("missing required property %q", join(m))})
		}
		return out
	case *kind.AdditionalProperties:
		known := t.propertyNames(t.index[e.SchemaURL])
		var out []Problem
		for _, name := range k.Properties {
			msg := fmt.Sprintf("unknown property %q", join(name))
			if s := Suggest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			out = append(out, Problem{Path: join(name), Pointer: pointer(append(e.InstanceLocation[:len(e.InstanceLocation):len(e.InstanceLocation)], name)), Message: msg})
		}
		return out
	case *kind.FalseSchema:
		// unevaluatedProperties: false (or additionalProperties as a false
		// schema) names each extra property with a false schema of its own.
		for _, kw := range []string{"/unevaluatedProperties", "/additionalProperties"} {
			parent, ok := strings.CutSuffix(e.SchemaURL, kw)
			if !ok || len(e.InstanceLocation) == 0 {
				continue
			}
			name := e.InstanceLocation[len(e.InstanceLocation)-1]
			known := t.propertyNames(t.index[parent])
			if kw == "/unevaluatedProperties" && slices.Contains(known, name) {
				// A declared property counts as unevaluated only because the
				// branch declaring it failed; that failure is reported.
				return nil
			}
			msg := fmt.Sprintf("unknown property %q", base)
			if s := Suggest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return []Problem{{Path: base, Pointer: pointer(e.InstanceLocation), Message: msg}}
		}
		return []Problem{t.problem(e, "is not allowed here")}
	case *kind.Type:
		return []Problem{t.problem(e, fmt.Sprintf("must be %s, got %s", typeList(k.Want), describe(valueAt(root, e.InstanceLocation))))}
	case *kind.Enum:
		return []Problem{t.problem(e, fmt.Sprintf("must be one of %s, got %s", enumList(k.Want), describe(k.Got)))}
	case *kind.Const:
		return []Problem{t.problem(e, fmt.Sprintf("must be %s", display(k.Want)))}
	case *kind.Minimum:
		return []Problem{t.problem(e, fmt.Sprintf("must be >= %s, got %s", ratText(k.Want), ratText(k.Got)))}
	case *kind.Maximum:
		return []Problem{t.problem(e, fmt.Sprintf("must be <= %s, got %s", ratText(k.Want), ratText(k.Got)))}
	case *kind.ExclusiveMinimum:
		return []Problem{t.problem(e, fmt.Sprintf("must be > %s, got %s", ratText(k.Want), ratText(k.Got)))}
	case *kind.ExclusiveMaximum:
		return []Problem{t.problem(e, fmt.Sprintf("must be < %s, got %s", ratText(k.Want), ratText(k.Got)))}
	case *kind.MinItems:
		return []Problem{t.problem(e, fmt.Sprintf("must have at least %d item(s), got %d", k.Want, k.Got))}
	case *kind.MaxItems:
		return []Problem{t.problem(e, fmt.Sprintf("must have at most %d item(s), got %d", k.Want, k.Got))}
	case *kind.MinLength:
		return []Problem{t.problem(e, fmt.Sprintf("must be at least %d character(s) long, got %d", k.Want, k.Got))}
	case *kind.MaxLength:
		return []Problem{t.problem(e, fmt.Sprintf("must be at most %d character(s) long, got %d", k.Want, k.Got))}
	// Strings are never echoed back: the value may be a secret.
	case *kind.Pattern:
		return []Problem{t.problem(e, fmt.Sprintf("must match the pattern %q", k.Want))}
	case *kind.Format:
		return []Problem{t.problem(e, fmt.Sprintf("must be a valid %s", k.Want))}
	}
	return []Problem{t.problem(e, e.ErrorKind.LocalizedString(printer))}
}

// propertyNames lists every property name a schema declares for its value,
// through allOf, anyOf, oneOf, if/then/else and $ref, for did-you-mean.
func (t *Template) propertyNames(s *jsonschema.Schema) []string {
	seen := map[*jsonschema.Schema]bool{}
	names := map[string]bool{}
	var walk func(s *jsonschema.Schema, depth int)
	walk = func(s *jsonschema.Schema, depth int) {
		if s == nil || seen[s] || depth > 16 {
			return
		}
		seen[s] = true
		for n := range s.Properties {
			names[n] = true
		}
		for _, sub := range subschemas(s) {
			walk(sub, depth+1)
		}
	}
	walk(s, 0)
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dotted turns an instance location into a readable path: a.b[0].c.
func dotted(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		if _, err := strconv.Atoi(tok); err == nil {
			fmt.Fprintf(&b, "[%s]", tok)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// pointer turns an instance location into a JSON Pointer (RFC 6901).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

func valueAt(root any, tokens []string) any {
	v := root
	for _, tok := range tokens {
		switch c := v.(type) {
		case map[string]any:
			v = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func typeList(want []string) string {
	articled := make([]string, len(want))
	for i, w := range want {
		articled[i] = article(w)
	}
	return strings.Join(articled, " or ")
}

func article(typ string) string {
	switch typ {
	case "integer", "array", "object":
		return "an " + typ
	case "null":
		return "null"
	}
	return "a " + typ
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "the number " + x.String()
	case float64:
		return "the number " + strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

func display(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func enumList(want []any) string {
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = display(w)
	}
	return strings.Join(parts, ", ")
}

func ratText(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// Suggest finds the property name closest to name among known: a known
// rename of the generic templates, a name that starts with the given one, or
// the nearest by edit distance. "" when nothing is close.
func Suggest(name string, known []string) string {
	if to, ok := knownRenames[name]; ok {
		for _, k := range known {
			if k == to {
				return to
			}
		}
	}
	lower := strings.ToLower(name)
	best, bestDist := "", math.MaxInt
	for _, k := range known {
		kl := strings.ToLower(k)
		if strings.HasPrefix(kl, lower) || strings.HasPrefix(lower, kl) {
			return k
		}
		if d := editDistance(lower, kl); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" && bestDist <= max(2, len(name)/3) {
		return best
	}
	return ""
}

// knownRenames maps property names of the generic (non-gateway) policy
// templates to their Flex Gateway names, the guide's most common mistake.
var knownRenames = map[string]string{
	"credentialsOrigin": "credentialsOriginHasHttpBasicAuthenticationHeader",
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
