package sim

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoginBothPathsAndMe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/accounts/login", "/accounts/api/login"} {
		r := e.do("POST", path, "", map[string]string{"username": Username, "password": Password})
		wantStatus(t, r, 200)
		body := r.obj(t)
		if body["token_type"] != "bearer" || body["redirectUrl"] != "/home/" || body["access_token"] == "" {
			t.Fatalf("%s: unexpected login body %s", path, r.raw)
		}
		me := e.do("GET", "/accounts/api/me", body["access_token"].(string), nil)
		wantStatus(t, me, 200)
		user := me.obj(t)["user"].(map[string]any)
		if got := user["organization"].(map[string]any)["id"]; got != DefaultOrgID {
			t.Fatalf("user.organization.id = %v, want %s", got, DefaultOrgID)
		}
	}
	r := e.do("POST", "/accounts/login", "", map[string]string{"username": Username, "password": "wrong"})
	wantStatus(t, r, 401)
	if strings.Contains(string(r.raw), "wrong") {
		t.Fatalf("error echoes the password: %s", r.raw)
	}
}

func TestConnectedAppTokenJSONAndForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithTokenTTL(90*time.Second))
	jsonRes := e.do("POST", "/accounts/api/v2/oauth2/token", "", map[string]string{
		"grant_type": "client_credentials", "client_id": ClientID, "client_secret": ClientSecret})
	formRes := e.do("POST", "/accounts/api/v2/oauth2/token", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {ClientID}, "client_secret": {ClientSecret}})
	for _, r := range []resp{jsonRes, formRes} {
		wantStatus(t, r, 200)
		body := r.obj(t)
		if body["token_type"] != "bearer" || jsonInt(t, body["expires_in"], "expires_in") != 90 {
			t.Fatalf("unexpected token body %s", r.raw)
		}
		me := e.do("GET", "/accounts/api/me", body["access_token"].(string), nil).obj(t)
		if _, hasUser := me["user"]; hasUser {
			t.Fatalf("connected-app /me has a user: %v", me)
		}
		if got := me["client"].(map[string]any)["org_id"]; got != DefaultOrgID {
			t.Fatalf("client.org_id = %v, want %s", got, DefaultOrgID)
		}
	}
	bad := e.do("POST", "/accounts/api/v2/oauth2/token", "", map[string]string{"client_id": ClientID, "client_secret": "nope"})
	wantStatus(t, bad, 401)

	pw := e.do("POST", "/accounts/api/v2/oauth2/token", "", map[string]string{"grant_type": "password",
		"client_id": ClientID, "client_secret": ClientSecret, "username": Username, "password": Password})
	wantStatus(t, pw, 200)
	me := e.do("GET", "/accounts/api/me", pw.obj(t)["access_token"].(string), nil).obj(t)
	if me["user"].(map[string]any)["organization"].(map[string]any)["id"] != DefaultOrgID {
		t.Fatalf("password grant /me lacks the user: %v", me)
	}
}

func TestUnauthorizedAndExpiredTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wantStatus(t, e.do("GET", "/accounts/api/me", "", nil), 401)
	wantStatus(t, e.do("GET", "/accounts/api/me", "not-a-token", nil), 401)
	wantStatus(t, e.call("GET", "/accounts/api/me", nil), 200)
	e.sim.ExpireTokens()
	wantStatus(t, e.call("GET", "/accounts/api/me", nil), 401)
	wantStatus(t, e.do("GET", "/accounts/api/me", e.login(Username, Password), nil), 200)

	short := newEnv(t, WithTokenTTL(20*time.Millisecond))
	eventually(t, "token to expire", func() bool {
		return short.call("GET", "/accounts/api/me", nil).status == 401
	})
}

func TestScopesAndOrganizationAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	noPolicies := e.appToken(NoPoliciesClientID, NoPoliciesClientSecret)
	noExchange := e.appToken(NoExchangeClientID, NoExchangeClientSecret)
	full := e.appToken(ClientID, ClientSecret)
	policy := map[string]any{"groupId": PolicyGroupID, "assetId": "mcp-schema-validation", "assetVersion": "1.1.0", "configurationData": map[string]any{}}
	policiesPath := apisPath + "/" + itoa(ExistingInstanceID) + "/policies"

	wantStatus(t, e.do("POST", policiesPath, noPolicies, policy), 403)
	wantStatus(t, e.do("GET", policiesPath+"?fullInfo=false", noPolicies, nil), 200)
	wantStatus(t, e.do("POST", policiesPath, full, policy), 201)

	publish := "/exchange/api/v2/organizations/" + DefaultOrgID + "/assets/" + DefaultOrgID + "/scoped-mcp/1.0.0"
	mp := multipartOf(t, map[string]string{"type": "mcp", "name": "Scoped"}, nil)
	r := e.do("POST", publish, noExchange, mp, "x-sync-publication", "true")
	wantStatus(t, r, 403)
	if r.obj(t)["code"] != "FORBIDDEN" {
		t.Fatalf("Exchange 403 not in the Exchange shape: %s", r.raw)
	}
	wantStatus(t, e.do("POST", publish, full, multipartOf(t, map[string]string{"type": "mcp", "name": "Scoped"}, nil), "x-sync-publication", "true"), 201)

	// The default user cannot see the hidden org; the app cannot see the partner org.
	wantStatus(t, e.call("GET", "/accounts/api/organizations/"+HiddenOrgID+"/environments", nil), 403)
	wantStatus(t, e.call("GET", "/accounts/api/organizations/"+PartnerOrgID+"/environments", nil), 200)
	wantStatus(t, e.do("GET", "/accounts/api/organizations/"+PartnerOrgID+"/environments", full, nil), 403)
}

func TestRateLimitFixedWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithRateLimit(2, time.Hour))
	// The login of newEnv used the client-address window, not the token's.
	for i := 0; i < 2; i++ {
		r := e.call("GET", "/accounts/api/me", nil)
		wantStatus(t, r, 200)
		if r.header.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("X-RateLimit-Limit = %q", r.header.Get("X-RateLimit-Limit"))
		}
	}
	r := e.call("GET", "/accounts/api/me", nil)
	wantStatus(t, r, 429)
	if r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("X-RateLimit-Remaining = %q", r.header.Get("X-RateLimit-Remaining"))
	}
	reset, err := strconv.ParseInt(r.header.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil || reset < time.Now().Unix() {
		t.Fatalf("X-RateLimit-Reset %q is not a future epoch second", r.header.Get("X-RateLimit-Reset"))
	}
	// Another token has its own window.
	wantStatus(t, e.do("GET", "/accounts/api/me", e.appToken(ClientID, ClientSecret), nil), 200)
}
