package anypoint

import (
	"context"
	"crypto/sha256"
	"net/http"
	"time"
)

// Credentials authenticate to Anypoint: a bearer token, a connected app
// (client credentials; with Username and Password too, the password grant of a
// connected app acting for a user), or a user's username and password.
type Credentials struct {
	Token        string
	ClientID     string
	ClientSecret string
	Username     string
	Password     string
}

// String keeps credentials out of any log line or error that formats them.
func (Credentials) String() string { return "[redacted credentials]" }

// GoString keeps credentials out of %#v output.
func (Credentials) GoString() string { return "[redacted credentials]" }

// MarshalJSON keeps credentials out of JSON logs and bodies: they are never
// meant to be serialised by this package's callers.
func (Credentials) MarshalJSON() ([]byte, error) { return []byte(`"[redacted credentials]"`), nil }

// credentialKind is how a Session obtains its token.
type credentialKind int

const (
	kindNone credentialKind = iota
	kindStatic
	kindConnectedApp
	kindLogin
)

func (cr Credentials) kind() credentialKind {
	switch {
	case cr.Token != "":
		return kindStatic
	case cr.ClientID != "" && cr.ClientSecret != "":
		return kindConnectedApp
	case cr.Username != "" && cr.Password != "":
		return kindLogin
	default:
		return kindNone
	}
}

// secrets lists the values that must never appear in an error text.
func (cr Credentials) secrets() []string {
	return []string{cr.Token, cr.ClientSecret, cr.Password}
}

// credentialKey identifies a credential in the token cache without keeping
// its secret as a map key.
type credentialKey [sha256.Size]byte

func (cr Credentials) key() credentialKey {
	h := sha256.New()
	for _, part := range []string{cr.ClientID, cr.ClientSecret, cr.Username, cr.Password} {
		// Length-prefix each part so ("ab","c") and ("a","bc") differ.
		var n [8]byte
		l := uint64(len(part))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(part))
	}
	var k credentialKey
	copy(k[:], h.Sum(nil))
	return k
}

// Session is a Client bound to one credential. It is cheap to create: the
// token cache lives in the Client and is shared by every Session of the same
// credential.
type Session struct {
	c   *Client
	cr  Credentials
	key credentialKey
	// extra are more values to redact from errors (sensitive policy
	// configuration values the session sends).
	extra []string
	// org is the organization whose budget the calls count against (see ForOrganization).
	org string
}

// WithSecrets returns a copy of the session that also redacts values from
// every error, for calls that send secrets of their own (a policy's
// sensitive configuration values). The copy shares the token cache.
func (s *Session) WithSecrets(values ...string) *Session {
	c := *s
	c.extra = append(append([]string(nil), s.extra...), values...)
	return &c
}

// Redactor returns the redactor of the session's secrets: its credentials
// (and their Basic-auth pairs), the token in use and the extra values.
func (s *Session) Redactor(token string) *Redactor {
	secrets := append(append(s.cr.secrets(), token), s.extra...)
	return NewRedactor(secrets, [2]string{s.cr.Username, s.cr.Password}, [2]string{s.cr.ClientID, s.cr.ClientSecret})
}

// Session returns a Session authenticating with cr.
func (c *Client) Session(cr Credentials) *Session {
	s := &Session{c: c, cr: cr}
	if k := cr.kind(); k == kindConnectedApp || k == kindLogin {
		s.key = cr.key()
	}
	return s
}

// Token returns a bearer token for the session's credential, fetching or
// refreshing it when the cached one is missing or about to expire.
func (s *Session) Token(ctx context.Context) (string, error) {
	switch s.cr.kind() {
	case kindStatic:
		return s.cr.Token, nil
	case kindNone:
		return "", &Error{Op: "authenticating", Class: ClassUnauthorized, Message: "no Anypoint credentials given"}
	}
	return s.c.tokens.token(ctx, s)
}

// The calls that obtain a token. A failure of one of them is a failure to
// log in, whatever call needed the token.
const (
	LoginPath = prefixAccounts + "/login"
	TokenPath = prefixAccounts + "/api/v2/oauth2/token"
)

// TokenRequest reports whether the failed call was the login or the OAuth
// token call, rather than the call that needed the token.
func (e *Error) TokenRequest() bool { return e.Path == LoginPath || e.Path == TokenPath }

// tokenResponse is the body of both the login and the OAuth token endpoints.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// requestToken calls the login or OAuth token endpoint once.
func (s *Session) requestToken(ctx context.Context) (string, time.Duration, error) {
	var r *request
	switch {
	case s.cr.kind() == kindConnectedApp && s.cr.Username != "" && s.cr.Password != "":
		r = &request{op: "getting a token for the connected app and user", method: http.MethodPost,
			path: TokenPath,
			body: map[string]string{
				"grant_type": "password", "client_id": s.cr.ClientID, "client_secret": s.cr.ClientSecret,
				"username": s.cr.Username, "password": s.cr.Password,
			}}
	case s.cr.kind() == kindConnectedApp:
		r = &request{op: "getting a token for the connected app", method: http.MethodPost,
			path: TokenPath,
			body: map[string]string{
				"grant_type": "client_credentials", "client_id": s.cr.ClientID, "client_secret": s.cr.ClientSecret,
			}}
	default:
		r = &request{op: "logging in with username and password", method: http.MethodPost, path: LoginPath,
			body: map[string]string{"username": s.cr.Username, "password": s.cr.Password}}
	}
	resp, err := s.c.send(ctx, r, "")
	if err != nil {
		s.redact(err, "")
		return "", 0, err
	}
	var tr tokenResponse
	if err := decode(r, resp, &tr); err != nil {
		return "", 0, err
	}
	if tr.AccessToken == "" {
		return "", 0, &Error{Op: r.op, Method: r.method, Path: r.path, Status: resp.status,
			Class: ClassUnauthorized, Message: "token response has no access_token"}
	}
	lifetime := loginTokenLifetime
	if tr.ExpiresIn > 0 {
		lifetime = time.Duration(tr.ExpiresIn) * time.Second
	}
	return tr.AccessToken, lifetime, nil
}

// invalidate drops the cached token if it is still the one that was refused,
// so that of many requests refused at once only the first triggers a fetch.
func (s *Session) invalidate(refused string) {
	s.c.tokens.invalidate(s.key, refused)
}

// redact scrubs the session's secrets (and the token in use) from an error.
func (s *Session) redact(err error, token string) {
	if e := AsError(err); e != nil {
		e.redact(s.Redactor(token))
	}
}

// do performs an authenticated call and decodes a success body into out. On a
// 401 with a refreshable credential it fetches a new token and retries once;
// this is the only retry the client makes.
func (s *Session) do(ctx context.Context, r *request, out any) (*response, error) {
	tok, err := s.Token(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.pace(ctx, r); err != nil {
		return nil, err
	}
	resp, err := s.c.send(ctx, r, tok)
	if err != nil && StatusOf(err) == http.StatusUnauthorized && s.refreshable() {
		s.invalidate(tok)
		if tok, err = s.Token(ctx); err != nil {
			return nil, err
		}
		if err := s.pace(ctx, r); err != nil {
			return nil, err
		}
		resp, err = s.c.send(ctx, r, tok)
	}
	s.observe(ctx, err)
	if err != nil {
		s.redact(err, tok)
		return nil, err
	}
	if err := decode(r, resp, out); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Session) refreshable() bool {
	k := s.cr.kind()
	return k == kindConnectedApp || k == kindLogin
}

// Me is the caller's identity from GET /accounts/api/me. User tokens carry
// User; connected-app tokens carry only Client.
type Me struct {
	User   *MeUser   `json:"user"`
	Client *MeClient `json:"client"`
}

// MeUser is the user part of Me.
type MeUser struct {
	ID             string          `json:"id"`
	Username       string          `json:"username"`
	FirstName      string          `json:"firstName"`
	LastName       string          `json:"lastName"`
	Email          string          `json:"email"`
	OrganizationID string          `json:"organizationId"`
	Organization   *MeOrganization `json:"organization"`
	Properties     struct {
		CSAuth struct {
			ActiveOrganizationID string `json:"activeOrganizationId"`
		} `json:"cs_auth"`
	} `json:"properties"`
}

// MeOrganization is the user's organization.
type MeOrganization struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
}

// MeClient is the OAuth client behind a token.
type MeClient struct {
	ClientID string `json:"client_id"`
	Name     string `json:"name"`
	OrgID    string `json:"org_id"`
}

// OrganizationID picks the organization the way MuleSoft's Terraform
// provider does (docs/architecture.md, "Anypoint: identities"): the connected app's client.org_id,
// else the user's organization, else the user's active one. The first two
// differ only for a user of another organization acting through an app,
// whose calls act in the app's organization.
func (m *Me) OrganizationID() string {
	if m.Client != nil && m.Client.OrgID != "" {
		return m.Client.OrgID
	}
	if m.User != nil && m.User.Organization != nil && m.User.Organization.ID != "" {
		return m.User.Organization.ID
	}
	if m.User != nil {
		if id := m.User.Properties.CSAuth.ActiveOrganizationID; id != "" {
			return id
		}
		return m.User.OrganizationID
	}
	return ""
}

// Me returns the identity behind the session's token.
func (s *Session) Me(ctx context.Context) (*Me, error) {
	r := &request{op: "reading the caller's identity", method: http.MethodGet, path: prefixAccounts + "/api/me"}
	var me Me
	if _, err := s.do(ctx, r, &me); err != nil {
		return nil, err
	}
	s.learnOrganization(me.OrganizationID())
	return &me, nil
}

// OrganizationID returns the caller's organization id (see Me.OrganizationID).
func (s *Session) OrganizationID(ctx context.Context) (string, error) {
	me, err := s.Me(ctx)
	if err != nil {
		return "", err
	}
	id := me.OrganizationID()
	if id == "" {
		return "", &Error{Op: "reading the caller's identity", Method: http.MethodGet,
			Path: prefixAccounts + "/api/me", Status: http.StatusOK, Class: ClassInvalid,
			Message: "no organization id in user.organization.id, client.org_id or user.properties.cs_auth.activeOrganizationId"}
	}
	return id, nil
}
