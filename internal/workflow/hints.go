package workflow

import (
	"strings"
)

// The guide's explanations, quoted from its "Common issues" and
// "Troubleshooting" sections, so a failed job tells the portal how to fix it.
const (
	HintEnvironmentIDRequired  = "The environmentId must be in the request body, not just the URL path parameter."
	HintGatewayVersionRequired = "Use the version from the getGatewayTargets response (Step 4). Using an incorrect version causes policy implementation errors."
	HintRuntimeVersionUnknown  = "The gatewayVersion value doesn't match a known Flex Gateway version. Verify the version from the target's actual runtime version in Step 4, or set target.gatewayVersion in a retry."
	HintDeploymentConflict     = "The MCP server may already be deployed to this target. List existing deployments with GET .../deployments first to check."
	HintTemplatesEmpty         = "Pass apiInstanceId and environmentId to get templates compatible with your gateway type. Without these filters, some templates may not appear."
	HintPolicyNotInCatalogue   = "Policy templates come from getExchangePolicyTemplates with apiInstanceId and environmentId; only templates compatible with this instance's gateway type are listed. Check the policy's assetId, groupId and version."
	HintWrongPropertyNames     = "Always use the configuration from getExchangePolicyTemplates: the generic listOrganizationsPolicytemplates endpoint may return different (non-gateway-compatible) property names and defaults. For example, Flex Gateway uses credentialsOriginHasHttpBasicAuthenticationHeader while the generic template uses credentialsOrigin."
	HintPolicyMissingGAV       = "The apply endpoint requires full Exchange coordinates, not just a template ID. Make sure you used getExchangePolicyTemplates (Step 8) to get these values."
	HintPolicyConflict         = "A policy of this type may already be applied to the API instance. List existing policies first to check, or set allowDuplicate on the policy to apply a second instance of the same policy type (?allowDuplicated=true)."
	HintManagePolicies         = "You need Manage Policies permission in the target environment."
	HintAPIManagerScopes       = "API Manager permissions needed: View APIs Configuration and Manage Policies scopes (and Exchange Viewer to create an instance from an Exchange asset)."
	HintIsCloudHubNull         = "For Flex Gateway instances, isCloudHub must be null (not false). Setting it to false causes a validation error."
	HintAssetNotFound          = "The MCP server has not been published to Exchange yet, or the asset type is not mcp. Start from Step 1 (a spec source) to publish it, or verify the asset was published with the correct type."
	HintAssetNotReady          = "The Exchange asset is not available to API Manager yet: it may still be publishing, or the coordinates are wrong. Check groupId, assetId and version."
	HintPublicationFailed      = "Exchange refused the publication. Correct the MCP metadata or the asset fields and retry with the corrected source.spec (a new source.spec.version if Exchange keeps the failed one): the job rewinds to publish and publishes again."
	HintAmbiguousAsset         = "Name the asset by groupId and assetId in source.asset: a retry with that source.asset resumes at search."
	HintAmbiguousInstance      = "Name the instance by id in source.instance: a retry with that source.instance resumes at the instance step."
	HintAssetVersionTaken      = "This groupId/assetId/version already exists in Exchange and is not an MCP asset published by this job. Bump the version in source.spec.version and retry."
	HintUnauthorized           = "Anypoint refused the bearer token: it is wrong or has expired (tokens last about an hour). Retry with a fresh token, or with {clientId, clientSecret} or {username, password} so that mcpguard gets and refreshes tokens itself."
	HintLoginRefused           = "Anypoint refused the username or password. Check them; a user who signs in through single sign-on or with multi-factor authentication cannot log in with a password: use a connected app ({clientId, clientSecret}) instead. Then retry with fresh credentials."
	HintConnectedAppRefused    = "Anypoint refused the connected app's client id or secret. Check them in Access Management > Connected Apps (an app that acts on its own behalf, with client credentials); a job without credentials uses the server's MCPGUARD_ANYPOINT_CLIENT_ID and MCPGUARD_ANYPOINT_CLIENT_SECRET. Then retry with fresh credentials."
	HintUpstreamUnavailable    = "Anypoint failed to answer (a 5xx status or no answer at all). mcpguard retries the step with growing delays for several minutes before it fails the job; if it still fails, the platform may be having an incident (see https://status.mulesoft.com): retry the protection once it recovers, and it resumes at this step."
	HintExchangeForbidden      = "Publishing to Exchange needs the Exchange Contributor or Exchange Administrator scope."
	HintNotEnforcing           = "Policy Not Enforcing: the API instance is not deployed or is in an error state, or the policy is applied but not yet propagated (wait 1-2 minutes). Check the API instance status in API Manager, then retry: only verify runs again."
	HintNotDeployed            = "Policy Not Enforcing: the API instance is not deployed to a Flex Gateway. Deploy it (start from a spec or an Exchange asset with a target) before protecting it."
	HintTargetNotFound         = "The gateway target must be registered in the selected environment. Check the name or id against getGatewayTargets (Step 4), then retry with a corrected target."
	HintTargetNotRunning       = "The gateway target is registered but not running. Start the Flex Gateway replicas, then retry."
	HintEnvironmentNotFound    = "Check the environment name or id against the organization's environments (Step 3), then retry with a corrected environment."
	HintInstanceNotFound       = "Check the API instance id or label against List MCP Server Instances (Step 7, family=agentic) in the selected environment."
	HintGatewayNotReady        = "The gateway target is still registering with the control plane (GatewayNotReadyError). mcpguard retries the step with backoff; if it keeps failing, check that the Flex Gateway replicas are connected."
	HintPortTaken              = "Another API instance already listens on this port and base path of the gateway target (GET gateway-targets/{id}/apis). Choose another port or path in instance.proxyUri, or remove the other instance, then retry."
	HintMissingSchema          = "This policy version has no configuration schema for this gateway (PolicyTemplateValidationError: missing required files: [schema]): it is an implementation asset (such as *-flex) or a version built for another gateway. Apply the interface asset (without -flex) or give another version on the policy, then retry."
	HintPublicationTimeout     = "Exchange did not finish publishing the MCP asset in time. Check the asset in Exchange; retry once it is published, or with a new version in source.spec.version."
	HintPublishRejected        = "Exchange refused the asset: check source.spec (assetId: lower-case letters, digits, dots, dashes and underscores; version: a semantic version; name) and that metadata is the MCP metadata JSON object, then retry."
	// HintCredentialsKeyChanged is the engine's: the job's sealed credentials
	// open under none of MCPGUARD_CREDENTIALS_KEY's keys.
	HintCredentialsKeyChanged = "The credentials key changed since the job was created; retry the protection with fresh credentials."
	HintNoCredentials         = "Pass credentials in the request ({token}, {clientId, clientSecret} or {username, password}) or configure the server's default connected app (MCPGUARD_ANYPOINT_CLIENT_ID/SECRET)."
)

// messageHints maps platform messages (lower case) to the guide's hint.
var messageHints = []struct{ contains, hint string }{
	{"field environmentid is required", HintEnvironmentIDRequired},
	{"field gatewayversion is required", HintGatewayVersionRequired},
	{"runtime version is unknown", HintRuntimeVersionUnknown},
	{"missing at least one of the following properties related to the policy template", HintPolicyMissingGAV},
	{"credentialsorigin", HintWrongPropertyNames},
	{"configurationdata", HintWrongPropertyNames},
	{"iscloudhub", HintIsCloudHubNull},
	{"there is no asset matching given parameters", HintAssetNotReady},
	{"asset_pre_conditions_failed", HintAssetVersionTaken},
	{"gatewaynotreadyerror", HintGatewayNotReady},
	{"proxy must be deployed in a port that is available", HintPortTaken},
	{"missing required files", HintMissingSchema},
}

// hintForMessage finds the guide's hint for a platform message, if any.
func hintForMessage(texts ...string) string {
	for _, t := range texts {
		lower := strings.ToLower(t)
		for _, h := range messageHints {
			if strings.Contains(lower, h.contains) {
				return h.hint
			}
		}
	}
	return ""
}
