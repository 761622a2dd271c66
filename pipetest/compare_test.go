package pipetest

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

func decode(t *testing.T, text string) []map[string]any {
	t.Helper()
	v, err := engine.DecodeValue([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range v.([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// TestCanonical: internal properties go at every level (_id and a true
// _deleted stay), ignored paths go, entities sort by _id, numbers keep
// their text, nothing is HTML-escaped.
func TestCanonical(t *testing.T) {
	ents := decode(t, `[
	 {"_id": "b", "_updated": 7, "_ts": 1, "_hash": "h", "_previous": 3, "_deleted": false, "n": 1.50, "html": "<a&b>",
	  "lines": [{"_id": "l1", "_ts": 9, "amount": 2, "id": 1}, {"amount": 3}], "a.b": 1, "meta": {"modified": "x", "keep": 1}},
	 {"_id": "a", "_deleted": true, "$ids": ["~:a"]}
	]`)
	ig, err := newIgnorer([]string{"lines.amount", `a\.b`, "*.modified"})
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := canonical(ents, ig, false)
	if err != nil || n != 2 {
		t.Fatal(n, err)
	}
	want := `[
  {
    "$ids": [
      "~:a"
    ],
    "_deleted": true,
    "_id": "a"
  },
  {
    "_id": "b",
    "html": "<a&b>",
    "lines": [
      {
        "_id": "l1",
        "id": 1
      },
      {}
    ],
    "meta": {
      "keep": 1
    },
    "n": 1.50
  }
]
`
	if string(got) != want {
		t.Errorf("canonical =\n%s\nwant\n%s", got, want)
	}
	got, n, _ = canonical(ents, ig, true)
	if n != 1 || strings.Contains(string(got), `"a"`) {
		t.Errorf("ignore_deletes: %d entities\n%s", n, got)
	}
	if !json.Valid(got) {
		t.Error("not JSON")
	}
}

func TestIgnorerMatch(t *testing.T) {
	ig, err := newIgnorer([]string{"x", "a.*.c", `d\.e`, "f*"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"x", true}, {"y.x", false}, {"a.b.c", true}, {"a.b", false}, {"a.b.c.d", false},
		{"d.e", false}, {"fo", true}, {"g.fo", false},
	} {
		names := strings.Split(tc.path, ".")
		if got := ig.match(names); got != tc.want {
			t.Errorf("match(%s) = %v", tc.path, got)
		}
	}
	if !ig.match([]string{"d.e"}) {
		t.Error(`d\.e does not match the name "d.e"`)
	}
	if _, err := newIgnorer([]string{""}); err == nil {
		t.Error("empty pattern accepted")
	}
}

func TestDefaultDir(t *testing.T) {
	wd, _ := os.Getwd()
	for path, want := range map[string]string{
		"config":              "test",
		"examples/x/config":   "examples/x/test",
		"examples/x/cfg.json": "examples/x/test",
		".":                   "../test",
		"/abs/config":         "/abs/test",
	} {
		if got := DefaultDir(path); got != want {
			t.Errorf("DefaultDir(%q) = %q, want %q (in %s)", path, got, want, wd)
		}
	}
}
