package anypoint

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// AssetTypeMCP is the Exchange type of an MCP server asset.
const AssetTypeMCP = "mcp"

// PublishAsset is what PublishAsset sends to Exchange.
type PublishAsset struct {
	GroupID     string
	AssetID     string
	Version     string
	Name        string
	Description string
	// Type is the asset type; "mcp" for an MCP server (required by Exchange,
	// which cannot infer it from a file classifier).
	Type string
	// Metadata is sent as the file part files.mcp-metadata.json when non-empty.
	Metadata []byte
	// Properties become properties.<name> fields (e.g. platform).
	Properties map[string]string
	// Sync asks for a synchronous publication (201 with the asset) instead of
	// an asynchronous one (202 with a status link).
	Sync bool
}

// AssetSummary is the short asset Exchange returns after a publication.
type AssetSummary struct {
	OrganizationID string `json:"organizationId"`
	GroupID        string `json:"groupId"`
	AssetID        string `json:"assetId"`
	Version        string `json:"version"`
	Name           string `json:"name"`
	Type           string `json:"type"`
}

// Publication is the answer to a publish: the asset when Exchange published
// synchronously (201), or the link to poll when it did not (202).
type Publication struct {
	Asset      *AssetSummary
	StatusLink string
}

// PublishAsset publishes an asset version to Exchange with the multipart
// organization-scoped endpoint (docs/architecture.md, "Anypoint: publishing").
func (s *Session) PublishAsset(ctx context.Context, org string, in PublishAsset) (*Publication, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{{"name", in.Name}, {"description", in.Description}, {"type", in.Type}}
	keys := make([]string, 0, len(in.Properties))
	for k := range in.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields = append(fields, [2]string{"properties." + k, in.Properties[k]})
	}
	for _, f := range fields {
		if f[1] == "" {
			continue
		}
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, &Error{Op: "publishing asset to Exchange", Class: ClassInvalid, Err: err}
		}
	}
	if len(in.Metadata) > 0 {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", `form-data; name="files.mcp-metadata.json"; filename="mcp-metadata.json"`)
		h.Set("Content-Type", "application/json")
		part, err := mw.CreatePart(h)
		if err == nil {
			_, err = part.Write(in.Metadata)
		}
		if err != nil {
			return nil, &Error{Op: "publishing asset to Exchange", Class: ClassInvalid, Err: err}
		}
	}
	if err := mw.Close(); err != nil {
		return nil, &Error{Op: "publishing asset to Exchange", Class: ClassInvalid, Err: err}
	}

	r := &request{
		op:          "publishing asset to Exchange",
		method:      http.MethodPost,
		path:        pathf(prefixExchange+"/organizations/%s/assets/%s/%s/%s", org, in.GroupID, in.AssetID, in.Version),
		rawBody:     buf.Bytes(),
		contentType: mw.FormDataContentType(),
		header:      http.Header{"X-Sync-Publication": {strconv.FormatBool(in.Sync)}},
	}
	resp, err := s.do(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusAccepted {
		var body struct {
			PublicationStatusLink string `json:"publicationStatusLink"`
		}
		if err := decode(r, resp, &body); err != nil {
			return nil, err
		}
		return &Publication{StatusLink: body.PublicationStatusLink}, nil
	}
	var asset AssetSummary
	if err := decode(r, resp, &asset); err != nil {
		return nil, err
	}
	return &Publication{Asset: &asset}, nil
}

// PublicationStep is one step of an asynchronous publication.
type PublicationStep struct {
	Description string     `json:"description"`
	Status      string     `json:"status"`
	Errors      stringList `json:"errors"`
}

// Publication states.
const (
	PublicationRunning   = "running"
	PublicationCompleted = "completed"
	PublicationFailed    = "failed"
)

// PublicationStatus is the state of an asynchronous publication; Asset is set
// once it completed.
type PublicationStatus struct {
	Status    string            `json:"status"`
	AssetType string            `json:"assetType"`
	Steps     []PublicationStep `json:"steps"`
	Asset     *AssetSummary     `json:"asset"`
}

// PublicationStatus polls a publication. statusLink may be the absolute link
// Exchange returned (its path is rebased onto the client's base URL, so a
// link naming another host is never followed) or a path.
func (s *Session) PublicationStatus(ctx context.Context, statusLink string) (*PublicationStatus, error) {
	r := &request{op: "reading publication status", method: http.MethodGet}
	u, err := url.Parse(statusLink)
	if err != nil || u.EscapedPath() == "" {
		return nil, &Error{Op: r.op, Class: ClassInvalid, Message: "publication status link is not a URL or path"}
	}
	path := u.EscapedPath()
	// A link built from our own base URL carries its path prefix already.
	if base := s.c.baseURL.EscapedPath(); base != "" && strings.HasPrefix(path, base+"/") {
		path = strings.TrimPrefix(path, base)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	r.path = path
	if u.RawQuery != "" {
		r.query = u.Query()
	}
	var st PublicationStatus
	if _, err := s.do(ctx, r, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// AssetAttribute is one key/value attribute of an asset (e.g. platform).
type AssetAttribute struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// AssetFile is one file of an asset.
type AssetFile struct {
	Classifier   string `json:"classifier"`
	Packaging    string `json:"packaging"`
	DownloadURL  string `json:"downloadURL"`
	ExternalLink string `json:"externalLink"`
	MD5          string `json:"md5"`
	SHA1         string `json:"sha1"`
	CreatedDate  string `json:"createdDate"`
}

// AssetOrganization is the organization owning an asset.
type AssetOrganization struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

// Asset is an Exchange asset, as returned by the asset read and by search.
type Asset struct {
	ID             string             `json:"id"`
	OrganizationID string             `json:"organizationId"`
	GroupID        string             `json:"groupId"`
	AssetID        string             `json:"assetId"`
	Version        string             `json:"version"`
	MinorVersion   string             `json:"minorVersion"`
	VersionGroup   string             `json:"versionGroup"`
	Name           string             `json:"name"`
	Description    string             `json:"description"`
	Type           string             `json:"type"`
	Status         string             `json:"status"`
	IsPublic       bool               `json:"isPublic"`
	IsSnapshot     bool               `json:"isSnapshot"`
	Labels         []string           `json:"labels"`
	Attributes     []AssetAttribute   `json:"attributes"`
	Files          []AssetFile        `json:"files"`
	CreatedAt      string             `json:"createdAt"`
	CreatedDate    string             `json:"createdDate"`
	UpdatedDate    string             `json:"updatedDate"`
	Organization   *AssetOrganization `json:"organization"`
}

// GetAsset reads one asset version.
func (s *Session) GetAsset(ctx context.Context, groupID, assetID, version string) (*Asset, error) {
	r := &request{op: "reading Exchange asset", method: http.MethodGet,
		path: pathf(prefixExchange+"/assets/%s/%s/%s", groupID, assetID, version)}
	var a Asset
	if _, err := s.do(ctx, r, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// AssetSearch filters an Exchange search. The search is not organization
// scoped unless OrganizationIDs is set.
type AssetSearch struct {
	Types           []string
	Search          string
	OrganizationIDs []string
	Offset, Limit   int
}

// Exchange search paging: limit is at most 250 (docs/architecture.md,
// "Anypoint: list shapes").
const (
	maxSearchLimit = 250
	maxSearchPages = 40
)

// SearchAssets returns one page of an Exchange search (a bare array).
func (s *Session) SearchAssets(ctx context.Context, q AssetSearch) ([]Asset, error) {
	v := url.Values{}
	for _, t := range q.Types {
		v.Add("types", t)
	}
	if q.Search != "" {
		v.Set("search", q.Search)
	}
	for _, o := range q.OrganizationIDs {
		v.Add("organizationId", o)
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(min(q.Limit, maxSearchLimit)))
	}
	r := &request{op: "searching Exchange", method: http.MethodGet, path: prefixExchange + "/assets/search", query: v}
	var assets []Asset
	if _, err := s.do(ctx, r, &assets); err != nil {
		return nil, err
	}
	return assets, nil
}

// SearchAllAssets pages through a search from q.Offset until a short page, at
// most maxSearchPages pages (10,000 assets with the default page size).
func (s *Session) SearchAllAssets(ctx context.Context, q AssetSearch) ([]Asset, error) {
	if q.Limit <= 0 || q.Limit > maxSearchLimit {
		q.Limit = maxSearchLimit
	}
	var all []Asset
	for page := 0; page < maxSearchPages; page++ {
		assets, err := s.SearchAssets(ctx, q)
		if err != nil {
			return nil, err
		}
		all = append(all, assets...)
		if len(assets) < q.Limit {
			break
		}
		q.Offset += len(assets)
	}
	return all, nil
}
