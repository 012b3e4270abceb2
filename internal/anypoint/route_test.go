package anypoint

import "testing"

// Metric routes are templates: ids and names never become label values.
func TestRouteOfTemplatesEveryPath(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"/accounts/login":                                              "/accounts/login",
		"/accounts/api/v2/oauth2/token":                                "/accounts/api/v2/oauth2/token",
		"/accounts/api/me":                                             "/accounts/api/me",
		"/accounts/api/organizations/o-1/environments":                 "/accounts/api/organizations/{org}/environments",
		"/exchange/api/v2/organizations/o-1/assets/g/orders-mcp/1.0.0": "/exchange/api/v2/organizations/{org}/assets/{group}/{asset}/{version}",
		"/exchange/api/v2/organizations/o-1/assets/g/orders-mcp/1.0.0/publication/status/r-9": "/exchange/api/v2/organizations/{org}/assets/{group}/{asset}/{version}/publication/status/{run}",
		"/exchange/api/v2/assets/g/orders-mcp/1.0.0":                                          "/exchange/api/v2/assets/{group}/{asset}/{version}",
		"/exchange/api/v2/assets/search":                                                      "/exchange/api/v2/assets/search",
		"/apimanager/xapi/v1/organizations/o/environments/e/gateway-targets/t-1":              "/apimanager/xapi/v1/organizations/{org}/environments/{env}/gateway-targets/{target}",
		"/apimanager/api/v1/organizations/o/environments/e/apis/42/policies/7":                "/apimanager/api/v1/organizations/{org}/environments/{env}/apis/{api}/policies/{policy}",
		"/proxies/xapi/v1/organizations/o/environments/e/apis/42/deployments/9/status":        "/proxies/xapi/v1/organizations/{org}/environments/{env}/apis/{api}/deployments/{deployment}/status",
		"/apimanager/xapi/v1/organizations/o/exchange-policy-templates":                       "/apimanager/xapi/v1/organizations/{org}/exchange-policy-templates",
		"/something/unknown/x%2Fy":                                                            "/{id}/{id}/{id}",
	}
	for path, want := range cases {
		if got := routeOf(path); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", path, got, want)
		}
	}
}
