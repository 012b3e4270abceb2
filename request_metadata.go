package mcpguard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// The MCP metadata is sent to Exchange as mcp-metadata.json. A live run showed
// the gateway bind the server's tools only once that file carried
// transport {kind, path}, boolean capabilities and tools[] with names
// (docs/architecture.md, "Anypoint: publishing"). A wrong type in those parts
// is refused here, with the field's path; a part that is missing is only
// reported (MCPMetadataGaps), since the evidence is one run.

// validateMCPMetadata checks the parts of source.spec.metadata the gateway
// reads, when they are given.
func validateMCPMetadata(v *validator, path string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	if !isJSONObject(raw) {
		v.add(path, "must be a JSON object")
		return
	}
	var meta map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&meta) != nil {
		v.add(path, "must be a JSON object")
		return
	}
	if t, ok := meta["transport"]; ok {
		transport, isObject := t.(map[string]any)
		if !isObject {
			v.add(path+".transport", "must be an object {kind, path}; got %s", jsonKind(t))
		}
		for _, k := range []string{"kind", "path"} {
			if val, ok := transport[k]; ok {
				if _, isString := val.(string); !isString {
					v.add(path+".transport."+k, "must be a string; got %s", jsonKind(val))
				}
			}
		}
	}
	if c, ok := meta["capabilities"]; ok {
		caps, isObject := c.(map[string]any)
		if !isObject {
			v.add(path+".capabilities", "must be an object of booleans; got %s", jsonKind(c))
		}
		names := make([]string, 0, len(caps))
		for n := range caps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if _, isBool := caps[n].(bool); !isBool {
				v.add(path+".capabilities."+n, "must be a boolean; got %s", jsonKind(caps[n]))
			}
		}
	}
	if t, ok := meta["tools"]; ok {
		tools, isArray := t.([]any)
		if !isArray {
			v.add(path+".tools", "must be an array of objects with a name; got %s", jsonKind(t))
		}
		for i, item := range tools {
			p := fmt.Sprintf("%s.tools[%d]", path, i)
			tool, isObject := item.(map[string]any)
			if !isObject {
				v.add(p, "must be an object with a name; got %s", jsonKind(item))
				continue
			}
			name, isString := tool["name"].(string)
			switch {
			case tool["name"] == nil:
				v.add(p+".name", "is required: the tool's name")
			case !isString:
				v.add(p+".name", "must be a string; got %s", jsonKind(tool["name"]))
			case name == "":
				v.add(p+".name", "must not be empty")
			}
		}
	}
}

// MCPMetadataGaps lists the parts of the MCP metadata the gateway needs to
// bind the server's tools and the metadata lacks, for a warning: none when
// transport.kind, transport.path, capabilities and tools are all there.
func MCPMetadataGaps(raw json.RawMessage) []string {
	var meta map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &meta) != nil || meta == nil {
		return []string{"metadata (transport {kind, path}, capabilities, tools)"}
	}
	var gaps []string
	transport, _ := meta["transport"].(map[string]any)
	for _, k := range []string{"kind", "path"} {
		if _, ok := transport[k]; !ok {
			gaps = append(gaps, "transport."+k)
		}
	}
	for _, k := range []string{"capabilities", "tools"} {
		if _, ok := meta[k]; !ok {
			gaps = append(gaps, k)
		}
	}
	return gaps
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
