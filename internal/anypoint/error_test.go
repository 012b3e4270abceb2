package anypoint

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// TestParseErrorBody proves every error body shape of docs/architecture.md,
// "Anypoint: error bodies",
// surfaces its message, code and validation details.
func TestParseErrorBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		wantCode    string
		wantMessage string
		wantDetails []string
	}{
		{"api manager validation",
			`{"name":"Bad Request","errors":[{"path":"/body/deployment","message":"must be object","errorCode":"type.openapi.validation"}],"message":"request/body/deployment must be object"}`,
			"Bad Request", "request/body/deployment must be object", []string{"/body/deployment: must be object"}},
		{"api manager business rule",
			`{"name":"BadRequestError","message":"Field environmentId is required for deployment type HY"}`,
			"BadRequestError", "Field environmentId is required for deployment type HY", nil},
		{"access management", `{"status":400,"message":"Environment name already exists"}`,
			"", "Environment name already exists", nil},
		{"exchange",
			`{"status":409,"code":"ASSET_PRE_CONDITIONS_FAILED","message":"Cannot create a new asset with the provided groupId, assetId, version, state","details":{"errors":["An asset already exists with this version and published lifecycle state."],"asset":{"groupId":"g"}}}`,
			"ASSET_PRE_CONDITIONS_FAILED", "Cannot create a new asset with the provided groupId, assetId, version, state",
			[]string{"An asset already exists with this version and published lifecycle state."}},
		{"ajv style", `{"errors":[{"type":"x","dataPath":".endpoint.isCloudHub","keyword":"type","message":"should be null"}]}`,
			"", ".endpoint.isCloudHub: should be null", []string{".endpoint.isCloudHub: should be null"}},
		{"oauth", `{"error":"invalid_client","error_description":"Bad client credentials"}`,
			"invalid_client", "Bad client credentials", nil},
		{"error and message", `{"error":"Conflict","message":"API already exists"}`, "Conflict", "API already exists", nil},
		{"error only", `{"error":"Client ID is not present"}`, "", "Client ID is not present", nil},
		{"edge html", "<html><head><title>504 Gateway Time-out</title></head><body>x</body></html>", "", "504 Gateway Time-out", nil},
		{"plain text", "Service Unavailable\n", "", "Service Unavailable", nil},
		{"empty", "", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &Error{}
			e.parseErrorBody([]byte(tt.body))
			if e.Code != tt.wantCode || e.Message != tt.wantMessage || !reflect.DeepEqual(e.Details, tt.wantDetails) {
				t.Errorf("got code=%q message=%q details=%q, want code=%q message=%q details=%q",
					e.Code, e.Message, e.Details, tt.wantCode, tt.wantMessage, tt.wantDetails)
			}
		})
	}
}

// TestRetryAfter covers both Retry-After forms and X-RateLimit-Reset as epoch
// seconds, epoch milliseconds and a delta; past instants clamp to zero.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"http date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"past date", http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0},
		{"reset epoch", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(42*time.Second).Unix(), 10)}}, 42 * time.Second},
		{"reset epoch ms", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(5*time.Second).UnixMilli(), 10)}}, 5 * time.Second},
		{"reset past", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(-5*time.Second).Unix(), 10)}}, 0},
		{"reset delta", http.Header{"X-Ratelimit-Reset": {"3"}}, 3 * time.Second},
		{"retry-after wins", http.Header{"Retry-After": {"2"}, "X-Ratelimit-Reset": {"30"}}, 2 * time.Second},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := retryAfter(tt.header, now); got != tt.want {
				t.Errorf("retryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClassOfStatus pins the class of every status family.
func TestClassOfStatus(t *testing.T) {
	t.Parallel()
	want := map[int]Class{
		400: ClassInvalid, 401: ClassUnauthorized, 403: ClassForbidden, 404: ClassNotFound, 405: ClassInvalid,
		409: ClassConflict, 418: ClassInvalid, 422: ClassInvalid, 429: ClassTransient,
		500: ClassTransient, 502: ClassTransient, 503: ClassTransient, 504: ClassTransient,
	}
	for status, class := range want {
		if got := classOfStatus(status); got != class {
			t.Errorf("classOfStatus(%d) = %q, want %q", status, got, class)
		}
	}
}

// TestErrorHelpers proves the helpers see an *Error through wrapping.
func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	inner := &Error{Op: "creating API instance", Method: "POST", Path: "/x", Status: 503, Class: ClassTransient, Message: "busy"}
	err := fmt.Errorf("error in step create: %w", inner)
	if !IsTransient(err) || ClassOf(err) != ClassTransient || StatusOf(err) != 503 || AsError(err) != inner {
		t.Fatalf("helpers did not see through wrapping: %v", err)
	}
	plain := errors.New("boom")
	if IsTransient(plain) || ClassOf(plain) != "" || StatusOf(plain) != 0 || AsError(plain) != nil {
		t.Fatal("helpers misread a foreign error")
	}
	if got, want := inner.Error(), "error creating API instance (POST /x): status 503: busy"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestRedact proves a secret echoed by the platform never reaches the error.
func TestRedact(t *testing.T) {
	t.Parallel()
	e := &Error{Message: "bad token tok-123456", Details: []string{"secret s3cr3t-value rejected"}}
	e.redact(NewRedactor([]string{"tok-123456", "s3cr3t-value", ""}))
	if e.Message != "bad token [redacted]" || e.Details[0] != "secret [redacted] rejected" {
		t.Errorf("not redacted: %+v", e)
	}
}
