package sim

import "encoding/json"

// legacyProperty is one entry of a legacy (property array) template
// configuration, with the field names Exchange serves.
type legacyProperty struct {
	PropertyName  string         `json:"propertyName"`
	Name          string         `json:"name"`
	Description   string         `json:"description,omitempty"`
	Type          string         `json:"type"`
	Optional      bool           `json:"optional"`
	DefaultValue  any            `json:"defaultValue,omitempty"`
	Sensitive     bool           `json:"sensitive"`
	AllowMultiple bool           `json:"allowMultiple"`
	Options       []legacyOption `json:"options,omitempty"`
	MinimumValue  *int64         `json:"minimumValue,omitempty"`
	MaximumValue  *int64         `json:"maximumValue,omitempty"`
}

type legacyOption struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func schema(id, title string, properties map[string]any, required ...string) json.RawMessage {
	s := map[string]any{
		"$schema":              "https://json-schema.org/draft/2019-09/schema",
		"$id":                  id,
		"title":                title,
		"type":                 "object",
		"properties":           properties,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		s["required"] = required
	}
	return mustJSON(s)
}

func i64(v int64) *int64 { return &v }

var (
	flexOnly  = []string{"flexGateway"}
	mule4Only = []string{"mule4"}
)

// defaultCatalogue is the Exchange policy catalogue (docs/architecture.md,
// "Anypoint: instances, deployments and policies"). client-id-enforcement, rate-limiting and mcp-support
// carry two versions each so that latest=true has something to drop.
func defaultCatalogue() []FixtureTemplate {
	clientID := mustJSON([]legacyProperty{
		{PropertyName: "credentialsOriginHasHttpBasicAuthenticationHeader", Name: "Credentials origin",
			Type: "radio", DefaultValue: "customExpression",
			Options: []legacyOption{
				{Name: "HTTP Basic Authentication Header", Value: "httpBasicAuthenticationHeader"},
				{Name: "Custom Expression", Value: "customExpression"},
			}},
		{PropertyName: "clientIdExpression", Name: "Client ID Expression", Type: "expression",
			DefaultValue: "#[attributes.headers['client_id']]"},
		{PropertyName: "clientSecretExpression", Name: "Client Secret Expression", Type: "expression",
			Optional: true, DefaultValue: "#[attributes.headers['client_secret']]"},
	})
	rateLimiting := mustJSON([]legacyProperty{
		{PropertyName: "rateLimits", Name: "Rate Limits", Type: "rateLimits", AllowMultiple: true,
			Description: "Maximum requests per time period"},
		{PropertyName: "keySelector", Name: "Identifier", Type: "expression", Optional: true},
		{PropertyName: "exposeHeaders", Name: "Expose Headers", Type: "boolean", Optional: true, DefaultValue: false},
		{PropertyName: "clusterizable", Name: "Clusterizable", Type: "boolean", Optional: true, DefaultValue: true},
	})
	ipList := mustJSON([]legacyProperty{
		{PropertyName: "ipExpression", Name: "IP Expression", Type: "expression",
			DefaultValue: "#[attributes.headers['x-forwarded-for']]"},
		{PropertyName: "ips", Name: "IPs", Type: "string", AllowMultiple: true},
	})
	mcpSupport := schema("mcp-support", "MCP Support", map[string]any{})
	return []FixtureTemplate{
		{ID: 310001, AssetID: "client-id-enforcement", Version: "1.3.2", Name: "Client ID Enforcement",
			Category: "Security", Description: "Allows access only to authorized client applications.",
			Configuration: clientID},
		{ID: 310002, AssetID: "client-id-enforcement", Version: "1.3.3", Name: "Client ID Enforcement",
			Category: "Security", Description: "Allows access only to authorized client applications.",
			Configuration: clientID},
		{ID: 310010, AssetID: "rate-limiting", Version: "1.4.0", Name: "Rate Limiting",
			Category: "Quality of Service", Description: "Limits the number of requests per time window.",
			Configuration: rateLimiting},
		{ID: 310011, AssetID: "rate-limiting", Version: "1.4.1", Name: "Rate Limiting",
			Category: "Quality of Service", Description: "Limits the number of requests per time window.",
			Configuration: rateLimiting},
		{ID: 310012, AssetID: "rate-limiting-flex", Version: "1.4.1", Name: "Rate Limiting (Flex implementation)",
			Category: "Quality of Service", Description: "The implementation asset of rate-limiting; apply the interface asset.",
			Technologies: flexOnly, MissingSchema: true},
		{ID: 310020, AssetID: "rate-limiting-sla-based", Version: "1.3.1", Name: "Rate Limiting - SLA based",
			Category: "Quality of Service", Description: "Limits requests by the client's SLA tier.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "clientIdExpression", Name: "Client ID Expression", Type: "expression",
					DefaultValue: "#[attributes.headers['client_id']]"},
				{PropertyName: "clientSecretExpression", Name: "Client Secret Expression", Type: "expression", Optional: true},
				{PropertyName: "exposeHeaders", Name: "Expose Headers", Type: "boolean", Optional: true, DefaultValue: false},
				{PropertyName: "clusterizable", Name: "Clusterizable", Type: "boolean", Optional: true, DefaultValue: true},
			})},
		{ID: 310030, AssetID: "spike-control", Version: "1.2.2", Name: "Spike Control",
			Category: "Quality of Service", Description: "Smooths traffic spikes.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "maximumRequests", Name: "Maximum Requests", Type: "int", MinimumValue: i64(1)},
				{PropertyName: "timePeriodInMilliseconds", Name: "Time Period", Type: "int", MinimumValue: i64(1), MaximumValue: i64(5000)},
				{PropertyName: "delayTimeInMillis", Name: "Delay Time", Type: "int", DefaultValue: 1000},
				{PropertyName: "delayAttempts", Name: "Delay Attempts", Type: "int", DefaultValue: 1},
				{PropertyName: "queuingLimit", Name: "Queuing Limit", Type: "int", Optional: true, DefaultValue: 5},
				{PropertyName: "exposeHeaders", Name: "Expose Headers", Type: "boolean", Optional: true, DefaultValue: false},
			})},
		{ID: 310040, AssetID: "ip-allowlist", Version: "1.1.2", Name: "IP Allowlist",
			Category: "Security", Description: "Allows requests only from listed IPs.", Configuration: ipList},
		{ID: 310041, AssetID: "ip-blocklist", Version: "1.1.2", Name: "IP Blocklist",
			Category: "Security", Description: "Blocks requests from listed IPs.", Configuration: ipList},
		{ID: 310050, AssetID: "jwt-validation", Version: "1.3.2", Name: "JWT Validation",
			Category: "Security", Description: "Validates a JWT on each request.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "jwtOrigin", Name: "JWT Origin", Type: "radio", DefaultValue: "httpBearerAuthenticationHeader",
					Options: []legacyOption{{Name: "HTTP Bearer Authentication Header", Value: "httpBearerAuthenticationHeader"},
						{Name: "Custom Expression", Value: "customExpression"}}},
				{PropertyName: "jwtExpression", Name: "JWT Expression", Type: "expression", Optional: true,
					DefaultValue: "#[attributes.headers['jwt']]"},
				{PropertyName: "signingMethod", Name: "Signing Method", Type: "radio", DefaultValue: "rsa",
					Options: []legacyOption{{Name: "RSA", Value: "rsa"}, {Name: "HMAC", Value: "hmac"}, {Name: "ES", Value: "es"}, {Name: "None", Value: "none"}}},
				{PropertyName: "signingKeyLength", Name: "Signing Key Length", Type: "int", DefaultValue: 256},
				{PropertyName: "jwtKeyOrigin", Name: "JWT Key Origin", Type: "radio", DefaultValue: "text",
					Options: []legacyOption{{Name: "Text", Value: "text"}, {Name: "JWKS", Value: "jwks"}}},
				{PropertyName: "textKey", Name: "Key", Type: "string", Optional: true, Sensitive: true},
				{PropertyName: "jwksUrl", Name: "JWKS URL", Type: "string", Optional: true},
				{PropertyName: "jwksServiceTimeToLive", Name: "JWKS TTL", Type: "int", Optional: true, DefaultValue: 60},
				{PropertyName: "skipClientIdValidation", Name: "Skip Client Id Validation", Type: "boolean", Optional: true, DefaultValue: false},
				{PropertyName: "clientIdExpression", Name: "Client ID Expression", Type: "expression", Optional: true,
					DefaultValue: "#[vars.claimSet.client_id]"},
				{PropertyName: "validateAudClaim", Name: "Validate Audience", Type: "boolean", Optional: true, DefaultValue: false},
				{PropertyName: "supportedAudiences", Name: "Audiences", Type: "string", Optional: true},
				{PropertyName: "mandatoryExpClaim", Name: "Expiration Claim Mandatory", Type: "boolean", Optional: true, DefaultValue: false},
				{PropertyName: "mandatoryNbfClaim", Name: "Not Before Claim Mandatory", Type: "boolean", Optional: true, DefaultValue: false},
				{PropertyName: "validateCustomClaim", Name: "Validate Custom Claims", Type: "boolean", Optional: true, DefaultValue: false},
			})},
		{ID: 310060, AssetID: "http-basic-authentication", Version: "1.3.2", Name: "HTTP Basic Authentication",
			Category: "Security", Description: "Checks a username and password.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "username", Name: "User Name", Type: "string"},
				{PropertyName: "password", Name: "User Password", Type: "string", Sensitive: true},
			})},
		{ID: 310070, AssetID: "header-injection", Version: "1.3.2", Name: "Header Injection",
			Category: "Transformation", Description: "Adds headers to requests and responses.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "inboundHeaders", Name: "Inbound Headers", Type: "keyvalues", Optional: true, AllowMultiple: true},
				{PropertyName: "outboundHeaders", Name: "Outbound Headers", Type: "keyvalues", Optional: true, AllowMultiple: true},
			})},
		{ID: 310071, AssetID: "header-removal", Version: "1.1.2", Name: "Header Removal",
			Category: "Transformation", Description: "Removes headers from requests and responses.",
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "inboundHeaders", Name: "Inbound Headers", Type: "string", Optional: true, AllowMultiple: true},
				{PropertyName: "outboundHeaders", Name: "Outbound Headers", Type: "string", Optional: true, AllowMultiple: true},
			})},
		{ID: 310080, AssetID: "cors", Version: "1.3.2", Name: "Cross-Origin Resource Sharing",
			Category: "Security", Description: "Answers CORS preflight requests.", Technologies: flexOnly,
			Configuration: corsSchema()},
		{ID: 310090, AssetID: "oauth2-token-introspection", Version: "1.0.1", Name: "OAuth 2.0 Token Introspection",
			Category: "Security", Description: "Validates tokens with an introspection endpoint.", Technologies: flexOnly,
			Configuration: schema("oauth2-token-introspection", "OAuth 2.0 Token Introspection", map[string]any{
				"introspectionURL":        map[string]any{"type": "string"},
				"authorizationValue":      map[string]any{"type": "string"},
				"validatedTokenTTL":       map[string]any{"type": "integer", "default": 600},
				"authenticationTimeout":   map[string]any{"type": "integer", "default": 10000},
				"skipClientIdValidation":  map[string]any{"type": "boolean", "default": false},
				"consumerBy":              map[string]any{"type": "string"},
				"exposeHeaders":           map[string]any{"type": "boolean", "default": false},
				"scopes":                  map[string]any{"type": "string"},
				"scopeValidationCriteria": map[string]any{"type": "string", "enum": []string{"AND", "OR"}, "default": "AND"},
				"maxCacheEntries":         map[string]any{"type": "integer", "default": 1000},
			}, "introspectionURL", "authorizationValue", "skipClientIdValidation")},
		{ID: 310100, AssetID: "external-oauth2-access-token-enforcement", Version: "1.6.0",
			Name: "OAuth 2.0 access token enforcement using external provider", Category: "Security",
			Description: "Mule 4 only.", Technologies: mule4Only,
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "tokenUrl", Name: "Access Token validation endpoint url", Type: "string"},
				{PropertyName: "scopes", Name: "Scopes", Type: "string", Optional: true},
			})},
		{ID: 310101, AssetID: "xml-threat-protection", Version: "1.2.0", Name: "XML Threat Protection",
			Category: "Security", Description: "Mule 4 only.", Technologies: mule4Only,
			Configuration: mustJSON([]legacyProperty{
				{PropertyName: "maxNodeDepth", Name: "Maximum Node Depth", Type: "int", Optional: true, DefaultValue: -1},
			})},
		{ID: 310051, AssetID: "jwt-validation", Version: "1.4.0", Name: "JWT Validation",
			Category: "Security", Description: "Validates a JWT on each request.", Technologies: flexOnly,
			Configuration: jwtSchema()},
		{ID: 310110, AssetID: "a-two-a-token-rate-limit", Version: "1.0.0", Name: "A2A Token Rate Limit",
			Category: "Quality of Service", Description: "Limits the tokens an agent may use per time window.", Technologies: flexOnly,
			Configuration: tokenRateLimitSchema()},
		{ID: 320001, AssetID: "mcp-support", Version: "1.0.0", Name: "MCP Support", Category: "MCP",
			Description: "Required first policy on every MCP server instance.", Technologies: flexOnly, MCPOnly: true,
			Configuration: mcpSupport},
		{ID: 320002, AssetID: "mcp-support", Version: "1.0.1", Name: "MCP Support", Category: "MCP",
			Description: "Required first policy on every MCP server instance.", Technologies: flexOnly, MCPOnly: true,
			Configuration: mcpSupport},
		{ID: 320010, AssetID: "mcp-access-control", Version: "1.0.1", Name: "MCP Attribute-Based Access Control",
			Category: "MCP", Description: "Cedar rules over MCP calls.", Technologies: flexOnly, MCPOnly: true,
			Configuration: schema("mcp-access-control", "MCP Attribute-Based Access Control", map[string]any{
				"rules":    map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string"}},
				"authType": map[string]any{"type": "string", "enum": []string{"ClientId", "Other"}, "default": "ClientId"},
			}, "rules")},
		{ID: 320020, AssetID: "mcp-schema-validation", Version: "1.1.0", Name: "MCP Schema Validation",
			Category: "MCP", Description: "Validates requests against the MCP specification.", Technologies: flexOnly, MCPOnly: true,
			Configuration: schema("mcp-schema-validation", "MCP Schema Validation", map[string]any{
				"validateToolSchema": map[string]any{"type": "boolean", "default": false},
			})},
		{ID: 320030, AssetID: "mcp-global-access-policy", Version: "1.0.0", Name: "MCP Global Access",
			Category: "MCP", Description: "Allows or blocks tools, prompts and resources.", Technologies: flexOnly, MCPOnly: true,
			Configuration: schema("mcp-global-access-policy", "MCP Global Access", map[string]any{
				"rules": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "object"}},
			}, "rules")},
		{ID: 320040, AssetID: "mcp-tool-mapping", Version: "1.0.0", Name: "MCP Tool Mapping",
			Category: "MCP", Description: "Renames or re-describes tools.", Technologies: flexOnly, MCPOnly: true,
			Configuration: schema("mcp-tool-mapping", "MCP Tool Mapping", map[string]any{
				"toolMappings": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
				"logMappings":  map[string]any{"type": "boolean", "default": false},
			}, "toolMappings")},
		{ID: 320050, AssetID: "mcp-pii-detector", Version: "1.0.0", Name: "MCP PII Detector",
			Category: "MCP", Description: "Detects personal data in MCP traffic.", Technologies: flexOnly, MCPOnly: true,
			Configuration: schema("mcp-pii-detector", "MCP PII Detector", map[string]any{
				"entities": map[string]any{"type": "array", "minItems": 1, "items": map[string]any{
					"type": "string", "enum": []string{"Email", "Credit Card", "Phone Number", "US SSN"}}},
			}, "entities")},
		{ID: 320060, AssetID: "sse-logging", Version: "1.0.1", Name: "SSE Logging",
			Category: "Troubleshooting", Description: "Logs server-sent events.", Technologies: flexOnly,
			Configuration: schema("sse-logging", "SSE Logging", map[string]any{
				"logs": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
			}, "logs")},
	}
}

// corsSchema is the CORS template in its JSON Schema form (docs/architecture.md,
// "Anypoint: instances, deployments and policies"): origin groups are required, each with at least one origin, only when
// the resource is not public (if/then on publicResource). The top level is
// open, as in templates that leave additionalProperties out; a group is closed.
func corsSchema() json.RawMessage {
	return mustJSON(map[string]any{
		"$schema": "https://json-schema.org/draft/2019-09/schema", "$id": "cors", "title": "CORS", "type": "object",
		"properties": map[string]any{
			"publicResource":     map[string]any{"type": "boolean", "default": true},
			"supportCredentials": map[string]any{"type": "boolean", "default": false},
			"originGroups":       map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/originGroup"}},
		},
		"if":   map[string]any{"properties": map[string]any{"publicResource": map[string]any{"const": false}}, "required": []string{"publicResource"}},
		"then": map[string]any{"required": []string{"originGroups"}, "properties": map[string]any{"originGroups": map[string]any{"minItems": 1}}},
		"$defs": map[string]any{"originGroup": map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"origins"},
			"properties": map[string]any{
				"name":                map[string]any{"type": "string"},
				"origins":             map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string", "pattern": "^(https?://|\\*$)"}},
				"accessControlMaxAge": map[string]any{"type": "integer", "minimum": 0, "maximum": 86400, "default": 30},
				"allowedMethods": map[string]any{"type": "array", "items": map[string]any{
					"type": "object", "required": []string{"methodName", "isAllowed"},
					"properties": map[string]any{
						"methodName": map[string]any{"type": "string", "enum": []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}},
						"isAllowed":  map[string]any{"type": "boolean"},
					}}},
				"headers":        map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
				"exposedHeaders": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			},
		}},
	})
}

// jwtSchema is a newer JWT validation template in JSON Schema form: the key
// comes either from text (a secret) or from a JWKS URL, exactly one (oneOf).
func jwtSchema() json.RawMessage {
	return mustJSON(map[string]any{
		"$schema": "https://json-schema.org/draft/2019-09/schema", "$id": "jwt-validation", "title": "JWT Validation", "type": "object",
		"properties": map[string]any{
			"jwtOrigin":              map[string]any{"type": "string", "enum": []string{"httpBearerAuthenticationHeader", "customExpression"}, "default": "httpBearerAuthenticationHeader"},
			"jwtExpression":          map[string]any{"type": "string", "format": "dataweaveExpression", "default": "#[attributes.headers['jwt']]"},
			"signingMethod":          map[string]any{"type": "string", "enum": []string{"rsa", "hmac", "es", "none"}, "default": "rsa"},
			"signingKeyLength":       map[string]any{"type": "integer", "enum": []int{256, 384, 512}, "default": 256},
			"jwtKeyOrigin":           map[string]any{"type": "string", "enum": []string{"text", "jwks"}, "default": "text"},
			"textKey":                map[string]any{"type": "string", "format": "password", "writeOnly": true},
			"jwksUrl":                map[string]any{"type": "string", "format": "uri"},
			"jwksServiceTimeToLive":  map[string]any{"type": "integer", "minimum": 1, "default": 60},
			"skipClientIdValidation": map[string]any{"type": "boolean", "default": false},
			"validateAudClaim":       map[string]any{"type": "boolean", "default": false},
			"supportedAudiences":     map[string]any{"type": "string"},
		},
		"oneOf": []any{
			map[string]any{"title": "Text key", "required": []string{"textKey"}},
			map[string]any{"title": "JWKS", "required": []string{"jwksUrl"}},
		},
		"additionalProperties": false,
	})
}

// tokenRateLimitSchema is the A2A token rate limit with its properties split
// across allOf, as composed templates do; unevaluatedProperties closes it.
func tokenRateLimitSchema() json.RawMessage {
	return mustJSON(map[string]any{
		"$schema": "https://json-schema.org/draft/2019-09/schema", "$id": "a-two-a-token-rate-limit", "title": "A2A Token Rate Limit", "type": "object",
		"allOf": []any{
			map[string]any{"properties": map[string]any{
				"maximumTokens": map[string]any{"type": "integer", "minimum": 1},
				"keySelector":   map[string]any{"type": "string", "format": "dataweaveExpression", "default": "#[attributes.remoteAddress]"},
			}, "required": []string{"maximumTokens"}},
			map[string]any{"properties": map[string]any{
				"timePeriodInMilliseconds": map[string]any{"type": "integer", "minimum": 1000, "maximum": 86400000},
			}, "required": []string{"timePeriodInMilliseconds"}},
		},
		"unevaluatedProperties": false,
	})
}
