package anypoint

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Environment is an Access Management environment of an organization.
type Environment struct {
	ID             string `json:"id"`
	OrganizationID string `json:"organizationId"`
	Name           string `json:"name"`
	IsProduction   bool   `json:"isProduction"`
	Type           string `json:"type"`
	ClientID       string `json:"clientId"`
}

// EnvironmentQuery filters ListEnvironments; Name matches exactly.
type EnvironmentQuery struct {
	Name string
}

// Paging bounds: page sizes are each API's maximum, and the page count is
// capped so a misbehaving server cannot keep us looping.
const (
	environmentPageSize = 500
	targetPageSize      = 100
	instancePageSize    = 100
	maxPages            = 50
)

// ListEnvironments returns every environment of org matching q, paging with
// offset/limit over the {data, total} envelope.
func (s *Session) ListEnvironments(ctx context.Context, org string, q EnvironmentQuery) ([]Environment, error) {
	var all []Environment
	for page, offset := 0, 0; page < maxPages; page++ {
		v := url.Values{}
		if q.Name != "" {
			v.Set("name", q.Name)
		}
		v.Set("offset", strconv.Itoa(offset))
		v.Set("limit", strconv.Itoa(environmentPageSize))
		r := &request{op: "listing environments", method: http.MethodGet,
			path: pathf(prefixAccounts+"/api/organizations/%s/environments", org), query: v}
		var body struct {
			Data  []Environment `json:"data"`
			Total int           `json:"total"`
		}
		if _, err := s.do(ctx, r, &body); err != nil {
			return nil, err
		}
		all = append(all, body.Data...)
		offset += len(body.Data)
		if len(body.Data) == 0 || len(body.Data) < environmentPageSize || offset >= body.Total {
			break
		}
	}
	return all, nil
}

// GatewayTarget is a gateway an API can be deployed to (api-portal xapi).
// ID is what deployments take as targetId; TargetID is a different cloud
// resource (the private space).
type GatewayTarget struct {
	ID             string `json:"id"`
	TargetID       string `json:"targetId"`
	Name           string `json:"name"`
	Kind           string `json:"kind"`
	Status         string `json:"status"`
	Ready          bool   `json:"ready"`
	Running        bool   `json:"running"`
	TargetType     string `json:"targetType"`
	Version        string `json:"version"`
	OrganizationID string `json:"organizationId"`
	EnvironmentID  string `json:"environmentId"`
	// The detail (GetGatewayTarget) may carry these as well.
	RuntimeVersion string           `json:"runtimeVersion"`
	Versions       []string         `json:"versions"`
	PublicURL      string           `json:"-"`
	Endpoints      []TargetEndpoint `json:"endpoints"`
	// Raw keeps the whole row or detail, whose shape is only partly documented.
	Raw json.RawMessage `json:"-"`
}

// TargetEndpoint is one URL a gateway target serves on.
type TargetEndpoint struct {
	URL    string `json:"url"`
	Access string `json:"access"`
}

// UnmarshalJSON decodes a target row or detail, tolerating ids sent as
// numbers and picking the public URL out of configuration.ingress.
func (t *GatewayTarget) UnmarshalJSON(b []byte) error {
	type plain GatewayTarget
	aux := struct {
		*plain
		ID            flexString `json:"id"`
		TargetID      flexString `json:"targetId"`
		Version       flexString `json:"version"`
		Configuration *struct {
			Ingress *struct {
				PublicURL string `json:"publicUrl"`
			} `json:"ingress"`
		} `json:"configuration"`
		DeploymentTarget *struct {
			RuntimeVersion     string `json:"runtimeVersion"`
			DeploymentSettings *struct {
				RuntimeVersion string `json:"runtimeVersion"`
			} `json:"deploymentSettings"`
		} `json:"deploymentTarget"`
	}{plain: (*plain)(t)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	t.ID, t.TargetID, t.Version = string(aux.ID), string(aux.TargetID), string(aux.Version)
	if aux.Configuration != nil && aux.Configuration.Ingress != nil {
		t.PublicURL = aux.Configuration.Ingress.PublicURL
	}
	if t.RuntimeVersion == "" && aux.DeploymentTarget != nil {
		t.RuntimeVersion = aux.DeploymentTarget.RuntimeVersion
		if t.RuntimeVersion == "" && aux.DeploymentTarget.DeploymentSettings != nil {
			t.RuntimeVersion = aux.DeploymentTarget.DeploymentSettings.RuntimeVersion
		}
	}
	t.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// IsRealVersion reports whether v names a runtime version rather than a
// placeholder such as "-" that target rows sometimes show.
func IsRealVersion(v string) bool {
	v = strings.TrimSpace(v)
	return v != "" && v != "-" && strings.ContainsAny(v, "0123456789")
}

// CompareVersions orders versions by Semantic Versioning precedence
// (1.10.0 after 1.9.3, 1.0.0-beta.10 after 1.0.0-beta.9, a pre-release
// before its release, build metadata ignored), using Masterminds/semver,
// which also reads the short forms Exchange and gateways show ("v1", "1.0").
// A version it cannot read ranks below every one it can; two such compare
// as strings, so the order stays total.
func CompareVersions(a, b string) int {
	va, errA := semver.NewVersion(strings.TrimSpace(a))
	vb, errB := semver.NewVersion(strings.TrimSpace(b))
	switch {
	case errA == nil && errB == nil:
		return va.Compare(vb)
	case errA == nil:
		return 1
	case errB == nil:
		return -1
	}
	return strings.Compare(a, b)
}

// GatewayVersion returns the best runtime version the target states: its
// runtimeVersion, its version, or the newest of its versions; "" when none is
// a real version.
func (t *GatewayTarget) GatewayVersion() string {
	if IsRealVersion(t.RuntimeVersion) {
		return t.RuntimeVersion
	}
	if IsRealVersion(t.Version) {
		return t.Version
	}
	for i := len(t.Versions) - 1; i >= 0; i-- {
		if IsRealVersion(t.Versions[i]) {
			return t.Versions[i]
		}
	}
	return ""
}

// Usable reports whether the target can take a deployment now.
func (t *GatewayTarget) Usable() bool {
	return t.Ready && t.Running && strings.EqualFold(t.Status, "RUNNING")
}

// TargetQuery filters ListGatewayTargets.
type TargetQuery struct {
	Name string
}

// ListGatewayTargets returns every gateway target of an environment, paging
// with pageNumber/pageSize over the {rows, totalElements, totalPages}
// envelope. The platform may answer fewer rows than asked for (the live page
// size is 20 whatever we ask; docs/architecture.md, "Anypoint: list shapes"), so paging goes on until the totals say
// the list is complete, not until a short page. The older {data, total}
// envelope is accepted too.
func (s *Session) ListGatewayTargets(ctx context.Context, org, env string, q TargetQuery) ([]GatewayTarget, error) {
	var all []GatewayTarget
	for page := 0; page < maxPages; page++ {
		v := url.Values{}
		if q.Name != "" {
			v.Set("name", q.Name)
		}
		v.Set("pageNumber", strconv.Itoa(page))
		v.Set("pageSize", strconv.Itoa(targetPageSize))
		r := &request{op: "listing gateway targets", method: http.MethodGet,
			path: pathf(prefixAPIManagerX+"/organizations/%s/environments/%s/gateway-targets", org, env), query: v}
		var body struct {
			Rows          []GatewayTarget `json:"rows"`
			Data          []GatewayTarget `json:"data"`
			TotalPages    int             `json:"totalPages"`
			TotalElements int             `json:"totalElements"`
			PageSize      int             `json:"pageSize"`
			Total         int             `json:"total"`
		}
		if _, err := s.do(ctx, r, &body); err != nil {
			return nil, err
		}
		if body.Rows == nil && body.Data != nil {
			// The {total, data} form has no paging fields we can trust.
			all = append(all, body.Data...)
			break
		}
		all = append(all, body.Rows...)
		if !moreTargetPages(len(body.Rows), len(all), page, body.TotalElements, body.TotalPages, body.PageSize) {
			break
		}
	}
	return all, nil
}

// moreTargetPages decides from the totals whether another page exists. An
// empty page always ends the list; without totals, a page shorter than the
// size the platform says it used (or the size we asked for) does.
func moreTargetPages(rows, seen, page, totalElements, totalPages, pageSize int) bool {
	switch {
	case rows == 0:
		return false
	case totalElements > 0:
		return seen < totalElements
	case totalPages > 0:
		return page+1 < totalPages
	}
	if pageSize <= 0 {
		pageSize = targetPageSize
	}
	return rows >= pageSize
}

// GetGatewayTarget reads one target's detail, which may carry the runtime
// version when the list row shows "-" (see GatewayTarget.GatewayVersion).
func (s *Session) GetGatewayTarget(ctx context.Context, org, env, targetID string) (*GatewayTarget, error) {
	r := &request{op: "reading gateway target", method: http.MethodGet,
		path: pathf(prefixAPIManagerX+"/organizations/%s/environments/%s/gateway-targets/%s", org, env, targetID)}
	var t GatewayTarget
	if _, err := s.do(ctx, r, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// TargetAPI is an API instance listening on a gateway target. Port is a
// string in the platform's answer (docs/architecture.md, "Anypoint: instances, deployments and policies").
type TargetAPI struct {
	ID   int64  `json:"id"`
	Port string `json:"-"`
	Path string `json:"path"`
}

// UnmarshalJSON accepts the port as a string or a number.
func (a *TargetAPI) UnmarshalJSON(b []byte) error {
	type plain TargetAPI
	aux := struct {
		*plain
		Port flexString `json:"port"`
	}{plain: (*plain)(a)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	a.Port = string(aux.Port)
	return nil
}

// TargetAPIs is what listens on a gateway target's port and path.
type TargetAPIs struct {
	Instances               []TargetAPI `json:"instances"`
	TargetAllowsPortSharing bool        `json:"targetAllowsPortSharing"`
}

// TargetAPIs asks a gateway target which API instances listen on port and
// path ("" for any), to find a taken listener before deploying.
func (s *Session) TargetAPIs(ctx context.Context, org, env, targetID, port, path string) (*TargetAPIs, error) {
	v := url.Values{}
	if port != "" {
		v.Set("port", port)
	}
	if path != "" {
		v.Set("path", path)
	}
	r := &request{op: "listing the APIs of a gateway target", method: http.MethodGet,
		path:  pathf(prefixAPIManagerX+"/organizations/%s/environments/%s/gateway-targets/%s/apis", org, env, targetID),
		query: v}
	var out TargetAPIs
	if _, err := s.do(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
