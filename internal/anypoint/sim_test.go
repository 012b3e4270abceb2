package anypoint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/testlog"

	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// newSim starts a simulator with instant propagation (unless opts say
// otherwise) and returns it with a client pointed at it.
func newSim(t *testing.T, opts ...sim.Option) (*sim.Server, *anypoint.Client, string) {
	t.Helper()
	s := sim.New(append([]sim.Option{sim.WithDeploymentDelay(0), sim.WithPublicationDelay(0)}, opts...)...)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, anypoint.New(srv.URL, anypoint.WithTimeout(10*time.Second)), srv.URL
}

func appCredentials() anypoint.Credentials {
	return anypoint.Credentials{ClientID: sim.ClientID, ClientSecret: sim.ClientSecret}
}

func userCredentials() anypoint.Credentials {
	return anypoint.Credentials{Username: sim.Username, Password: sim.Password}
}

// wantAnypointError asserts err is an *anypoint.Error of class and status
// whose message contains msg, and returns it.
func wantAnypointError(t *testing.T, err error, class anypoint.Class, status int, msg string) *anypoint.Error {
	t.Helper()
	e := anypoint.AsError(err)
	if e == nil {
		t.Fatalf("got %v (%T), want *anypoint.Error", err, err)
	}
	if e.Class != class || e.Status != status || !strings.Contains(e.Message, msg) {
		t.Fatalf("got class=%q status=%d message=%q (%v), want class=%q status=%d message containing %q",
			e.Class, e.Status, e.Message, e, class, status, msg)
	}
	return e
}

func TestConnectedAppTokenIsCachedAndMeFallsBackToClientOrg(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	// Two sessions of the same credential share the cache.
	for i := 0; i < 10; i++ {
		me, err := c.Session(appCredentials()).Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if me.User != nil || me.Client == nil || me.OrganizationID() != sim.DefaultOrgID {
			t.Fatalf("connected-app identity = %+v, want client.org_id %s and no user", me, sim.DefaultOrgID)
		}
	}
	if got := s.Calls(sim.RouteToken); got != 1 {
		t.Errorf("token route called %d times for 10 requests, want 1", got)
	}
	if got := s.Calls(sim.RouteMe); got != 10 {
		t.Errorf("me route called %d times, want 10", got)
	}
}

func TestLoginTokenIsCachedAndOrganizationFromUser(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(userCredentials())
	for i := 0; i < 5; i++ {
		org, err := sess.OrganizationID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if org != sim.DefaultOrgID {
			t.Fatalf("organization = %q, want %q", org, sim.DefaultOrgID)
		}
	}
	me, err := sess.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.User == nil || me.User.Username != sim.Username || me.User.Organization == nil {
		t.Fatalf("user identity = %+v", me.User)
	}
	if got := s.Calls(sim.RouteLogin); got != 1 {
		t.Errorf("login route called %d times for 6 requests, want 1", got)
	}
}

func TestTokenRefreshedExactlyOnceOn401UnderConcurrency(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	if _, err := sess.Me(ctx); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fresh Session each time: the cache is the Client's.
			_, err := c.Session(appCredentials()).Me(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("call after expiry failed: %v", err)
		}
	}
	if got := s.Calls(sim.RouteToken); got != 2 {
		t.Errorf("token route called %d times, want 2 (initial + one refresh)", got)
	}
}

func TestLoginTokenRefreshedOn401(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(userCredentials())
	if _, err := sess.Me(ctx); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	if _, err := sess.ListEnvironments(ctx, sim.DefaultOrgID, anypoint.EnvironmentQuery{}); err != nil {
		t.Fatalf("call after expiry: %v", err)
	}
	if got := s.Calls(sim.RouteLogin); got != 2 {
		t.Errorf("login route called %d times, want 2", got)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t, sim.WithTokenTTL(time.Second))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	if _, err := sess.Me(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the token's lifetime
	if _, err := sess.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Calls(sim.RouteToken); got != 2 {
		t.Errorf("token route called %d times, want 2", got)
	}
	// A proactive refresh means no request was refused and replayed.
	if got := s.Calls(sim.RouteMe); got != 2 {
		t.Errorf("me route called %d times, want 2 (no 401 replay)", got)
	}
}

func TestStaticTokenIsNotRefreshed(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	tok, err := s.Token(sim.Username, sim.Password)
	if err != nil {
		t.Fatal(err)
	}
	sess := c.Session(anypoint.Credentials{Token: tok})
	if got, _ := sess.Token(ctx); got != tok {
		t.Fatal("static token not returned as is")
	}
	if _, err := sess.Me(ctx); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	_, err = sess.Me(ctx)
	e := wantAnypointError(t, err, anypoint.ClassUnauthorized, http.StatusUnauthorized, "")
	if strings.Contains(e.Error(), tok) {
		t.Error("error text contains the token")
	}
	if got := s.Calls(sim.RouteMe); got != 2 {
		t.Errorf("me route called %d times, want 2 (no replay for a static token)", got)
	}
}

func TestBadCredentialsAreUnauthorizedAndNeverEchoed(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	for name, cr := range map[string]anypoint.Credentials{
		"app":  {ClientID: sim.ClientID, ClientSecret: "wrong-secret-0123456789"},
		"user": {Username: sim.Username, Password: "wrong-password-0123456789"},
	} {
		_, err := c.Session(cr).Me(ctx)
		e := anypoint.AsError(err)
		if e == nil || e.Class != anypoint.ClassUnauthorized {
			t.Fatalf("%s: got %v, want unauthorized", name, err)
		}
		if strings.Contains(e.Error(), "wrong-") || strings.Contains(e.Error(), sim.ClientSecret) {
			t.Errorf("%s: error leaks a secret: %v", name, e)
		}
	}
	_, err := c.Session(anypoint.Credentials{}).Me(ctx)
	if anypoint.ClassOf(err) != anypoint.ClassUnauthorized {
		t.Errorf("no credentials: got %v", err)
	}
}

func TestCredentialsStringRedacts(t *testing.T) {
	t.Parallel()
	cr := anypoint.Credentials{Token: "tok-abc", ClientSecret: "sec-abc", Password: "pw-abc"}
	for _, s := range []string{cr.String(), fmtAll(cr)} {
		if strings.Contains(s, "abc") {
			t.Errorf("credentials formatted with a secret: %s", s)
		}
	}
}

func fmtAll(cr anypoint.Credentials) string {
	var b bytes.Buffer
	l := zerolog.New(&b)
	l.Info().Interface("cr", cr).Msg("")
	return b.String() + cr.GoString()
}

func TestOrganizationIDFallbacks(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ body, want string }{
		// client.org_id wins: a user acting through another org's app.
		"user through an app": {`{"user":{"organization":{"id":"A"},"properties":{"cs_auth":{"activeOrganizationId":"C"}}},"client":{"org_id":"B"}}`, "B"},
		"user organization":   {`{"user":{"organization":{"id":"A"},"properties":{"cs_auth":{"activeOrganizationId":"C"}}}}`, "A"},
		"client org":          {`{"client":{"client_id":"x","org_id":"B"}}`, "B"},
		"active org":          {`{"user":{"properties":{"cs_auth":{"activeOrganizationId":"C"}}}}`, "C"},
		"none":                {`{}`, ""},
	}
	for name, tt := range tests {
		var me anypoint.Me
		if err := json.Unmarshal([]byte(tt.body), &me); err != nil {
			t.Fatal(err)
		}
		if got := me.OrganizationID(); got != tt.want {
			t.Errorf("%s: OrganizationID = %q, want %q", name, got, tt.want)
		}
	}
}

func TestListEnvironments(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	envs, err := sess.ListEnvironments(ctx, sim.DefaultOrgID, anypoint.EnvironmentQuery{Name: sim.EnvSandbox})
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 || envs[0].ID != sim.SandboxEnvID || envs[0].OrganizationID != sim.DefaultOrgID ||
		envs[0].IsProduction || envs[0].Type != "sandbox" || envs[0].ClientID == "" {
		t.Fatalf("Sandbox = %+v", envs)
	}
	all, err := sess.ListEnvironments(ctx, sim.DefaultOrgID, anypoint.EnvironmentQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var prod bool
	for _, e := range all {
		prod = prod || (e.ID == sim.ProductionEnvID && e.IsProduction)
	}
	if len(all) < 2 || !prod {
		t.Fatalf("all environments = %+v", all)
	}
}

func TestPublishSyncAndAsyncThenConflict(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org := sim.DefaultOrgID
	pub, err := sess.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "sync-mcp", Version: "1.0.0",
		Name: "Sync MCP", Description: "published synchronously", Type: anypoint.AssetTypeMCP, Sync: true,
		Metadata: []byte(`{"transport":{"kind":"streamable-http","url":"https://sync.internal/mcp"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Asset == nil || pub.Asset.AssetID != "sync-mcp" || pub.Asset.GroupID != org || pub.Asset.Version != "1.0.0" || pub.StatusLink != "" {
		t.Fatalf("sync publication = %+v", pub)
	}

	pub, err = sess.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "async-mcp", Version: "2.0.0",
		Name: "Async MCP", Type: anypoint.AssetTypeMCP, Properties: map[string]string{"platform": "mulesoft"}})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Asset != nil || pub.StatusLink == "" {
		t.Fatalf("async publication = %+v", pub)
	}
	var st *anypoint.PublicationStatus
	for i := 0; i < 50; i++ {
		if st, err = sess.PublicationStatus(ctx, pub.StatusLink); err != nil {
			t.Fatal(err)
		}
		if st.Status != anypoint.PublicationRunning {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Status != anypoint.PublicationCompleted || st.Asset == nil || st.Asset.AssetID != "async-mcp" {
		t.Fatalf("publication status = %+v", st)
	}
	asset, err := sess.GetAsset(ctx, org, "async-mcp", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if asset.Type != anypoint.AssetTypeMCP || asset.Name != "Async MCP" || asset.GroupID != org {
		t.Fatalf("asset = %+v", asset)
	}

	_, err = sess.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "sync-mcp", Version: "1.0.0",
		Name: "Sync MCP", Type: anypoint.AssetTypeMCP, Sync: true})
	e := wantAnypointError(t, err, anypoint.ClassConflict, http.StatusConflict, "Cannot create a new asset")
	if e.Code != "ASSET_PRE_CONDITIONS_FAILED" || len(e.Details) == 0 {
		t.Errorf("conflict code=%q details=%q", e.Code, e.Details)
	}

	_, err = sess.GetAsset(ctx, org, "no-such-mcp", "1.0.0")
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

func TestPublicationStatusAcceptsPath(t *testing.T) {
	t.Parallel()
	_, c, base := newSim(t, sim.WithPublicationDelay(time.Hour))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org := sim.DefaultOrgID
	pub, err := sess.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "slow-mcp", Version: "1.0.0",
		Name: "Slow", Type: anypoint.AssetTypeMCP})
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(pub.StatusLink, base)
	if !strings.HasPrefix(path, "/exchange/api/v2/") {
		t.Fatalf("status link %q is not on the simulator", pub.StatusLink)
	}
	for _, link := range []string{pub.StatusLink, path, "https://anypoint.mulesoft.com" + path} {
		st, err := sess.PublicationStatus(ctx, link)
		if err != nil {
			t.Fatalf("%s: %v", link, err)
		}
		if st.Status != anypoint.PublicationRunning || st.Asset != nil {
			t.Errorf("%s: status = %+v, want running without asset", link, st)
		}
	}
}

func TestSearchAssetsAcrossOrganizations(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(userCredentials())
	q := anypoint.AssetSearch{Types: []string{anypoint.AssetTypeMCP}}
	page, err := sess.SearchAssets(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]anypoint.Asset{}
	for _, a := range page {
		if a.Type != anypoint.AssetTypeMCP {
			t.Errorf("search for mcp returned %s of type %s", a.AssetID, a.Type)
		}
		found[a.AssetID] = a
	}
	if found[sim.ExistingAssetID].GroupID != sim.DefaultOrgID || found[sim.PartnerAssetID].Version != sim.PartnerAssetVersion {
		t.Errorf("search missed own or partner assets: %+v", found)
	}
	if _, ok := found[sim.HiddenAssetID]; ok {
		t.Error("search returned an asset of an invisible organization")
	}

	q.Limit = 1
	all, err := sess.SearchAllAssets(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(page) {
		t.Errorf("paging one by one found %d assets, one page found %d", len(all), len(page))
	}
	one, err := sess.SearchAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}, Limit: 1})
	if err != nil || len(one) != 1 {
		t.Fatalf("limit 1: %d assets, %v", len(one), err)
	}
	scoped, err := sess.SearchAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}, OrganizationIDs: []string{sim.PartnerOrgID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range scoped {
		if a.OrganizationID != sim.PartnerOrgID {
			t.Errorf("org-scoped search returned %s of %s", a.AssetID, a.OrganizationID)
		}
	}
	named, err := sess.SearchAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}, Search: "Weather"})
	if err != nil || len(named) != 1 || named[0].AssetID != sim.PartnerAssetID {
		t.Errorf("search by name = %+v, %v", named, err)
	}
}

func TestGatewayTargets(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	targets, err := sess.ListGatewayTargets(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.TargetQuery{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]anypoint.GatewayTarget{}
	for _, tg := range targets {
		byName[tg.Name] = tg
	}
	sb := byName[sim.TargetFlexSandbox]
	if sb.ID != sim.TargetFlexSandboxID || sb.Version != sim.TargetFlexSandboxVersion || !sb.Usable() || sb.TargetID == "" || sb.TargetID == sb.ID {
		t.Errorf("sandbox target = %+v", sb)
	}
	if down := byName[sim.TargetFlexDown]; down.ID != sim.TargetFlexDownID || down.Usable() {
		t.Errorf("down target = %+v", down)
	}
	legacy := byName[sim.TargetFlexLegacy]
	if legacy.ID != sim.TargetFlexLegacyID || anypoint.IsRealVersion(legacy.Version) {
		t.Fatalf("legacy target row = %+v, want a placeholder version", legacy)
	}
	named, err := sess.ListGatewayTargets(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.TargetQuery{Name: sim.TargetFlexLegacy})
	if err != nil || len(named) != 1 || named[0].ID != sim.TargetFlexLegacyID {
		t.Fatalf("by name = %+v, %v", named, err)
	}
	detail, err := sess.GetGatewayTarget(ctx, sim.DefaultOrgID, sim.SandboxEnvID, sim.TargetFlexLegacyID)
	if err != nil {
		t.Fatal(err)
	}
	if got := detail.GatewayVersion(); got != sim.TargetFlexLegacyVersion {
		t.Errorf("legacy detail version = %q, want %q (detail %s)", got, sim.TargetFlexLegacyVersion, detail.Raw)
	}
	_, err = sess.GetGatewayTarget(ctx, sim.DefaultOrgID, sim.SandboxEnvID, "00000000-0000-4000-8000-000000000000")
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

// createInstance creates an MCP instance of the existing fixture asset.
func createInstance(t *testing.T, sess *anypoint.Session, label string) *anypoint.APIInstance {
	t.Helper()
	inst, err := sess.CreateAPIInstance(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, anypoint.APIInstanceInput{
		GroupID: sim.DefaultOrgID, AssetID: sim.ExistingAssetID, AssetVersion: sim.ExistingAssetVersion,
		InstanceLabel: label, EndpointType: anypoint.EndpointTypeMCP,
		UpstreamURI: "https://inventory.internal/mcp", ProxyURI: "http://0.0.0.0:8082/" + label,
	})
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestAPIInstanceLifecycle(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	inst := createInstance(t, sess, "lifecycle-1")
	if inst.ID <= 0 || inst.Technology != anypoint.TechnologyFlexGateway || inst.InstanceLabel != "lifecycle-1" ||
		inst.AssetID != sim.ExistingAssetID || inst.Endpoint == nil || inst.Endpoint.IsCloudHub != nil ||
		inst.Endpoint.ProxyURI != "http://0.0.0.0:8082/lifecycle-1" || inst.Endpoint.URI != "https://inventory.internal/mcp" ||
		inst.Endpoint.DeploymentType != anypoint.DeploymentTypeHybrid {
		t.Fatalf("created instance = %+v endpoint %+v", inst, inst.Endpoint)
	}
	if got := s.State().InstancesWithLabel("lifecycle-1"); len(got) != 1 || got[0].ID != inst.ID || got[0].EndpointType != "mcp" {
		t.Fatalf("simulator holds %+v", got)
	}
	got, err := sess.GetAPIInstance(ctx, org, env, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != inst.ID || got.AutodiscoveryInstanceName == "" || got.EnvironmentID != env {
		t.Fatalf("read instance = %+v", got)
	}
	list, err := sess.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: anypoint.FamilyAgentic, InstanceLabel: "lifecycle-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != inst.ID || list[0].AssetID != sim.ExistingAssetID {
		t.Fatalf("list by label = %+v", list)
	}
	all, err := sess.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: anypoint.FamilyAgentic})
	if err != nil {
		t.Fatal(err)
	}
	var fixture bool
	for _, i := range all {
		if i.ID == sim.ExistingInstanceID {
			fixture = i.Deployment != nil && i.Deployment.ID == sim.ExistingDeploymentID
		}
	}
	if len(all) < 2 || !fixture {
		t.Errorf("agentic instances = %+v", all)
	}
	if err := sess.DeleteAPIInstance(ctx, org, env, inst.ID); err != nil {
		t.Fatal(err)
	}
	_, err = sess.GetAPIInstance(ctx, org, env, inst.ID)
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

// TestCreateAPIInstanceSendsNullIsCloudHub proves the body the client sends
// has "isCloudHub": null: the simulator rejects false and a missing key,
// and accepts the client's body.
func TestCreateAPIInstanceSendsNullIsCloudHub(t *testing.T) {
	t.Parallel()
	s, c, base := newSim(t)
	ctx := context.Background()
	tok, err := s.Token(sim.Username, sim.Password)
	if err != nil {
		t.Fatal(err)
	}
	post := func(endpoint string) int {
		body := `{"technology":"flexGateway","instanceLabel":"raw","spec":{"groupId":"` + sim.DefaultOrgID +
			`","assetId":"` + sim.ExistingAssetID + `","version":"` + sim.ExistingAssetVersion + `"},"endpoint":` + endpoint + `}`
		req, _ := http.NewRequest(http.MethodPost, base+"/apimanager/api/v1/organizations/"+sim.DefaultOrgID+
			"/environments/"+sim.SandboxEnvID+"/apis", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(`{"uri":null,"proxyUri":"http://0.0.0.0:8081/","isCloudHub":false}`); got != http.StatusBadRequest {
		t.Fatalf("isCloudHub false answered %d, want 400", got)
	}
	if got := post(`{"uri":null,"proxyUri":"http://0.0.0.0:8081/"}`); got != http.StatusBadRequest {
		t.Fatalf("missing isCloudHub answered %d, want 400", got)
	}
	// Without upstream or proxy URIs the client still sends both keys (null).
	inst, err := c.Session(appCredentials()).CreateAPIInstance(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.APIInstanceInput{
		GroupID: sim.DefaultOrgID, AssetID: sim.ExistingAssetID, AssetVersion: sim.ExistingAssetVersion})
	if err != nil {
		t.Fatalf("client body refused: %v", err)
	}
	if inst.Endpoint == nil || inst.Endpoint.IsCloudHub != nil {
		t.Errorf("endpoint = %+v", inst.Endpoint)
	}
}

func TestCreateAPIInstanceGuideErrors(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	_, err := sess.CreateAPIInstance(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.APIInstanceInput{
		GroupID: sim.DefaultOrgID, AssetID: "not-published-mcp", AssetVersion: "1.0.0", ProxyURI: "http://0.0.0.0:8081/"})
	wantAnypointError(t, err, anypoint.ClassInvalid, http.StatusBadRequest, "There is no asset matching given parameters.")
	_, err = sess.GetAPIInstance(ctx, sim.DefaultOrgID, sim.SandboxEnvID, 99999999)
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

func TestDeploymentLifecycleAndGuideErrors(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	inst := createInstance(t, sess, "deploy-1")

	list, err := sess.ListDeployments(ctx, org, env, inst.ID)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("deployments before deploying = %#v, %v; want empty", list, err)
	}

	input := anypoint.DeploymentInput{Type: "HY", EnvironmentID: env, TargetID: sim.TargetFlexSandboxID,
		TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion}
	for _, tc := range []struct {
		name string
		mod  func(*anypoint.DeploymentInput)
		msg  string
	}{
		{"no environment", func(d *anypoint.DeploymentInput) { d.EnvironmentID = "" }, "Field environmentId is required for deployment type HY"},
		{"no version", func(d *anypoint.DeploymentInput) { d.GatewayVersion = "" }, "Field gatewayVersion is required for deployment type HY"},
		{"unknown version", func(d *anypoint.DeploymentInput) { d.GatewayVersion = "0.0.1" }, "Policy implementations cannot be set because runtime version is unknown"},
	} {
		in := input
		tc.mod(&in)
		_, err := sess.CreateDeployment(ctx, org, env, inst.ID, in)
		wantAnypointError(t, err, anypoint.ClassInvalid, http.StatusBadRequest, tc.msg)
	}

	dep, err := sess.CreateDeployment(ctx, org, env, inst.ID, input)
	if err != nil {
		t.Fatal(err)
	}
	if dep.ID <= 0 || dep.TargetID != sim.TargetFlexSandboxID || dep.GatewayVersion != sim.TargetFlexSandboxVersion {
		t.Fatalf("deployment = %+v", dep)
	}
	held := s.State().DeploymentsOf(inst.ID)
	if len(held) != 1 || held[0].EnvironmentID != env || held[0].TargetID != sim.TargetFlexSandboxID {
		t.Fatalf("simulator holds %+v", held)
	}

	_, err = sess.CreateDeployment(ctx, org, env, inst.ID, input)
	wantAnypointError(t, err, anypoint.ClassConflict, http.StatusConflict, "already deployed")

	list, err = sess.ListDeployments(ctx, org, env, inst.ID)
	if err != nil || len(list) != 1 || list[0].ID != dep.ID || list[0].TargetID != sim.TargetFlexSandboxID {
		t.Fatalf("deployments = %+v, %v", list, err)
	}
	got, err := sess.GetDeployment(ctx, org, env, inst.ID, dep.ID)
	if err != nil || got.ID != dep.ID || got.TargetName != sim.TargetFlexSandbox {
		t.Fatalf("get deployment = %+v, %v", got, err)
	}
	var st *anypoint.DeploymentStatus
	for i := 0; i < 50; i++ {
		if st, err = sess.DeploymentStatus(ctx, org, env, inst.ID, dep.ID); err != nil {
			t.Fatal(err)
		}
		if st.APIVersionStatus == anypoint.APIStatusActive {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Status != anypoint.DeploymentApplied || st.APIVersionStatus != anypoint.APIStatusActive {
		t.Fatalf("deployment status = %+v", st)
	}
	again, err := sess.GetAPIInstance(ctx, org, env, inst.ID)
	if err != nil || again.Status != "active" || again.Deployment == nil || again.Deployment.ID != dep.ID {
		t.Fatalf("instance after deployment = %+v, %v", again, err)
	}
	_, err = sess.GetDeployment(ctx, org, env, inst.ID, dep.ID+1000)
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

func TestDeploymentStatusWhileApplying(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t, sim.WithDeploymentDelay(time.Hour))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	inst := createInstance(t, sess, "slow-deploy")
	dep, err := sess.CreateDeployment(ctx, sim.DefaultOrgID, sim.SandboxEnvID, inst.ID, anypoint.DeploymentInput{
		EnvironmentID: sim.SandboxEnvID, TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox,
		GatewayVersion: sim.TargetFlexSandboxVersion})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sess.DeploymentStatus(ctx, sim.DefaultOrgID, sim.SandboxEnvID, inst.ID, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status == anypoint.DeploymentApplied || st.APIVersionStatus == anypoint.APIStatusActive {
		t.Fatalf("status before propagation = %+v", st)
	}
}

// findTemplate returns the template of assetID from a list.
func findTemplate(list []anypoint.PolicyTemplate, assetID string) *anypoint.PolicyTemplate {
	for i := range list {
		if list[i].AssetID == assetID {
			return &list[i]
		}
	}
	return nil
}

func TestPolicyTemplates(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	list, err := sess.ListPolicyTemplates(ctx, sim.DefaultOrgID, anypoint.PolicyTemplateQuery{
		APIInstanceID: sim.ExistingInstanceID, EnvironmentID: sim.SandboxEnvID, Latest: true, IncludeConfiguration: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"mcp-support", "rate-limiting", "client-id-enforcement"} {
		tpl := findTemplate(list, id)
		if tpl == nil {
			t.Fatalf("template %s missing from %d templates", id, len(list))
		}
		if tpl.ID <= 0 || tpl.GroupID != anypoint.PolicyGroupID || !anypoint.IsRealVersion(tpl.Version) || tpl.Name == "" {
			t.Errorf("template %s = %+v", id, tpl)
		}
	}
	if rl := findTemplate(list, "rate-limiting"); rl.Version != "1.4.1" || len(rl.Configuration) == 0 {
		t.Errorf("latest rate-limiting = %s with configuration %s", rl.Version, rl.Configuration)
	}
	cid := findTemplate(list, "client-id-enforcement")
	if !bytes.Contains(cid.Configuration, []byte("credentialsOriginHasHttpBasicAuthenticationHeader")) {
		t.Errorf("client-id-enforcement configuration lacks the Flex property name: %s", cid.Configuration)
	}
	all, err := sess.ListPolicyTemplates(ctx, sim.DefaultOrgID, anypoint.PolicyTemplateQuery{
		APIInstanceID: sim.ExistingInstanceID, EnvironmentID: sim.SandboxEnvID})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) <= len(list) {
		t.Errorf("all versions (%d templates) should outnumber latest only (%d)", len(all), len(list))
	}
	for _, tpl := range all {
		if tpl.Configuration != nil {
			t.Errorf("%s %s has a configuration although includeConfiguration=false", tpl.AssetID, tpl.Version)
		}
	}
}

func TestTemplateVersionFallsBackToAssetVersion(t *testing.T) {
	t.Parallel()
	var tpl []anypoint.PolicyTemplate
	if err := json.Unmarshal([]byte(`[{"id":1,"assetId":"a","assetVersion":"1.2.3","configuration":null},
		{"id":2,"assetId":"b","version":"2.0.0","assetVersion":"1.0.0","configuration":[{"propertyName":"x"}]}]`), &tpl); err != nil {
		t.Fatal(err)
	}
	if tpl[0].Version != "1.2.3" || tpl[0].Configuration != nil || tpl[1].Version != "2.0.0" || len(tpl[1].Configuration) == 0 {
		t.Errorf("templates = %+v", tpl)
	}
	var p anypoint.Policy
	if err := json.Unmarshal([]byte(`{"id":5,"policyTemplateId":1939,"apiId":7}`), &p); err != nil || p.PolicyTemplateID != "1939" {
		t.Errorf("numeric policyTemplateId: %+v, %v", p, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"5"}`), &p); err == nil {
		t.Error("a string policy id decoded into int64: ids must keep their types")
	}
}

func TestPolicyLifecycleAndGuideErrors(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	inst := createInstance(t, sess, "policies-1")
	one := 1
	support, err := sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "mcp-support", AssetVersion: "1.0.1", Order: &one}, false)
	if err != nil {
		t.Fatal(err)
	}
	if support.ID <= 0 || support.APIID != inst.ID || support.AssetID != "mcp-support" || support.Order != 1 || support.PolicyTemplateID == "" {
		t.Fatalf("mcp-support policy = %+v", support)
	}
	rlConfig := map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}
	rl, err := sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "rate-limiting", AssetVersion: "1.4.1", ConfigurationData: rlConfig}, false)
	if err != nil {
		t.Fatal(err)
	}
	if rl.Order <= support.Order {
		t.Errorf("rate-limiting order %d not after mcp-support %d", rl.Order, support.Order)
	}
	limits, _ := rl.ConfigurationData["rateLimits"].([]any)
	if len(limits) != 1 {
		t.Errorf("configuration read back = %v", rl.ConfigurationData)
	}

	_, err = sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "rate-limiting", AssetVersion: "1.4.1", ConfigurationData: rlConfig}, false)
	wantAnypointError(t, err, anypoint.ClassConflict, http.StatusConflict, "")
	dup, err := sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "rate-limiting", AssetVersion: "1.4.1", ConfigurationData: rlConfig}, true)
	if err != nil {
		t.Fatalf("allowDuplicated: %v", err)
	}

	_, err = sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{AssetID: "cors"}, false)
	wantAnypointError(t, err, anypoint.ClassInvalid, http.StatusBadRequest,
		"The policy to be created is missing at least one of the following properties related to the policy template: 'groupId', 'assetId', 'assetVersion'.")
	_, err = sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "client-id-enforcement", AssetVersion: "1.3.2",
		ConfigurationData: map[string]any{"credentialsOrigin": "customExpression"}}, false)
	e := anypoint.AsError(err)
	if e == nil || e.Class != anypoint.ClassInvalid || !strings.Contains(e.Error(), "credentialsOrigin") {
		t.Errorf("generic property name: got %v, want a 400 naming credentialsOrigin", err)
	}

	list, err := sess.ListPolicies(ctx, org, env, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != support.ID {
		t.Fatalf("policies = %+v", list)
	}
	if held := s.State().PoliciesOf(inst.ID); len(held) != 3 {
		t.Fatalf("simulator holds %d policies", len(held))
	}

	disabled, label := true, "off"
	upd, err := sess.UpdatePolicy(ctx, org, env, inst.ID, dup.ID, anypoint.PolicyPatch{Disabled: &disabled, Label: &label})
	if err != nil {
		t.Fatal(err)
	}
	if !upd.Disabled || upd.ID != dup.ID {
		t.Errorf("updated policy = %+v", upd)
	}
	got, err := sess.GetPolicy(ctx, org, env, inst.ID, dup.ID)
	if err != nil || !got.Disabled || got.AssetVersion != "1.4.1" {
		t.Fatalf("read policy = %+v, %v", got, err)
	}
	if err := sess.DeletePolicy(ctx, org, env, inst.ID, dup.ID); err != nil {
		t.Fatal(err)
	}
	_, err = sess.GetPolicy(ctx, org, env, inst.ID, dup.ID)
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
}

func TestPolicyForbiddenWithoutScope(t *testing.T) {
	t.Parallel()
	_, c, _ := newSim(t)
	sess := c.Session(anypoint.Credentials{ClientID: sim.NoPoliciesClientID, ClientSecret: sim.NoPoliciesClientSecret})
	_, err := sess.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID,
		anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID, AssetID: "mcp-support", AssetVersion: "1.0.1"}, false)
	wantAnypointError(t, err, anypoint.ClassForbidden, http.StatusForbidden, "")
}

// TestUpstreamFaults proves how each injected failure is classified and
// whether a write is flagged as possibly committed.
func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	listEnvs := func(ctx context.Context, s *anypoint.Session) error {
		_, err := s.ListEnvironments(ctx, org, anypoint.EnvironmentQuery{})
		return err
	}
	create := func(label string) func(ctx context.Context, s *anypoint.Session) error {
		return func(ctx context.Context, s *anypoint.Session) error {
			_, err := s.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{GroupID: org, AssetID: sim.ExistingAssetID,
				AssetVersion: sim.ExistingAssetVersion, InstanceLabel: label, ProxyURI: "http://0.0.0.0:8090/"})
			return err
		}
	}
	tests := []struct {
		name           string
		route          string
		fault          sim.Fault
		timeout        time.Duration
		call           func(context.Context, *anypoint.Session) error
		label          string // instance label whose creation is checked
		wantStatus     int
		wantRetryAfter time.Duration // exact, or an upper bound when wantRetryMax
		wantRetryMax   bool
		wantCommitted  bool
		wantCreated    bool
		wantDeadline   bool
	}{
		{name: "429 with Retry-After", route: sim.RouteListEnvironments, fault: sim.Fault{Status: 429, RetryAfterSeconds: 3},
			call: listEnvs, wantStatus: 429, wantRetryAfter: 3 * time.Second},
		{name: "503 with Retry-After", route: sim.RouteListEnvironments, fault: sim.Fault{Status: 503, RetryAfterSeconds: 2},
			call: listEnvs, wantStatus: 503, wantRetryAfter: 2 * time.Second},
		{name: "500 on a read", route: sim.RouteListEnvironments, fault: sim.Fault{Status: 500}, call: listEnvs, wantStatus: 500},
		{name: "500 on a write", route: sim.RouteCreateAPI, fault: sim.Fault{Status: 500}, call: create("f-500"), label: "f-500",
			wantStatus: 500, wantCommitted: true},
		{name: "503 from Exchange", route: sim.RouteSearchAssets, fault: sim.Fault{Status: 503},
			call: func(ctx context.Context, s *anypoint.Session) error {
				_, err := s.SearchAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}})
				return err
			}, wantStatus: 503},
		{name: "504 at the edge after creating", route: sim.RouteCreateAPI, fault: sim.Fault{Status: 504, CommitFirst: true},
			call: create("f-504"), label: "f-504", wantStatus: 504, wantCommitted: true, wantCreated: true},
		{name: "hang until client timeout", route: sim.RouteCreateAPI, fault: sim.Fault{Hang: true}, timeout: 300 * time.Millisecond,
			call: create("f-hang"), label: "f-hang", wantCommitted: true, wantDeadline: true},
		{name: "hang on a read", route: sim.RouteListEnvironments, fault: sim.Fault{Hang: true}, timeout: 300 * time.Millisecond,
			call: listEnvs, wantDeadline: true},
		{name: "drop after commit", route: sim.RouteCreateAPI, fault: sim.Fault{DropAfterCommit: true},
			call: create("f-drop"), label: "f-drop", wantCommitted: true, wantCreated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _, base := newSim(t)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			c := anypoint.New(base, anypoint.WithTimeout(timeout))
			sess := c.Session(appCredentials())
			if _, err := sess.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.SetFault(tt.route, tt.fault)
			err := tt.call(context.Background(), sess)
			e := anypoint.AsError(err)
			if e == nil {
				t.Fatalf("got %v, want *anypoint.Error", err)
			}
			if e.Class != anypoint.ClassTransient || !anypoint.IsTransient(err) {
				t.Errorf("class = %q, want transient", e.Class)
			}
			if e.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", e.Status, tt.wantStatus)
			}
			if tt.wantRetryMax {
				if e.RetryAfter <= 0 || e.RetryAfter > tt.wantRetryAfter {
					t.Errorf("RetryAfter = %v, want in (0, %v]", e.RetryAfter, tt.wantRetryAfter)
				}
			} else if e.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.wantRetryAfter)
			}
			if e.MaybeCommitted != tt.wantCommitted {
				t.Errorf("MaybeCommitted = %v, want %v", e.MaybeCommitted, tt.wantCommitted)
			}
			if tt.wantDeadline && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v is not a deadline", err)
			}
			if tt.wantStatus == 0 && e.Err == nil {
				t.Error("transport failure without a cause")
			}
			if tt.label != "" {
				if created := len(s.State().InstancesWithLabel(tt.label)) == 1; created != tt.wantCreated {
					t.Errorf("instance created = %v, want %v", created, tt.wantCreated)
				}
			}
			if strings.Contains(e.Error(), sim.ClientSecret) {
				t.Error("error leaks the client secret")
			}
		})
	}
}

func TestRateLimitResetHeader(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t, sim.WithRateLimit(2, 3*time.Second))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		_, err = sess.ListEnvironments(ctx, sim.DefaultOrgID, anypoint.EnvironmentQuery{})
	}
	e := wantAnypointError(t, err, anypoint.ClassTransient, http.StatusTooManyRequests, "")
	if e.RetryAfter <= 0 || e.RetryAfter > 3*time.Second {
		t.Errorf("RetryAfter = %v, want in (0, 3s] from X-RateLimit-Reset", e.RetryAfter)
	}
	if e.MaybeCommitted {
		t.Error("a refused read flagged as committed")
	}
	_ = s
}

func TestNetworkErrorIsTransient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there any more
	c := anypoint.New(base)
	tok := "static-token-for-network-test"
	_, err := c.Session(anypoint.Credentials{Token: tok}).GetAPIInstance(context.Background(), "o", "e", 1)
	e := anypoint.AsError(err)
	if e == nil || e.Class != anypoint.ClassTransient || e.Status != 0 || e.Err == nil || e.MaybeCommitted {
		t.Fatalf("got %+v", e)
	}
	if strings.Contains(e.Error(), tok) {
		t.Error("error leaks the token")
	}
	err = c.Session(anypoint.Credentials{Token: tok}).DeleteAPIInstance(context.Background(), "o", "e", 1)
	if e := anypoint.AsError(err); e == nil || e.MaybeCommitted {
		t.Errorf("a connection refused before sending cannot have committed: %+v", e)
	}
}

func TestCallerCancellationAbandonsTheCall(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	sess := c.Session(appCredentials())
	s.SetFault(sim.RouteMe, sim.Fault{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sess.Me(ctx)
		done <- err
	}()
	for s.Calls(sim.RouteMe) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestDebugLogHasNoSecrets(t *testing.T) {
	t.Parallel()
	_, _, base := newSim(t)
	var buf testlog.Buffer
	c := anypoint.New(base, anypoint.WithLogger(zerolog.New(&buf).Level(zerolog.DebugLevel)))
	sess := c.Session(appCredentials())
	tok, err := sess.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Me(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, `"path":"/accounts/api/me"`) || !strings.Contains(out, `"status":200`) ||
		!strings.Contains(out, `"method":"GET"`) || !strings.Contains(out, "duration") {
		t.Errorf("debug log lacks method, path, status or duration:\n%s", out)
	}
	for _, secret := range []string{tok, sim.ClientSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("debug log contains a secret:\n%s", out)
		}
	}
}

func TestUserAgentAndPathEscaping(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var gotUA, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotUA, gotPath = r.UserAgent(), r.URL.EscapedPath()
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	c := anypoint.New(srv.URL + "/")
	_, err := c.Session(anypoint.Credentials{Token: "t"}).GetAsset(context.Background(), "g/x", "a b", "1.0.0?y")
	if anypoint.ClassOf(err) != anypoint.ClassNotFound {
		t.Fatalf("got %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotUA != "mcpguard" {
		t.Errorf("User-Agent = %q", gotUA)
	}
	if want := "/exchange/api/v2/assets/g%2Fx/a%20b/1.0.0%3Fy"; gotPath != want {
		t.Errorf("path = %q, want %q", gotPath, want)
	}
}

// TestListsPageThroughEverything loads more environments, targets, assets
// and instances than one page holds and proves every list call collects them
// all with the expected number of pages.
func TestListsPageThroughEverything(t *testing.T) {
	t.Parallel()
	f := sim.DefaultFixtures()
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	id := func(kind, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, i) }
	const extraEnvs, extraTargets, extraAssets = 510, 230, 130
	for i := 0; i < extraEnvs; i++ {
		f.Environments = append(f.Environments, sim.FixtureEnv{ID: id(1, i), OrganizationID: org,
			Name: fmt.Sprintf("env-%03d", i), Type: "sandbox", ClientID: fmt.Sprintf("%032x", i)})
	}
	for i := 0; i < extraTargets; i++ {
		f.Targets = append(f.Targets, sim.FixtureTarget{ID: id(2, i), TargetID: id(3, i), OrganizationID: org,
			EnvironmentID: env, Name: fmt.Sprintf("gw-%03d", i), Kind: "selfManaged", Status: "RUNNING",
			TargetType: "flex", RowVersion: sim.TargetFlexSandboxVersion, RuntimeVersion: sim.TargetFlexSandboxVersion})
	}
	for i := 0; i < extraAssets; i++ {
		assetID := fmt.Sprintf("paged-mcp-%03d", i)
		f.Assets = append(f.Assets, sim.FixtureAsset{OrganizationID: org, GroupID: org, AssetID: assetID,
			Version: "1.0.0", Name: "Paged " + assetID, Type: "mcp"})
		f.Instances = append(f.Instances, sim.FixtureInstance{ID: int64(50000000 + i), OrganizationID: org,
			EnvironmentID: env, GroupID: org, AssetID: assetID, AssetVersion: "1.0.0",
			InstanceLabel: assetID + "-v1", Technology: "flexGateway", EndpointType: "mcp",
			ProxyURI: fmt.Sprintf("http://0.0.0.0:%d/", 9000+i)})
	}
	s, c, _ := newSim(t, sim.WithFixtures(f))
	ctx := context.Background()
	sess := c.Session(appCredentials())

	envs, err := sess.ListEnvironments(ctx, org, anypoint.EnvironmentQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := extraEnvs + 2; len(envs) != want || s.Calls(sim.RouteListEnvironments) != 2 {
		t.Errorf("environments: %d in %d pages, want %d in 2", len(envs), s.Calls(sim.RouteListEnvironments), want)
	}
	targets, err := sess.ListGatewayTargets(ctx, org, env, anypoint.TargetQuery{})
	if err != nil {
		t.Fatal(err)
	}
	// The simulator caps pages at 20 like the live platform, although the
	// client asks for 100: paging follows the totals, not a short page.
	if want := extraTargets + 3; len(targets) != want || s.Calls(sim.RouteListTargets) != (want+19)/20 {
		t.Errorf("targets: %d in %d pages, want %d in %d", len(targets), s.Calls(sim.RouteListTargets), want, (want+19)/20)
	}
	insts, err := sess.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: anypoint.FamilyAgentic})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, in := range insts {
		seen[in.ID] = true
	}
	if want := extraAssets + 1; len(insts) != want || len(seen) != want || s.Calls(sim.RouteListAPIs) != 2 {
		t.Errorf("instances: %d (%d distinct) in %d pages, want %d in 2", len(insts), len(seen), s.Calls(sim.RouteListAPIs), want)
	}
	assets, err := sess.SearchAllAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}, OrganizationIDs: []string{org}})
	if err != nil {
		t.Fatal(err)
	}
	if want := extraAssets + 1; len(assets) != want {
		t.Errorf("search found %d assets, want %d", len(assets), want)
	}
}

// TestDocumentedShapeVariants serves the alternative shapes the sources
// record (the simulator serves only the preferred ones): the {total, data}
// target envelope, the {policies} envelope, and 404 for "no deployments".
func TestDocumentedShapeVariants(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/gateway-targets"):
			_, _ = w.Write([]byte(`{"total":1,"data":[{"id":"T1","name":"gw","kind":"flex","status":"connected","version":"1.6.0","replicas":2}]}`))
		case strings.HasSuffix(r.URL.Path, "/policies"):
			_, _ = w.Write([]byte(`{"policies":[{"id":11,"policyTemplateId":"1939","assetId":"cors","order":1,"apiId":7}],"tiers":{}}`))
		case strings.HasSuffix(r.URL.Path, "/deployments"):
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"name":"NotFoundError","message":"No deployments"}`))
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	sess := anypoint.New(srv.URL).Session(anypoint.Credentials{Token: "t"})
	ctx := context.Background()
	targets, err := sess.ListGatewayTargets(ctx, "o", "e", anypoint.TargetQuery{})
	if err != nil || len(targets) != 1 || targets[0].ID != "T1" || targets[0].GatewayVersion() != "1.6.0" {
		t.Errorf("data envelope: %+v, %v", targets, err)
	}
	policies, err := sess.ListPolicies(ctx, "o", "e", 7)
	if err != nil || len(policies) != 1 || policies[0].ID != 11 || policies[0].PolicyTemplateID != "1939" {
		t.Errorf("policies envelope: %+v, %v", policies, err)
	}
	deps, err := sess.ListDeployments(ctx, "o", "e", 7)
	if err != nil || deps == nil || len(deps) != 0 {
		t.Errorf("404 deployments: %#v, %v; want empty", deps, err)
	}
}

func TestInvalidBaseURLIsInvalid(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"ftp://example.com", "not a url", "/relative"} {
		_, err := anypoint.New(base).Session(anypoint.Credentials{Token: "t"}).Me(context.Background())
		if anypoint.ClassOf(err) != anypoint.ClassInvalid {
			t.Errorf("%q: got %v, want an invalid error", base, err)
		}
	}
	if got := anypoint.New("").BaseURL(); got != anypoint.DefaultBaseURL {
		t.Errorf("default base URL = %q", got)
	}
	if got := anypoint.New("https://eu1.anypoint.mulesoft.com/").BaseURL(); got != "https://eu1.anypoint.mulesoft.com" {
		t.Errorf("EU base URL = %q", got)
	}
}

// TestReconcileCalls covers the calls a retry's reconciling makes: an
// instance patched to another upstream and asset version, a deployment moved
// to another target with PUT (same id, propagating again), and policies
// renumbered when one is inserted at a taken order, moved, or deleted.
func TestReconcileCalls(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t, sim.WithDeploymentDelay(time.Hour))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	inst := createInstance(t, sess, "reconcile-1")

	patched, err := sess.UpdateAPIInstance(ctx, org, env, inst.ID, anypoint.APIInstancePatch{UpstreamURI: "https://inventory-v2.internal/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	if patched.Endpoint == nil || patched.Endpoint.URI != "https://inventory-v2.internal/mcp" || patched.Endpoint.ProxyURI != "http://0.0.0.0:8082/reconcile-1" {
		t.Fatalf("patched endpoint %+v", patched.Endpoint)
	}
	if held := s.State().InstancesWithLabel("reconcile-1"); len(held) != 1 || held[0].UpstreamURI != "https://inventory-v2.internal/mcp" {
		t.Fatalf("simulator holds %+v", held)
	}
	_, err = sess.UpdateAPIInstance(ctx, org, env, inst.ID, anypoint.APIInstancePatch{AssetVersion: "9.9.9"})
	wantAnypointError(t, err, anypoint.ClassInvalid, http.StatusBadRequest, "There is no asset matching given parameters.")

	d, err := sess.CreateDeployment(ctx, org, env, inst.ID, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := sess.ReplaceDeployment(ctx, org, env, inst.ID, d.ID, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexLegacyID, TargetName: sim.TargetFlexLegacy, GatewayVersion: sim.TargetFlexLegacyVersion, Overwrite: true})
	if err != nil || moved != nil {
		t.Fatalf("replace: %+v, %v (the spec's 201 has no body)", moved, err)
	}
	if deps := s.State().DeploymentsOf(inst.ID); len(deps) != 1 || deps[0].ID != d.ID || deps[0].TargetID != sim.TargetFlexLegacyID ||
		deps[0].GatewayVersion != sim.TargetFlexLegacyVersion || deps[0].Status != "applying" {
		t.Fatalf("deployments after the move %+v", deps)
	}
	_, err = sess.ReplaceDeployment(ctx, org, env, inst.ID, d.ID, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexLegacyID, TargetName: sim.TargetFlexLegacy, GatewayVersion: "0.0.1"})
	wantAnypointError(t, err, anypoint.ClassInvalid, http.StatusBadRequest, "runtime version is unknown")
	_, err = sess.ReplaceDeployment(ctx, org, env, inst.ID, 999999, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexLegacyID, GatewayVersion: sim.TargetFlexLegacyVersion})
	wantAnypointError(t, err, anypoint.ClassNotFound, http.StatusNotFound, "")
	if n := s.Calls(sim.RouteReplaceDeployment); n != 3 {
		t.Errorf("replace-deployment counted %d calls, want 3", n)
	}

	apply := func(asset, version string, order *int, cfg map[string]any) int64 {
		t.Helper()
		p, err := sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
			AssetID: asset, AssetVersion: version, Order: order, ConfigurationData: cfg}, false)
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	orders := func() string {
		var out []string
		for _, p := range s.State().PoliciesOf(inst.ID) {
			out = append(out, fmt.Sprintf("%s:%d", p.AssetID, p.Order))
		}
		return strings.Join(out, " ")
	}
	one := 1
	cie := apply("client-id-enforcement", "1.3.2", nil, map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"})
	rl := apply("rate-limiting", "1.4.1", nil, map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}}})
	support := apply("mcp-support", "1.0.1", &one, map[string]any{})
	if got := orders(); got != "mcp-support:1 client-id-enforcement:2 rate-limiting:3" {
		t.Fatalf("after inserting at 1: %s", got)
	}
	three := 3
	if _, err := sess.UpdatePolicy(ctx, org, env, inst.ID, cie, anypoint.PolicyPatch{Order: &three}); err != nil {
		t.Fatal(err)
	}
	if got := orders(); got != "mcp-support:1 rate-limiting:2 client-id-enforcement:3" {
		t.Fatalf("after moving to 3: %s", got)
	}
	if err := sess.DeletePolicy(ctx, org, env, inst.ID, support); err != nil {
		t.Fatal(err)
	}
	if got := orders(); got != "rate-limiting:1 client-id-enforcement:2" {
		t.Fatalf("after deleting the first: %s", got)
	}
	_ = rl
}
