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
	out, _, err := drain(newValueStream(r), nil)
	return out, err
}

// drain reads s to its end: the values, the line of each (line mode) and
// the error that stopped it (nil at the end). check, if set, sees every
// value as Next returned it.
func drain(s *valueStream, check func(v []byte)) (vals []string, lines []int, err error) {
	for {
		v, err := s.Next()
		if err == io.EOF {
			return vals, lines, nil
		}
		if err != nil {
			return vals, lines, err
		}
		if check != nil {
			check(v)
		}
		vals, lines = append(vals, string(v)), append(lines, s.line)
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

// TestLineStream checks line mode: one value per non-blank line, the
// whitespace around it dropped, the line of each value counted, lines
// longer than the read buffer whole.
func TestLineStream(t *testing.T) {
	long := `{"_id":"long","x":"` + strings.Repeat("y", 600<<10) + `"}`
	cases := []struct {
		in    string
		want  []string
		lines []int
	}{
		{"", nil, nil},
		{"\n \r\n\t\n", nil, nil},
		{"{\"a\":1}\n{\"a\":2}\n", []string{`{"a":1}`, `{"a":2}`}, []int{1, 2}},
		{"{\"a\":1}\r\n\r\n  {\"a\":2} \t", []string{`{"a":1}`, `{"a":2}`}, []int{1, 3}},
		// Not one value per line: handed over as the line is, for the
		// decoder to refuse (see TestJSONSourceNDJSON).
		{"{\"a\":1} {\"a\":2}\n{\n\"a\":3}\n", []string{`{"a":1} {"a":2}`, `{`, `"a":3}`}, []int{1, 2, 3}},
		{"{\"a\":1}\n" + long + "\n{\"a\":2}", []string{`{"a":1}`, long, `{"a":2}`}, []int{1, 2, 3}},
	}
	for _, c := range cases {
		for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
			got, lines, err := drain(newLineStream(r), nil)
			if err != nil {
				t.Fatalf("lines of %.40q: %v", c.in, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) || fmt.Sprint(lines) != fmt.Sprint(c.lines) {
				t.Errorf("lines of %.40q = %.80q at %v, want %.80q at %v", c.in, got, lines, c.want, c.lines)
			}
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

// FuzzLineStream checks line mode against the scanning splitter: values
// never hold a newline or surrounding whitespace, and where every
// non-blank line is one JSON object both split the same.
func FuzzLineStream(f *testing.F) {
	for _, s := range []string{"{\"_id\":\"a\"}\n{\"_id\":\"b\"}\n", "{\"a\":\"}\\n{\"}\r\n\n", "{} {}\n{\n}", " \t\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _, err := drain(newLineStream(bytes.NewReader(data)), func(v []byte) {
			if len(v) == 0 || bytes.IndexByte(v, '\n') >= 0 || isSpace(v[0]) || isSpace(v[len(v)-1]) {
				t.Fatalf("lines of %q: value %q", data, v)
			}
		})
		if err != nil {
			t.Fatalf("lines of %q: %v", data, err)
		}
		for _, l := range bytes.Split(data, []byte("\n")) {
			if l = trimSpace(l); len(l) > 0 && (l[0] != '{' || !json.Valid(l)) {
				return // not NDJSON of objects: only the checks above
			}
		}
		want, err := splitAll(data)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("lines of %q = %q, scanning split = %q, %v", data, got, want, err)
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

// BenchmarkValueStream splits NDJSON shaped like ferry bench's entities
// (~310 bytes, short strings, one nested object and array per line).
func BenchmarkValueStream(b *testing.B) {
	var data []byte
	for i := range 10000 {
		data = fmt.Appendf(data, `{"_id":"%016x-%04d","id":%d,"name":"Customer %d","email":"customer%d@example.com","active":%t,"balance":%d.%02d,"a":%d,"address":{"street":"%d Main Street","city":"Springfield","zip":"%05d","country":"NO"},"tags":["retail","tier-%d"],"updated":"2026-11-01T10:00:00Z","version":0}`+"\n",
			uint64(i)*0x9e3779b97f4a7c15, i, i, i, i, i%2 == 1, i, i%100, i, i, i, i%10)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s := newValueStream(bytes.NewReader(data))
		n := 0
		for {
			_, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("split %d values, want 10000", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/value")
}
