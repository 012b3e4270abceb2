package anypoint_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// fixedAnswers serves one body per path suffix, for decoding tests of shapes
// the simulator does not serve.
func fixedAnswers(t *testing.T, answers map[string]string) *anypoint.Session {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for suffix, body := range answers {
			if strings.HasSuffix(r.URL.Path, suffix) {
				if r.Method == http.MethodPost {
					w.WriteHeader(http.StatusCreated)
				}
				_, _ = w.Write([]byte(body))
				return
			}
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return anypoint.New(srv.URL).Session(anypoint.Credentials{Token: "t"})
}

// TestCreateAnswerID: the create answer's id is read from id, else apiId; a
// zero id is an error that says the instance may exist, never an id.
func TestCreateAnswerID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	in := anypoint.APIInstanceInput{GroupID: "g", AssetID: "a", AssetVersion: "1.0.0"}
	for body, want := range map[string]int64{`{"id":42,"apiId":7}`: 42, `{"apiId":7,"assetId":"a"}`: 7} {
		got, err := fixedAnswers(t, map[string]string{"/apis": body}).CreateAPIInstance(ctx, "o", "e", in)
		if err != nil || got.ID != want {
			t.Errorf("%s: id %v, err %v; want %d", body, got, err, want)
		}
	}
	for _, body := range []string{`{"id":0,"assetId":"a"}`, `{"assetId":"a"}`, `[1,2]`} {
		_, err := fixedAnswers(t, map[string]string{"/apis": body}).CreateAPIInstance(ctx, "o", "e", in)
		ae := anypoint.AsError(err)
		if ae == nil || !ae.MaybeCommitted || !errors.Is(err, anypoint.ErrUnexpectedBody) {
			t.Errorf("%s: err %v; want an unexpected-body error that may have committed", body, err)
		}
	}
}

// TestDeploymentListShapes: a bare array, an object holding one, and an
// unreadable answer that callers can tell apart.
func TestDeploymentListShapes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, body := range []string{
		`[{"id":5,"targetId":"T"}]`, `{"items":[{"id":5,"targetId":"T"}]}`,
		`{"deployments":[{"id":5,"targetId":"T"}],"total":1}`, `{"data":[{"id":5,"targetId":"T"}]}`,
	} {
		deps, err := fixedAnswers(t, map[string]string{"/deployments": body}).ListDeployments(ctx, "o", "e", 1)
		if err != nil || len(deps) != 1 || deps[0].ID != 5 || deps[0].TargetID != "T" {
			t.Errorf("%s: %+v, %v", body, deps, err)
		}
	}
	for _, body := range []string{`{"something":"else"}`, `"text"`, `[{"targetId":"T"}]`} {
		_, err := fixedAnswers(t, map[string]string{"/deployments": body}).ListDeployments(ctx, "o", "e", 1)
		if !errors.Is(err, anypoint.ErrUnexpectedBody) {
			t.Errorf("%s: err %v, want ErrUnexpectedBody", body, err)
		}
	}
}

// TestPolicyListShapes: full policies (fullInfo=false), compact entries as a
// bare array or in the envelope; an entry without an id refuses the list.
func TestPolicyListShapes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	compact := `{"policyId":11,"order":1,"pointcutData":null,"label":null,"configuration":{"rules":["x"]},"type":"system",` +
		`"template":{"groupId":"G","assetId":"mcp-access-control","assetVersion":"1.0.1"}}`
	for _, body := range []string{
		`[{"id":11,"groupId":"G","assetId":"mcp-access-control","assetVersion":"1.0.1","configurationData":{"rules":["x"]},"order":1}]`,
		"[" + compact + "]",
		`{"policies":[` + compact + `],"tiers":{}}`,
	} {
		list, err := fixedAnswers(t, map[string]string{"/policies": body}).ListPolicies(ctx, "o", "e", 1)
		if err != nil || len(list) != 1 {
			t.Fatalf("%s: %+v, %v", body, list, err)
		}
		p := list[0]
		if p.ID != 11 || p.GroupID != "G" || p.AssetID != "mcp-access-control" || p.AssetVersion != "1.0.1" || p.ConfigurationData["rules"] == nil {
			t.Errorf("%s: decoded %+v", body, p)
		}
	}
	_, err := fixedAnswers(t, map[string]string{"/policies": `[{"order":1,"template":{"assetId":"cors"}}]`}).ListPolicies(ctx, "o", "e", 1)
	if !errors.Is(err, anypoint.ErrUnexpectedBody) {
		t.Errorf("an entry without id was taken for a policy: %v", err)
	}
}

// TestTargetPagingByTotals: a platform that answers 2 rows a page although
// asked for 100 is paged until totalElements; without totals, a short page
// against the answered pageSize ends the list.
func TestTargetPagingByTotals(t *testing.T) {
	t.Parallel()
	pages := []string{
		`{"rows":[{"id":"a"},{"id":"b"}],"totalElements":5,"pageSize":2,"pageNumber":0,"totalPages":3}`,
		`{"rows":[{"id":"c"},{"id":"d"}],"totalElements":5,"pageSize":2,"pageNumber":1,"totalPages":3}`,
		`{"rows":[{"id":"e"}],"totalElements":5,"pageSize":2,"pageNumber":2,"totalPages":3}`,
	}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls
		calls++
		if n >= len(pages) {
			_, _ = w.Write([]byte(`{"rows":[],"totalElements":5}`))
			return
		}
		_, _ = w.Write([]byte(pages[n]))
	}))
	defer srv.Close()
	got, err := anypoint.New(srv.URL).Session(anypoint.Credentials{Token: "t"}).ListGatewayTargets(context.Background(), "o", "e", anypoint.TargetQuery{})
	if err != nil || len(got) != 5 || got[4].ID != "e" || calls != 3 {
		t.Fatalf("got %d targets in %d calls (%v), want 5 in 3", len(got), calls, err)
	}
}
