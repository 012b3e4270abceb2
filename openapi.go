package mcpguard

import _ "embed"

// OpenAPI is the API's contract, openapi.yaml, built into the binary so the
// server can serve the exact contract it implements at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
