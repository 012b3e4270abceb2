package sim

// Route names identify one simulated endpoint in faults, call counts and the
// admin API. They are stable: tests in other packages refer to them.
const (
	RouteLogin             = "login"              // POST /accounts/login and /accounts/api/login
	RouteToken             = "token"              // POST /accounts/api/v2/oauth2/token
	RouteMe                = "me"                 // GET /accounts/api/me
	RouteListEnvironments  = "list-environments"  // GET /accounts/api/organizations/{org}/environments
	RoutePublishAsset      = "publish-asset"      // POST /exchange/api/v2/organizations/{org}/assets/{g}/{a}/{v}
	RoutePublicationStatus = "publication-status" // GET .../publication/status[/{runId}]
	RouteGetAsset          = "get-asset"          // GET /exchange/api/v2/assets/{g}/{a}/{v}[/asset] and the latest version, .../{g}/{a}/asset
	RouteDeleteAsset       = "delete-asset"       // DELETE /exchange/api/v2/assets/{g}/{a}/{v}
	RouteSearchAssets      = "search-assets"      // GET /exchange/api/v2/assets/search
	RouteListTargets       = "list-targets"       // GET /apimanager/xapi/v1/.../gateway-targets
	RouteGetTarget         = "get-target"         // GET /apimanager/xapi/v1/.../gateway-targets/{targetId}
	RouteTargetAPIs        = "target-apis"        // GET .../gateway-targets/{targetId}/apis and .../flex-gateway-targets/{targetId}/apis
	RouteListFlexTargets   = "list-flex-targets"  // GET /apimanager/xapi/v1/.../flex-gateway-targets
	RouteGetFlexTarget     = "get-flex-target"    // GET /apimanager/xapi/v1/.../flex-gateway-targets/{targetId}
	RouteCreateAPI         = "create-api"         // POST /apimanager/{api,xapi}/v1/.../apis
	RouteGetAPI            = "get-api"            // GET /apimanager/api/v1/.../apis/{id}
	RouteListAPIs          = "list-apis"          // GET /apimanager/api/v1/.../apis (and the xapi flat list)
	RouteUpdateAPI         = "update-api"         // PATCH /apimanager/{api,xapi}/v1/.../apis/{id}
	RouteDeleteAPI         = "delete-api"         // DELETE /apimanager/api/v1/.../apis/{id}
	RouteCreateDeployment  = "create-deployment"  // POST /proxies/xapi/v1/.../apis/{id}/deployments
	RouteListDeployments   = "list-deployments"   // GET /proxies/xapi/v1/.../apis/{id}/deployments
	RouteGetDeployment     = "get-deployment"     // GET .../deployments/{depId}
	RouteReplaceDeployment = "replace-deployment" // PUT .../deployments/{depId}
	RouteDeploymentStatus  = "deployment-status"  // GET .../deployments/{depId}/status
	RouteListTemplates     = "list-policy-templates"
	RouteCreatePolicy      = "create-policy" // POST /apimanager/api/v1/.../apis/{id}/policies
	RouteListPolicies      = "list-policies" // GET .../apis/{id}/policies
	RouteGetPolicy         = "get-policy"
	RouteUpdatePolicy      = "update-policy"
	RouteDeletePolicy      = "delete-policy"
)

// Routes lists every route name the simulator serves, so callers can iterate
// (for example to clear counts or to prove an admin request named a real route).
func Routes() []string {
	return []string{
		RouteLogin, RouteToken, RouteMe, RouteListEnvironments,
		RoutePublishAsset, RoutePublicationStatus, RouteGetAsset, RouteDeleteAsset, RouteSearchAssets,
		RouteListTargets, RouteGetTarget, RouteTargetAPIs, RouteListFlexTargets, RouteGetFlexTarget,
		RouteCreateAPI, RouteGetAPI, RouteListAPIs, RouteUpdateAPI, RouteDeleteAPI,
		RouteCreateDeployment, RouteListDeployments, RouteGetDeployment, RouteReplaceDeployment, RouteDeploymentStatus,
		RouteListTemplates, RouteCreatePolicy, RouteListPolicies, RouteGetPolicy, RouteUpdatePolicy, RouteDeletePolicy,
	}
}

func knownRoute(name string) bool {
	for _, r := range Routes() {
		if r == name {
			return true
		}
	}
	return false
}
