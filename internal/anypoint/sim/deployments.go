package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

func deploymentJSON(d *deployment) map[string]any {
	return map[string]any{
		"id": d.id, "apiId": d.apiID, "type": d.typ, "environmentId": d.envID, "environmentName": nil,
		"targetId": d.targetID, "targetName": d.targetName, "gatewayVersion": d.gatewayVersion,
		"expectedStatus": d.expectedStatus, "applicationId": d.applicationID, "applicationName": nil,
		"deploymentId": nil, "updatedDate": isoTime(d.updatedAt),
		"audit": map[string]any{"created": map[string]any{"date": isoTime(d.createdAt)},
			"updated": map[string]any{"date": isoTime(d.updatedAt)}},
	}
}

// deployLocked applies the proxies-xapi deployment rules (docs/architecture.md,
// "Anypoint: instances, deployments and policies", and the guide's "Common
// issues") to in and records the deployment. On
// failure d is nil and status, name and msg say what to answer. Call with
// s.mu held.
func (s *Server) deployLocked(in *instance, env string, body map[string]json.RawMessage, now time.Time) (d *deployment, status int, name, msg string) {
	bad := func(m string) (*deployment, int, string, string) {
		return nil, http.StatusBadRequest, "BadRequestError", m
	}
	typ, ok := optString(body, "type")
	if !ok || typ == nil {
		return bad("Field type is required")
	}
	switch *typ {
	case "HY":
	case "CH", "RF", "CH2":
		if in.technology == "flexGateway" {
			return bad("Deployment type " + *typ + " is not supported for Flex Gateway APIs")
		}
		return bad("Deployment type " + *typ + " is not available in this environment")
	default:
		return bad("Invalid deployment type " + *typ)
	}
	envID, _ := optString(body, "environmentId")
	if envID == nil || *envID == "" {
		return bad("Field environmentId is required for deployment type HY")
	}
	version, _ := optString(body, "gatewayVersion")
	if version == nil || *version == "" {
		return bad("Field gatewayVersion is required for deployment type HY")
	}
	if *envID != env {
		return bad("Field environmentId does not match the environment of the API")
	}
	if !s.knownGatewayVersion(*version) {
		return bad("Policy implementations cannot be set because runtime version is unknown")
	}
	targetID := ""
	if raw, has := body["targetId"]; has && !isNull(raw) {
		// Some clients send the target id as a number; both are accepted.
		var str string
		var num json.Number
		if json.Unmarshal(raw, &str) == nil {
			targetID = str
		} else if json.Unmarshal(raw, &num) == nil {
			targetID = num.String()
		}
	}
	if targetID == "" {
		return bad("Field targetId is required for deployment type HY")
	}
	t := s.findTarget(in.orgID, env, targetID)
	if t == nil {
		return nil, http.StatusNotFound, "NotFoundError", "Target " + targetID + " not found"
	}
	if s.state.notReady[t.ID] > 0 {
		s.state.notReady[t.ID]--
		return nil, http.StatusBadRequest, "GatewayNotReadyError", "GatewayNotReadyError: gateway " + t.Name + " is not ready yet, try again later"
	}
	if other := s.portTakenLocked(t.ID, in); other != nil {
		return bad("Proxy must be deployed in a port that is available in the Managed Flex target. Port " + proxyPort(deref(in.proxyURI)) +
			" with base path " + proxyPath(deref(in.proxyURI)) + " is used by API " + strconv.FormatInt(other.id, 10))
	}
	overwrite := false
	if raw, has := body["overwrite"]; has && !isNull(raw) {
		_ = json.Unmarshal(raw, &overwrite)
	}
	expected := "deployed"
	if e, _ := optString(body, "expectedStatus"); e != nil && *e != "" {
		expected = *e
	}
	if old := s.state.deployments[in.deploymentID]; old != nil {
		if !overwrite {
			if old.targetID == t.ID {
				return nil, http.StatusConflict, "ConflictError", "API " + strconv.FormatInt(in.id, 10) + " is already deployed to target " + t.Name
			}
			return nil, http.StatusConflict, "ConflictError", "API " + strconv.FormatInt(in.id, 10) + " is already deployed to target " + old.targetName
		}
		d = old
	} else {
		s.state.nextDeployment++
		d = &deployment{id: s.state.nextDeployment, apiID: in.id, orgID: in.orgID, envID: env,
			applicationID: newUUID(), createdAt: now}
	}
	d.typ, d.targetID, d.targetName, d.gatewayVersion, d.expectedStatus = "HY", t.ID, t.Name, *version, expected
	d.connected = t.ConnectedMode
	d.updatedAt = now
	d.createdAt = now
	d.appliedAt = time.Time{}
	if s.targetStatusLocked(t) == "RUNNING" {
		d.appliedAt = now.Add(s.deploymentDelay)
	}
	s.state.deployments[d.id] = d
	in.deploymentID = d.id
	return d, 0, "", ""
}

// createDeployment serves POST /proxies/xapi/v1/.../apis/{id}/deployments with
// the flat HY body of the guide's step 6.
func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request, _ *caller) {
	body, ok := decodeObjectBody(w, r)
	if !ok {
		return
	}
	if _, has := body["type"]; !has {
		writeValidation(w, validationError{"/body", "must have required property 'type'", "required.openapi.validation"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instanceFor(r)
	if !found {
		writeAPINotFound(w, productProxies)
		return
	}
	d, status, name, msg := s.deployLocked(in, chi.URLParam(r, "env"), body, time.Now())
	if d == nil {
		writeError(w, productProxies, status, name, msg)
		return
	}
	writeJSON(w, http.StatusCreated, deploymentJSON(d))
}

// replaceDeployment serves PUT .../deployments/{depId}: the flat body of a
// create replaces the deployment, which keeps its id and propagates again. It
// is how a deployment moves to another target or gateway version (the proxies
// xapi has no DELETE on a deployment). The spec gives its 201 no body.
func (s *Server) replaceDeployment(w http.ResponseWriter, r *http.Request, _ *caller) {
	body, ok := decodeObjectBody(w, r)
	if !ok {
		return
	}
	if _, has := body["type"]; !has {
		writeValidation(w, validationError{"/body", "must have required property 'type'", "required.openapi.validation"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instanceFor(r)
	if !found {
		writeAPINotFound(w, productProxies)
		return
	}
	old, found := s.deploymentFor(r)
	if !found {
		writeError(w, productProxies, http.StatusNotFound, "", "Deployment not found")
		return
	}
	in.deploymentID = old.id
	body["overwrite"] = json.RawMessage("true")
	if d, status, name, msg := s.deployLocked(in, chi.URLParam(r, "env"), body, time.Now()); d == nil {
		writeError(w, productProxies, status, name, msg)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// listDeployments serves GET .../deployments as a bare array.
func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instanceFor(r)
	if !found {
		writeAPINotFound(w, productProxies)
		return
	}
	var deps []*deployment
	for _, d := range s.state.deployments {
		if d.apiID == in.id {
			deps = append(deps, d)
		}
	}
	sort.Slice(deps, func(i, j int) bool { return deps[i].id < deps[j].id })
	out := []map[string]any{}
	for _, d := range deps {
		out = append(out, deploymentJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deploymentFor(r *http.Request) (*deployment, bool) {
	in, ok := s.instanceFor(r)
	if !ok {
		return nil, false
	}
	id, ok := pathInt64(r, "depId")
	if !ok {
		return nil, false
	}
	d := s.state.deployments[id]
	if d == nil || d.apiID != in.id {
		return nil, false
	}
	return d, true
}

// getDeployment serves GET .../deployments/{depId}.
func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deploymentFor(r)
	if !ok {
		writeError(w, productProxies, http.StatusNotFound, "", "Deployment not found")
		return
	}
	writeJSON(w, http.StatusOK, deploymentJSON(d))
}

// deploymentStatus serves GET .../deployments/{depId}/status:
// {status, lastActiveDate, apiVersionStatus}.
func (s *Server) deploymentStatus(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deploymentFor(r)
	if !ok {
		writeError(w, productProxies, http.StatusNotFound, "", "Deployment not found")
		return
	}
	status, apiStatus := d.status(time.Now())
	var lastActive any
	if status == "applied" {
		lastActive = isoTime(d.appliedAt)
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "lastActiveDate": lastActive, "apiVersionStatus": ptrOrNil(apiStatus)})
}

// proxyPort and proxyPath split an instance's proxyUri into the listener port
// and base path a gateway target serves it on (defaults 80/443 and "/").
func proxyPort(proxyURI string) string {
	u, err := url.Parse(proxyURI)
	if err != nil {
		return ""
	}
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

func proxyPath(proxyURI string) string {
	u, err := url.Parse(proxyURI)
	if err != nil || u.Path == "" {
		return "/"
	}
	return u.Path
}

// apisOnTargetLocked lists the instances deployed to a target that listen on
// port and path ("" matches any). Call with s.mu held.
func (s *Server) apisOnTargetLocked(targetID, port, path string) []*instance {
	var out []*instance
	for _, d := range s.state.deployments {
		in := s.state.instances[d.apiID]
		if d.targetID != targetID || in == nil || in.deploymentID != d.id {
			continue
		}
		if (port == "" || proxyPort(deref(in.proxyURI)) == port) && (path == "" || proxyPath(deref(in.proxyURI)) == path) {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// portTakenLocked returns another instance deployed to the target on the
// same port and base path as in, or nil. The target allows port sharing,
// so only the pair conflicts. Call with s.mu held.
func (s *Server) portTakenLocked(targetID string, in *instance) *instance {
	if in.proxyURI == nil {
		return nil
	}
	for _, other := range s.apisOnTargetLocked(targetID, proxyPort(*in.proxyURI), proxyPath(*in.proxyURI)) {
		if other.id != in.id {
			return other
		}
	}
	return nil
}

// targetAPIs serves GET .../gateway-targets/{targetId}/apis?port=&path= (and
// the flex-gateway-targets twin): {instances, targetAllowsPortSharing} with
// port as a string (docs/architecture.md, "Anypoint: instances, deployments and policies").
func (s *Server) targetAPIs(w http.ResponseWriter, r *http.Request, _ *caller) {
	t := s.findTarget(chi.URLParam(r, "org"), chi.URLParam(r, "env"), chi.URLParam(r, "targetId"))
	if t == nil {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Target not found")
		return
	}
	q := r.URL.Query()
	path := q.Get("path")
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	instances := []map[string]any{}
	for _, in := range s.apisOnTargetLocked(t.ID, q.Get("port"), path) {
		instances = append(instances, map[string]any{"id": in.id, "port": proxyPort(deref(in.proxyURI)), "path": proxyPath(deref(in.proxyURI))})
	}
	writeJSON(w, http.StatusOK, map[string]any{"instances": instances, "targetAllowsPortSharing": true})
}
