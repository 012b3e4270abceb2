package sim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
)

// token is an issued access token. A token acts for a user (user != nil) or
// for a connected app alone (app != nil, user == nil).
type token struct {
	value     string
	expiresAt time.Time
	user      *FixtureUser
	app       *FixtureApp
}

// caller is the authenticated identity of one request.
type caller struct {
	token  string
	user   *FixtureUser
	app    *FixtureApp
	orgs   []string // organizations visible to the caller, own first
	scopes map[string]bool
}

func (c *caller) canSee(org string) bool {
	for _, o := range c.orgs {
		if o == org {
			return true
		}
	}
	return false
}

func (c *caller) userID() string {
	if c.user != nil {
		return c.user.ID
	}
	return c.app.ClientID
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func secretEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// ExpireTokens expires every token issued so far, so the next call with any of
// them gets 401: the way to test a client's refresh.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.expiresAt = time.Time{}
	}
}

// Token issues a token for a fixture user or connected app without an HTTP
// round trip, for tests that are not about authentication. It returns an
// error when the credentials match no fixture.
func (s *Server) Token(username, password string) (string, error) {
	if u := s.findUser(username, password); u != nil {
		return s.issue(u, nil).value, nil
	}
	if a := s.findApp(username, password); a != nil {
		return s.issue(nil, a).value, nil
	}
	return "", fmt.Errorf("sim: no user or connected app matches the given credentials")
}

func (s *Server) findUser(username, password string) *FixtureUser {
	for i := range s.fixtures.Users {
		u := &s.fixtures.Users[i]
		if u.Username == username && secretEqual(u.Password, password) {
			return u
		}
	}
	return nil
}

func (s *Server) findApp(clientID, secret string) *FixtureApp {
	for i := range s.fixtures.ConnectedApps {
		a := &s.fixtures.ConnectedApps[i]
		if a.ClientID == clientID && secretEqual(a.ClientSecret, secret) {
			return a
		}
	}
	return nil
}

func (s *Server) issue(u *FixtureUser, a *FixtureApp) *token {
	t := &token{value: newUUID(), expiresAt: time.Now().Add(s.tokenTTL), user: u, app: a}
	s.mu.Lock()
	s.tokens[t.value] = t
	s.mu.Unlock()
	return t
}

// authenticate resolves the bearer token; on failure it returns the status
// and message to answer.
func (s *Server) authenticate(r *http.Request) (*caller, int, string) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return nil, http.StatusUnauthorized, "Unauthorized"
	}
	value := strings.TrimSpace(h[len(prefix):])
	s.mu.Lock()
	t := s.tokens[value]
	s.mu.Unlock()
	if t == nil || !time.Now().Before(t.expiresAt) {
		return nil, http.StatusUnauthorized, "Unauthorized"
	}
	c := &caller{token: value, user: t.user, app: t.app, scopes: map[string]bool{}}
	switch {
	case t.user != nil:
		c.orgs = t.user.Organizations
		if t.app != nil && !slices.Contains(c.orgs, t.app.OrganizationID) {
			// A user of another organization acting through a connected
			// app acts in the app's organization first.
			c.orgs = append([]string{t.app.OrganizationID}, c.orgs...)
		}
		for _, sc := range AllScopes() {
			c.scopes[sc] = true
		}
	default:
		c.orgs = []string{t.app.OrganizationID}
		for _, sc := range t.app.Scopes {
			c.scopes[sc] = true
		}
	}
	return c, 0, ""
}

// login serves POST /accounts/login and /accounts/api/login.
func (s *Server) login(w http.ResponseWriter, r *http.Request, _ *caller) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decodeJSON(r, &in); err != nil || in.Username == "" || in.Password == "" {
		writeError(w, productAccounts, http.StatusBadRequest, "", "username and password are required")
		return
	}
	u := s.findUser(in.Username, in.Password)
	if u == nil {
		writeError(w, productAccounts, http.StatusUnauthorized, "", "Invalid username or password")
		return
	}
	t := s.issue(u, nil)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": t.value, "token_type": "bearer", "redirectUrl": "/home/"})
}

// oauthToken serves POST /accounts/api/v2/oauth2/token with a JSON or a
// form-urlencoded body.
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request, _ *caller) {
	var in struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Username     string `json:"username"`
		Password     string `json:"password"`
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		if err := r.ParseForm(); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", "The request body could not be read")
			return
		}
		in.GrantType, in.ClientID, in.ClientSecret = r.PostForm.Get("grant_type"), r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		in.Username, in.Password = r.PostForm.Get("username"), r.PostForm.Get("password")
	} else if err := decodeJSON(r, &in); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The request body is not valid JSON")
		return
	}
	if in.GrantType == "" {
		in.GrantType = "client_credentials"
	}
	if in.GrantType != "client_credentials" && in.GrantType != "password" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type")
		return
	}
	app := s.findApp(in.ClientID, in.ClientSecret)
	if app == nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Invalid client credentials")
		return
	}
	var user *FixtureUser
	if in.GrantType == "password" {
		if user = s.findUser(in.Username, in.Password); user == nil {
			oauthError(w, http.StatusUnauthorized, "invalid_grant", "Invalid username or password")
			return
		}
	}
	t := s.issue(user, app)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": t.value, "token_type": "bearer", "expires_in": int64(s.tokenTTL / time.Second),
	})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

// me serves GET /accounts/api/me: a user object for user tokens, a client
// with org_id for connected-app tokens, both when an app acts for a user
// (docs/architecture.md, "Anypoint: identities").
func (s *Server) me(w http.ResponseWriter, _ *http.Request, c *caller) {
	out := map[string]any{}
	if c.user != nil {
		u := c.user
		own := s.org(u.Organizations[0])
		var member []map[string]any
		for _, id := range u.Organizations {
			o := s.org(id)
			member = append(member, map[string]any{"id": o.ID, "name": o.Name})
		}
		out["user"] = map[string]any{
			"id": u.ID, "username": u.Username, "firstName": u.FirstName, "lastName": u.LastName,
			"email": u.Email, "enabled": true, "organizationId": own.ID,
			"organization": map[string]any{
				"id": own.ID, "name": own.Name, "domain": own.Domain, "isMaster": true, "isRoot": true,
				"subOrganizationIds": []string{}, "parentOrganizationIds": []string{}, "entitlements": map[string]any{},
			},
			"memberOfOrganizations":      member,
			"contributorOfOrganizations": member,
			"properties":                 map[string]any{"cs_auth": map[string]any{"activeOrganizationId": own.ID}},
		}
	}
	if c.app != nil {
		// client.org_id is the app's organization, also when the app acts for
		// a user, who may belong to another one (docs/architecture.md, "Anypoint: identities").
		out["client"] = map[string]any{"client_id": c.app.ClientID, "name": c.app.Name, "org_id": c.app.OrganizationID}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) org(id string) FixtureOrg {
	for _, o := range s.fixtures.Organizations {
		if o.ID == id {
			return o
		}
	}
	return FixtureOrg{ID: id, Name: id}
}
