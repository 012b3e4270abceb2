package anypoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Deployment states reported by DeploymentStatus.
const (
	DeploymentApplying = "applying"
	DeploymentApplied  = "applied"
	DeploymentFailed   = "failed"
	APIStatusActive    = "active"
)

// DeploymentInput is the flat deployment body of the proxies xapi. For HY the
// platform requires environmentId and gatewayVersion in the body, not only in
// the path; the nested `target` form must not be used for Flex.
type DeploymentInput struct {
	Type           string `json:"type"`
	EnvironmentID  string `json:"environmentId"`
	TargetID       string `json:"targetId"`
	TargetName     string `json:"targetName"`
	GatewayVersion string `json:"gatewayVersion"`
	Overwrite      bool   `json:"overwrite"`
	ExpectedStatus string `json:"expectedStatus,omitempty"`
}

// Deployment is a deployment of an API instance to a gateway target.
type Deployment struct {
	ID             int64  `json:"id"`
	APIID          int64  `json:"apiId"`
	Type           string `json:"type"`
	EnvironmentID  string `json:"environmentId"`
	TargetID       string `json:"targetId"`
	TargetName     string `json:"targetName"`
	GatewayVersion string `json:"gatewayVersion"`
	ExpectedStatus string `json:"expectedStatus"`
}

// UnmarshalJSON accepts targetId as a string or a number.
func (d *Deployment) UnmarshalJSON(b []byte) error {
	type plain Deployment
	aux := struct {
		*plain
		TargetID flexString `json:"targetId"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d.TargetID = string(aux.TargetID)
	return nil
}

// DeploymentStatus is the propagation state of a deployment. Gate on
// APIVersionStatus == "active": Status alone turns "applied" first.
type DeploymentStatus struct {
	Status           string  `json:"status"`
	APIVersionStatus string  `json:"apiVersionStatus"`
	LastActiveDate   *string `json:"lastActiveDate"`
}

// UnmarshalJSON accepts lastActiveDate as a string or an epoch number.
func (d *DeploymentStatus) UnmarshalJSON(b []byte) error {
	type plain DeploymentStatus
	aux := struct {
		*plain
		LastActiveDate *flexString `json:"lastActiveDate"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	d.LastActiveDate = nil
	if aux.LastActiveDate != nil && *aux.LastActiveDate != "" {
		s := string(*aux.LastActiveDate)
		d.LastActiveDate = &s
	}
	return nil
}

func (s *Session) deploymentsPath(org, env string, apiID int64) string {
	return pathf(prefixProxiesX+"/organizations/%s/environments/%s/apis/%s/deployments",
		org, env, strconv.FormatInt(apiID, 10))
}

// CreateDeployment deploys an API instance to a gateway target (guide step 6).
// A 409 means it is already deployed there: list before retrying.
func (s *Session) CreateDeployment(ctx context.Context, org, env string, apiID int64, in DeploymentInput) (*Deployment, error) {
	if in.Type == "" {
		in.Type = DeploymentTypeHybrid
	}
	r := &request{op: "deploying API instance", method: http.MethodPost,
		path: s.deploymentsPath(org, env, apiID), body: in}
	var d Deployment
	if _, err := s.do(ctx, r, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDeployments lists an instance's deployments. The shape is not
// documented (docs/architecture.md, "Anypoint: list shapes"): a bare array is expected, and an
// object holding one under items, deployments or data is accepted. The
// platform answers 404 when there are none yet, which is returned as empty.
// An answer that cannot be read is an error wrapping ErrUnexpectedBody, so
// the deploy step can go on to its POST, whose 409 settles the question.
func (s *Session) ListDeployments(ctx context.Context, org, env string, apiID int64) ([]Deployment, error) {
	r := &request{op: "listing deployments", method: http.MethodGet, path: s.deploymentsPath(org, env, apiID)}
	resp, err := s.do(ctx, r, nil)
	if err != nil {
		if ClassOf(err) == ClassNotFound {
			return []Deployment{}, nil
		}
		return nil, err
	}
	list, err := decodeDeploymentList(resp.body)
	if err != nil {
		return nil, unexpectedBody(r, resp, err)
	}
	for _, d := range list {
		if d.ID == 0 {
			return nil, unexpectedBody(r, resp, errors.New("a deployment in the list has no id"))
		}
	}
	return list, nil
}

func decodeDeploymentList(body []byte) ([]Deployment, error) {
	body = bytes.TrimSpace(body)
	list := []Deployment{}
	switch {
	case len(body) == 0 || bytes.Equal(body, []byte("null")):
		return list, nil
	case body[0] == '[':
		err := json.Unmarshal(body, &list)
		return list, err
	case body[0] == '{':
		var wrapped map[string]json.RawMessage
		if err := json.Unmarshal(body, &wrapped); err != nil {
			return nil, err
		}
		for _, key := range []string{"items", "deployments", "data"} {
			if raw, ok := wrapped[key]; ok {
				if err := json.Unmarshal(raw, &list); err != nil {
					return nil, err
				}
				if list == nil {
					list = []Deployment{}
				}
				return list, nil
			}
		}
		return nil, errors.New("an object without items, deployments or data")
	}
	return nil, errors.New("neither an array nor an object")
}

// GetDeployment reads one deployment.
func (s *Session) GetDeployment(ctx context.Context, org, env string, apiID, deploymentID int64) (*Deployment, error) {
	r := &request{op: "reading deployment", method: http.MethodGet,
		path: s.deploymentsPath(org, env, apiID) + "/" + strconv.FormatInt(deploymentID, 10)}
	var d Deployment
	if _, err := s.do(ctx, r, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ReplaceDeployment replaces a deployment with the flat body in (PUT
// .../deployments/{id}, 201): the proxies xapi's way to move a deployment to
// another target or gateway version. It has no DELETE on a deployment
// (docs/architecture.md, "Anypoint: instances, deployments and policies"),
// and a PUT keeps the deployment's id, so the
// instance is never left undeployed between a delete and a create. The spec
// gives the 201 no body; when the platform sends one it is returned, else nil.
func (s *Session) ReplaceDeployment(ctx context.Context, org, env string, apiID, deploymentID int64, in DeploymentInput) (*Deployment, error) {
	if in.Type == "" {
		in.Type = DeploymentTypeHybrid
	}
	r := &request{op: "replacing deployment", method: http.MethodPut,
		path: s.deploymentsPath(org, env, apiID) + "/" + strconv.FormatInt(deploymentID, 10), body: in}
	resp, err := s.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(resp.body)) == 0 {
		return nil, nil
	}
	var d Deployment
	if err := decode(r, resp, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// DeploymentStatus polls a deployment's propagation state.
func (s *Session) DeploymentStatus(ctx context.Context, org, env string, apiID, deploymentID int64) (*DeploymentStatus, error) {
	r := &request{op: "reading deployment status", method: http.MethodGet,
		path: s.deploymentsPath(org, env, apiID) + "/" + strconv.FormatInt(deploymentID, 10) + "/status"}
	var st DeploymentStatus
	if _, err := s.do(ctx, r, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
