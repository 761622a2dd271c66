package pipes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// splitAll splits data, and checks that reading it one byte per Read
// (values, strings and escapes cut at every buffer refill) splits it the
// same way.
func splitAll(data []byte) ([]string, error) {
	out, err := splitFrom(bytes.NewReader(data))
	slow, slowErr := splitFrom(iotest.OneByteReader(bytes.NewReader(data)))
	if strings.Join(out, "\x00") != strings.Join(slow, "\x00") || (err == nil) != (slowErr == nil) {
		return nil, fmt.Errorf("split %q = %q, %v; one byte at a time %q, %v", data, out, err, slow, slowErr)
	}
	return out, err
}

func splitFrom(r io.Reader) ([]string, error) {
	s := newValueStream(r)
	var out []string
	for {
		v, err := s.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(v))
	}
}

func TestValueStream(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{``, nil, ""},
		{"  \n", nil, ""},
		{`[]`, nil, ""},
		{" [ ] \n", nil, ""},
		{`[{"a":1}, {"b":"]}\"["} ,2,"x",null]`, []string{`{"a":1}`, `{"b":"]}\"["}`, `2`, `"x"`, `null`}, ""},
		{"{\"a\":1}\n{\"a\":2}\n", []string{`{"a":1}`, `{"a":2}`}, ""},
		{`{"a":1}{"a":[2]} 3 true`, []string{`{"a":1}`, `{"a":[2]}`, `3`, `true`}, ""},
		{`[[1,[2]],{}]`, []string{`[1,[2]]`, `{}`}, ""},
		{`[{"a":1}`, []string{`{"a":1}`}, "unexpected end of input inside the top-level array"},
		{`[{"a":1} {"b":2}]`, []string{`{"a":1}`}, "expected ',' or ']' after array element 1"},
		{`[1] x`, []string{`1`}, `unexpected 'x' after the top-level array`},
		{`[{"a":"x`, nil, "unexpected end of input in value 0"},
		{`"abc`, nil, "unexpected end of input in a string"},
		{`"a\`, nil, "unexpected end of input in a string"},
		{`{"a":[1,2}`, nil, "unexpected end of input in value 0"},
		{`[{"k":"a long string with \"escaped\" quotes, backslashes \\ and ] } [ { inside it"},{"_id":"x"}]`,
			[]string{`{"k":"a long string with \"escaped\" quotes, backslashes \\ and ] } [ { inside it"}`, `{"_id":"x"}`}, ""},
		{`[`, nil, "unexpected end of input inside the top-level array"},
	}
	for _, c := range cases {
		got, err := splitAll([]byte(c.in))
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
		}
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("split(%q) error = %v, want %q", c.in, err, c.err)
		}
	}
}

// FuzzValueStream compares the splitter with encoding/json: for a valid
// top-level array the elements, and for a valid sequence of values
// (NDJSON) the values must be the same.
func FuzzValueStream(f *testing.F) {
	for _, s := range []string{`[{"_id":"a"},{"_id":"b","x":[1,"]"]}]`, "{\"_id\":\"a\"}\n{\"_id\":\"b\"}\n", `[1,"a\"b",{"c":{}}]`, `[]`, `1 2 "x"`, `{"a":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := splitAll(data)
		var want []string
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if json.Valid(data) && len(trimmed) > 0 && trimmed[0] == '[' {
			var elems []json.RawMessage
			if err := json.Unmarshal(data, &elems); err != nil {
				t.Fatal(err)
			}
			for _, e := range elems {
				want = append(want, compact(t, e))
			}
		} else {
			dec := json.NewDecoder(bytes.NewReader(data))
			for {
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					if !errors.Is(err, io.EOF) {
						return // not a valid sequence: only require no panic
					}
					break
				}
				if v[0] != '{' && v[0] != '[' {
					// Adjacent scalars ("000" is 0 0 0 to encoding/json)
					// are not entities; only require no panic.
					return
				}
				want = append(want, compact(t, v))
			}
			if len(want) > 0 && bytes.HasPrefix(trimmed, []byte("[")) {
				return // an invalid array followed by more: not comparable
			}
		}
		if err != nil {
			t.Fatalf("split(%q) failed: %v; encoding/json accepted %q", data, err, want)
		}
		if len(got) != len(want) {
			t.Fatalf("split(%q) = %q, encoding/json = %q", data, got, want)
		}
		for i := range got {
			if c := compact(t, []byte(got[i])); c != want[i] {
				t.Fatalf("split(%q)[%d] = %s, encoding/json = %s", data, i, c, want[i])
			}
		}
	})
}

func compact(t *testing.T, b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return buf.String()
}
