package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// TestFuzzRunningServer sends generated bodies to the running server (the
// real router, service and Postgres behind env.server): mutations of valid
// create and retry requests (types, nesting, unicode, NUL, huge strings,
// case, unknown and duplicate fields, out-of-range numbers, random and
// invalid UTF-8 bytes, truncation) with varied Content-Type and
// Idempotency-Key headers. No answer may be a 5xx, every answer must match
// openapi.yaml, a refused create may store no row and a refused retry may
// not change the stored request. MCPGUARD_FUZZ_BODIES sets how many (300 by
// default; make fuzz sends 10,000) and MCPGUARD_FUZZ_SEED the generator's
// seed, so a failure can be replayed.
func TestFuzzRunningServer(t *testing.T) {
	n := 300
	if s := os.Getenv("MCPGUARD_FUZZ_BODIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("MCPGUARD_FUZZ_BODIES=%q: want a positive count", s)
		}
	}
	seed := uint64(7)
	if s := os.Getenv("MCPGUARD_FUZZ_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("MCPGUARD_FUZZ_SEED=%q: want an unsigned integer", s)
		}
	}
	const tenant = "fuzzer"
	g := &bodyGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}

	// A failed protection to send retry bodies to.
	failing := newRequest()
	failing["target"] = map[string]any{"name": missingTarget}
	target := create(t, tenant, failing)
	waitState(t, tenant, target.ID, mcpguard.StateFailed)

	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	statuses := map[int]int{}
	rowsBefore := countRows(t, tenant)
	accepted, replays := 0, 0
	for i := 0; i < n; i++ {
		retry := g.rng.IntN(5) == 0
		body := g.body(retry)
		header := g.headers(retry)
		path := "/protections"
		if retry {
			path += "/" + target.ID + "/retry"
		}
		before := countRows(t, tenant)
		stored := storedRequest(t, target.ID)

		ctx := apispec.WithCheck(context.Background(), apispec.RequestUnchecked)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, env.server.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+env.keys[tenant])
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		after := countRows(t, tenant)

		if resp.StatusCode >= 500 {
			t.Errorf("body %d (seed %d) answered %d: %.300s\nbody: %.500q\nheaders: %q", i, seed, resp.StatusCode, answer, body, header)
		}
		switch {
		case retry:
			if after != before {
				t.Errorf("body %d: a retry changed the number of rows by %d", i, after-before)
			}
			if resp.StatusCode >= 400 && !bytes.Equal(stored, storedRequest(t, target.ID)) {
				t.Errorf("body %d: a refused retry (%d) changed the stored request\nbody: %.500q", i, resp.StatusCode, body)
			}
		case resp.StatusCode == http.StatusAccepted:
			accepted++
			if resp.Header.Get("Idempotent-Replayed") == "true" {
				replays++
				if after != before {
					t.Errorf("body %d: a replay stored %d rows", i, after-before)
				}
			} else if after != before+1 {
				t.Errorf("body %d: an accepted create stored %d rows, want 1", i, after-before)
			}
		default:
			if after != before {
				t.Errorf("body %d: a refused create (%d) stored %d rows\nbody: %.500q", i, resp.StatusCode, after-before, body)
			}
		}
		if t.Failed() && i > 0 && i%100 == 0 {
			break
		}
	}
	rowsAfter := countRows(t, tenant)
	var codes []string
	keys := make([]int, 0, len(statuses))
	for c := range statuses {
		keys = append(keys, c)
	}
	sort.Ints(keys)
	for _, c := range keys {
		codes = append(codes, fmt.Sprintf("%d: %d", c, statuses[c]))
	}
	t.Logf("fuzz run (seed %d): %d bodies sent (%d creates accepted, %d of them replays); statuses {%s}; rows of tenant %q before %d, after %d (+%d, one per new accepted create)",
		seed, n, accepted, replays, strings.Join(codes, ", "), tenant, rowsBefore, rowsAfter, rowsAfter-rowsBefore)
	if rowsAfter-rowsBefore != accepted-replays {
		t.Errorf("rows grew by %d, but %d creates were accepted", rowsAfter-rowsBefore, accepted-replays)
	}
}

// storedRequest is the request column of a protection, as stored.
func storedRequest(t *testing.T, id string) []byte {
	t.Helper()
	var b []byte
	if err := env.sql.QueryRow(context.Background(), `SELECT request::text FROM protections WHERE id = $1`, id).Scan(&b); err != nil {
		t.Fatalf("reading stored request: %v", err)
	}
	return b
}

// bodyGen makes request bodies by mutating valid ones.
type bodyGen struct {
	rng *rand.Rand
}

func (g *bodyGen) pick(n int) int { return g.rng.IntN(n) }

// bases are valid bodies the mutations start from.
func (g *bodyGen) base(retry bool) any {
	if retry {
		bases := []string{
			`{"target": {"name": "fixed"}}`,
			`{"credentials": {"token": "t-1"}, "environment": {"id": "e-1"}}`,
			`{"policies": [{"assetId": "rate-limiting", "configuration": {"rateLimits": [{"maximumRequests": 1, "timePeriodInMilliseconds": 1000}]}}]}`,
			`{"instance": {"upstreamUri": "https://orders.internal/mcp"}, "source": {"spec": {"version": "1.0.1"}}}`,
			`{}`,
		}
		return decodeAny(bases[g.pick(len(bases))])
	}
	b := newRequest()
	switch g.pick(4) {
	case 0:
		b["source"] = map[string]any{"asset": map[string]any{"groupId": "g", "assetId": "orders-mcp", "version": "1.0.0"}}
	case 1:
		b["source"] = map[string]any{"instance": map[string]any{"id": 4292323}}
		delete(b, "target")
		delete(b, "instance")
	case 2:
		b["source"].(map[string]any)["spec"].(map[string]any)["metadata"] = map[string]any{"tools": []any{map[string]any{"name": "list", "inputSchema": map[string]any{"type": "object"}}}}
		b["credentials"] = map[string]any{"clientId": "c", "clientSecret": "s"}
	}
	// Round-trip so numbers are float64 like the rest of the tree.
	raw, _ := json.Marshal(b)
	return decodeAny(string(raw))
}

func decodeAny(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		panic(err)
	}
	return v
}

// body is one generated body: a valid one mutated one to three times, then
// perhaps damaged as bytes.
func (g *bodyGen) body(retry bool) []byte {
	if g.pick(20) == 0 {
		return g.randomBytes()
	}
	tree := g.base(retry)
	if g.pick(3) == 0 {
		// Odd but valid content, so accepted bodies reach Postgres too.
		g.benign(tree)
	} else {
		for m := 1 + g.pick(3); m > 0; m-- {
			tree = g.mutate(tree)
		}
	}
	raw, err := json.Marshal(tree)
	if err != nil {
		panic(err)
	}
	if g.pick(6) == 0 {
		raw = g.damage(raw)
	}
	return raw
}

// mutate changes one random place of the tree.
func (g *bodyGen) mutate(tree any) any {
	return g.walk(tree, 0, func(v any) any {
		switch g.pick(10) {
		case 0:
			return g.value(0)
		case 1:
			return g.nest(v, 1+g.pick(50))
		case 2:
			return g.unicode()
		case 3:
			return g.withNUL(v)
		case 4:
			return g.huge()
		case 5:
			return g.number()
		default:
			return g.keys(v)
		}
	})
}

// benign puts unusual but valid content where the contract allows anything
// (a policy configuration) or any text (names): unicode, escapes, nesting,
// numbers in range.
func (g *bodyGen) benign(tree any) {
	m, ok := tree.(map[string]any)
	if !ok {
		return
	}
	if policies, ok := m["policies"].([]any); ok && len(policies) > 0 {
		if p, ok := policies[g.pick(len(policies))].(map[string]any); ok {
			conf, _ := p["configuration"].(map[string]any)
			if conf == nil {
				conf = map[string]any{}
			}
			var v any = g.unicode()
			switch g.pick(4) {
			case 0:
				v = g.nest(g.value(0), g.pick(20))
			case 1:
				v = []any{0, -0.5, 1e15, 123456.789, true, nil, "<script>&"}
			}
			conf[strings.TrimSpace(g.unicode())+strconv.Itoa(g.pick(1000))] = v
			p["configuration"] = conf
		}
	}
	if env, ok := m["environment"].(map[string]any); ok && g.pick(2) == 0 {
		if _, byName := env["name"]; byName {
			env["name"] = "env " + g.unicode()
		}
	}
}

// walk descends to a random node (each level stops with some chance) and
// replaces it with change(node).
func (g *bodyGen) walk(v any, depth int, change func(any) any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) > 0 && g.pick(3) != 0 {
			names := make([]string, 0, len(x))
			for k := range x {
				names = append(names, k)
			}
			sort.Strings(names)
			k := names[g.pick(len(names))]
			x[k] = g.walk(x[k], depth+1, change)
			return x
		}
	case []any:
		if len(x) > 0 && g.pick(3) != 0 {
			i := g.pick(len(x))
			x[i] = g.walk(x[i], depth+1, change)
			return x
		}
	}
	return change(v)
}

// keys changes the names of an object: wrong case, unknown, removed.
func (g *bodyGen) keys(v any) any {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return map[string]any{g.name(): g.value(0)}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	k := names[g.pick(len(names))]
	switch g.pick(4) {
	case 0:
		m[strings.ToUpper(k)] = m[k]
		delete(m, k)
	case 1:
		if k != "" {
			m[strings.ToUpper(k[:1])+k[1:]] = m[k]
			delete(m, k)
		}
	case 2:
		m[g.name()] = g.value(0)
	default:
		delete(m, k)
	}
	return m
}

func (g *bodyGen) name() string {
	names := []string{"color", "ASSETID", "Policies", "__proto__", "", "assetid", "\u00e9t\u00e9", "a.b", "0", "$ref"}
	return names[g.pick(len(names))]
}

// value is a random JSON value.
func (g *bodyGen) value(depth int) any {
	switch g.pick(7) {
	case 0:
		return nil
	case 1:
		return g.pick(2) == 0
	case 2:
		return g.number()
	case 3:
		return g.unicode()
	case 4:
		if depth < 3 {
			return []any{g.value(depth + 1), g.value(depth + 1)}
		}
		return []any{}
	case 5:
		if depth < 3 {
			return map[string]any{g.name(): g.value(depth + 1)}
		}
		return map[string]any{}
	}
	return "x"
}

func (g *bodyGen) number() any {
	numbers := []any{0, -1, 1.5, 4292323, 1e15, 1e16, -1e300, 1e-300, 9007199254740993, json.Number("1e400"), json.Number("-0"), json.Number("123456789012345678901234567890")}
	return numbers[g.pick(len(numbers))]
}

// unicode is a string of awkward characters; json.Marshal escapes what must
// be, and damage adds raw invalid bytes later.
func (g *bodyGen) unicode() string {
	pool := []string{"é", "日本", "🛡️", "\u202e", "\u0301", "\ufffd", "\u2028", "\ufeff", "\U0010ffff", " ", "\t", "ß", "İ", "a"}
	var b strings.Builder
	for i := g.pick(40); i >= 0; i-- {
		b.WriteString(pool[g.pick(len(pool))])
	}
	return b.String()
}

func (g *bodyGen) withNUL(v any) any {
	if s, ok := v.(string); ok && s != "" {
		i := g.pick(len(s) + 1)
		return s[:i] + "\x00" + s[i:]
	}
	if m, ok := v.(map[string]any); ok {
		m["k\x00"] = "v"
		return m
	}
	return "\x00"
}

// huge is a long string: just past a bound, or near the body limit.
func (g *bodyGen) huge() string {
	sizes := []int{256, 2049, 4097, 64 << 10, 300 << 10}
	if g.pick(10) == 0 {
		sizes = append(sizes, 1<<20)
	}
	return strings.Repeat(string(rune('a'+g.pick(26))), sizes[g.pick(len(sizes))])
}

// nest wraps v in levels of arrays and objects.
func (g *bodyGen) nest(v any, levels int) any {
	for i := 0; i < levels; i++ {
		if g.pick(2) == 0 {
			v = []any{v}
		} else {
			v = map[string]any{"n": v}
		}
	}
	return v
}

// damage breaks the encoded body: invalid UTF-8, raw control bytes, a cut,
// a duplicated member, an escaped NUL or lone surrogate.
func (g *bodyGen) damage(raw []byte) []byte {
	i := g.pick(len(raw) + 1)
	ins := func(b string) []byte { return append(append(append([]byte{}, raw[:i]...), b...), raw[i:]...) }
	switch g.pick(7) {
	case 0:
		return ins("\xff\xfe")
	case 1:
		return ins("\x00")
	case 2:
		return raw[:i]
	case 3:
		if q := bytes.IndexByte(raw[1:], '"'); q >= 0 && raw[0] == '{' {
			// Repeat the first member: {"a":1 → {"a":1,"a":...
			return append([]byte(`{"policies":[],`), raw[1:]...)
		}
		return ins("}")
	case 4:
		return bytes.Replace(raw, []byte(`"Sandbox"`), []byte(`"\u0000"`), 1)
	case 5:
		return bytes.Replace(raw, []byte(`"orders-mcp"`), []byte(`"\ud800"`), 1)
	}
	raw = append([]byte{}, raw...)
	if len(raw) > 0 {
		raw[g.pick(len(raw))] = byte(g.pick(256))
	}
	return raw
}

func (g *bodyGen) randomBytes() []byte {
	b := make([]byte, g.pick(512))
	for i := range b {
		b[i] = byte(g.pick(256))
	}
	if g.pick(2) == 0 && utf8.Valid(b) {
		return append([]byte(`{"x":"`), append(b, `"}`...)...)
	}
	return b
}

// headers are mostly right, sometimes a wrong Content-Type or an odd
// Idempotency-Key.
func (g *bodyGen) headers(retry bool) http.Header {
	h := http.Header{}
	types := []string{"application/json", "application/json; charset=utf-8", "application/merge-patch+json", "text/plain", "application/json; charset=latin1", "", "application/xml", "application/json, text/plain"}
	ct := types[0]
	if g.pick(6) == 0 {
		ct = types[g.pick(len(types))]
	}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	if !retry && g.pick(4) == 0 {
		keys := []string{"key-" + strconv.Itoa(g.pick(50)), "   ", "", "k\xff", strings.Repeat("k", 256), "ключ"}
		h["Idempotency-Key"] = []string{keys[g.pick(len(keys))]}
	}
	return h
}
