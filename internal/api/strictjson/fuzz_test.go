package strictjson_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/strictjson"
)

// The fuzz targets decode a body the way the API does (strictjson.Decode,
// then Validate) and check what the API relies on: no panic; a refusal is an
// EINVALID error whose every field path is short, printable UTF-8; and a body
// that passes is storable: encoded as the store encodes it, it is valid UTF-8
// without NUL (Postgres refuses both in jsonb) and decodes strictly back to
// the same value. The seed corpus is testdata/fuzz/<target>; `go test` runs
// it as ordinary tests and `make fuzz` fuzzes for longer.

func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(valid))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body, func() validatable { return &mcpguard.NewProtection{} })
	})
}

func FuzzDecodeRetry(f *testing.F) {
	f.Add([]byte(`{"target": {"name": "fixed"}, "credentials": {"token": "t"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body, func() validatable { return &mcpguard.RetryInput{} })
	})
}

type validatable interface {
	Validate() []mcpguard.FieldError
}

func checkDecode(t *testing.T, body []byte, fresh func() validatable) {
	dst := fresh()
	err := strictjson.Decode(body, dst)
	if err == nil {
		if fields := dst.Validate(); len(fields) > 0 {
			checkFields(t, fields)
			return
		}
		checkStorable(t, dst, fresh())
		return
	}
	e, ok := err.(*mcpguard.Error)
	if !ok || e.Code != mcpguard.EINVALID || e.Message == "" || len(e.Fields) == 0 {
		t.Fatalf("refusal %#v is not an EINVALID error with fields", err)
	}
	checkFields(t, e.Fields)
}

func checkFields(t *testing.T, fields []mcpguard.FieldError) {
	t.Helper()
	for _, f := range fields {
		if f.Field == "" || f.Message == "" {
			t.Fatalf("field error without a path or a message: %+v", f)
		}
		if !utf8.ValidString(f.Field) || !utf8.ValidString(f.Message) || bytes.IndexByte([]byte(f.Field+f.Message), 0) >= 0 {
			t.Fatalf("field error is not printable UTF-8: %q", f)
		}
		if len(f.Field) > 2048 {
			t.Fatalf("field path of %d bytes echoes the body", len(f.Field))
		}
	}
}

func checkStorable(t *testing.T, v, again validatable) {
	t.Helper()
	stored, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("an accepted body does not encode: %v", err)
	}
	if !utf8.Valid(stored) || bytes.Contains(stored, []byte(`\u0000`)) {
		t.Fatalf("an accepted body encodes to what Postgres refuses: %q", stored)
	}
	if err := strictjson.Decode(stored, again); err != nil {
		t.Fatalf("an accepted body, encoded, is refused: %v\n%s", err, stored)
	}
	if !reflect.DeepEqual(normalize(t, v), normalize(t, again)) {
		t.Fatalf("round trip changed the request:\n%s", stored)
	}
}

// normalize compares two requests through their generic JSON form, so
// metadata's raw bytes compare by meaning, not by spacing.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
