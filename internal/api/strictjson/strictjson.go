// Package strictjson decodes API request bodies strictly and says where a
// body is wrong with a field path such as policies[1].configuration.
//
// encoding/json (v1) matches object names case-insensitively ("Policies" and
// "ASSETID" fill policies and assetId), keeps the last of duplicate names,
// replaces invalid UTF-8 silently and accepts \u0000, which Postgres refuses
// in jsonb and text, so it turned bad input into 500s or into a request other
// than the one sent. github.com/go-json-experiment/json is the module form of
// encoding/json/v2 (only behind GOEXPERIMENT=jsonv2 in Go 1.26), maintained
// by the Go authors: it matches names case-sensitively, refuses duplicate
// names and invalid UTF-8 by default and reports errors as JSON Pointers. It
// replaces hand-written checks for all of that; the one thing it accepts that
// we must not is NUL, which the token pre-pass of Decode refuses, with
// nesting deeper than MaxDepth.
package strictjson

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpguard/mcpguard"
)

// MaxDepth bounds how deeply objects and arrays may nest in a body. The
// deepest place of the contract is a policy configuration or the MCP
// metadata; 32 levels leave them room while keeping recursive walks cheap.
const MaxDepth = 32

// BodyField is the field path of an error about the body as a whole.
const BodyField = "(body)"

// maxSegment bounds each segment of a reported path, so an error about a
// 100 KB object name does not echo it.
const maxSegment = 64

// Decode decodes data, which must be exactly one JSON value, into dst, a
// pointer to a struct. It refuses malformed JSON, invalid UTF-8, NUL
// characters in any string or name, duplicate names, names that are not
// exactly a field's name (case included), values of the wrong type and
// nesting deeper than MaxDepth. Every failure is an EINVALID *mcpguard.Error
// with one field error whose path names the place.
func Decode(data []byte, dst any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("The body is empty; a JSON object is required.", BodyField, "is required: a JSON object")
	}
	if err := prePass(data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, dst, json.RejectUnknownMembers(true)); err != nil {
		return semanticError(data, dst, err)
	}
	return nil
}

// prePass reads every token once: it finds syntax errors, invalid UTF-8 and
// duplicate names (through jsontext's defaults), NUL characters, too deep
// nesting and a second top-level value.
func prePass(data []byte) error {
	d := jsontext.NewDecoder(bytes.NewReader(data))
	complete := false // the first top-level value has been read whole
	for {
		tok, err := d.ReadToken()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if complete && err == nil {
			return invalid("The body must contain a single JSON value.", BodyField, "must be a single JSON value")
		}
		if err != nil {
			return syntaxError(d, err)
		}
		complete = d.StackDepth() == 0
		switch tok.Kind() {
		case '"':
			if strings.IndexByte(tok.String(), 0) >= 0 {
				field := pathFromStack(d)
				return invalid("The request has a NUL character (\\u0000) in a string; see errors.", field, "must not contain NUL characters (\\u0000)")
			}
		case '0':
			if !storableNumber(tok.String()) {
				return invalid("The request has a number out of range; see errors.", pathFromStack(d),
					"must be a number from -1e15 to 1e15 and, unless 0, at least 1e-15 in magnitude")
			}
		case '{', '[':
			if d.StackDepth() > MaxDepth {
				return invalid(fmt.Sprintf("The body nests objects and arrays deeper than %d levels.", MaxDepth), pathFromStack(d), fmt.Sprintf("must not nest deeper than %d levels", MaxDepth))
			}
		}
	}
}

// Number bounds. Postgres keeps JSON numbers as exact decimals and prints
// them in full, so 1e300 would come back as 301 digits: six bytes of body
// growing fifty-fold in storage and in every answer. Doubles hold integers
// exactly up to about 9e15, so nothing a policy needs is lost.
const (
	maxNumber       = 1e15
	minNonZero      = 1e-15
	maxNumberLength = 64
)

// storableNumber reports whether a JSON number literal is within the bounds.
func storableNumber(literal string) bool {
	if len(literal) > maxNumberLength {
		return false
	}
	f, err := strconv.ParseFloat(literal, 64)
	if err != nil {
		return false
	}
	f = math.Abs(f)
	return f <= maxNumber && (f == 0 || f >= minNonZero)
}

// syntaxError explains a grammar error at the place the decoder reached.
func syntaxError(d *jsontext.Decoder, err error) error {
	field := pathFromStack(d)
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		return invalid("The body is not valid JSON.", field, "is not valid JSON")
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("The body is malformed JSON: it ends too early.", field, "is incomplete: the body ends too early")
	case errors.Is(err, jsontext.ErrDuplicateName):
		return invalid("The request has a field given twice; see errors.", pathOfPointer(se.JSONPointer, d), "is given more than once")
	case strings.Contains(se.Err.Error(), "UTF-8") || strings.Contains(se.Err.Error(), "surrogate"):
		// jsontext's UTF-8 errors are not exported; their text is stable.
		return invalid("The body has invalid UTF-8; see errors.", field, "must be valid UTF-8 (an escaped surrogate must be paired)")
	}
	return invalid(fmt.Sprintf("The body is malformed JSON at byte %d.", se.ByteOffset), field, "is malformed JSON")
}

// pathFromStack is the path of the value the decoder read last; the decoder's
// stack says which pointer tokens are array indexes.
func pathFromStack(d *jsontext.Decoder) string {
	return pathOfPointer(d.StackPointer(), d)
}

// pathOfPointer turns a JSON Pointer into a path. The decoder's stack, when
// given and as deep as the pointer, says which levels are arrays; otherwise a
// token of digits is taken for an index.
func pathOfPointer(p jsontext.Pointer, d *jsontext.Decoder) string {
	var b strings.Builder
	level := 0
	for tok := range p.Tokens() {
		level++
		isIndex := false
		if d != nil && level <= d.StackDepth() {
			kind, _ := d.StackIndex(level)
			isIndex = kind == '['
		} else {
			_, err := strconv.Atoi(tok)
			isIndex = err == nil
		}
		writeSegment(&b, tok, isIndex)
	}
	if b.Len() == 0 {
		return BodyField
	}
	return b.String()
}

func writeSegment(b *strings.Builder, tok string, isIndex bool) {
	if isIndex {
		b.WriteString("[" + tok + "]")
		return
	}
	if b.Len() > 0 {
		b.WriteByte('.')
	}
	b.WriteString(cleanSegment(tok))
}

// cleanSegment keeps a reported name printable, valid UTF-8 and short: it
// comes from the caller and goes back in a problem body and maybe a log.
func cleanSegment(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > maxSegment {
		s = string([]rune(s)[:maxSegment]) + "…"
	}
	return s
}

// semanticError explains a body that is valid JSON but not a valid request:
// an unknown (or wrongly cased) name or a value of the wrong type.
func semanticError(data []byte, dst any, err error) error {
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return invalid("The body is not valid JSON for this request.", BodyField, "is not valid for this request")
	}
	field := pathInDocument(data, se.JSONPointer)
	if errors.Is(se.Err, json.ErrUnknownName) {
		name := se.JSONPointer.LastToken()
		msg := "is not a known field"
		if known := caseFold(se.GoType, name); known != "" {
			msg += fmt.Sprintf(`; names are case-sensitive: did you mean %q?`, known)
		}
		return invalid(fmt.Sprintf("The request has an unknown field %q; see errors.", cleanSegment(name)), field, msg)
	}
	want := describeGoType(se.GoType)
	got := describeJSONKind(se.JSONKind)
	msg := "must be " + want
	switch {
	case want == "an integer" && got == "a number":
		msg = "must be an integer within range"
	case got != "":
		msg += ", not " + got
	}
	return invalid("The request has a field of the wrong type; see errors.", field, msg)
}

// pathInDocument resolves a pointer against the (syntactically valid) body,
// so an object name made of digits is not mistaken for an array index.
func pathInDocument(data []byte, p jsontext.Pointer) string {
	d := jsontext.NewDecoder(bytes.NewReader(data))
	var b strings.Builder
	for tok := range p.Tokens() {
		switch d.PeekKind() {
		case '[':
			if _, err := d.ReadToken(); err != nil {
				return pathOfPointer(p, nil)
			}
			n, _ := strconv.Atoi(tok)
			for i := 0; i < n; i++ {
				if err := d.SkipValue(); err != nil {
					return pathOfPointer(p, nil)
				}
			}
			writeSegment(&b, tok, true)
		case '{':
			if _, err := d.ReadToken(); err != nil {
				return pathOfPointer(p, nil)
			}
			for {
				name, err := d.ReadToken()
				if err != nil || name.Kind() != '"' {
					return pathOfPointer(p, nil)
				}
				if name.String() == tok {
					break
				}
				if err := d.SkipValue(); err != nil {
					return pathOfPointer(p, nil)
				}
			}
			writeSegment(&b, tok, false)
		default:
			return pathOfPointer(p, nil)
		}
	}
	if b.Len() == 0 {
		return BodyField
	}
	return b.String()
}

// caseFold finds the field of struct type t (embedded structs included) whose
// JSON name equals name but for case.
func caseFold(t reflect.Type, name string) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			if found := caseFold(f.Type, name); found != "" {
				return found
			}
			continue
		}
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		if strings.EqualFold(tag, name) {
			return tag
		}
	}
	return ""
}

// describeGoType names the JSON a Go type takes, the way a JSON author
// thinks of it.
func describeGoType(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "another type"
	}
	if t == reflect.TypeFor[stdjson.RawMessage]() || t == reflect.TypeFor[jsontext.Value]() {
		return "JSON"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

func describeJSONKind(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case '0':
		return "a number"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 'n':
		return "null"
	}
	return ""
}

func invalid(message, field, fieldMessage string) error {
	return &mcpguard.Error{
		Code:    mcpguard.EINVALID,
		Message: message,
		Fields:  []mcpguard.FieldError{{Field: field, Message: fieldMessage}},
	}
}
