package workflow

import (
	"sort"
	"strings"

	"github.com/mcpguard/mcpguard"
)

// MCPSupportAssetID is the policy every MCP instance needs first in its chain.
const MCPSupportAssetID = "mcp-support"

// Policy ranks for the default order (docs/architecture.md, "Steps"): mcp-support, then
// authentication, access control, rate limiting, the rest, transformation last.
const (
	rankMCPSupport = iota
	rankAuthentication
	rankAccessControl
	rankRateLimiting
	rankOther
	rankTransformation
)

var policyRanks = map[string]int{
	MCPSupportAssetID: rankMCPSupport,

	"client-id-enforcement":                    rankAuthentication,
	"jwt-validation":                           rankAuthentication,
	"oauth2-token-introspection":               rankAuthentication,
	"openidconnect-access-token-enforcement":   rankAuthentication,
	"external-oauth2-access-token-enforcement": rankAuthentication,
	"http-basic-authentication":                rankAuthentication,
	"ldap-authentication":                      rankAuthentication,

	"ip-allowlist":             rankAccessControl,
	"ip-blocklist":             rankAccessControl,
	"mcp-access-control":       rankAccessControl,
	"mcp-global-access-policy": rankAccessControl,
	"access-block":             rankAccessControl,

	"rate-limiting":             rankRateLimiting,
	"rate-limiting-sla-based":   rankRateLimiting,
	"spike-control":             rankRateLimiting,
	"a-two-a-token-rate-limit":  rankRateLimiting,
	"llm-token-rate-limit":      rankRateLimiting,
	"token-based-rate-limiting": rankRateLimiting,

	"header-injection":         rankTransformation,
	"header-removal":           rankTransformation,
	"mcp-tool-mapping":         rankTransformation,
	"a-two-a-prompt-decorator": rankTransformation,
}

// policyRank classifies a policy asset for the default order.
func policyRank(assetID string) int {
	if r, ok := policyRanks[assetID]; ok {
		return r
	}
	if strings.Contains(assetID, "transformation") || strings.Contains(assetID, "transform") {
		return rankTransformation
	}
	return rankOther
}

// orderPolicies returns the policies in the order they are applied. Policies
// without an explicit order are sorted by rank, keeping the request's order
// within a rank; a policy with an explicit `order` (1-based) is placed at that
// position, because the caller's word wins over our defaults.
func orderPolicies(in []mcpguard.PolicyInput) []mcpguard.PolicyInput {
	var implicit, explicit []mcpguard.PolicyInput
	for _, p := range in {
		if p.Order != nil {
			explicit = append(explicit, p)
		} else {
			implicit = append(implicit, p)
		}
	}
	sort.SliceStable(implicit, func(i, j int) bool {
		return policyRank(implicit[i].AssetID) < policyRank(implicit[j].AssetID)
	})
	sort.SliceStable(explicit, func(i, j int) bool { return *explicit[i].Order < *explicit[j].Order })
	out := implicit
	for _, p := range explicit {
		at := *p.Order - 1 // validated >= 1 on the way in
		if at > len(out) {
			at = len(out)
		}
		out = append(out[:at], append([]mcpguard.PolicyInput{p}, out[at:]...)...)
	}
	return out
}

// withMCPSupport adds mcp-support to the front of an MCP instance's policy
// list unless the request names it or the instance already has it.
func withMCPSupport(in []mcpguard.PolicyInput, instanceHasIt bool) []mcpguard.PolicyInput {
	if instanceHasIt {
		return in
	}
	for _, p := range in {
		if p.AssetID == MCPSupportAssetID {
			return in
		}
	}
	return append([]mcpguard.PolicyInput{{AssetID: MCPSupportAssetID, Configuration: map[string]any{}}}, in...)
}
