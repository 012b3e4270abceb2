package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/policyschema"
)

// template is a catalogue entry with its configuration parsed once.
type template struct {
	FixtureTemplate
	config *policyschema.Template
}

func compileTemplates(f *Fixtures) []*template {
	out := make([]*template, 0, len(f.PolicyTemplates))
	for _, ft := range f.PolicyTemplates {
		if ft.GroupID == "" {
			ft.GroupID = PolicyGroupID
		}
		tc, err := policyschema.Compile(ft.Configuration)
		if err != nil {
			panic(fmt.Sprintf("sim: policy template %s %s: %v", ft.AssetID, ft.Version, err))
		}
		out = append(out, &template{FixtureTemplate: ft, config: tc})
	}
	return out
}

// fits reports whether the template can run on the instance: its gateway
// technology, and mcp-* policies only on MCP endpoints.
func (t *template) fits(in *instance) bool {
	if t.MCPOnly && deref(in.endpointType) != "mcp" {
		return false
	}
	if len(t.Technologies) == 0 {
		return true
	}
	for _, tech := range t.Technologies {
		if tech == in.technology {
			return true
		}
	}
	return false
}

func (s *Server) findTemplate(groupID, assetID, version string) *template {
	for _, t := range s.templates {
		if t.GroupID == groupID && t.AssetID == assetID && t.Version == version {
			return t
		}
	}
	return nil
}

func templateJSON(t *template, withConfig bool) map[string]any {
	m := map[string]any{
		"audit": map[string]any{"created": map[string]any{"date": "2025-05-26T19:23:00.651Z"}, "updated": map[string]any{}},
		"id":    t.ID, "groupId": t.GroupID, "assetId": t.AssetID, "version": t.Version, "assetVersion": t.Version,
		"name": t.Name, "description": t.Description, "type": "policy", "isOOTB": true, "stage": "release",
		"status": "published", "orgId": t.GroupID, "category": t.Category, "violationCategory": nil,
		"schemaId": nil, "yamlMd5": nil, "jarMd5": nil, "minMuleVersion": nil, "supportedPoliciesVersions": ">=v1",
		"providedCharacteristics": []string{}, "requiredCharacteristics": []string{}, "identityManagement": nil,
		"resourceLevelSupported": !t.MCPOnly, "encryptionSupported": false, "standalone": true,
		"interfaceScope": []string{"api", "resource"}, "interfaceTransformation": []string{},
		"applicable": true, "splitAssetModel": true,
	}
	if withConfig {
		m["configuration"] = t.Configuration
	}
	return m
}

// listTemplates serves the api-portal xapi exchange-policy-templates as a bare
// array. Without environmentId the list is empty: the guide's "Empty list"
// issue. With it and without apiInstanceId it is the organization's whole
// catalogue, not narrowed to any gateway (the spec: "all policy templates
// ... optionally filter by environment, API instance"); with apiInstanceId,
// the templates that fit that instance.
func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request, _ *caller) {
	q := r.URL.Query()
	out := []map[string]any{}
	if q.Get("environmentId") == "" {
		writeJSON(w, http.StatusOK, out)
		return
	}
	withConfig := q.Get("includeConfiguration") != "false"
	latest := q.Get("latest") == "true"
	org, env := chi.URLParam(r, "org"), q.Get("environmentId")
	var fit []*template
	if q.Get("apiInstanceId") == "" {
		if !s.envExists(org, env) {
			writeError(w, productAPIManager, http.StatusNotFound, "", "Environment not found")
			return
		}
		fit = append(fit, s.templates...)
	} else {
		apiID, err := strconv.ParseInt(q.Get("apiInstanceId"), 10, 64)
		if err != nil {
			writeValidation(w, validationError{"/query/apiInstanceId", "must be integer", "type.openapi.validation"})
			return
		}
		s.mu.Lock()
		in := s.state.instances[apiID]
		if in == nil || in.orgID != org || in.envID != env {
			s.mu.Unlock()
			writeAPINotFound(w, productAPIManager)
			return
		}
		for _, t := range s.templates {
			if t.fits(in) {
				fit = append(fit, t)
			}
		}
		s.mu.Unlock()
	}

	if latest {
		newest := map[string]*template{}
		for _, t := range fit {
			key := t.GroupID + "/" + t.AssetID
			if cur := newest[key]; cur == nil || anypoint.CompareVersions(t.Version, cur.Version) > 0 {
				newest[key] = t
			}
		}
		fit = fit[:0]
		for _, t := range newest {
			fit = append(fit, t)
		}
	}
	sort.Slice(fit, func(i, j int) bool {
		if fit[i].AssetID != fit[j].AssetID {
			return fit[i].AssetID < fit[j].AssetID
		}
		return anypoint.CompareVersions(fit[i].Version, fit[j].Version) < 0
	})
	for _, t := range fit {
		out = append(out, templateJSON(t, withConfig))
	}
	writeJSON(w, http.StatusOK, out)
}

func policyJSON(p *policy) map[string]any {
	var label any
	if p.label != nil {
		label = *p.label
	}
	return map[string]any{
		"id": p.id, "policyTemplateId": strconv.FormatInt(p.templateID, 10), "groupId": p.groupID,
		"assetId": p.assetID, "assetVersion": p.assetVersion, "configurationData": p.config,
		"order": p.order, "disabled": p.disabled, "pointcutData": p.pointcut, "type": "system",
		"apiId": p.apiID, "masterOrganizationId": p.orgID, "organizationId": p.orgID, "label": label,
		"audit": map[string]any{"created": map[string]any{"date": isoTime(p.createdAt)},
			"updated": map[string]any{"date": isoTime(p.updatedAt)}},
	}
}

// writeConfigErrors answers a 400 naming every offending property.
func writeConfigErrors(w http.ResponseWriter, t *template, errs []policyschema.Problem) {
	items := make([]map[string]any, len(errs))
	msgs := make([]string, len(errs))
	for i, e := range errs {
		items[i] = map[string]any{"path": "/configurationData" + e.Pointer, "message": e.Message, "errorCode": "configuration.validation"}
		msgs[i] = e.Message
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"name":    "BadRequestError",
		"message": fmt.Sprintf("Invalid configurationData for policy template %s %s: %s", t.AssetID, t.Version, strings.Join(msgs, "; ")),
		"errors":  items,
	})
}

// decodeConfiguration reads configurationData; absent or null is {}.
func decodeConfiguration(raw json.RawMessage) (map[string]any, bool) {
	cfg := map[string]any{}
	if len(raw) == 0 || isNull(raw) {
		return cfg, true
	}
	if _, ok := rawObject(raw); !ok {
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	return cfg, dec.Decode(&cfg) == nil
}

// createPolicy serves POST .../apis/{id}/policies[?allowDuplicated=true]
// (docs/architecture.md, "Anypoint: instances, deployments and policies").
func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request, _ *caller) {
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
	gav := map[string]string{}
	for _, k := range []string{"groupId", "assetId", "assetVersion"} {
		if v, _ := optString(body, k); v != nil && *v != "" {
			gav[k] = *v
		}
	}
	if len(gav) < 3 {
		writeError(w, productAPIManager, http.StatusBadRequest, "",
			"The policy to be created is missing at least one of the following properties related to the policy template: 'groupId', 'assetId', 'assetVersion'.")
		return
	}
	t := s.findTemplate(gav["groupId"], gav["assetId"], gav["assetVersion"])
	if t == nil {
		writeError(w, productAPIManager, http.StatusNotFound, "",
			fmt.Sprintf("Policy template %s:%s:%s not found", gav["groupId"], gav["assetId"], gav["assetVersion"]))
		return
	}
	if !t.fits(in) {
		writeError(w, productAPIManager, http.StatusBadRequest, "",
			fmt.Sprintf("Policy template %s %s cannot be applied to API %d: it does not support this API's gateway or endpoint type", t.AssetID, t.Version, in.id))
		return
	}
	if t.MissingSchema {
		writeError(w, productAPIManager, http.StatusBadRequest, "PolicyTemplateValidationError", "Policy Template is missing required files: [schema]")
		return
	}
	cfg, ok := decodeConfiguration(body["configurationData"])
	if !ok {
		writeValidation(w, validationError{"/body/configurationData", "must be object", "type.openapi.validation"})
		return
	}
	filled, errs := t.config.Validate(cfg)
	if len(errs) > 0 {
		writeConfigErrors(w, t, errs)
		return
	}
	order := 0
	if v, has := body["order"]; has && !isNull(v) {
		if json.Unmarshal(v, &order) != nil || order < 1 {
			writeValidation(w, validationError{"/body/order", "must be integer >= 1", "type.openapi.validation"})
			return
		}
	}
	disabled := false
	if v, has := body["disabled"]; has && !isNull(v) && json.Unmarshal(v, &disabled) != nil {
		writeValidation(w, validationError{"/body/disabled", "must be boolean", "type.openapi.validation"})
		return
	}
	label, _ := optString(body, "label")
	var pointcut any
	if v, has := body["pointcutData"]; has {
		_ = json.Unmarshal(v, &pointcut)
	}

	maxOrder := 0
	for _, p := range s.state.policies {
		if p.apiID != in.id {
			continue
		}
		if p.assetID == t.AssetID && r.URL.Query().Get("allowDuplicated") != "true" {
			writeError(w, productAPIManager, http.StatusConflict, "",
				fmt.Sprintf("Policy %s is already applied to API %d (policy %d). Use allowDuplicated=true to apply it again.", t.AssetID, in.id, p.id))
			return
		}
		if p.order > maxOrder {
			maxOrder = p.order
		}
	}
	if order == 0 {
		order = maxOrder + 1
	} else {
		s.makeRoomLocked(in.id, order, 0)
	}
	now := time.Now()
	s.state.nextPolicy++
	p := &policy{
		id: s.state.nextPolicy, apiID: in.id, orgID: in.orgID, envID: in.envID, templateID: t.ID,
		groupID: t.GroupID, assetID: t.AssetID, assetVersion: t.Version, config: filled,
		order: order, disabled: disabled, pointcut: pointcut, label: label, createdAt: now, updatedAt: now,
	}
	s.state.policies[p.id] = p
	writeJSON(w, http.StatusCreated, policyJSON(p))
}

func (s *Server) policiesOf(apiID int64) []*policy {
	var out []*policy
	for _, p := range s.state.policies {
		if p.apiID == apiID {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].order != out[j].order {
			return out[i].order < out[j].order
		}
		return out[i].id < out[j].id
	})
	return out
}

// listPolicies serves GET .../apis/{id}/policies: fullInfo=false is a bare
// array of full policies (active and disabled); without it, a bare array of
// compact entries of the active policies with their template, as the live
// platform and the spec answer (docs/architecture.md, "Anypoint: list shapes").
func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instanceFor(r)
	if !found {
		writeAPINotFound(w, productAPIManager)
		return
	}
	policies := s.policiesOf(in.id)
	if r.URL.Query().Get("fullInfo") == "false" {
		out := []map[string]any{}
		for _, p := range policies {
			out = append(out, policyJSON(p))
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	compact := []map[string]any{}
	for _, p := range policies {
		if p.disabled {
			continue
		}
		var label any
		if p.label != nil {
			label = *p.label
		}
		compact = append(compact, map[string]any{
			"policyId": p.id, "policyTemplateId": strconv.FormatInt(p.templateID, 10), "type": "system",
			"order": p.order, "pointcutData": p.pointcut, "configuration": p.config, "label": label,
			"template": map[string]any{"groupId": p.groupID, "assetId": p.assetID, "assetVersion": p.assetVersion},
			"implementationAsset": map[string]any{"groupId": p.groupID, "assetId": p.assetID + "-flex", "version": p.assetVersion,
				"technology": "flexGateway"},
		})
	}
	writeJSON(w, http.StatusOK, compact)
}

func (s *Server) policyFor(r *http.Request) (*policy, *instance, bool) {
	in, ok := s.instanceFor(r)
	if !ok {
		return nil, nil, false
	}
	id, ok := pathInt64(r, "policyId")
	if !ok {
		return nil, nil, false
	}
	p := s.state.policies[id]
	if p == nil || p.apiID != in.id {
		return nil, nil, false
	}
	return p, in, true
}

func writePolicyNotFound(w http.ResponseWriter) {
	writeError(w, productAPIManager, http.StatusNotFound, "", "Policy not found")
}

// getPolicy serves GET .../policies/{policyId}.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _, ok := s.policyFor(r)
	if !ok {
		writePolicyNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, policyJSON(p))
}

// updatePolicy serves PATCH .../policies/{policyId}: configurationData,
// assetVersion, order, disabled, label, pointcutData.
func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, _ *caller) {
	body, ok := decodeObjectBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, in, found := s.policyFor(r)
	if !found {
		writePolicyNotFound(w)
		return
	}
	t := s.findTemplate(p.groupID, p.assetID, p.assetVersion)
	if v, _ := optString(body, "assetVersion"); v != nil && *v != p.assetVersion {
		nt := s.findTemplate(p.groupID, p.assetID, *v)
		if nt == nil || !nt.fits(in) {
			writeError(w, productAPIManager, http.StatusNotFound, "", fmt.Sprintf("Policy template %s:%s:%s not found", p.groupID, p.assetID, *v))
			return
		}
		t = nt
	}
	cfg := p.config
	if v, has := body["configurationData"]; has {
		if cfg, ok = decodeConfiguration(v); !ok {
			writeValidation(w, validationError{"/body/configurationData", "must be object", "type.openapi.validation"})
			return
		}
	}
	if t != nil {
		filled, errs := t.config.Validate(cfg)
		if len(errs) > 0 {
			writeConfigErrors(w, t, errs)
			return
		}
		cfg = filled
	}
	order := p.order
	if v, has := body["order"]; has && !isNull(v) && (json.Unmarshal(v, &order) != nil || order < 1) {
		writeValidation(w, validationError{"/body/order", "must be integer >= 1", "type.openapi.validation"})
		return
	}
	disabled := p.disabled
	if v, has := body["disabled"]; has && !isNull(v) && json.Unmarshal(v, &disabled) != nil {
		writeValidation(w, validationError{"/body/disabled", "must be boolean", "type.openapi.validation"})
		return
	}
	if _, has := body["label"]; has {
		p.label, _ = optString(body, "label")
	}
	if v, has := body["pointcutData"]; has {
		p.pointcut = nil
		_ = json.Unmarshal(v, &p.pointcut)
	}
	if t != nil {
		p.templateID, p.assetVersion = t.ID, t.Version
	}
	if order != p.order {
		// A move is a removal and an insertion, renumbered like both.
		s.closeGapLocked(p.apiID, p.order, p.id)
		s.makeRoomLocked(p.apiID, order, p.id)
	}
	p.config, p.order, p.disabled, p.updatedAt = cfg, order, disabled, time.Now()
	writeJSON(w, http.StatusOK, policyJSON(p))
}

// deletePolicy serves DELETE .../policies/{policyId} with 204.
func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, _ *caller) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _, ok := s.policyFor(r)
	if !ok {
		writePolicyNotFound(w)
		return
	}
	delete(s.state.policies, p.id)
	s.closeGapLocked(p.apiID, p.order, p.id)
	w.WriteHeader(http.StatusNoContent)
}

// makeRoomLocked renumbers an instance's policies for one inserted at order:
// when the order is taken, it and every later one move one down, as the
// platform does (docs/architecture.md, "Anypoint: instances, deployments and
// policies"). except is the policy being moved.
func (s *Server) makeRoomLocked(apiID int64, order int, except int64) {
	taken := false
	for _, p := range s.state.policies {
		if p.apiID == apiID && p.id != except && p.order == order {
			taken = true
		}
	}
	if !taken {
		return
	}
	for _, p := range s.state.policies {
		if p.apiID == apiID && p.id != except && p.order >= order {
			p.order++
		}
	}
}

// closeGapLocked moves the policies after a removed one (at order) one up.
func (s *Server) closeGapLocked(apiID int64, order int, removed int64) {
	for _, p := range s.state.policies {
		if p.apiID == apiID && p.id != removed && p.order > order {
			p.order--
		}
	}
}
