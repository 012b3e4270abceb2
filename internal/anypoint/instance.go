package anypoint

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
)

// Values the guide uses for a Flex (Omni) Gateway MCP instance.
const (
	TechnologyFlexGateway = "flexGateway"
	DeploymentTypeHybrid  = "HY"
	EndpointTypeMCP       = "mcp"
	FamilyAgentic         = "agentic"
)

// APIInstanceInput is what CreateAPIInstance sends.
type APIInstanceInput struct {
	GroupID, AssetID, AssetVersion string
	InstanceLabel                  string
	// Technology defaults to flexGateway; the platform's own default (mule3)
	// is wrong for MCP servers.
	Technology string
	// EndpointType is sent as endpoint.type when set ("mcp" for MCP servers).
	EndpointType string
	// UpstreamURI is endpoint.uri, the MCP server behind the gateway.
	UpstreamURI string
	// ProxyURI is endpoint.proxyUri, the gateway listener.
	ProxyURI string
	// DeploymentType defaults to HY (Flex Gateway).
	DeploymentType string
}

// apiInstanceBody is the create body. endpoint.uri, endpoint.proxyUri and
// endpoint.isCloudHub must be present as keys; isCloudHub must be null for
// flexGateway (false is rejected), so it has no omitempty and no value.
type apiInstanceBody struct {
	Technology    string       `json:"technology"`
	InstanceLabel *string      `json:"instanceLabel,omitempty"`
	Spec          specBody     `json:"spec"`
	Endpoint      endpointBody `json:"endpoint"`
}

type specBody struct {
	GroupID string `json:"groupId"`
	AssetID string `json:"assetId"`
	Version string `json:"version"`
}

type endpointBody struct {
	Type           string  `json:"type,omitempty"`
	DeploymentType string  `json:"deploymentType,omitempty"`
	URI            *string `json:"uri"`
	ProxyURI       *string `json:"proxyUri"`
	IsCloudHub     *bool   `json:"isCloudHub"`
}

// Endpoint is an API instance's endpoint.
type Endpoint struct {
	Type              string `json:"type"`
	URI               string `json:"uri"`
	ProxyURI          string `json:"proxyUri"`
	DeploymentType    string `json:"deploymentType"`
	IsCloudHub        *bool  `json:"isCloudHub"`
	APIGatewayVersion string `json:"apiGatewayVersion"`
}

// InstanceDeployment is the deployment block embedded in an API instance;
// it has the shape of a proxies-xapi deployment.
type InstanceDeployment = Deployment

// APIInstance is an API Manager instance ("environment API"); its id is an
// integer.
type APIInstance struct {
	ID                        int64               `json:"id"`
	OrganizationID            string              `json:"organizationId"`
	EnvironmentID             string              `json:"environmentId"`
	GroupID                   string              `json:"groupId"`
	AssetID                   string              `json:"assetId"`
	AssetVersion              string              `json:"assetVersion"`
	ProductVersion            string              `json:"productVersion"`
	InstanceLabel             string              `json:"instanceLabel"`
	Technology                string              `json:"technology"`
	Status                    string              `json:"status"`
	AutodiscoveryInstanceName string              `json:"autodiscoveryInstanceName"`
	EndpointURI               string              `json:"endpointUri"`
	Endpoint                  *Endpoint           `json:"endpoint"`
	Deployment                *InstanceDeployment `json:"deployment"`
}

// UnmarshalJSON reads the instance id from `id`, falling back to `apiId`
// (the name promoteApi.yaml uses for the create answer; docs/architecture.md,
// "Anypoint: instances, deployments and policies").
func (a *APIInstance) UnmarshalJSON(b []byte) error {
	type plain APIInstance
	aux := struct {
		*plain
		APIID int64 `json:"apiId"`
	}{plain: (*plain)(a)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if a.ID == 0 {
		a.ID = aux.APIID
	}
	return nil
}

func (s *Session) apisPath(org, env string) string {
	return pathf(prefixAPIManager+"/organizations/%s/environments/%s/apis", org, env)
}

func (s *Session) apiPath(org, env string, id int64) string {
	return s.apisPath(org, env) + "/" + strconv.FormatInt(id, 10)
}

// CreateAPIInstance creates an API Manager instance for an Exchange asset
// (guide step 5), without deploying it.
func (s *Session) CreateAPIInstance(ctx context.Context, org, env string, in APIInstanceInput) (*APIInstance, error) {
	body := apiInstanceBody{
		Technology: in.Technology,
		Spec:       specBody{GroupID: in.GroupID, AssetID: in.AssetID, Version: in.AssetVersion},
		Endpoint: endpointBody{
			Type:           in.EndpointType,
			DeploymentType: in.DeploymentType,
			URI:            nullable(in.UpstreamURI),
			ProxyURI:       nullable(in.ProxyURI),
		},
	}
	if body.Technology == "" {
		body.Technology = TechnologyFlexGateway
	}
	if body.Endpoint.DeploymentType == "" {
		body.Endpoint.DeploymentType = DeploymentTypeHybrid
	}
	if in.InstanceLabel != "" {
		body.InstanceLabel = &in.InstanceLabel
	}
	r := &request{op: "creating API instance", method: http.MethodPost, path: s.apisPath(org, env), body: body}
	var inst APIInstance
	resp, err := s.do(ctx, r, &inst)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && errors.Is(err, ErrUnexpectedBody) {
			// The platform said 2xx: the instance exists, we just cannot read it.
			ae.MaybeCommitted = true
		}
		return nil, err
	}
	if inst.ID == 0 {
		// A zero id is never an id: the instance was made, look it up.
		e := unexpectedBody(r, resp, errors.New("the create answer carries no instance id (id or apiId)"))
		e.MaybeCommitted = true
		return nil, e
	}
	return &inst, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// GetAPIInstance reads one API instance.
func (s *Session) GetAPIInstance(ctx context.Context, org, env string, id int64) (*APIInstance, error) {
	r := &request{op: "reading API instance", method: http.MethodGet, path: s.apiPath(org, env, id)}
	var inst APIInstance
	if _, err := s.do(ctx, r, &inst); err != nil {
		return nil, err
	}
	return &inst, nil
}

// InstanceQuery filters ListAPIInstances; Family "agentic" selects MCP servers
// and agents.
type InstanceQuery struct {
	Family        string
	GroupID       string
	AssetID       string
	AssetVersion  string
	InstanceLabel string
}

// ListAPIInstances returns every instance matching q, flattening the
// assets[].apis[] envelope. offset/limit count assets, not instances.
func (s *Session) ListAPIInstances(ctx context.Context, org, env string, q InstanceQuery) ([]APIInstance, error) {
	var all []APIInstance
	for page, offset := 0, 0; page < maxPages; page++ {
		v := url.Values{}
		for k, val := range map[string]string{
			"family": q.Family, "groupId": q.GroupID, "assetId": q.AssetID,
			"assetVersion": q.AssetVersion, "instanceLabel": q.InstanceLabel,
		} {
			if val != "" {
				v.Set(k, val)
			}
		}
		v.Set("offset", strconv.Itoa(offset))
		v.Set("limit", strconv.Itoa(instancePageSize))
		r := &request{op: "listing API instances", method: http.MethodGet, path: s.apisPath(org, env), query: v}
		var body struct {
			Total  int `json:"total"`
			Assets []struct {
				GroupID string        `json:"groupId"`
				AssetID string        `json:"assetId"`
				APIs    []APIInstance `json:"apis"`
			} `json:"assets"`
		}
		if _, err := s.do(ctx, r, &body); err != nil {
			return nil, err
		}
		for _, a := range body.Assets {
			for _, inst := range a.APIs {
				if inst.GroupID == "" {
					inst.GroupID = a.GroupID
				}
				if inst.AssetID == "" {
					inst.AssetID = a.AssetID
				}
				all = append(all, inst)
			}
		}
		offset += len(body.Assets)
		if len(body.Assets) < instancePageSize || offset >= body.Total {
			break
		}
	}
	return all, nil
}

// DeleteAPIInstance deletes an API instance (and removes it from the gateway).
func (s *Session) DeleteAPIInstance(ctx context.Context, org, env string, id int64) error {
	r := &request{op: "deleting API instance", method: http.MethodDelete, path: s.apiPath(org, env, id)}
	_, err := s.do(ctx, r, nil)
	return err
}

// APIInstancePatch is a partial update of an API instance; empty members are
// left as they are.
type APIInstancePatch struct {
	// AssetVersion re-points the instance at another version of its asset.
	AssetVersion string
	// UpstreamURI is endpoint.uri, the MCP server behind the gateway.
	UpstreamURI string
	// ProxyURI is endpoint.proxyUri, the gateway listener.
	ProxyURI string
}

// UpdateAPIInstance patches an instance (PATCH .../apis/{id}, 200 with the
// instance). Only the members set in p are sent.
func (s *Session) UpdateAPIInstance(ctx context.Context, org, env string, id int64, p APIInstancePatch) (*APIInstance, error) {
	body := map[string]any{}
	if p.AssetVersion != "" {
		body["assetVersion"] = p.AssetVersion
	}
	endpoint := map[string]any{}
	if p.UpstreamURI != "" {
		endpoint["uri"] = p.UpstreamURI
	}
	if p.ProxyURI != "" {
		endpoint["proxyUri"] = p.ProxyURI
	}
	if len(endpoint) > 0 {
		body["endpoint"] = endpoint
	}
	r := &request{op: "updating API instance", method: http.MethodPatch, path: s.apiPath(org, env, id), body: body}
	var inst APIInstance
	if _, err := s.do(ctx, r, &inst); err != nil {
		return nil, err
	}
	return &inst, nil
}
