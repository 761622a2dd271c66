package dtl

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestCompileExpr evaluates single expressions against an entity, as a
// dataset source's subset does.
func TestCompileExpr(t *testing.T) {
	src := decodeJSON(t, []byte(`{"_id": "e1", "portalId": 42, "subscriptionType": "company.creation", "tags": ["a", "b"]}`)).(map[string]any)
	cases := []struct{ expr, want string }{
		{`["and", ["eq", "_S.portalId", ["integer", "42"]], ["matches", "company.*", ["list", "_S.subscriptionType"]]]`, `[true]`},
		{`["matches", "contact.*", "_S.subscriptionType"]`, `[false]`},
		{`"_S.tags"`, `["a","b"]`},
		{`"_S.missing"`, `[]`},
		{`true`, `[true]`},
	}
	for _, c := range cases {
		x, err := CompileExpr(decodeJSON(t, []byte(c.expr)), "subset[1]", DefaultOptions())
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got, err := x.Eval(context.Background(), src)
		if err != nil {
			t.Fatalf("%s: eval: %v", c.expr, err)
		}
		if g := canonicalJSON(got); g != c.want {
			t.Errorf("%s = %s, want %s", c.expr, g, c.want)
		}
	}
	if !Equal(Stored([]any{decodeJSON(t, []byte("1.0"))}), decodeJSON(t, []byte("1"))) {
		t.Error("Equal(1.0, 1) is false")
	}
}

// TestCompileExprErrors checks that compile errors carry the caller's
// path and runtime errors the entity's _id.
func TestCompileExprErrors(t *testing.T) {
	_, err := CompileExpr(decodeJSON(t, []byte(`["and", true, ["nope", 1]]`)), "subset[1]", DefaultOptions())
	var de *Error
	if !errors.As(err, &de) || de.Path != "subset[1][2]" || !strings.Contains(err.Error(), `unknown function "nope"`) {
		t.Fatalf("err = %v", err)
	}
	x, err := CompileExpr(decodeJSON(t, []byte(`["lookup-entity", "other", "_S._id"]`)), "e", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := x.HoppedDatasets(); len(got) != 1 || got[0] != "other" {
		t.Errorf("HoppedDatasets = %v", got)
	}
	_, err = x.Eval(context.Background(), map[string]any{"_id": "e1"})
	if !errors.As(err, &de) || de.ID != "e1" {
		t.Fatalf("eval err = %v", err)
	}
}

// TestHoppedDatasets lists the datasets a program joins with, once each.
func TestHoppedDatasets(t *testing.T) {
	rules := `{"default": [
		["add", "a", ["hops", {"datasets": ["ds-a a"], "where": ["eq", "_S.x", "a.y"]}]],
		["add", "b", ["apply-hops", "r", {"datasets": "ds-b b", "where": [["eq", "_S.x", "b.y"]]}]],
		["add", "c", ["lookup-entity", "ds-a", "_S.x"]]],
	 "r": [["add", "d", ["lookup-entity", "ds-c", "_S.x"]]]}`
	p, err := Compile(decodeJSON(t, []byte(rules)).(map[string]any), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.HoppedDatasets(), ","); got != "ds-a,ds-b,ds-c" {
		t.Errorf("HoppedDatasets = %s", got)
	}
}
