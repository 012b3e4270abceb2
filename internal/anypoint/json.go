package anypoint

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// flexString decodes a JSON string or number into a string: Anypoint sends
// some ids (policyTemplateId, targetId) either way.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0, bytes.Equal(b, []byte("null")):
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or number, got %s", b)
		}
		*f = flexString(n.String())
	}
	return nil
}

// stringList decodes a list whose items are strings or {message} objects
// into strings, since publication step errors have no documented item shape.
type stringList []string

// UnmarshalJSON implements json.Unmarshaler.
func (l *stringList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make([]string, 0, len(raw))
	for _, item := range raw {
		var s string
		if json.Unmarshal(item, &s) == nil {
			out = append(out, s)
			continue
		}
		var obj struct {
			Message     string `json:"message"`
			Description string `json:"description"`
		}
		if json.Unmarshal(item, &obj) == nil && (obj.Message != "" || obj.Description != "") {
			if obj.Message != "" {
				out = append(out, obj.Message)
			} else {
				out = append(out, obj.Description)
			}
			continue
		}
		out = append(out, string(item))
	}
	*l = out
	return nil
}

// rawOrNil returns nil for an absent or JSON null value so callers can test
// for "no configuration" with len().
func rawOrNil(r json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(r)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return r
}
