package rest

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/templates/jinja"
)

// TestFastPathMatchesJinja: the engine-free rendering of `{{ a.b }}`
// prints exactly what the Jinja engine prints, and declines whatever it
// cannot print the same way.
func TestFastPathMatchesJinja(t *testing.T) {
	ctx := jinja.Context{
		"id": json.Number("12345678901234567890"), "dec": json.Number("1.10"), "s": "x y", "n": nil, "b": true,
		"body": map[string]any{"next": "http://h/p?page=2", "none": nil, "deep": map[string]any{"k": json.Number("7")}, "list": []any{1}},
	}
	for _, src := range []string{"{{ id }}", "{{dec}}", "{{ s }}", "{{ n }}", "{{ b }}", "{{ body.next }}", "{{ body.none }}",
		"{{- body.deep.k -}}", "{{ body.list }}", "{{ body.missing }}", "{{ missing }}", "{{ id|int }}", "x{{ id }}"} {
		want, werr := jinja.MustCompile(src).Render(ctx)
		got, ok := pathOf(src).render(func(n string) (any, bool) { v, ok := ctx[n]; return v, ok })
		if !ok {
			continue // the engine renders it
		}
		if werr != nil || got != want {
			t.Errorf("%s: fast %q, jinja %q (%v)", src, got, want, werr)
		}
	}
	for _, src := range []string{"{{ id }}", "{{ body.next }}", "{{ body.none }}"} {
		if _, ok := pathOf(src).render(func(n string) (any, bool) { v, ok := ctx[n]; return v, ok }); !ok {
			t.Errorf("%s: no fast path", src)
		}
	}
}

func TestParseLinkHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{`<http://a/x?page=2>; rel="next"`, map[string]string{"next": "http://a/x?page=2"}},
		{`<http://a/x?p=2&q=a,b>; rel="next", <http://a/x?p=9>; rel="last"`, map[string]string{"next": "http://a/x?p=2&q=a,b", "last": "http://a/x?p=9"}},
		{`<u1>; title="a, b; c"; rel="prev first" , <u2>;rel=next`, map[string]string{"prev": "u1", "first": "u1", "next": "u2"}},
		{`<u1>; rel="next", <u2>; rel="next"`, map[string]string{"next": "u1"}},
		{`garbage, <u3>; REL="Next"`, map[string]string{"next": "u3"}},
		{`<u4>`, map[string]string{}},
		{``, map[string]string{}},
	} {
		if got := ParseLinkHeader(tc.in); !maps.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseLinkHeader(f *testing.F) {
	for _, s := range []string{`<http://a/x?page=2>; rel="next"`, `<u1>; title="a, b"; rel="prev first", <u2>;rel=next`, `<`, `<x>;rel="`, `;;,,<>`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for rel, u := range ParseLinkHeader(s) {
			if !strings.Contains(s, u) {
				t.Fatalf("%q: link %q for %q is not in the input", s, u, rel)
			}
			if rel == "" || strings.ContainsAny(rel, " \t") {
				t.Fatalf("%q: bad rel %q", s, rel)
			}
		}
	})
}

func TestExtractItems(t *testing.T) {
	body := map[string]any{"a.b": []any{map[string]any{"x": 1}}, "a": map[string]any{"b": "no"},
		"c": map[string]any{"d": map[string]any{"e": []any{map[string]any{}, map[string]any{}}}}, "n": nil, "o": map[string]any{"k": 1}}
	for _, tc := range []struct {
		prop string
		n    int
		err  string
	}{
		{"a.b", 1, ""}, // the exact key wins over the path
		{"c.d.e", 2, ""},
		{"n", 0, ""},
		{"o", 1, ""},
		{"missing", 0, "not in the response"},
		{"a", 1, ""},
		{"c.d.x", 0, "not in the response"},
	} {
		items, err := extractItems(body, tc.prop)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v", tc.prop, err)
			}
			continue
		}
		if err != nil || len(items) != tc.n {
			t.Errorf("%s: %d items, %v", tc.prop, len(items), err)
		}
	}
	if items, err := extractItems([]any{map[string]any{}}, ""); err != nil || len(items) != 1 {
		t.Errorf("array body: %v %v", items, err)
	}
	if _, err := extractItems("text", ""); err == nil {
		t.Error("string body accepted")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"look*", "lookup", true}, {"look*", "insert", false}, {"a?c", "abc", true},
		{"[12]", "1", true}, {"[12]", "3", false}, {"[!12]", "3", true}, {"a.b", "axb", false}, {"[", "[", true},
		{"discard-*", "discard-already-inserted", true}, {"x/*", "x/y/z", true},
	} {
		re, err := globRegexp(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		if got := re.MatchString(tc.s); got != tc.want {
			t.Errorf("glob %q on %q = %v", tc.pattern, tc.s, got)
		}
	}
}
