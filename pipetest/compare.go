package pipetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
)

// ignorer matches property paths against ignore patterns.
type ignorer struct {
	patterns [][]string
}

// newIgnorer compiles patterns: dotted names, "*" (and other path.Match
// wildcards) within a name, "\." for a literal dot.
func newIgnorer(patterns []string) (*ignorer, error) {
	ig := &ignorer{}
	for _, p := range patterns {
		if p == "" {
			return nil, fmt.Errorf("ignore: empty path")
		}
		segs := splitPath(p)
		for _, s := range segs {
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("ignore %q: bad pattern %q", p, s)
			}
		}
		ig.patterns = append(ig.patterns, segs)
	}
	return ig, nil
}

// splitPath splits a dotted path; "\." is a dot inside a name.
func splitPath(p string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '.':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(out, cur.String())
}

// match reports whether the property at names is ignored.
func (ig *ignorer) match(names []string) bool {
	for _, pat := range ig.patterns {
		if len(pat) != len(names) {
			continue
		}
		ok := true
		for i, seg := range pat {
			if m, _ := path.Match(seg, names[i]); !m {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// clean returns v without internal properties and ignored paths: at every
// level, keys starting with "_" are dropped except _id and a true
// _deleted (so _updated, _ts, _hash and _previous, which differ from run
// to run, never count), as sesam-py's verify does.
func (ig *ignorer) clean(v any, names []string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if strings.HasPrefix(k, "_") && k != "_id" && (k != "_deleted" || val != true) {
				continue
			}
			p := append(names[:len(names):len(names)], k)
			if ig.match(p) {
				continue
			}
			out[k] = ig.clean(val, p)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = ig.clean(e, names)
		}
		return out
	}
	return v
}

// canonical prepares entities for comparison: cleaned, without deleted
// ones when ignoreDeletes, sorted by _id (then by content), rendered as a
// pretty-printed JSON array (2-space indent, sorted keys, numbers as
// written, no HTML escaping) ending in a newline. It is also the format
// of expected files.
func canonical(ents []map[string]any, ig *ignorer, ignoreDeletes bool) ([]byte, int, error) {
	type item struct {
		id   string
		text []byte
		v    any
	}
	items := make([]item, 0, len(ents))
	for _, e := range ents {
		if ignoreDeletes && e["_deleted"] == true {
			continue
		}
		c := ig.clean(e, nil)
		text, err := marshal(c, "")
		if err != nil {
			return nil, 0, err
		}
		id, _ := e["_id"].(string)
		items = append(items, item{id: id, text: text, v: c})
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].id != items[j].id {
			return items[i].id < items[j].id
		}
		return bytes.Compare(items[i].text, items[j].text) < 0
	})
	list := make([]any, len(items))
	for i, it := range items {
		list[i] = it.v
	}
	out, err := marshal(list, "  ")
	return out, len(items), err
}

// marshal renders v as JSON with sorted keys and no HTML escaping,
// indented when indent is set, with a final newline.
func marshal(v any, indent string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
