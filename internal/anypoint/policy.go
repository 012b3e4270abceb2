package anypoint

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// PolicyGroupID is the Exchange group of the policies MuleSoft ships.
const PolicyGroupID = "68ef9520-24e9-4cf2-b2f5-620025690913"

// PolicyTemplate is an Exchange policy template as the api-portal xapi lists
// it. Configuration is kept raw: a legacy array of property descriptors or a
// JSON Schema object, nil when absent.
type PolicyTemplate struct {
	ID            int64           `json:"id"`
	GroupID       string          `json:"groupId"`
	AssetID       string          `json:"assetId"`
	Version       string          `json:"version"`
	Name          string          `json:"name"`
	Description   string          `json:"description"`
	Category      string          `json:"category"`
	Type          string          `json:"type"`
	IsOOTB        bool            `json:"isOOTB"`
	Configuration json.RawMessage `json:"configuration"`
}

// UnmarshalJSON reads `version`, falling back to `assetVersion` (sources
// disagree on the name: docs/architecture.md, "Anypoint: instances,
// deployments and policies").
func (p *PolicyTemplate) UnmarshalJSON(b []byte) error {
	type plain PolicyTemplate
	aux := struct {
		*plain
		AssetVersion string `json:"assetVersion"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if p.Version == "" {
		p.Version = aux.AssetVersion
	}
	p.Configuration = rawOrNil(p.Configuration)
	return nil
}

// PolicyTemplateQuery filters ListPolicyTemplates. APIInstanceID keeps only
// the templates that fit that instance's gateway.
type PolicyTemplateQuery struct {
	APIInstanceID        int64
	EnvironmentID        string
	Latest               bool
	IncludeConfiguration bool
}

// ListPolicyTemplates lists Exchange policy templates (guide step 8). It uses
// the api-portal xapi, never the generic policy-templates endpoint, whose
// property names differ from what Flex Gateway accepts.
func (s *Session) ListPolicyTemplates(ctx context.Context, org string, q PolicyTemplateQuery) ([]PolicyTemplate, error) {
	v := url.Values{}
	if q.APIInstanceID != 0 {
		v.Set("apiInstanceId", strconv.FormatInt(q.APIInstanceID, 10))
	}
	if q.EnvironmentID != "" {
		v.Set("environmentId", q.EnvironmentID)
	}
	v.Set("latest", strconv.FormatBool(q.Latest))
	v.Set("includeConfiguration", strconv.FormatBool(q.IncludeConfiguration))
	r := &request{op: "listing policy templates", method: http.MethodGet,
		path: pathf(prefixAPIManagerX+"/organizations/%s/exchange-policy-templates", org), query: v}
	var list []PolicyTemplate
	if _, err := s.do(ctx, r, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// PolicyInput is the body of a policy create. ConfigurationData nil is sent
// as {} (what mcp-support takes); PointcutData nil applies to the whole API.
type PolicyInput struct {
	GroupID           string
	AssetID           string
	AssetVersion      string
	ConfigurationData map[string]any
	Order             *int
	PointcutData      any
	Disabled          bool
	Label             string
}

type policyBody struct {
	GroupID           string         `json:"groupId"`
	AssetID           string         `json:"assetId"`
	AssetVersion      string         `json:"assetVersion"`
	ConfigurationData map[string]any `json:"configurationData"`
	Order             *int           `json:"order,omitempty"`
	PointcutData      any            `json:"pointcutData"`
	Disabled          bool           `json:"disabled"`
	Label             string         `json:"label,omitempty"`
}

// PolicyPatch is a partial update of a policy; nil fields are left alone.
type PolicyPatch struct {
	ConfigurationData map[string]any  `json:"configurationData,omitempty"`
	AssetVersion      *string         `json:"assetVersion,omitempty"`
	Order             *int            `json:"order,omitempty"`
	Disabled          *bool           `json:"disabled,omitempty"`
	Label             *string         `json:"label,omitempty"`
	PointcutData      json.RawMessage `json:"pointcutData,omitempty"`
}

// Policy is a policy applied to an API instance. Ids are integers except
// policyTemplateId, a number the platform sends as a string (or a number).
type Policy struct {
	ID                int64           `json:"id"`
	PolicyTemplateID  string          `json:"policyTemplateId"`
	GroupID           string          `json:"groupId"`
	AssetID           string          `json:"assetId"`
	AssetVersion      string          `json:"assetVersion"`
	ConfigurationData map[string]any  `json:"configurationData"`
	Order             int             `json:"order"`
	Disabled          bool            `json:"disabled"`
	APIID             int64           `json:"apiId"`
	Label             string          `json:"label"`
	Type              string          `json:"type"`
	PointcutData      json.RawMessage `json:"pointcutData"`
}

// UnmarshalJSON accepts policyTemplateId as a string or a number, and the
// compact entry of a policy list without fullInfo=false (docs/architecture.md,
// "Anypoint: list shapes"): policyId for id, configuration for configurationData and
// template.{groupId, assetId, assetVersion} for the GAV.
func (p *Policy) UnmarshalJSON(b []byte) error {
	type plain Policy
	aux := struct {
		*plain
		PolicyTemplateID flexString     `json:"policyTemplateId"`
		PolicyID         int64          `json:"policyId"`
		Configuration    map[string]any `json:"configuration"`
		Template         *struct {
			GroupID      string `json:"groupId"`
			AssetID      string `json:"assetId"`
			AssetVersion string `json:"assetVersion"`
			Version      string `json:"version"`
		} `json:"template"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	p.PolicyTemplateID = string(aux.PolicyTemplateID)
	p.PointcutData = rawOrNil(p.PointcutData)
	if p.ID == 0 {
		p.ID = aux.PolicyID
	}
	if p.ConfigurationData == nil {
		p.ConfigurationData = aux.Configuration
	}
	if t := aux.Template; t != nil {
		if p.GroupID == "" {
			p.GroupID = t.GroupID
		}
		if p.AssetID == "" {
			p.AssetID = t.AssetID
		}
		if p.AssetVersion == "" {
			p.AssetVersion = t.AssetVersion
			if p.AssetVersion == "" {
				p.AssetVersion = t.Version
			}
		}
	}
	return nil
}

func (s *Session) policiesPath(org, env string, apiID int64) string {
	return s.apiPath(org, env, apiID) + "/policies"
}

func (s *Session) policyPath(org, env string, apiID, policyID int64) string {
	return s.policiesPath(org, env, apiID) + "/" + strconv.FormatInt(policyID, 10)
}

// CreatePolicy applies a policy to an API instance (guide step 9). Without
// allowDuplicated a second policy of the same asset is refused with 409.
func (s *Session) CreatePolicy(ctx context.Context, org, env string, apiID int64, in PolicyInput, allowDuplicated bool) (*Policy, error) {
	body := policyBody(in)
	if body.ConfigurationData == nil {
		body.ConfigurationData = map[string]any{}
	}
	var q url.Values
	if allowDuplicated {
		q = url.Values{"allowDuplicated": {"true"}}
	}
	r := &request{op: "applying policy", method: http.MethodPost,
		path: s.policiesPath(org, env, apiID), query: q, body: body}
	var p Policy
	if _, err := s.do(ctx, r, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListPolicies lists every policy of an instance, active and disabled. It
// always asks for fullInfo=false, the bare array of full policies; the bare
// array of compact entries and the {policies: [...]} envelope (what other
// fullInfo values give) are read too. An entry without an id is never taken
// for a policy: the answer is refused instead, since adopting and verifying
// policies depends on their ids.
func (s *Session) ListPolicies(ctx context.Context, org, env string, apiID int64) ([]Policy, error) {
	r := &request{op: "listing policies", method: http.MethodGet,
		path: s.policiesPath(org, env, apiID), query: url.Values{"fullInfo": {"false"}}}
	resp, err := s.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	var list []Policy
	if len(resp.body) > 0 && resp.body[0] == '{' {
		var env struct {
			Policies []Policy `json:"policies"`
		}
		if err := decode(r, resp, &env); err != nil {
			return nil, err
		}
		list = env.Policies
	} else if err := decode(r, resp, &list); err != nil {
		return nil, err
	}
	for i, p := range list {
		if p.ID == 0 {
			return nil, unexpectedBody(r, resp, fmt.Errorf("policy list entry %d has no id (id or policyId)", i))
		}
	}
	if list == nil {
		list = []Policy{}
	}
	return list, nil
}

// GetPolicy reads one policy.
func (s *Session) GetPolicy(ctx context.Context, org, env string, apiID, policyID int64) (*Policy, error) {
	r := &request{op: "reading policy", method: http.MethodGet, path: s.policyPath(org, env, apiID, policyID)}
	var p Policy
	if _, err := s.do(ctx, r, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// UpdatePolicy patches a policy.
func (s *Session) UpdatePolicy(ctx context.Context, org, env string, apiID, policyID int64, patch PolicyPatch) (*Policy, error) {
	r := &request{op: "updating policy", method: http.MethodPatch, path: s.policyPath(org, env, apiID, policyID), body: patch}
	var p Policy
	if _, err := s.do(ctx, r, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// DeletePolicy removes a policy from an instance.
func (s *Session) DeletePolicy(ctx context.Context, org, env string, apiID, policyID int64) error {
	r := &request{op: "deleting policy", method: http.MethodDelete, path: s.policyPath(org, env, apiID, policyID)}
	_, err := s.do(ctx, r, nil)
	return err
}
