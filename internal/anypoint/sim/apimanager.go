package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// listEnvironments serves GET /accounts/api/organizations/{org}/environments
// as {data, total}.
func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request, _ *caller) {
	org := chi.URLParam(r, "org")
	q := r.URL.Query()
	offset, limit, ok := pageParams(q.Get("offset"), q.Get("limit"), 25, 500)
	if !ok {
		writeError(w, productAccounts, http.StatusBadRequest, "", "offset must be >= 0 and limit between 1 and 500")
		return
	}
	var matched []FixtureEnv
	for _, e := range s.fixtures.Environments {
		if e.OrganizationID != org {
			continue
		}
		if n := q.Get("name"); n != "" && e.Name != n {
			continue
		}
		if t := q.Get("type"); t != "" && e.Type != t {
			continue
		}
		if p := q.Get("isProduction"); p != "" && strconv.FormatBool(e.IsProduction) != p {
			continue
		}
		if sr := strings.ToLower(q.Get("search")); sr != "" && !strings.Contains(strings.ToLower(e.Name), sr) {
			continue
		}
		matched = append(matched, e)
	}
	data := []map[string]any{}
	for i := offset; i < len(matched) && len(data) < limit; i++ {
		e := matched[i]
		data = append(data, map[string]any{"id": e.ID, "organizationId": e.OrganizationID, "name": e.Name,
			"isProduction": e.IsProduction, "type": e.Type, "clientId": e.ClientID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "total": len(matched)})
}

func (s *Server) findTarget(org, env, id string) *FixtureTarget {
	for i := range s.fixtures.Targets {
		t := &s.fixtures.Targets[i]
		if t.ID == id && t.OrganizationID == org && t.EnvironmentID == env {
			return t
		}
	}
	return nil
}

func (s *Server) knownGatewayVersion(v string) bool {
	for _, k := range s.fixtures.GatewayVersions {
		if k == v {
			return true
		}
	}
	return false
}

// targetStatusLocked is the target's status: the last SetTargetStatus, else
// the fixture's.
func (s *Server) targetStatusLocked(t *FixtureTarget) string {
	if st, ok := s.state.targetStatus[t.ID]; ok {
		return st
	}
	return t.Status
}

// SetTargetStatus changes a gateway target's status (RUNNING, NOT_RUNNING),
// as starting or stopping its Flex Gateway replicas would. Deployments
// waiting on a target that starts running apply after the deployment delay.
// It reports whether a target has that id.
func (s *Server) SetTargetStatus(id, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for i := range s.fixtures.Targets {
		found = found || s.fixtures.Targets[i].ID == id
	}
	if !found {
		return false
	}
	s.state.targetStatus[id] = status
	if status == "RUNNING" {
		now := time.Now()
		for _, d := range s.state.deployments {
			if d.targetID == id && d.appliedAt.IsZero() {
				d.appliedAt = now.Add(s.deploymentDelay)
			}
		}
	}
	return true
}

func targetRow(t *FixtureTarget, status string) map[string]any {
	running := status == "RUNNING"
	return map[string]any{
		"id": t.ID, "targetId": t.TargetID, "name": t.Name, "kind": t.Kind, "status": status,
		"ready": running, "running": running, "targetType": t.TargetType, "version": t.RowVersion,
		"deploymentTarget": map[string]any{"id": t.TargetID, "name": t.Name, "type": t.TargetType},
	}
}

// maxTargetPageSize caps gateway-targets pages as the live platform does.
const maxTargetPageSize = 20

// listTargets serves the api-portal xapi gateway-targets list in its live
// {rows, totalElements, pageSize, pageNumber, totalPages} form.
func (s *Server) listTargets(w http.ResponseWriter, r *http.Request, _ *caller) {
	org, env := chi.URLParam(r, "org"), chi.URLParam(r, "env")
	q := r.URL.Query()
	pageNumber, pageSize := 0, 20
	var err error
	if v := q.Get("pageNumber"); v != "" {
		if pageNumber, err = strconv.Atoi(v); err != nil || pageNumber < 0 {
			writeValidation(w, validationError{"/query/pageNumber", "must be >= 0", "minimum.openapi.validation"})
			return
		}
	}
	if v := q.Get("pageSize"); v != "" {
		if pageSize, err = strconv.Atoi(v); err != nil || pageSize < 1 {
			writeValidation(w, validationError{"/query/pageSize", "must be >= 1", "minimum.openapi.validation"})
			return
		}
	}
	// The live platform answered pages of 20 (docs/architecture.md, "Anypoint: list shapes"): a
	// larger pageSize is capped, and the answer says which size was used.
	pageSize = min(pageSize, maxTargetPageSize)
	if !s.envExists(org, env) {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Environment not found")
		return
	}
	var matched []*FixtureTarget
	statuses := map[string]string{}
	s.mu.Lock()
	for i := range s.fixtures.Targets {
		statuses[s.fixtures.Targets[i].ID] = s.targetStatusLocked(&s.fixtures.Targets[i])
	}
	s.mu.Unlock()
	for i := range s.fixtures.Targets {
		t := &s.fixtures.Targets[i]
		if t.OrganizationID != org || t.EnvironmentID != env {
			continue
		}
		if n := strings.ToLower(q.Get("name")); n != "" && !strings.Contains(strings.ToLower(t.Name), n) {
			continue
		}
		if k := q.Get("kind"); k != "" && !strings.EqualFold(k, t.Kind) {
			continue
		}
		if x := q.Get("excludeStatus"); x != "" && strings.EqualFold(x, statuses[t.ID]) {
			continue
		}
		matched = append(matched, t)
	}
	rows := []map[string]any{}
	for i := pageNumber * pageSize; i < len(matched) && len(rows) < pageSize; i++ {
		rows = append(rows, targetRow(matched[i], statuses[matched[i].ID]))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"rows": rows, "totalElements": len(matched), "pageSize": pageSize, "pageNumber": pageNumber,
		"totalPages": (len(matched) + pageSize - 1) / pageSize,
	})
}

// getTarget serves one gateway target with its real runtime version, also
// when the list row shows "-".
func (s *Server) getTarget(w http.ResponseWriter, r *http.Request, _ *caller) {
	t := s.findTarget(chi.URLParam(r, "org"), chi.URLParam(r, "env"), chi.URLParam(r, "targetId"))
	if t == nil {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Target not found")
		return
	}
	s.mu.Lock()
	status := s.targetStatusLocked(t)
	s.mu.Unlock()
	body := targetRow(t, status)
	body["version"] = t.RuntimeVersion
	body["versions"] = []string{t.RuntimeVersion}
	body["runtimeVersion"] = t.RuntimeVersion
	body["organizationId"] = t.OrganizationID
	body["environmentId"] = t.EnvironmentID
	body["configuration"] = map[string]any{"ingress": map[string]any{"publicUrl": t.PublicURL}}
	body["endpoints"] = []map[string]any{{"url": t.PublicURL, "access": "external"}}
	writeJSON(w, http.StatusOK, body)
}

// flexTargetRow is a target in the older flex-gateway-targets form (docs/architecture.md, "Anypoint: list shapes"):
// replicas counted by state, tags and lastUpdate; the detail adds versions.
func flexTargetRow(t *FixtureTarget) map[string]any {
	connected := 0
	if t.Status == "RUNNING" {
		connected = 1
	}
	return map[string]any{
		"organizationId": t.OrganizationID, "id": t.ID, "name": t.Name,
		"status": t.Status, "replicas": map[string]any{"CONNECTED": connected, "DISCONNECTED": 1 - connected},
		"tags": []string{}, "lastUpdate": isoTime(time.Now().Add(-time.Hour)),
	}
}

// listFlexTargets serves GET .../flex-gateway-targets: a bare array of the
// environment's targets.
func (s *Server) listFlexTargets(w http.ResponseWriter, r *http.Request, _ *caller) {
	org, env := chi.URLParam(r, "org"), chi.URLParam(r, "env")
	if !s.envExists(org, env) {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Environment not found")
		return
	}
	out := []map[string]any{}
	for i := range s.fixtures.Targets {
		if t := &s.fixtures.Targets[i]; t.OrganizationID == org && t.EnvironmentID == env {
			out = append(out, flexTargetRow(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// getFlexTarget serves GET .../flex-gateway-targets/{id} with its runtime
// version as version and versions.
func (s *Server) getFlexTarget(w http.ResponseWriter, r *http.Request, _ *caller) {
	t := s.findTarget(chi.URLParam(r, "org"), chi.URLParam(r, "env"), chi.URLParam(r, "targetId"))
	if t == nil {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Target not found")
		return
	}
	body := flexTargetRow(t)
	status, count := "CONNECTED", 1
	if t.Status != "RUNNING" {
		status = "DISCONNECTED"
	}
	body["replicas"] = []map[string]any{{"status": status, "count": count, "certificateExpirationDates": []string{}}}
	body["versions"] = []string{t.RuntimeVersion}
	body["version"] = t.RuntimeVersion
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) envExists(org, env string) bool {
	for _, e := range s.fixtures.Environments {
		if e.ID == env && e.OrganizationID == org {
			return true
		}
	}
	return false
}

// instanceJSON is the API instance as create, GET and PATCH return it
// (docs/architecture.md, "Anypoint: instances, deployments and policies").
// Call with s.mu held.
func (s *Server) instanceJSON(in *instance, now time.Time) map[string]any {
	var dep any
	gatewayVersion := any(nil)
	if d := s.state.deployments[in.deploymentID]; d != nil {
		dep = deploymentJSON(d)
		gatewayVersion = d.gatewayVersion
	}
	var endpointURI, description any
	if in.endpointURI != nil {
		endpointURI = *in.endpointURI
	}
	if in.description != nil {
		description = *in.description
	}
	status := s.instanceStatus(in, now)
	var lastActive any
	if status == "active" {
		lastActive = isoTime(s.state.deployments[in.deploymentID].appliedAt)
	}
	return map[string]any{
		"id": in.id, "masterOrganizationId": in.orgID, "organizationId": in.orgID, "environmentId": in.envID,
		"groupId": in.groupID, "assetId": in.assetID, "assetVersion": in.assetVersion,
		"productVersion": in.productVersion, "instanceLabel": nullable(in.instanceLabel),
		"description": description, "tags": []string{}, "order": 1, "providerId": nil, "deprecated": false,
		"lastActiveDate": lastActive, "endpointUri": endpointURI, "isPublic": false, "stage": "release",
		"technology": in.technology, "approvalMethod": nil, "status": status,
		"autodiscoveryInstanceName": in.productVersion + ":" + strconv.FormatInt(in.id, 10),
		"audit": map[string]any{"created": map[string]any{"date": isoTime(in.createdAt)},
			"updated": map[string]any{"date": isoTime(in.updatedAt)}},
		"endpoint": map[string]any{
			"id": in.endpointID, "type": ptrOrNil(in.endpointType), "uri": ptrOrNil(in.uri),
			"apiGatewayVersion": gatewayVersion, "proxyUri": ptrOrNil(in.proxyURI), "proxyRegistrationUri": nil,
			"lastActiveDate": lastActive, "isCloudHub": nil, "deploymentType": ptrOrNil(in.deploymentType),
			"policiesVersion": nil, "referencesUserDomain": nil, "responseTimeout": int64OrNil(in.responseTimeout),
			"wsdlConfig": nil, "muleVersion4OrAbove": nil,
			"audit": map[string]any{"created": map[string]any{}, "updated": map[string]any{}},
		},
		"deployment": dep,
		"routing":    []any{},
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func ptrOrNil(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func int64OrNil(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// rawObject decodes a JSON object keeping each member raw, so the handler can
// tell a missing key from an explicit null, as API Manager's validator does.
// decodeObjectBody reads a JSON object body, answering API Manager's
// request-validation 400 itself when the body is not one.
func decodeObjectBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	var raw json.RawMessage
	if err := decodeJSON(r, &raw); err != nil {
		writeValidation(w, validationError{"/body", "must be valid JSON", "type.openapi.validation"})
		return nil, false
	}
	body, ok := rawObject(raw)
	if !ok {
		writeValidation(w, validationError{"/body", "must be object", "type.openapi.validation"})
		return nil, false
	}
	return body, true
}

func rawObject(data json.RawMessage) (map[string]json.RawMessage, bool) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil, false
	}
	return m, true
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// optString decodes an optional string member: ok is false when it is
// present with another JSON type.
func optString(m map[string]json.RawMessage, key string) (val *string, ok bool) {
	v, present := m[key]
	if !present || isNull(v) {
		return nil, true
	}
	var str string
	if json.Unmarshal(v, &str) != nil {
		return nil, false
	}
	return &str, true
}

var technologies = map[string]bool{"mule3": true, "mule4": true, "flexGateway": true, "serviceMesh": true}

// endpointTypeFor is the endpoint type API Manager infers from the asset type
// when the request does not set one.
func endpointTypeFor(assetType string) string {
	switch assetType {
	case "mcp":
		return "mcp"
	case "agent":
		return "a2a"
	case "llm":
		return "llm"
	default:
		return "http"
	}
}

// createAPI serves POST /apimanager/{api,xapi}/v1/.../apis with the platform's
// rules (docs/architecture.md, "Anypoint: instances, deployments and policies").
func (s *Server) createAPI(w http.ResponseWriter, r *http.Request, c *caller) {
	org, env := chi.URLParam(r, "org"), chi.URLParam(r, "env")
	body, ok := decodeObjectBody(w, r)
	if !ok {
		return
	}
	if !s.envExists(org, env) {
		writeError(w, productAPIManager, http.StatusNotFound, "", "Environment not found")
		return
	}
	var errs []validationError
	specRaw, hasSpec := body["spec"]
	if _, hasPromote := body["promote"]; hasPromote && !hasSpec {
		writeError(w, productAPIManager, http.StatusBadRequest, "", "Promoting an API is not supported by this environment")
		return
	}
	var spec map[string]json.RawMessage
	if !hasSpec {
		errs = append(errs, validationError{"/body", "must have required property 'spec'", "required.openapi.validation"})
	} else if spec, ok = rawObject(specRaw); !ok {
		errs = append(errs, validationError{"/body/spec", "must be object", "type.openapi.validation"})
	}
	gav := map[string]string{}
	if spec != nil {
		for _, k := range []string{"groupId", "assetId", "version"} {
			v, ok := optString(spec, k)
			switch {
			case !ok:
				errs = append(errs, validationError{"/body/spec/" + k, "must be string", "type.openapi.validation"})
			case v == nil:
				errs = append(errs, validationError{"/body/spec", "must have required property '" + k + "'", "required.openapi.validation"})
			case *v == "" || len(*v) > 256:
				errs = append(errs, validationError{"/body/spec/" + k, "must NOT have fewer than 1 characters", "minLength.openapi.validation"})
			default:
				gav[k] = *v
			}
		}
	}
	technology := "mule3"
	if t, ok := optString(body, "technology"); !ok {
		errs = append(errs, validationError{"/body/technology", "must be string", "type.openapi.validation"})
	} else if t != nil {
		if !technologies[*t] {
			errs = append(errs, validationError{"/body/technology", "must be equal to one of the allowed values: mule3, mule4, flexGateway, serviceMesh", "enum.openapi.validation"})
		}
		technology = *t
	}
	var endpoint map[string]json.RawMessage
	if epRaw, has := body["endpoint"]; !has {
		errs = append(errs, validationError{"/body", "must have required property 'endpoint'", "required.openapi.validation"})
	} else if endpoint, ok = rawObject(epRaw); !ok {
		errs = append(errs, validationError{"/body/endpoint", "must be object", "type.openapi.validation"})
	}
	if endpoint != nil {
		errs = append(errs, checkEndpoint(endpoint, technology, true)...)
	}
	if dep, has := body["deployment"]; has && !isNull(dep) {
		if _, ok := rawObject(dep); !ok {
			errs = append(errs, validationError{"/body/deployment", "must be object", "type.openapi.validation"})
		}
	}
	label, ok := optString(body, "instanceLabel")
	if !ok {
		errs = append(errs, validationError{"/body/instanceLabel", "must be string", "type.openapi.validation"})
	}
	endpointURI, ok := optString(body, "endpointUri")
	if !ok {
		errs = append(errs, validationError{"/body/endpointUri", "must be string", "type.openapi.validation"})
	}
	description, _ := optString(body, "description")
	if len(errs) > 0 {
		writeValidation(w, errs...)
		return
	}
	if routingHasIDs(body["routing"]) {
		writeError(w, productAPIManager, http.StatusBadRequest, "", "Ids are not allowed in POST requests: remove routing[].upstreams[].id")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	a := s.findAsset(gav["groupId"], gav["assetId"], gav["version"])
	if a == nil || !a.published(now) || !c.canSee(a.orgID) {
		writeError(w, productAPIManager, http.StatusBadRequest, "", "There is no asset matching given parameters.")
		return
	}
	s.state.nextInstance++
	s.state.nextEndpoint++
	in := &instance{
		id: s.state.nextInstance, endpointID: s.state.nextEndpoint, orgID: org, envID: env,
		groupID: a.groupID, assetID: a.assetID, assetVersion: a.version, productVersion: "v1",
		technology: technology, endpointURI: endpointURI, description: description,
		createdAt: now, updatedAt: now,
	}
	if v := a.properties["apiVersion"]; v != "" {
		in.productVersion = v
	}
	if label != nil {
		in.instanceLabel = *label
	}
	applyEndpoint(in, endpoint)
	if in.endpointType == nil {
		in.endpointType = strp(endpointTypeFor(a.typ))
	}
	if in.deploymentType == nil && technology == "flexGateway" {
		in.deploymentType = strp("HY")
	}
	if dep, has := body["deployment"]; has && !isNull(dep) {
		depBody, _ := rawObject(dep)
		d, status, name, msg := s.deployLocked(in, env, depBody, now)
		if d == nil {
			writeError(w, productAPIManager, status, name, msg)
			return
		}
		s.state.instances[in.id] = in
		writeJSON(w, http.StatusCreated, s.instanceJSON(in, now))
		return
	}
	s.state.instances[in.id] = in
	writeJSON(w, http.StatusCreated, s.instanceJSON(in, now))
}

// checkEndpoint validates the endpoint object. On create the keys uri,
// proxyUri and isCloudHub must be present (nullable); isCloudHub must be
// null for flexGateway (the guide's "must be null, not false").
func checkEndpoint(ep map[string]json.RawMessage, technology string, create bool) []validationError {
	var errs []validationError
	if create {
		for _, k := range []string{"uri", "proxyUri", "isCloudHub"} {
			if _, has := ep[k]; !has {
				errs = append(errs, validationError{"/body/endpoint", "must have required property '" + k + "'", "required.openapi.validation"})
			}
		}
	}
	for _, k := range []string{"uri", "proxyUri", "type", "deploymentType"} {
		if _, ok := optString(ep, k); !ok {
			errs = append(errs, validationError{"/body/endpoint/" + k, "must be string,null", "type.openapi.validation"})
		}
	}
	if dt, _ := optString(ep, "deploymentType"); dt != nil {
		switch *dt {
		case "CH", "HY", "RF", "SM", "CH2":
		default:
			errs = append(errs, validationError{"/body/endpoint/deploymentType", "must be equal to one of the allowed values: CH, HY, RF, SM, CH2", "enum.openapi.validation"})
		}
	}
	if v, has := ep["isCloudHub"]; has && !isNull(v) {
		var b bool
		switch {
		case json.Unmarshal(v, &b) != nil:
			errs = append(errs, validationError{"/body/endpoint/isCloudHub", "must be boolean,null", "type.openapi.validation"})
		case technology == "flexGateway":
			errs = append(errs, validationError{"/body/endpoint/isCloudHub", "must be null", "type.openapi.validation"})
		}
	}
	if v, has := ep["responseTimeout"]; has && !isNull(v) {
		var n int64
		if json.Unmarshal(v, &n) != nil {
			errs = append(errs, validationError{"/body/endpoint/responseTimeout", "must be integer,null", "type.openapi.validation"})
		}
	}
	return errs
}

// applyEndpoint copies the endpoint members present in ep onto in.
func applyEndpoint(in *instance, ep map[string]json.RawMessage) {
	set := func(key string, dst **string) {
		if _, has := ep[key]; has {
			*dst, _ = optString(ep, key)
		}
	}
	set("uri", &in.uri)
	set("proxyUri", &in.proxyURI)
	set("type", &in.endpointType)
	set("deploymentType", &in.deploymentType)
	if v, has := ep["responseTimeout"]; has {
		in.responseTimeout = nil
		var n int64
		if json.Unmarshal(v, &n) == nil && !isNull(v) {
			in.responseTimeout = &n
		}
	}
}

func routingHasIDs(raw json.RawMessage) bool {
	var routes []struct {
		Upstreams []map[string]json.RawMessage `json:"upstreams"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &routes) != nil {
		return false
	}
	for _, rt := range routes {
		for _, u := range rt.Upstreams {
			if _, has := u["id"]; has {
				return true
			}
		}
	}
	return false
}

// instanceFor finds an instance of the path's org and env; false answers 404.
func (s *Server) instanceFor(r *http.Request) (*instance, bool) {
	id, ok := pathInt64(r, "apiId")
	if !ok {
		return nil, false
	}
	in := s.state.instances[id]
	if in == nil || in.orgID != chi.URLParam(r, "org") || in.envID != chi.URLParam(r, "env") {
		return nil, false
	}
	return in, true
}

func writeAPINotFound(w http.ResponseWriter, p product) {
	writeError(w, p, http.StatusNotFound, "", "API not found")
}

// getAPI serves GET /apimanager/api/v1/.../apis/{id}.
func (s *Server) getAPI(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instanceFor(r)
	if !ok {
		writeAPINotFound(w, productAPIManager)
		return
	}
	writeJSON(w, http.StatusOK, s.instanceJSON(in, time.Now()))
}

// updateAPI serves PATCH .../apis/{id} with a partial instance.
func (s *Server) updateAPI(w http.ResponseWriter, r *http.Request, c *caller) {
	body, ok := decodeObjectBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instanceFor(r)
	if !found {
		writeAPINotFound(w, productAPIManager)
		return
	}
	var errs []validationError
	var endpoint map[string]json.RawMessage
	if epRaw, has := body["endpoint"]; has && !isNull(epRaw) {
		if endpoint, ok = rawObject(epRaw); !ok {
			errs = append(errs, validationError{"/body/endpoint", "must be object", "type.openapi.validation"})
		} else {
			errs = append(errs, checkEndpoint(endpoint, in.technology, false)...)
		}
	}
	label, okLabel := optString(body, "instanceLabel")
	endpointURI, okURI := optString(body, "endpointUri")
	description, okDesc := optString(body, "description")
	version, okVersion := optString(body, "assetVersion")
	if specRaw, has := body["spec"]; has && version == nil {
		if spec, ok := rawObject(specRaw); ok {
			version, okVersion = optString(spec, "version")
		}
	}
	for k, ok := range map[string]bool{"instanceLabel": okLabel, "endpointUri": okURI, "description": okDesc, "assetVersion": okVersion} {
		if !ok {
			errs = append(errs, validationError{"/body/" + k, "must be string", "type.openapi.validation"})
		}
	}
	if len(errs) > 0 {
		writeValidation(w, errs...)
		return
	}
	now := time.Now()
	if version != nil && *version != in.assetVersion {
		a := s.findAsset(in.groupID, in.assetID, *version)
		if a == nil || !a.published(now) || !c.canSee(a.orgID) {
			writeError(w, productAPIManager, http.StatusBadRequest, "", "There is no asset matching given parameters.")
			return
		}
		in.assetVersion = *version
	}
	if _, has := body["instanceLabel"]; has {
		in.instanceLabel = deref(label)
	}
	if _, has := body["endpointUri"]; has {
		in.endpointURI = endpointURI
	}
	if _, has := body["description"]; has {
		in.description = description
	}
	applyEndpoint(in, endpoint)
	in.updatedAt = now
	writeJSON(w, http.StatusOK, s.instanceJSON(in, now))
}

// deleteAPI serves DELETE .../apis/{id}; the instance leaves the gateway with
// its deployment and policies.
func (s *Server) deleteAPI(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instanceFor(r)
	if !ok {
		writeAPINotFound(w, productAPIManager)
		return
	}
	delete(s.state.instances, in.id)
	for id, d := range s.state.deployments {
		if d.apiID == in.id {
			delete(s.state.deployments, id)
		}
	}
	for id, p := range s.state.policies {
		if p.apiID == in.id {
			delete(s.state.policies, id)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// familyOf maps an endpoint type to the list's family filter: "agentic" is
// MCP servers and agents.
func familyOf(endpointType string) string {
	switch endpointType {
	case "mcp", "a2a":
		return "agentic"
	case "llm":
		return "llm"
	default:
		return "api"
	}
}

// matchingInstances returns the instances of org/env passing the list
// filters, sorted by id. Call with s.mu held.
func (s *Server) matchingInstances(org, env string, match func(*instance) bool) []*instance {
	var out []*instance
	for _, in := range s.state.instances {
		if in.orgID == org && in.envID == env && match(in) {
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// listAPIs serves GET /apimanager/api/v1/.../apis: {total, assets:[{..., apis}]}
// where offset, limit and total count assets, not instances.
func (s *Server) listAPIs(w http.ResponseWriter, r *http.Request, _ *caller) {
	org, env := chi.URLParam(r, "org"), chi.URLParam(r, "env")
	q := r.URL.Query()
	family := q.Get("family")
	if family != "" && family != "api" && family != "agentic" && family != "llm" {
		writeValidation(w, validationError{"/query/family", "must be equal to one of the allowed values: api, agentic, llm", "enum.openapi.validation"})
		return
	}
	offset, limit, ok := pageParams(q.Get("offset"), q.Get("limit"), 100, 500)
	if !ok {
		writeValidation(w, validationError{"/query/limit", "must be between 1 and 500", "maximum.openapi.validation"})
		return
	}
	exact := map[string]func(*instance) string{
		"groupId":                   func(in *instance) string { return in.groupID },
		"assetId":                   func(in *instance) string { return in.assetID },
		"assetVersion":              func(in *instance) string { return in.assetVersion },
		"instanceLabel":             func(in *instance) string { return in.instanceLabel },
		"productVersion":            func(in *instance) string { return in.productVersion },
		"autodiscoveryInstanceName": func(in *instance) string { return in.productVersion + ":" + strconv.FormatInt(in.id, 10) },
	}
	query := strings.ToLower(q.Get("query"))

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	instances := s.matchingInstances(org, env, func(in *instance) bool {
		if family != "" && familyOf(deref(in.endpointType)) != family {
			return false
		}
		for param, get := range exact {
			if v := q.Get(param); v != "" && get(in) != v {
				return false
			}
		}
		if query != "" && !strings.Contains(strings.ToLower(in.instanceLabel+" "+deref(in.description)+" "+in.assetID), query) {
			return false
		}
		return true
	})
	type group struct {
		key  string
		name string
		apis []*instance
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, in := range instances {
		key := in.groupID + "/" + in.assetID
		g := byKey[key]
		if g == nil {
			name := in.assetID
			if a := s.findAsset(in.groupID, in.assetID, in.assetVersion); a != nil {
				name = a.name
			}
			g = &group{key: key, name: name}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.apis = append(g.apis, in)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].name < groups[j].name })
	if q.Get("ascending") == "false" {
		for i, j := 0, len(groups)-1; i < j; i, j = i+1, j-1 {
			groups[i], groups[j] = groups[j], groups[i]
		}
	}
	assets := []map[string]any{}
	for i := offset; i < len(groups) && len(assets) < limit; i++ {
		g := groups[i]
		first := g.apis[0]
		id := s.state.apiAssetIDs[org+"/"+g.key]
		if id == 0 {
			s.state.nextAPIAsset++
			id = s.state.nextAPIAsset
			s.state.apiAssetIDs[org+"/"+g.key] = id
		}
		apiName := "groupId:" + first.groupID + ":assetId:" + first.assetID
		apis := []map[string]any{}
		for _, in := range g.apis {
			apis = append(apis, s.instanceListItem(in, now))
		}
		assets = append(assets, map[string]any{
			"id": id, "name": apiName, "exchangeAssetName": g.name, "groupId": first.groupID,
			"assetId": first.assetID, "masterOrganizationId": org, "organizationId": org,
			"autodiscoveryApiName": apiName, "totalApis": len(g.apis),
			"audit": map[string]any{"created": map[string]any{"date": isoTime(first.createdAt)}, "updated": map[string]any{}},
			"apis":  apis,
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(groups), "assets": assets})
}

// instanceListItem is an instance as the lists show it.
func (s *Server) instanceListItem(in *instance, now time.Time) map[string]any {
	full := s.instanceJSON(in, now)
	item := map[string]any{}
	for _, k := range []string{"id", "instanceLabel", "groupId", "assetId", "assetVersion", "productVersion",
		"technology", "status", "autodiscoveryInstanceName", "environmentId", "endpointUri", "deployment",
		"order", "tags", "deprecated", "isPublic", "stage", "providerId", "approvalMethod", "lastActiveDate", "audit",
		"organizationId", "masterOrganizationId"} {
		item[k] = full[k]
	}
	item["lastActiveDelta"] = nil
	item["pinned"] = false
	item["activeContractsCount"] = 0
	return item
}

// listAPIsFlat serves the xapi flat list {total, instances}.
func (s *Server) listAPIsFlat(w http.ResponseWriter, r *http.Request, _ *caller) {
	org, env := chi.URLParam(r, "org"), chi.URLParam(r, "env")
	q := r.URL.Query()
	offset, limit, ok := pageParams(q.Get("offset"), q.Get("limit"), 20, 250)
	if !ok {
		writeValidation(w, validationError{"/query/limit", "must be between 1 and 250", "maximum.openapi.validation"})
		return
	}
	endpointType := q.Get("endpointType")
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	instances := s.matchingInstances(org, env, func(in *instance) bool {
		et := deref(in.endpointType)
		return endpointType == "" || et == endpointType || (endpointType == "agentic" && familyOf(et) == "agentic")
	})
	out := []map[string]any{}
	for i := offset; i < len(instances) && len(out) < limit; i++ {
		in := instances[i]
		item := s.instanceJSON(in, now)
		item["endpointType"] = deref(in.endpointType)
		item["pinned"] = false
		item["activeContractsCount"] = 0
		name := in.assetID
		if a := s.findAsset(in.groupID, in.assetID, in.assetVersion); a != nil {
			name = a.name
		}
		item["asset"] = map[string]any{"name": "groupId:" + in.groupID + ":assetId:" + in.assetID,
			"exchangeAssetName": name, "groupId": in.groupID, "assetId": in.assetID}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(instances), "instances": out})
}
