package mcpguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Bounds of a request (issue 7). Every string the API
// stores has a maximum length and every free-form JSON value a maximum size,
// so one tenant cannot fill memory, the database or every later answer.
// openapi.yaml states the same numbers (maxLength, maxItems, maxProperties).
// Lengths count characters, as JSON Schema's maxLength does.
const (
	// MaxPolicies bounds how many policies one request may apply. Each policy
	// is one Anypoint call per attempt, and a portal never needs more than a
	// handful.
	MaxPolicies = 20
	// MaxNameLength bounds names, ids and labels of Anypoint objects
	// (organization, environment, target, group, asset, instance label).
	MaxNameLength = 255
	// MaxVersionLength bounds semantic versions.
	MaxVersionLength = 64
	// MaxDescriptionLength bounds the asset description sent to Exchange.
	MaxDescriptionLength = 4096
	// MaxURILength bounds upstream and proxy URIs.
	MaxURILength = 2048
	// MaxCredentialLength bounds each credential field; a bearer token may be
	// a long JWT.
	MaxCredentialLength = 4096
	// MaxConfigurationBytes bounds a policy configuration, measured as
	// compact JSON; an IP allow-list of a thousand ranges takes about 20 KiB.
	MaxConfigurationBytes = 64 << 10
	// MaxConfigurationMembers bounds the top-level members of a configuration.
	MaxConfigurationMembers = 100
	// MaxMetadataBytes bounds the MCP metadata, measured as compact JSON.
	MaxMetadataBytes = 256 << 10
	// MaxMetadataMembers bounds the top-level members of the metadata.
	MaxMetadataMembers = 100
)

// Exchange accepts lower-case asset ids made of letters, digits, dots,
// dashes and underscores; rejecting others here saves a failed publish later.
var assetIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.\-_]*$`)

// Semantic versions as Exchange stores them; a leading "v" is tolerated
// because portals often copy git tags.
var semverPattern = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// Validate checks a new protection before anything is stored. It returns every
// problem at once, each with the JSON path of the offending field, so a portal
// can show them all next to its form fields.
func (n *NewProtection) Validate() []FieldError {
	var v validator
	n.Request.validate(&v)
	if n.Credentials != nil {
		validateCredentials(&v, "credentials", n.Credentials)
	}
	return v.errs
}

// Validate checks a request without credentials; NewProtection.Validate calls it.
func (r *Request) Validate() []FieldError {
	var v validator
	r.validate(&v)
	return v.errs
}

// Validate checks the optional corrections of a retry. Every field is optional,
// but whatever is given must be as valid as in a new protection, because it
// replaces the stored input.
func (r *RetryInput) Validate() []FieldError {
	var v validator
	if r.Credentials != nil {
		validateCredentials(&v, "credentials", r.Credentials)
	}
	if r.Source != nil {
		validateSourceCorrection(&v, "source", r.Source)
	}
	if r.Environment != nil {
		validateRef(&v, "environment", r.Environment.ID, r.Environment.Name)
	}
	if r.Target != nil {
		validateTarget(&v, "target", r.Target)
	}
	if r.Instance != nil {
		validateInstance(&v, "instance", r.Instance, false)
	}
	if r.Policies != nil {
		validatePolicies(&v, "policies", r.Policies)
	}
	return v.errs
}

// validator collects field errors in the order the fields are checked.
type validator struct {
	errs []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// tooLong reports (and records) a string longer than max characters. The
// other checks of a field that is too long are skipped: they would quote it.
func (v *validator) tooLong(field, s string, max int) bool {
	if len(s) <= max || utf8.RuneCountInString(s) <= max {
		return false
	}
	v.add(field, "must be at most %d characters; got %d", max, utf8.RuneCountInString(s))
	return true
}

// jsonSize checks a free-form JSON object (a policy configuration, the MCP
// metadata) against a size in bytes of compact JSON and a number of top-level
// members.
func (v *validator) jsonSize(field string, compactBytes, members, maxBytes, maxMembers int) {
	switch {
	case members > maxMembers:
		v.add(field, "must have at most %d members; got %d", maxMembers, members)
	case compactBytes > maxBytes:
		v.add(field, "must be at most %d bytes of JSON (%d KiB); got %d", maxBytes, maxBytes>>10, compactBytes)
	}
}

func (r *Request) validate(v *validator) {
	switch {
	case v.tooLong("organizationId", r.OrganizationID, MaxNameLength):
	case r.OrganizationID != "" && strings.TrimSpace(r.OrganizationID) == "":
		v.add("organizationId", "must not be blank; omit it to use the organization of the credentials")
	}

	if r.Environment == nil {
		v.add("environment", `is required: give {"id": ...} or {"name": ...}`)
	} else {
		validateRef(v, "environment", r.Environment.ID, r.Environment.Name)
	}

	fromInstance := validateSource(v, "source", &r.Source)

	if r.Target != nil {
		validateTarget(v, "target", r.Target)
	} else if !fromInstance {
		v.add("target", `is required unless source is an instance: give {"id": ...} or {"name": ...}`)
	}

	if r.Instance != nil {
		validateInstance(v, "instance", r.Instance, !fromInstance)
	} else if !fromInstance {
		v.add("instance", "is required unless source is an instance: give upstreamUri and proxyUri")
	}

	switch r.OnFailure {
	case "", OnFailureUndeploy, OnFailureKeep:
	default:
		v.add("onFailure", "must be %q (the default: a protect that stops before its policies are applied takes its deployment off the gateway) or %q", OnFailureUndeploy, OnFailureKeep)
	}

	if r.Policies == nil {
		v.add("policies", "is required: give at least one policy")
	} else {
		validatePolicies(v, "policies", r.Policies)
	}
}

// validateSourceCorrection checks the source of a retry. Its members replace
// the stored source's one by one, so only what is given is checked here; the
// corrected request as a whole is validated again before it is stored.
func validateSourceCorrection(v *validator, path string, s *Source) {
	given := 0
	for _, set := range []bool{s.Spec != nil, s.Asset != nil, s.Instance != nil} {
		if set {
			given++
		}
	}
	if given != 1 {
		v.add(path, "must have exactly one of spec, asset or instance; got %d", given)
		return
	}
	if s.Spec != nil {
		p := path + ".spec"
		if s.Spec.AssetID != "" {
			validateAssetID(v, p+".assetId", s.Spec.AssetID, true)
		}
		switch {
		case v.tooLong(p+".version", s.Spec.Version, MaxVersionLength):
		case s.Spec.Version != "" && !semverPattern.MatchString(s.Spec.Version):
			v.add(p+".version", "must be a semantic version such as 1.0.0 or 1.2.0-beta.1; got %q", s.Spec.Version)
		}
		v.tooLong(p+".name", s.Spec.Name, MaxNameLength)
		v.tooLong(p+".groupId", s.Spec.GroupID, MaxNameLength)
		v.tooLong(p+".description", s.Spec.Description, MaxDescriptionLength)
		if len(s.Spec.Metadata) > 0 {
			if !isJSONObject(s.Spec.Metadata) {
				v.add(p+".metadata", "must be a JSON object")
			} else {
				size, members := rawObjectSize(s.Spec.Metadata)
				v.jsonSize(p+".metadata", size, members, MaxMetadataBytes, MaxMetadataMembers)
				validateMCPMetadata(v, p+".metadata", s.Spec.Metadata)
			}
		}
	}
	if a := s.Asset; a != nil {
		p := path + ".asset"
		v.tooLong(p+".groupId", a.GroupID, MaxNameLength)
		v.tooLong(p+".name", a.Name, MaxNameLength)
		v.tooLong(p+".version", a.Version, MaxVersionLength)
		if a.AssetID != "" {
			validateAssetID(v, p+".assetId", a.AssetID, true)
		}
	}
	if s.Instance != nil {
		v.tooLong(path+".instance.label", s.Instance.Label, MaxNameLength)
	}
}

// validateSource reports whether the source is an existing API instance,
// which relaxes what else the request must carry.
func validateSource(v *validator, path string, s *Source) (fromInstance bool) {
	given := 0
	for _, set := range []bool{s.Spec != nil, s.Asset != nil, s.Instance != nil} {
		if set {
			given++
		}
	}
	if given != 1 {
		v.add(path, "must have exactly one of spec, asset or instance; got %d", given)
		return s.Instance != nil && given == 1
	}
	switch {
	case s.Spec != nil:
		p := path + ".spec"
		validateAssetID(v, p+".assetId", s.Spec.AssetID, true)
		switch {
		case v.tooLong(p+".version", s.Spec.Version, MaxVersionLength):
		case s.Spec.Version == "":
			v.add(p+".version", "is required: a semantic version such as 1.0.0")
		case !semverPattern.MatchString(s.Spec.Version):
			v.add(p+".version", "must be a semantic version such as 1.0.0 or 1.2.0-beta.1; got %q", s.Spec.Version)
		}
		switch {
		case v.tooLong(p+".name", s.Spec.Name, MaxNameLength):
		case strings.TrimSpace(s.Spec.Name) == "":
			v.add(p+".name", "is required: the asset's display name in Exchange")
		}
		switch {
		case v.tooLong(p+".groupId", s.Spec.GroupID, MaxNameLength):
		case s.Spec.GroupID != "" && strings.TrimSpace(s.Spec.GroupID) == "":
			v.add(p+".groupId", "must not be blank; omit it to use the organization id")
		}
		v.tooLong(p+".description", s.Spec.Description, MaxDescriptionLength)
		if len(s.Spec.Metadata) > 0 {
			if !isJSONObject(s.Spec.Metadata) {
				v.add(p+".metadata", "must be a JSON object")
			} else {
				size, members := rawObjectSize(s.Spec.Metadata)
				v.jsonSize(p+".metadata", size, members, MaxMetadataBytes, MaxMetadataMembers)
				validateMCPMetadata(v, p+".metadata", s.Spec.Metadata)
			}
		}
	case s.Asset != nil:
		p := path + ".asset"
		a := s.Asset
		byCoordinates := a.GroupID != "" || a.AssetID != "" || a.Version != ""
		switch {
		case byCoordinates && a.Name != "":
			v.add(p, "must be either {groupId, assetId, version?} or {name}, not both")
		case a.Name != "":
			switch {
			case v.tooLong(p+".name", a.Name, MaxNameLength):
			case strings.TrimSpace(a.Name) == "":
				v.add(p+".name", "must not be blank")
			}
		case byCoordinates:
			if a.GroupID == "" {
				v.add(p+".groupId", "is required with assetId: the Exchange group (usually the organization id)")
			}
			v.tooLong(p+".groupId", a.GroupID, MaxNameLength)
			validateAssetID(v, p+".assetId", a.AssetID, true)
			switch {
			case v.tooLong(p+".version", a.Version, MaxVersionLength):
			case a.Version != "" && !semverPattern.MatchString(a.Version):
				v.add(p+".version", "must be a semantic version such as 1.0.0; got %q", a.Version)
			}
		default:
			v.add(p, "must be {groupId, assetId, version?} or {name}")
		}
	case s.Instance != nil:
		p := path + ".instance"
		i := s.Instance
		switch {
		case i.ID != 0 && i.Label != "":
			v.add(p, "must be either {id} or {label}, not both")
		case i.Label != "":
			switch {
			case v.tooLong(p+".label", i.Label, MaxNameLength):
			case strings.TrimSpace(i.Label) == "":
				v.add(p+".label", "must not be blank")
			}
		case i.ID < 0:
			v.add(p+".id", "must be a positive API instance id; got %d", i.ID)
		case i.ID == 0:
			v.add(p, "must be {id} (a positive API instance id) or {label}")
		}
		return true
	}
	return false
}

func validateAssetID(v *validator, path, id string, required bool) {
	switch {
	case v.tooLong(path, id, MaxNameLength):
	case id == "":
		if required {
			v.add(path, "is required: lower-case letters, digits, '.', '-' or '_', such as orders-mcp")
		}
	case !assetIDPattern.MatchString(id):
		v.add(path, "must start with a lower-case letter or digit and contain only lower-case letters, digits, '.', '-' or '_'; got %q", id)
	}
}

func validateRef(v *validator, path, id, name string) {
	switch {
	case v.tooLong(path+".id", id, MaxNameLength), v.tooLong(path+".name", name, MaxNameLength):
	case id != "" && name != "":
		v.add(path, "must have exactly one of id or name, not both")
	case id == "" && name == "":
		v.add(path, "must have exactly one of id or name")
	case id != "" && strings.TrimSpace(id) == "":
		v.add(path+".id", "must not be blank")
	case name != "" && strings.TrimSpace(name) == "":
		v.add(path+".name", "must not be blank")
	}
}

func validateTarget(v *validator, path string, t *TargetRef) {
	validateRef(v, path, t.ID, t.Name)
	switch {
	case v.tooLong(path+".gatewayVersion", t.GatewayVersion, MaxVersionLength):
	case t.GatewayVersion != "" && !semverPattern.MatchString(t.GatewayVersion):
		v.add(path+".gatewayVersion", "must be a Flex Gateway version such as 1.9.2; got %q", t.GatewayVersion)
	}
}

// validateInstance checks the API instance mcpguard creates. The URIs are
// required only when a new instance is created (not when starting from one).
func validateInstance(v *validator, path string, in *InstanceInput, required bool) {
	switch {
	case v.tooLong(path+".upstreamUri", in.UpstreamURI, MaxURILength):
	case in.UpstreamURI == "":
		if required {
			v.add(path+".upstreamUri", "is required: the MCP server's absolute http(s) URL, such as https://orders.internal/mcp")
		}
	case checkURL(in.UpstreamURI) != "":
		msg := checkURL(in.UpstreamURI)
		v.add(path+".upstreamUri", "%s, such as https://orders.internal/mcp", msg)
	}
	switch {
	case v.tooLong(path+".proxyUri", in.ProxyURI, MaxURILength):
	case in.ProxyURI == "":
		if required {
			v.add(path+".proxyUri", "is required: the gateway's listening URL, such as http://0.0.0.0:8081/orders")
		}
	case checkURL(in.ProxyURI) != "":
		msg := checkURL(in.ProxyURI)
		v.add(path+".proxyUri", "%s, such as http://0.0.0.0:8081/orders", msg)
	}
	switch {
	case v.tooLong(path+".label", in.Label, MaxNameLength):
	case in.Label != "" && strings.TrimSpace(in.Label) == "":
		v.add(path+".label", "must not be blank")
	}
}

// checkURL returns what is wrong with an endpoint URL, or "".
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "must be an absolute http or https URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an absolute http or https URL"
	}
	if u.Host == "" || u.Hostname() == "" {
		return "must be an absolute URL with a host"
	}
	return ""
}

func validatePolicies(v *validator, path string, policies []PolicyInput) {
	switch {
	case len(policies) == 0:
		v.add(path, "must have at least one policy")
		return
	case len(policies) > MaxPolicies:
		v.add(path, "must have at most %d policies; got %d", MaxPolicies, len(policies))
		return
	}
	seenOrder := map[int]int{}
	for i, p := range policies {
		pp := fmt.Sprintf("%s[%d]", path, i)
		validateAssetID(v, pp+".assetId", p.AssetID, true)
		switch {
		case v.tooLong(pp+".groupId", p.GroupID, MaxNameLength):
		case p.GroupID != "" && strings.TrimSpace(p.GroupID) == "":
			v.add(pp+".groupId", "must not be blank; omit it for MuleSoft's policy group")
		}
		if p.Configuration != nil {
			v.jsonSize(pp+".configuration", compactSize(p.Configuration), len(p.Configuration), MaxConfigurationBytes, MaxConfigurationMembers)
		}
		switch {
		case v.tooLong(pp+".version", p.Version, MaxVersionLength):
		case p.Version != "" && !semverPattern.MatchString(p.Version):
			v.add(pp+".version", "must be a semantic version such as 1.2.0; omit it for the latest; got %q", p.Version)
		}
		if p.Order != nil {
			if *p.Order < 1 {
				v.add(pp+".order", "must be 1 or more (1 is applied first); got %d", *p.Order)
			} else if j, dup := seenOrder[*p.Order]; dup {
				v.add(pp+".order", "must differ from policies[%d].order; both are %d", j, *p.Order)
			} else {
				seenOrder[*p.Order] = i
			}
		}
	}
}

// validateCredentials requires exactly one complete form, so a half-filled
// form is reported instead of silently falling back to the server's app.
func validateCredentials(v *validator, path string, c *Credentials) {
	token := c.Token != ""
	app := c.ClientID != "" || c.ClientSecret != ""
	user := c.Username != "" || c.Password != ""
	forms := 0
	for _, set := range []bool{token, app, user} {
		if set {
			forms++
		}
	}
	const expected = `{"token"}, {"clientId", "clientSecret"} or {"username", "password"}`
	long := false
	for _, f := range []struct{ name, value string }{
		{"token", c.Token}, {"clientId", c.ClientID}, {"clientSecret", c.ClientSecret}, {"username", c.Username}, {"password", c.Password},
	} {
		long = v.tooLong(path+"."+f.name, f.value, MaxCredentialLength) || long
	}
	switch {
	case long:
	case forms == 0:
		v.add(path, "must be one of %s; omit credentials to use the server's connected app", expected)
	case forms > 1:
		v.add(path, "must be exactly one of %s, not a mix", expected)
	case app:
		if c.ClientID == "" {
			v.add(path+".clientId", "is required with clientSecret")
		}
		if c.ClientSecret == "" {
			v.add(path+".clientSecret", "is required with clientId")
		}
	case user:
		if c.Username == "" {
			v.add(path+".username", "is required with password")
		}
		if c.Password == "" {
			v.add(path+".password", "is required with username")
		}
	}
}

// compactSize is the length of v encoded as compact JSON, the form it is
// stored and sent in.
func compactSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0 // decoded from JSON, so it encodes; nothing to bound otherwise
	}
	return len(b)
}

// rawObjectSize is the compact size and the number of top-level members of a
// JSON object given as text.
func rawObjectSize(raw json.RawMessage) (size, members int) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return len(raw), 0
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err == nil {
		members = len(top)
	}
	return buf.Len(), members
}

// isJSONObject reports whether raw JSON text is an object, skipping leading
// white space.
func isJSONObject(raw []byte) bool {
	for _, b := range raw {
		switch b {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// Validate checks the optional credentials of a DELETE.
func (u *UnprotectInput) Validate() []FieldError {
	var v validator
	if u.Credentials != nil {
		validateCredentials(&v, "credentials", u.Credentials)
	}
	return v.errs
}
