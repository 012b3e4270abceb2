package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

var (
	versionPattern = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	assetIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
)

// fileTypes are the file classifiers from which Exchange infers an asset
// type. mcp is absent on purpose: an MCP asset needs type=mcp.
var fileTypes = map[string]string{
	"oas": "rest-api", "raml": "rest-api", "wsdl": "soap-api", "raml-fragment": "raml-fragment",
	"custom": "custom", "mule-application": "app", "mule-plugin": "connector",
}

func (s *Server) findAsset(groupID, assetID, version string) *asset {
	for _, a := range s.state.assets {
		if a.groupID == groupID && a.assetID == assetID && a.version == version {
			return a
		}
	}
	return nil
}

// latestAsset is the newest published version of an asset, for the
// version-less GET .../assets/{g}/{a}/asset (docs/architecture.md, "Anypoint: publishing").
func (s *Server) latestAsset(groupID, assetID string, now time.Time) *asset {
	var best *asset
	for _, a := range s.state.assets {
		if a.groupID == groupID && a.assetID == assetID && a.published(now) &&
			(best == nil || anypoint.CompareVersions(a.version, best.version) > 0) {
			best = a
		}
	}
	return best
}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// publishAsset serves the Exchange v2 multipart publish (docs/architecture.md,
// "Anypoint: publishing").
func (s *Server) publishAsset(w http.ResponseWriter, r *http.Request, c *caller) {
	org, groupID := chi.URLParam(r, "org"), chi.URLParam(r, "groupId")
	assetID, version := chi.URLParam(r, "assetId"), chi.URLParam(r, "version")
	if err := r.ParseMultipartForm(8 << 20); err != nil {
		writeError(w, productExchange, http.StatusBadRequest, "", "The request must be multipart/form-data")
		return
	}
	if !c.canSee(groupID) {
		writeError(w, productExchange, http.StatusForbidden, "", "You do not have permission to publish to group "+groupID)
		return
	}
	if !assetIDPattern.MatchString(assetID) {
		writeError(w, productExchange, http.StatusBadRequest, "", "assetId "+strconv.Quote(assetID)+" is not valid")
		return
	}
	if !versionPattern.MatchString(version) {
		writeError(w, productExchange, http.StatusBadRequest, "", "version "+strconv.Quote(version)+" is not a valid semantic version")
		return
	}
	form := r.MultipartForm
	field := func(name string) string {
		if v := form.Value[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	typ := field("type")
	if typ == "" {
		for name := range form.File {
			parts := strings.Split(strings.TrimPrefix(name, "files."), ".")
			if t, ok := fileTypes[parts[0]]; ok && strings.HasPrefix(name, "files.") {
				typ = t
			}
		}
	}
	if typ == "" {
		writeError(w, productExchange, http.StatusBadRequest, "", "The asset type could not be inferred from the files: send the field 'type'")
		return
	}
	a := &asset{
		orgID: org, groupID: groupID, assetID: assetID, version: version,
		name: field("name"), description: field("description"), typ: typ, createdBy: c.userID(),
		platform: field("properties.platform"), properties: map[string]string{},
	}
	if a.name == "" {
		a.name = assetID
	}
	for k, v := range form.Value {
		if strings.HasPrefix(k, "properties.") && len(v) > 0 {
			a.properties[strings.TrimPrefix(k, "properties.")] = v[0]
		}
	}
	if fh := form.File["files.mcp-metadata.json"]; len(fh) > 0 {
		f, err := fh[0].Open()
		if err == nil {
			a.metadata, err = io.ReadAll(f)
			_ = f.Close()
		}
		if err != nil || !json.Valid(a.metadata) {
			writeError(w, productExchange, http.StatusBadRequest, "", "files.mcp-metadata.json is not valid JSON")
			return
		}
		var meta struct {
			Platform string `json:"platform"`
		}
		if json.Unmarshal(a.metadata, &meta) == nil && a.platform == "" {
			a.platform = meta.Platform
		}
	}
	if a.platform == "" {
		a.platform = "mulesoft"
	}
	sync := strings.EqualFold(r.Header.Get("x-sync-publication"), "true")

	s.mu.Lock()
	if s.findAsset(groupID, assetID, version) != nil {
		s.mu.Unlock()
		writeJSON(w, http.StatusConflict, map[string]any{
			"status":  http.StatusConflict,
			"code":    "ASSET_PRE_CONDITIONS_FAILED",
			"message": "Cannot create a new asset with the provided groupId, assetId, version, state",
			"details": map[string]any{
				"errors": []string{"An asset already exists with this version and published lifecycle state."},
				"asset":  map[string]any{"organizationId": org, "groupId": groupID, "assetId": assetID, "version": version},
			},
		})
		return
	}
	now := time.Now()
	a.createdAt, a.readyAt, a.runID = now, now, newUUID()
	if !sync {
		a.readyAt = now.Add(s.publicationDelay)
	}
	if f, ok := s.state.failPublications[assetID+"/"+version]; ok {
		a.failure = &f
	} else if s.publicationFailure != "" {
		a.failure = &PublicationFailure{Status: "failed", Reasons: []string{s.publicationFailure}}
	}
	s.state.assets = append(s.state.assets, a)
	s.mu.Unlock()

	if sync && a.failure != nil {
		writeError(w, productExchange, http.StatusBadRequest, "", "Publication failed: "+strings.Join(a.failure.Reasons, "; "))
		return
	}
	if sync {
		writeJSON(w, http.StatusCreated, assetSummary(a))
		return
	}
	link := baseURL(r) + "/exchange/api/v2/organizations/" + org + "/assets/" + groupID + "/" + assetID + "/" + version + "/publication/status/" + a.runID
	writeJSON(w, http.StatusAccepted, map[string]any{"publicationStatusLink": link})
}

// FailPublications makes the publications submitted from now on fail with
// reason, as Exchange does when it cannot process an asset's files; the
// failed GAV stays taken. An empty reason lets publications succeed again.
func (s *Server) FailPublications(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publicationFailure = reason
}

func assetSummary(a *asset) map[string]any {
	return map[string]any{"organizationId": a.orgID, "groupId": a.groupID, "assetId": a.assetID,
		"version": a.version, "name": a.name, "type": a.typ}
}

// publicationStatus serves GET .../publication/status[/{runId}]: "running"
// until the publication delay has passed, then "completed" with the asset,
// or "failed" with the reason FailPublications gave.
func (s *Server) publicationStatus(w http.ResponseWriter, r *http.Request, _ *caller) {
	org := chi.URLParam(r, "org")
	s.mu.Lock()
	a := s.findAsset(chi.URLParam(r, "groupId"), chi.URLParam(r, "assetId"), chi.URLParam(r, "version"))
	var body map[string]any
	if a != nil && a.orgID == org {
		if run := chi.URLParam(r, "runId"); run == "" || run == a.runID {
			body = publicationBody(a, time.Now())
		}
	}
	s.mu.Unlock()
	if body == nil {
		writeError(w, productExchange, http.StatusNotFound, "", "Publication not found")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func publicationBody(a *asset, now time.Time) map[string]any {
	step := func(desc, status string) map[string]any {
		return map[string]any{"description": desc, "status": status, "errors": []string{}}
	}
	if now.Before(a.readyAt) {
		return map[string]any{"status": "running", "assetType": a.typ, "steps": []any{
			step("Files processing", "completed"), step("Inferring type", "running"), step("Publishing", "pending")}}
	}
	if f := a.failure; f != nil {
		failed := step("Publishing", f.Status)
		failed["errors"] = f.Reasons
		return map[string]any{"status": f.Status, "assetType": a.typ, "steps": []any{
			step("Files processing", "completed"), step("Inferring type", "completed"), failed}}
	}
	return map[string]any{"status": "completed", "assetType": a.typ, "steps": []any{
		step("Files processing", "completed"), step("Inferring type", "completed"), step("Publishing", "completed")},
		"asset": assetSummary(a)}
}

// assetJSON is the full asset as GET and search return it.
func (s *Server) assetJSON(a *asset, others []map[string]any) map[string]any {
	o := s.org(a.orgID)
	minor := a.version
	if parts := strings.SplitN(strings.TrimPrefix(a.version, "v"), ".", 3); len(parts) >= 2 {
		minor = parts[0] + "." + parts[1]
	}
	created := a.createdAt.UTC().Format("2006-01-02T15:04:05.000Z")
	attrs := []map[string]any{{"key": "platform", "value": a.platform}}
	files := []map[string]any{}
	if len(a.metadata) > 0 {
		files = append(files, map[string]any{"classifier": "mcp-metadata", "packaging": "json",
			"mainFile": nil, "isGenerated": false, "createdDate": created,
			"downloadURL": "/exchange/api/v2/assets/" + a.groupID + "/" + a.assetID + "/" + a.version + "/files/mcp-metadata.json"})
	}
	m := map[string]any{
		"id": a.groupID + "/" + a.assetID + "/" + a.version, "organizationId": a.orgID,
		"groupId": a.groupID, "assetId": a.assetID, "version": a.version, "minorVersion": minor,
		"versionGroup": a.version, "name": a.name, "description": a.description, "type": a.typ,
		"status": "published", "isPublic": false, "isSnapshot": false, "labels": []string{},
		"categories": []any{}, "customFields": []any{}, "attributes": attrs, "files": files,
		"rating": 0, "numberOfRates": 0, "createdById": a.createdBy, "createdAt": created,
		"createdDate": created, "updatedDate": created, "modifiedAt": created, "icon": nil,
		"createdBy":    map[string]any{"id": a.createdBy, "userName": a.createdBy},
		"organization": map[string]any{"id": o.ID, "name": o.Name, "domain": o.Domain, "isMaster": true},
		"instances":    []any{}, "dependencies": []any{},
	}
	if others != nil {
		m["otherVersions"] = others
	}
	return m
}

// getAsset serves GET /exchange/api/v2/assets/{g}/{a}/{v}: 404 until the
// publication completed, after a soft delete, or when the caller cannot see it.
func (s *Server) getAsset(w http.ResponseWriter, r *http.Request, c *caller) {
	s.mu.Lock()
	now := time.Now()
	var a *asset
	if v := chi.URLParam(r, "version"); v != "" {
		a = s.findAsset(chi.URLParam(r, "groupId"), chi.URLParam(r, "assetId"), v)
	} else {
		a = s.latestAsset(chi.URLParam(r, "groupId"), chi.URLParam(r, "assetId"), now)
	}
	var body map[string]any
	if a != nil && a.published(now) && c.canSee(a.orgID) {
		others := []map[string]any{}
		for _, o := range s.state.assets {
			if o != a && o.groupID == a.groupID && o.assetID == a.assetID && o.published(now) {
				others = append(others, map[string]any{"groupId": o.groupID, "assetId": o.assetID,
					"version": o.version, "status": "published"})
			}
		}
		body = s.assetJSON(a, others)
	}
	s.mu.Unlock()
	if body == nil {
		writeError(w, productExchange, http.StatusNotFound, "ASSET_NOT_FOUND", "Asset not found")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// deleteAsset serves DELETE /exchange/api/v2/assets/{g}/{a}/{v}. A soft
// delete hides the asset but keeps its GAV locked; a hard delete frees it.
func (s *Server) deleteAsset(w http.ResponseWriter, r *http.Request, c *caller) {
	kind := r.Header.Get("X-Delete-Type")
	if kind == "" {
		kind = "soft-delete"
	}
	if kind != "soft-delete" && kind != "hard-delete" {
		writeError(w, productExchange, http.StatusBadRequest, "", "X-Delete-Type must be soft-delete or hard-delete")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAsset(chi.URLParam(r, "groupId"), chi.URLParam(r, "assetId"), chi.URLParam(r, "version"))
	if a == nil || a.deleted || !c.canSee(a.orgID) {
		writeError(w, productExchange, http.StatusNotFound, "ASSET_NOT_FOUND", "Asset not found")
		return
	}
	for _, in := range s.state.instances {
		if in.groupID == a.groupID && in.assetID == a.assetID && in.assetVersion == a.version {
			writeError(w, productExchange, http.StatusConflict, "", "The asset is used by API instance "+strconv.FormatInt(in.id, 10))
			return
		}
	}
	if kind == "soft-delete" {
		a.deleted = true
	} else {
		for i, o := range s.state.assets {
			if o == a {
				s.state.assets = append(s.state.assets[:i], s.state.assets[i+1:]...)
				break
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// searchAssets serves GET /exchange/api/v2/assets/search: a bare array of
// the latest published version of every asset in every organization the
// caller can see (not org scoped), filtered by types, search and organizationId.
func (s *Server) searchAssets(w http.ResponseWriter, r *http.Request, c *caller) {
	q := r.URL.Query()
	offset, limit, ok := pageParams(q.Get("offset"), q.Get("limit"), 20, 250)
	if !ok {
		writeError(w, productExchange, http.StatusBadRequest, "", "offset must be >= 0 and limit between 1 and 250")
		return
	}
	types := map[string]bool{}
	for _, v := range q["types"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				types[t] = true
			}
		}
	}
	orgFilter := map[string]bool{}
	for _, v := range q["organizationId"] {
		orgFilter[v] = true
	}
	search := strings.ToLower(q.Get("search"))

	s.mu.Lock()
	now := time.Now()
	latest := map[string]*asset{}
	for _, a := range s.state.assets {
		if !a.published(now) || !c.canSee(a.orgID) {
			continue
		}
		if len(types) > 0 && !types[a.typ] {
			continue
		}
		if len(orgFilter) > 0 && !orgFilter[a.orgID] {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(a.name), search) && !strings.Contains(strings.ToLower(a.assetID), search) {
			continue
		}
		key := a.groupID + "/" + a.assetID
		if cur := latest[key]; cur == nil || anypoint.CompareVersions(a.version, cur.version) > 0 {
			latest[key] = a
		}
	}
	found := make([]*asset, 0, len(latest))
	for _, a := range latest {
		found = append(found, a)
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].name != found[j].name {
			return found[i].name < found[j].name
		}
		return found[i].groupID+found[i].assetID < found[j].groupID+found[j].assetID
	})
	out := []map[string]any{}
	for i := offset; i < len(found) && len(out) < limit; i++ {
		out = append(out, s.assetJSON(found[i], nil))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// pageParams parses offset/limit; ok is false when they are malformed or out of range.
func pageParams(offsetS, limitS string, defLimit, maxLimit int) (offset, limit int, ok bool) {
	limit = defLimit
	var err error
	if offsetS != "" {
		if offset, err = strconv.Atoi(offsetS); err != nil || offset < 0 {
			return 0, 0, false
		}
	}
	if limitS != "" {
		if limit, err = strconv.Atoi(limitS); err != nil || limit < 1 || limit > maxLimit {
			return 0, 0, false
		}
	}
	return offset, limit, true
}

// PublicationFailure is how a publication told to fail ends: Status is
// "failed" or "error" (both are final; docs/architecture.md, "Anypoint: publishing") and Reasons are
// the errors of its last step.
type PublicationFailure struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons"`
}

// FailPublication makes every later publication of assetId/version end with
// f instead of publishing (a synchronous one answers 400). The GAV stays
// taken by the failed publication, so a retry must bump the version.
func (s *Server) FailPublication(assetID, version string, f PublicationFailure) {
	if f.Status == "" {
		f.Status = "failed"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.failPublications[assetID+"/"+version] = f
}
