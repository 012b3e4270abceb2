package mcpguard

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestMCPMetadataTypes: the parts of the MCP metadata the gateway reads are
// refused with the field's path when they have the wrong type; a complete,
// well-typed metadata passes; what is merely missing is only a gap.
func TestMCPMetadataTypes(t *testing.T) {
	t.Parallel()
	fields := func(raw string) []string {
		var v validator
		validateMCPMetadata(&v, "source.spec.metadata", json.RawMessage(raw))
		var out []string
		for _, e := range v.errs {
			out = append(out, e.Field)
		}
		return out
	}
	good := `{"transport":{"kind":"streamable-http","path":"/mcp"},"capabilities":{"tools":true},"tools":[{"name":"lookup","description":"d"}],"extra":1}`
	if got := fields(good); len(got) != 0 {
		t.Fatalf("valid metadata refused: %v", got)
	}
	if gaps := MCPMetadataGaps(json.RawMessage(good)); len(gaps) != 0 {
		t.Fatalf("gaps in complete metadata: %v", gaps)
	}
	cases := map[string][]string{
		`[1]`:                                  {"source.spec.metadata"},
		`{"transport":"http"}`:                 {"source.spec.metadata.transport"},
		`{"transport":{"kind":1,"path":true}}`: {"source.spec.metadata.transport.kind", "source.spec.metadata.transport.path"},
		`{"capabilities":{"tools":"yes","b":true}}`: {"source.spec.metadata.capabilities.tools"},
		`{"capabilities":[true]}`:                   {"source.spec.metadata.capabilities"},
		`{"tools":{"name":"x"}}`:                    {"source.spec.metadata.tools"},
		`{"tools":["x",{"name":2},{"description":"d"},{"name":"ok"}]}`: {
			"source.spec.metadata.tools[0]", "source.spec.metadata.tools[1].name", "source.spec.metadata.tools[2].name"},
	}
	for raw, want := range cases {
		if got := fields(raw); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fields %v, want %v", raw, got, want)
		}
	}
	if gaps := MCPMetadataGaps(json.RawMessage(`{"transport":{"kind":"streamable-http"}}`)); !reflect.DeepEqual(gaps, []string{"transport.path", "capabilities", "tools"}) {
		t.Fatalf("gaps %v", gaps)
	}
	if gaps := MCPMetadataGaps(nil); len(gaps) != 1 {
		t.Fatalf("no metadata: gaps %v", gaps)
	}
}
