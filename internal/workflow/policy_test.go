package workflow

import (
	"reflect"
	"testing"

	"github.com/mcpguard/mcpguard"
)

func ids(ps []mcpguard.PolicyInput) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.AssetID
	}
	return out
}

func TestOrderPolicies(t *testing.T) {
	t.Parallel()
	in := []mcpguard.PolicyInput{
		{AssetID: "header-injection"}, {AssetID: "rate-limiting"}, {AssetID: "cors"},
		{AssetID: "ip-allowlist"}, {AssetID: "client-id-enforcement"},
	}
	got := ids(orderPolicies(withMCPSupport(in, false)))
	want := []string{"mcp-support", "client-id-enforcement", "ip-allowlist", "rate-limiting", "cors", "header-injection"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if got := ids(withMCPSupport(in, true)); got[0] == MCPSupportAssetID {
		t.Fatalf("mcp-support added although the instance has it: %v", got)
	}

	two := 2
	explicit := []mcpguard.PolicyInput{{AssetID: "client-id-enforcement"}, {AssetID: "rate-limiting"}, {AssetID: "header-injection", Order: &two}}
	got = ids(orderPolicies(explicit))
	want = []string{"client-id-enforcement", "header-injection", "rate-limiting"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("explicit order = %v, want %v", got, want)
	}
}
