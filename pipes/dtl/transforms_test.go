package dtl

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func run(t *testing.T, rules, source string, opts Options) ([]map[string]any, error) {
	t.Helper()
	p, err := Compile(decodeJSON(t, []byte(rules)).(map[string]any), opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p.Apply(context.Background(), decodeJSON(t, []byte(source)).(map[string]any))
}

// TestTransformFunctions pins transform functions: each case runs a rules
// object on a source and compares all output entities.
func TestTransformFunctions(t *testing.T) {
	const src = `{"_id": "1", "_updated": 3, "name": "Ada", "age": 36, "a1": 1, "a2": 2, "b": 3, "$ids": ["~:x:1"], "k": "key", "val": "v",
		"nul": null, "empty": [], "items": [{"id": "i1", "n": 1}, {"id": "i2", "n": 2}], "sub": {"x": 1, "y": 2}, "$children": [{"_id": "old"}]}`
	cases := []struct {
		name, rules, source, want string
	}{
		{"root inherits _id only", `{"default": []}`, src, `[{"_id":"1"}]`},
		{"root inherits _deleted", `{"default": [["add", "x", 1]]}`, `{"_id": "1", "_deleted": true}`, `[{"_id":"1","_deleted":true,"x":1}]`},
		{"add literal and path", `{"default": [["add", "n", "_S.name"], ["add", "c", 26], ["add", "miss", "_S.nope"]]}`, src, `[{"_id":"1","n":"Ada","c":26,"miss":null}]`},
		{"add computed name", `{"default": [["add", ["concat", "x-", "_S.k"], "_S.val"]]}`, src, `[{"_id":"1","x-key":"v"}]`},
		{"add overwrites _id", `{"default": [["add", "_id", ["string", "_S.age"]]]}`, src, `[{"_id":"36"}]`},
		{"add-if skips null and empty", `{"default": [["add-if", "a", "_S.nul"], ["add-if", "b", "_S.empty"], ["add-if", "c", "_S.nope"], ["add-if", "d", "_S.name"], ["add-if", "e", false]]}`, src, `[{"_id":"1","d":"Ada","e":false}]`},
		{"default keeps existing", `{"default": [["add", "a", 1], ["default", "a", 2], ["default", "b", 3]]}`, src, `[{"_id":"1","a":1,"b":3}]`},
		{"copy star excl", `{"default": [["copy", "*", ["list", "_*", "$*", "items", "sub", "empty", "nul"]]]}`, src, `[{"_id":"1","name":"Ada","age":36,"a1":1,"a2":2,"b":3,"k":"key","val":"v"}]`},
		{"copy glob list", `{"default": [["copy", ["list", "a*", "name"]]]}`, src, `[{"_id":"1","a1":1,"a2":2,"age":36,"name":"Ada"}]`},
		{"copy literal name", `{"default": [["copy", ["literal", "name"]], ["copy", "nope"]]}`, src, `[{"_id":"1","name":"Ada"}]`},
		{"copy keeps lists", `{"default": [["copy", "empty"], ["copy", "$ids"]]}`, src, `[{"_id":"1","empty":[],"$ids":["~:x:1"]}]`},
		{"copy star includes _ keys", `{"default": [["copy", "_*"]]}`, src, `[{"_id":"1","_updated":3}]`},
		{"remove glob", `{"default": [["copy", "a*"], ["remove", "a?"]]}`, src, `[{"_id":"1","age":36}]`},
		{"rename", `{"default": [["copy", "name"], ["rename", "name", "full"]]}`, src, `[{"_id":"1","full":"Ada"}]`},
		{"merge dict", `{"default": [["merge", "_S.sub"]]}`, src, `[{"_id":"1","x":1,"y":2}]`},
		{"merge list of dicts later wins", `{"default": [["merge", ["list", {"a": 1, "b": 1}, 5, {"b": 2}]]]}`, src, `[{"_id":"1","a":1,"b":2}]`},
		{"merge can replace _id", `{"default": [["merge", {"_id": "2"}]]}`, src, `[{"_id":"2"}]`},
		{"merge-union", `{"default": [["add", "a", 1], ["merge-union", ["list", {"a": 2, "b": 1}, {"a": 1}]]]}`, src, `[{"_id":"1","a":[1,2],"b":1}]`},
		{"comment", `{"default": [["comment", "anything", ["foo"]], ["add", "a", 1]]}`, src, `[{"_id":"1","a":1}]`},
		{"if then single", `{"default": [["if", ["gt", "_S.age", 18], ["add", "t", "adult"], ["add", "t", "child"]]]}`, src, `[{"_id":"1","t":"adult"}]`},
		{"if else list", `{"default": [["if", ["lt", "_S.age", 18], ["add", "t", "child"], [["add", "t", "adult"], ["add", "u", true]]]]}`, src, `[{"_id":"1","t":"adult","u":true}]`},
		{"if empty branch", `{"default": [["if", true, []], ["add", "a", 1]]}`, src, `[{"_id":"1","a":1}]`},
		{"case", `{"default": [["case", ["eq", "_S.age", 1], ["add", "c", 1], ["eq", "_S.age", 36], ["add", "c", 36], ["add", "c", 0]]]}`, src, `[{"_id":"1","c":36}]`},
		{"case-eq", `{"default": [["case-eq", "_S.name", "Bob", ["add", "c", "b"], "Ada", [["add", "c", "a"]], ["add", "c", "x"]]]}`, src, `[{"_id":"1","c":"a"}]`},
		{"case-eq else", `{"default": [["case-eq", "_S.name", "Bob", ["add", "c", "b"], ["add", "c", "x"]]]}`, src, `[{"_id":"1","c":"x"}]`},
		{"case-eq no match no else", `{"default": [["case-eq", "_S.name", "Bob", ["add", "c", "b"]]]}`, src, `[{"_id":"1"}]`},
		{"filter keeps", `{"default": [["filter", ["eq", "_S.name", "Ada"]], ["add", "a", 1]]}`, src, `[{"_id":"1","a":1}]`},
		{"filter drops and stops", `{"default": [["add", "a", 1], ["filter", ["eq", "_S.name", "Bob"]], ["add", "b", 2]]}`, src, `[{"_id":"1","a":1,"_filtered":true}]`},
		{"filter no args", `{"default": [["if", ["is-empty", "_S.empty"], ["filter"]], ["copy", "name"]]}`, src, `[{"_id":"1","_filtered":true}]`},
		{"discard keeps", `{"default": [["discard", true], ["add", "a", 1]]}`, src, `[{"_id":"1","a":1}]`},
		{"discard drops", `{"default": [["if", ["eq", "_S.name", "Ada"], ["discard"]], ["add", "a", 1]]}`, src, `[]`},
		{"discard cond false", `{"default": [["discard", ["eq", "x.deletion", "_S.name"]]]}`, src, `[]`},
		{"discard in apply drops item", `{"default": [["add", "kept", ["apply", "item", "_S.items"]]], "item": [["discard", ["eq", "_S.n", 2]], ["copy", "id"]]}`, src, `[{"_id":"1","kept":{"id":"i2"}}]`},
		{"apply target starts empty", `{"default": [["add", "x", ["apply", "r", "_S."]]], "r": [["copy", "name"]]}`, src, `[{"_id":"1","x":{"name":"Ada"}}]`},
		{"apply sees parent and root", `{"default": [["add", "t", "root"], ["add", "items", ["apply", "item", "_S.items"]]], "item": [["add", "id", "_S.id"], ["add", "p", "_P._S.name"], ["add", "r", "_R._T.t"], ["add", "pid", "_P._T._id"]]}`, src, `[{"_id":"1","t":"root","items":[{"id":"i1","p":"Ada","r":"root","pid":"1"},{"id":"i2","p":"Ada","r":"root","pid":"1"}]}]`},
		{"nested apply _P._P", `{"default": [["add", "o", ["apply", "a", "_S.sub"]]], "a": [["add", "i", ["apply", "b", {"z": 1}]]], "b": [["add", "g", "_P._P._S.name"], ["add", "p", "_P._S.x"]]}`, src, `[{"_id":"1","o":{"i":{"g":"Ada","p":1}}}]`},
		{"create", `{"default": [["copy", "name"], ["create", ["apply", "child", "_S.items"]]], "child": [["add", "_id", "_S.id"], ["add", "parent", "_P._S._id"]]}`, src, `[{"_id":"1","name":"Ada"},{"_id":"i1","parent":"1"},{"_id":"i2","parent":"1"}]`},
		{"create with discard", `{"default": [["create", {"_id": "c"}], ["discard"]]}`, src, `[{"_id":"c"}]`},
		{"create-child appends", `{"default": [["copy", "$children"], ["create-child", ["apply", "child", "_S.items"]]], "child": [["add", "_id", "_S.id"]]}`, src, `[{"_id":"1","$children":[{"_id":"old"},{"_id":"i1"},{"_id":"i2"}]}]`},
		{"make-ni", `{"default": [["make-ni", "crm", "age"]]}`, src, `[{"_id":"1","age-ni":"~:crm:36"}]`},
		{"nested block", `{"default": [[["add", "a", 1], ["add", "b", 2]]]}`, src, `[{"_id":"1","a":1,"b":2}]`},
		{"_T reads own writes", `{"default": [["add", "a", 1], ["add", "b", ["list", "_T.a", "_T.a"]]]}`, src, `[{"_id":"1","a":1,"b":[1,1]}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.rules, tc.source, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			assertJSON(t, toAny(out), decodeJSON(t, []byte(tc.want)))
		})
	}
}

// TestApplyDoesNotMutateSource guards the read-only promise.
func TestApplyDoesNotMutateSource(t *testing.T) {
	rules := `{"default": [["copy", "*"], ["create-child", {"_id": "n"}], ["merge-union", {"l": 3}], ["remove", "x"], ["rename", "y", "z"]]}`
	srcText := `{"_id": "1", "x": 1, "y": 2, "l": [1, 2], "$children": [{"_id": "a"}]}`
	src := decodeJSON(t, []byte(srcText)).(map[string]any)
	before := canonicalJSON(src)
	p, err := Compile(decodeJSON(t, []byte(rules)).(map[string]any), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if after := canonicalJSON(src); after != before {
		t.Errorf("source mutated:\n%s\n%s", before, after)
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ name, rules, want string }{
		{"unknown function", `{"default": [["add", "a", 1], ["add", "b", ["foo", 1]]]}`, `rules.default[1][2]: unknown function "foo"`},
		{"unknown transform", `{"default": [["bar"]]}`, `rules.default[0]: unknown transform function "bar"`},
		{"expression as transform", `{"default": [["upper", "x"]]}`, `rules.default[0]: "upper" is an expression function, not a transform`},
		{"transform as expression", `{"default": [["add", "a", ["copy", "x"]]]}`, `rules.default[0][2]: "copy" is a transform function, not an expression`},
		{"arity", `{"default": [["add", "a", ["first", 1, 2]]]}`, `rules.default[0][2]: "first" takes 1 argument(s), got 2`},
		{"nested arity", `{"default": [["if", true, [["add", "a"]]]]}`, `rules.default[0][2][0]: "add" takes 2 argument(s), got 1`},
		{"unknown rule", `{"default": [["add", "a", ["apply", "nope", "_S."]]]}`, `rules.default[0][2][1]: unknown rule "nope"`},
		{"missing default", `{"other": []}`, `rules: missing "default" rule`},
		{"rule not list", `{"default": {}}`, `rules.default: rule must be a list of transforms, got dict`},
		{"not a call", `{"default": ["add"]}`, `rules.default[0]: expected a transform function call`},
		{"empty list expr", `{"default": [["add", "a", []]]}`, `rules.default[0][2]: empty list is not an expression`},
		{"bad strftime", `{"default": [["add", "a", ["datetime-parse", "%Q", "x"]]]}`, `rules.default[0][2][1]: unsupported format directive %Q`},
		{"bad unit", `{"default": [["add", "a", ["datetime-plus", "fortnights", 1, "x"]]]}`, `rules.default[0][2][1]: unknown datetime unit "fortnights"`},
		{"dict odd", `{"default": [["add", "a", ["dict", "a", 1, "b"]]]}`, `rules.default[0][2]: "dict" takes no argument`},
		{"hops two datasets", `{"default": [["add", "a", ["hops", {"datasets": ["a x", "b y"], "where": ["eq", "_S.a", "x.a"]}]]]}`, `rules.default[0][2][1].datasets: hops: unsupported datasets`},
		{"hops no join", `{"default": [["add", "a", ["hops", {"datasets": ["a x"], "where": [["gt", "_S.a", "x.a"]]}]]]}`, `rules.default[0][2][1].where: hops: unsupported where shape`},
		{"hops recurse", `{"default": [["add", "a", ["hops", {"datasets": ["a x"], "where": ["eq", "_S.a", "x.a"], "recurse": true}]]]}`, `rules.default[0][2][1].recurse: hops: unsupported key "recurse"`},
		{"hash128 algorithm", `{"default": [["add", "a", ["hash128", "sha1", "x"]]]}`, `rules.default[0][2][1]: hash128: unsupported algorithm "sha1" (only "murmur3")`},
		{"hash128 arity", `{"default": [["add", "a", ["hash128", "murmur3", 1, "x", "y"]]]}`, `rules.default[0][2]: "hash128" takes 1 to 3 arguments, got 4`},
		{"hops alias scoped", `{"default": [["add", "a", ["hops", {"datasets": ["a x"], "where": ["eq", "_S.a", "x.a"], "return": ["foo", "x.b"]}]]]}`, `rules.default[0][2][1].return: unknown function "foo"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(decodeJSON(t, []byte(tc.rules)).(map[string]any), DefaultOptions())
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Errorf("error %T is not *dtl.Error", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got  %q\nwant %q...", err.Error(), tc.want)
			}
		})
	}
}

func TestRuntimeErrors(t *testing.T) {
	cases := []struct{ name, rules, source, want string }{
		{"fail!", `{"default": [["if", ["is-null", "_S.$origin"], ["fail!", "Entity to be inserted does not have $origin property"]]]}`, `{"_id": "e7"}`,
			`dtl: entity "e7": rules.default[0][2]: fail!: Entity to be inserted does not have $origin property`},
		{"fail! in applied rule", `{"default": [["add", "x", ["apply", "r", "_S."]]], "r": [["fail!", ["concat", "bad ", "_S._id"]]]}`, `{"_id": "e8"}`,
			`dtl: entity "e8": rules.r[0]: fail!: bad e8`},
		{"id required source", `{"default": []}`, `{"x": 1}`, `dtl: source entity has no string _id`},
		{"id required output", `{"default": [["add", "_id", ["string", "_S.nope"]]]}`, `{"_id": "e9"}`, `dtl: entity "e9": rules.default: output entity has no string _id (id_required): _id = null`},
		{"hops without hopper", `{"default": [["add", "a", ["hops", {"datasets": ["ds x"], "where": ["eq", "_S._id", "x.ref"]}]]]}`, `{"_id": "e10"}`,
			`dtl: entity "e10": rules.default[0][2]: hops on "ds": no Hopper configured`},
		{"recursion bound", `{"default": [["add", "a", ["apply", "loop", "_S."]]], "loop": [["add", "a", ["apply", "loop", "_S."]]]}`, `{"_id": "e11"}`,
			`nesting deeper than 256`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.rules, tc.source, DefaultOptions())
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %q\nwant %q", err.Error(), tc.want)
			}
		})
	}
	_, err := run(t, `{"default": [["fail!", "x"]]}`, `{"_id": "1"}`, DefaultOptions())
	if !errors.Is(err, ErrFail) {
		t.Errorf("fail! error %v does not wrap ErrFail", err)
	}
	// id_required off: entities without _id pass.
	out, err := run(t, `{"default": [["add", "a", 1]]}`, `{"x": 1}`, Options{})
	if err != nil || len(out) != 1 || out[0]["a"] == nil {
		t.Errorf("IDRequired false: %v %v", out, err)
	}
}

func TestApplyCanceledContext(t *testing.T) {
	p, err := Compile(map[string]any{"default": []any{}}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Apply(ctx, map[string]any{"_id": "1"}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestUsedFunctions(t *testing.T) {
	rules := decodeJSON(t, []byte(`{"default": [["comment", ["foo"]], ["add", "a", ["literal", ["bar"]]],
		["if", ["eq", "_S.x", 1], [["add", "b", ["hops", {"datasets": ["ds st"], "where": [["eq", "_S.y", ["ni", "st._id"]]], "return": "st.z"}]]]]],
		"r": [["copy", "*", ["list", "_*"]], ["nope", 1]]}`))
	got := UsedFunctions(rules)
	want := map[string]int{"comment": 1, "add": 2, "literal": 1, "if": 1, "eq": 2, "hops": 1, "ni": 1, "copy": 1, "list": 1, "nope": 1}
	if canonicalJSON(toMapAny(got)) != canonicalJSON(toMapAny(want)) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func toMapAny(m map[string]int) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
