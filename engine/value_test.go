package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func canon(t testing.TB, v any) string {
	t.Helper()
	b, err := AppendCanonical(nil, v)
	if err != nil {
		t.Fatalf("AppendCanonical(%v): %v", v, err)
	}
	return string(b)
}

func TestDecodeValue(t *testing.T) {
	cases := []struct{ in, want string }{
		{`null`, `null`},
		{` true `, `true`},
		{"\n\tfalse\r\n", `false`},
		{`0`, `0`},
		{`-0`, `-0`},
		{`1.50`, `1.50`},
		{`-12.5e+07`, `-12.5e+07`},
		{`1E5`, `1E5`},
		{`12345678901234567890123456789`, `12345678901234567890123456789`},
		{`12345678901234567890.10`, `12345678901234567890.10`},
		{`""`, `""`},
		{`"a\"b\\c\/d\b\f\n\r\t"`, `"a\"b\\c/d\u0008\u000c\n\r\t"`},
		{`"\u00e9\u20ac\ud83d\ude00"`, `"é€😀"`},
		{`"\ud800x"`, `"` + "\uFFFD" + `x"`},      // lone high surrogate
		{`"\ud800\u0041"`, `"` + "\uFFFD" + `A"`}, // high surrogate + non-low
		{`"\udc00"`, `"` + "\uFFFD" + `"`},        // lone low surrogate
		{`[]`, `[]`},
		{`[ 1 , [2,[ ]] ,{} ]`, `[1,[2,[]],{}]`},
		{`{"b":1,"a":{"d":[true,null],"c":"x"}}`, `{"a":{"c":"x","d":[true,null]},"b":1}`},
		{`{"a":1,"a":2}`, `{"a":2}`}, // last duplicate wins, as encoding/json
	}
	for _, c := range cases {
		v, err := DecodeValue([]byte(c.in))
		if err != nil {
			t.Errorf("DecodeValue(%q): %v", c.in, err)
			continue
		}
		if got := canon(t, v); got != c.want {
			t.Errorf("DecodeValue(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

// Invalid UTF-8 is an error naming the byte offset, on the fast and the
// slow (escapes) string paths and in keys; encoding/json would replace it
// with U+FFFD silently.
func TestDecodeValueRejectsInvalidUTF8(t *testing.T) {
	for _, c := range []struct {
		in  string
		off int
	}{
		{"\"a\xffb\"", 2},
		{"\"\xff\xfe\\n\"", 1},
		{"\"x\\n\xe2\x82\"", 4},
		{"{\"k\xc3\": 1}", 3},
		{"[\"ok\", \"\xed\xa0\x80\"]", 8}, // an encoded surrogate is not UTF-8
	} {
		_, err := DecodeValue([]byte(c.in))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != c.off || !strings.Contains(se.Msg, "invalid UTF-8") {
			t.Errorf("DecodeValue(%q) = %v, want invalid UTF-8 at byte %d", c.in, err, c.off)
		}
	}
	nd := NewDecoder()
	if _, err := nd.DecodeEntity([]byte("{\"_id\": \"a\", \"n\xe9e\": 1}")); err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Errorf("Decoder.DecodeEntity with an invalid key: %v", err)
	}
}

func TestDecodeValueNumbersAreJSONNumber(t *testing.T) {
	v, err := DecodeValue([]byte(`{"a":12345678901234567890.10,"b":[1e400]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if n, ok := m["a"].(json.Number); !ok || n != "12345678901234567890.10" {
		t.Errorf("a = %#v, want json.Number with the exact text", m["a"])
	}
	if n, ok := m["b"].([]any)[0].(json.Number); !ok || n != "1e400" {
		t.Errorf("b[0] = %#v, want json.Number 1e400", m["b"].([]any)[0])
	}
}

func TestDecodeValueErrors(t *testing.T) {
	cases := []struct {
		in     string
		offset int
		msg    string
	}{
		{``, 0, "unexpected end of input"},
		{`   `, 3, "unexpected end of input"},
		{`nul`, 0, "expected null"},
		{`tru`, 0, "expected true"},
		{`x`, 0, "unexpected character"},
		{`01`, 1, "after top-level value"},
		{`1 2`, 2, "after top-level value"},
		{`-`, 1, "invalid number"},
		{`1.`, 2, "no digits after '.'"},
		{`1e`, 2, "no digits in exponent"},
		{`+1`, 0, "unexpected character"},
		{`.5`, 0, "unexpected character"},
		{`"abc`, 4, "unterminated string"},
		{`"a\`, 3, "unterminated string"},
		{"\"a\nb\"", 2, "control character"},
		{"\"a\\n\tb\"", 4, "control character"},
		{`"\x"`, 3, "invalid escape"},
		{`"\u12"`, 3, "invalid \\u escape"},
		{`"\u12g4"`, 3, "invalid \\u escape"},
		{`"\ud800\u12"`, 9, "invalid \\u escape"},
		{`[1,]`, 3, "unexpected character"},
		{`[1 2]`, 3, "expected ',' or ']'"},
		{`[1`, 2, "end of input in array"},
		{`{"a" 1}`, 5, "expected ':'"},
		{`{a:1}`, 1, "expected object key"},
		{`{"a":1,}`, 7, "expected object key"},
		{`{"a":1 "b":2}`, 7, "expected ',' or '}'"},
		{`{"a":1`, 6, "end of input in object"},
		{`{"a":}`, 5, "unexpected character"},
	}
	for _, c := range cases {
		_, err := DecodeValue([]byte(c.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("DecodeValue(%q) error = %v, want *SyntaxError", c.in, err)
			continue
		}
		if se.Offset != c.offset || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("DecodeValue(%q) = offset %d %q, want offset %d containing %q", c.in, se.Offset, se.Msg, c.offset, c.msg)
		}
		if !strings.Contains(err.Error(), "invalid JSON at byte") {
			t.Errorf("error text %q does not give the byte offset", err)
		}
	}
}

func TestDecodeValueDepth(t *testing.T) {
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := DecodeValue([]byte(ok)); err != nil {
		t.Errorf("%d nested arrays: %v", maxDepth, err)
	}
	deep := strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)
	if _, err := DecodeValue([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nesting deeper") {
		t.Errorf("%d nested arrays: err = %v, want nesting error", maxDepth+2, err)
	}
	deepObj := strings.Repeat(`{"a":`, maxDepth+2)
	if _, err := DecodeValue([]byte(deepObj)); err == nil {
		t.Error("deep unterminated objects decoded")
	}
}

func TestDecodeEntity(t *testing.T) {
	cases := []struct {
		in      string
		wantErr string
	}{
		{`{"_id":"a","x":1}`, ""},
		{`{"_id":"a","_deleted":true}`, ""},
		{`{"x":1}`, "entity has no _id"},
		{`{"_id":1}`, "entity _id is a number, not a string"},
		{`{"_id":null}`, "entity _id is null, not a string"},
		{`{"_id":["a"]}`, "entity _id is an array, not a string"},
		{`{"_id":""}`, "entity _id is empty"},
		{`[{"_id":"a"}]`, "entity is an array, not a JSON object"},
		{`"a"`, "entity is a string, not a JSON object"},
		{`{"_id":"a"`, "invalid JSON"},
	}
	for _, c := range cases {
		e, err := DecodeEntity([]byte(c.in))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("DecodeEntity(%s): %v", c.in, err)
		case c.wantErr == "" && ID(e) != "a":
			t.Errorf("DecodeEntity(%s): ID = %q", c.in, ID(e))
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("DecodeEntity(%s) error = %v, want %q", c.in, err, c.wantErr)
		}
	}
	if _, err := DecodeEntity([]byte(`{"x":1}`)); !errors.Is(err, ErrNoID) {
		t.Errorf("missing _id error %v is not ErrNoID", err)
	}
}

func TestIDAndIsDeleted(t *testing.T) {
	cases := []struct {
		e       Entity
		id      string
		deleted bool
	}{
		{Entity{"_id": "a", "_deleted": true}, "a", true},
		{Entity{"_id": "a", "_deleted": false}, "a", false},
		{Entity{"_id": "a", "_deleted": "true"}, "a", false},
		{Entity{"_id": "a", "_deleted": json.Number("1")}, "a", false},
		{Entity{"_id": 5}, "", false},
		{Entity{}, "", false},
	}
	for _, c := range cases {
		if ID(c.e) != c.id || IsDeleted(c.e) != c.deleted {
			t.Errorf("%v: ID %q deleted %v, want %q %v", c.e, ID(c.e), IsDeleted(c.e), c.id, c.deleted)
		}
	}
}

func TestTypeName(t *testing.T) {
	cases := map[string]any{
		"null": nil, "a boolean": true, "a number": json.Number("1"), "a string": "",
		"an array": []any{}, "an object": map[string]any{}, "struct {}": struct{}{},
	}
	for want, v := range cases {
		if got := TypeName(v); got != want {
			t.Errorf("TypeName(%#v) = %q, want %q", v, got, want)
		}
	}
}

// FuzzDecodeValue compares DecodeValue with encoding/json (UseNumber):
// both must accept the same documents and agree on the value.
func FuzzDecodeValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"],"b":null}`, `[]`, `"\ud83d\ude00"`, `-0.0e-0`, "\"\xff\"", `{"a":1,"a":2}`, ` 1 `, `[1,]`, `"\ud800\u0041"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeValue(data)
		var want any
		jerr := errors.New("invalid")
		// JSON text must be UTF-8: Ferry refuses what encoding/json would
		// repair with U+FFFD.
		if json.Valid(data) && utf8.Valid(data) {
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			jerr = dec.Decode(&want)
		}
		if (err == nil) != (jerr == nil) {
			t.Fatalf("DecodeValue err = %v, encoding/json err = %v for %q", err, jerr, data)
		}
		if err != nil {
			return
		}
		g, w := canon(t, got), canon(t, want)
		if g != w {
			t.Fatalf("DecodeValue = %s, encoding/json = %s for %q", g, w, data)
		}
		// Canonical text decodes to itself.
		again, err := DecodeValue([]byte(g))
		if err != nil {
			t.Fatalf("canonical text %s does not decode: %v", g, err)
		}
		if c := canon(t, again); c != g {
			t.Fatalf("canonical not idempotent: %s -> %s", g, c)
		}
	})
}

// TestDecoderSizeHints decodes objects of changing shapes with one Decoder
// (whose maps are sized after the last object at the same depth) and
// checks each against a decode without hints.
func TestDecoderSizeHints(t *testing.T) {
	var wide strings.Builder
	wide.WriteString(`{"_id":"w"`)
	for i := range 100 {
		fmt.Fprintf(&wide, `,"k%d":{"a":%d}`, i, i)
	}
	wide.WriteString(`}`)
	docs := []string{
		`{"_id":"a","x":1}`,
		wide.String(),
		`{}`,
		`{"_id":"b","nested":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":1}}}}}}}}}`,
		`[{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10},{"a":1}]`,
		`{"_id":"c","y":[{},{"z":true}]}`,
	}
	dec := NewDecoder()
	for round := range 2 {
		for _, doc := range docs {
			got, err := dec.DecodeValue([]byte(doc))
			if err != nil {
				t.Fatalf("round %d: %s: %v", round, doc, err)
			}
			want, err := DecodeValue([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round %d: %s decoded to %v, want %v", round, doc, got, want)
			}
		}
	}
	if dec.sizes[0] != 2 {
		t.Errorf("size hint at depth 0 = %d, want 2 (the last object's keys)", dec.sizes[0])
	}
	if _, err := dec.DecodeValue([]byte(wide.String())); err != nil || dec.sizes[0] != maxSizeHint {
		t.Errorf("size hint after 101 keys = %d (%v), want the cap %d", dec.sizes[0], err, maxSizeHint)
	}
}
