package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// env is one simulator behind a real HTTP server, with a user token.
type env struct {
	t     *testing.T
	sim   *Server
	srv   *httptest.Server
	token string
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	s := New(append([]Option{WithDeploymentDelay(0), WithPublicationDelay(0)}, opts...)...)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	e := &env{t: t, sim: s, srv: srv}
	e.token = e.login(Username, Password)
	return e
}

// resp is an answer, with the body decoded keeping numbers exact so tests can
// tell JSON integers from strings.
type resp struct {
	status int
	header http.Header
	raw    []byte
	body   any
}

func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.body.(map[string]any)
	if !ok {
		t.Fatalf("body is not a JSON object (status %d): %s", r.status, r.raw)
	}
	return m
}

func (r resp) arr(t *testing.T) []any {
	t.Helper()
	a, ok := r.body.([]any)
	if !ok {
		t.Fatalf("body is not a JSON array (status %d): %s", r.status, r.raw)
	}
	return a
}

func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case *multipartBody:
		rd, ctype = bytes.NewReader(b.buf.Bytes()), b.ctype
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&r.body); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %v: %s", method, path, err, raw)
		}
	}
	return r
}

// call is do with the env's user token.
func (e *env) call(method, path string, body any, headers ...string) resp {
	e.t.Helper()
	return e.do(method, path, e.token, body, headers...)
}

func (e *env) login(username, password string) string {
	e.t.Helper()
	r := e.do("POST", "/accounts/login", "", map[string]string{"username": username, "password": password})
	if r.status != 200 {
		e.t.Fatalf("login: %d %s", r.status, r.raw)
	}
	return r.obj(e.t)["access_token"].(string)
}

func (e *env) appToken(clientID, secret string) string {
	e.t.Helper()
	r := e.do("POST", "/accounts/api/v2/oauth2/token", "", map[string]string{
		"grant_type": "client_credentials", "client_id": clientID, "client_secret": secret})
	if r.status != 200 {
		e.t.Fatalf("token: %d %s", r.status, r.raw)
	}
	return r.obj(e.t)["access_token"].(string)
}

type multipartBody struct {
	buf   bytes.Buffer
	ctype string
}

func multipartOf(t *testing.T, fields map[string]string, files map[string][]byte) *multipartBody {
	t.Helper()
	b := &multipartBody{}
	mw := multipart.NewWriter(&b.buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		fw, err := mw.CreateFormFile(k, strings.TrimPrefix(k, "files."))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(v)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	b.ctype = mw.FormDataContentType()
	return b
}

// jsonInt asserts v is a JSON integer (not a string, not a fraction).
func jsonInt(t *testing.T, v any, what string) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON integer", what, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%s = %s, want a JSON integer", what, n)
	}
	return i
}

func jsonString(t *testing.T, v any, what string) string {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON string", what, v)
	}
	return s
}

func wantStatus(t *testing.T, r resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
}

// wantMessage asserts an API Manager / Access Management / Exchange error
// body carries exactly msg.
func wantMessage(t *testing.T, r resp, status int, msg string) {
	t.Helper()
	wantStatus(t, r, status)
	if got := r.obj(t)["message"]; got != msg {
		t.Fatalf("message %q, want %q", got, msg)
	}
}

// eventually polls f until it returns true or a generous deadline passes; it
// asserts an outcome, never a duration.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const (
	sandboxPath = "/organizations/" + DefaultOrgID + "/environments/" + SandboxEnvID
	apisPath    = "/apimanager/api/v1" + sandboxPath + "/apis"
	xapisPath   = "/apimanager/xapi/v1" + sandboxPath + "/apis"
	depsBase    = "/proxies/xapi/v1" + sandboxPath + "/apis/"
)

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// createBody is the guide's step 5 body for an asset.
func createBody(assetID, version, label string) map[string]any {
	return map[string]any{
		"technology":    "flexGateway",
		"instanceLabel": label,
		"spec":          map[string]any{"groupId": DefaultOrgID, "assetId": assetID, "version": version},
		"endpoint":      map[string]any{"isCloudHub": nil, "proxyUri": "http://0.0.0.0:8081/", "uri": "https://backend.example.com/mcp"},
	}
}

// createInstance creates an instance of the existing MCP asset and returns its id.
func (e *env) createInstance(label string) int64 {
	e.t.Helper()
	r := e.call("POST", apisPath, createBody(ExistingAssetID, ExistingAssetVersion, label))
	wantStatus(e.t, r, 201)
	return jsonInt(e.t, r.obj(e.t)["id"], "id")
}

func guideDeployment() map[string]any {
	return map[string]any{"type": "HY", "targetId": TargetFlexSandboxID, "targetName": TargetFlexSandbox,
		"gatewayVersion": DefaultGatewayVersion, "environmentId": SandboxEnvID, "overwrite": false}
}
