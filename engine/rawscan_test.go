package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestScanRawObject: members come out in order with duplicates, keys
// decoded when escaped, values as their exact text; bad structure fails.
func TestScanRawObject(t *testing.T) {
	var got []string
	err := ScanRawObject([]byte(` { "a" : 1 , "b\u0063":"x\"}" ,"a":[1,{"}":"]"}],"n":null, "e":{} } `), func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	})
	want := `a=1|bc="x\"}"|a=[1,{"}":"]"}]|n=null|e={}`
	if err != nil || strings.Join(got, "|") != want {
		t.Errorf("got %q, %v; want %q", strings.Join(got, "|"), err, want)
	}
	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":1} x`, `{a:1}`, `{"a":"x}`, `{"\x":1}`, "{\"\xff\":1}", `{"a":[1}`} {
		if err := ScanRawObject([]byte(bad), func(k, v []byte) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		} else if !errors.As(err, new(*SyntaxError)) {
			t.Errorf("%q: %v is not a SyntaxError", bad, err)
		}
	}
	stop := errors.New("stop")
	if err := ScanRawObject([]byte(`{"a":1,"b":2}`), func(k, v []byte) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
}

// TestAppendRawElements: elements as their exact text, nothing after the
// array, bad structure fails.
func TestAppendRawElements(t *testing.T) {
	els, err := AppendRawElements(nil, []byte(" [ {\"a\": \"]\"} ,1, \"s\\\"\",[[]], null ,-2.5e3] "))
	var got []string
	for _, e := range els {
		got = append(got, string(e))
	}
	want := `{"a": "]"}|1|"s\""|[[]]|null|-2.5e3`
	if err != nil || strings.Join(got, "|") != want {
		t.Errorf("got %q, %v; want %q", strings.Join(got, "|"), err, want)
	}
	if els, err := AppendRawElements(nil, []byte(`[]`)); err != nil || len(els) != 0 {
		t.Errorf("[]: %q, %v", els, err)
	}
	for _, bad := range []string{``, `{}`, `[`, `[1,]`, `[1 2]`, `[,1]`, `[1] 2`, `["x]`, `[{"a":1]`} {
		if _, err := AppendRawElements(nil, []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzRawScan: whatever the scanners accept, the pieces they hand out
// cover the document, and for valid JSON they are exactly its members or
// elements (each decodes, and the object or array rebuilt from them
// decodes to the same value).
func FuzzRawScan(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1,"]"],"c":{"d":null}}`, `[1,"x",{"a":[]},true]`, `{}`, `[]`, `{"a\"b":"\\"}`, `[{"a":1]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		data := []byte(s)
		whole, werr := DecodeValue(data)
		var b strings.Builder
		oerr := ScanRawObject(data, func(k, v []byte) error {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.Write(AppendString(nil, string(k)))
			b.WriteByte(':')
			b.Write(v)
			return nil
		})
		if m, ok := whole.(map[string]any); werr == nil && ok {
			if oerr != nil {
				t.Fatalf("%q decodes but ScanRawObject fails: %v", s, oerr)
			}
			again, err := DecodeValue([]byte("{" + b.String() + "}"))
			if err != nil || fmt.Sprint(again) != fmt.Sprint(m) {
				t.Fatalf("%q: members rebuild %q (%v)", s, b.String(), err)
			}
		}
		els, aerr := AppendRawElements(nil, data)
		if l, ok := whole.([]any); werr == nil && ok {
			if aerr != nil || len(els) != len(l) {
				t.Fatalf("%q decodes to %d elements, AppendRawElements: %d, %v", s, len(l), len(els), aerr)
			}
			for i, e := range els {
				v, err := DecodeValue(e)
				if err != nil || fmt.Sprint(v) != fmt.Sprint(l[i]) {
					t.Fatalf("%q element %d: %q (%v)", s, i, e, err)
				}
			}
		}
	})
}

// rawList is a RawReader over fixed batches.
type rawList struct{ batches []RawBatch }

func (r *rawList) RawOK() bool { return true }

func (r *rawList) NextRaw(ctx context.Context) (RawBatch, error) {
	if len(r.batches) == 0 {
		return RawBatch{}, EOF
	}
	b := r.batches[0]
	r.batches = r.batches[1:]
	return b, nil
}

// TestRawChunks: a batch larger than the size is cut into chunks of it;
// only the last carries the token, and Locate names the place in the
// whole batch.
func TestRawChunks(t *testing.T) {
	vals := func(n int) [][]byte {
		v := make([][]byte, n)
		for i := range v {
			v[i] = []byte(fmt.Sprint(i))
		}
		return v
	}
	c := &rawChunks{size: 4, RawReader: &rawList{batches: []RawBatch{
		{Values: vals(10), Since: "t1", Locate: func(i int) string { return fmt.Sprintf("page 1 item %d", i) }},
		{Values: vals(3), Since: "t2"},
		{Since: "t3"},
		{Values: vals(5)},
	}}}
	var got []string
	for {
		b, err := c.NextRaw(context.Background())
		if errors.Is(err, EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		loc := ""
		if b.Locate != nil && len(b.Values) > 0 {
			loc = b.Locate(len(b.Values) - 1)
		}
		got = append(got, fmt.Sprintf("%d %q %q %s", len(b.Values), b.Since, loc, b.Values))
	}
	want := []string{
		`4 "" "page 1 item 3" [0 1 2 3]`,
		`4 "" "page 1 item 7" [4 5 6 7]`,
		`2 "t1" "page 1 item 9" [8 9]`,
		`3 "t2" "" [0 1 2]`,
		`0 "t3" "" []`,
		`4 "" "entity 4" [0 1 2 3]`,
		`1 "" "entity 5" [4]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("chunks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
