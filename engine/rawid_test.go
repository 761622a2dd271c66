package engine_test

import (
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

func TestScanRawID(t *testing.T) {
	cases := []struct {
		raw, id string
		ok      bool
	}{
		{`{"_id":"a","x":1}`, "a", true},
		{` { "_id" : "a b" } `, "a b", true},
		{`{"x":{"_id":"inner"},"y":[1,"]",{"z":"}"}],"s":"q\"uote","_id":"outer"}`, "outer", true},
		{`{"n":-1.5e3,"t":true,"f":false,"z":null,"_id":"after-literals"}`, "after-literals", true},
		{`{"_id":"æøå"}`, "æøå", true},
		// Unsure: escapes, wrong types, no _id, not an object.
		{`{"_id":"a\"b"}`, "", false},
		{`{"_\u0069d":"a"}`, "", false},
		{`{"_id":1}`, "", false},
		{`{"_id":""}`, "", false},
		{`{"x":1}`, "", false},
		{`{}`, "", false},
		{`[{"_id":"a"}]`, "", false},
		{`{"x":"unterminated`, "", false},
		{`{"x":[1,2`, "", false},
		{``, "", false},
	}
	for _, c := range cases {
		id, ok := engine.ScanRawID([]byte(c.raw))
		if id != c.id || ok != c.ok {
			t.Errorf("ScanRawID(%s) = %q, %v; want %q, %v", c.raw, id, ok, c.id, c.ok)
		}
	}
}

func TestRawTextHashNeverZero(t *testing.T) {
	if engine.RawTextHash(nil) == 0 || engine.RawTextHash([]byte(`{"_id":"a"}`)) == 0 {
		t.Fatal("RawTextHash returned the reserved 0")
	}
	if engine.RawTextHash([]byte(`{"_id":"a"}`)) == engine.RawTextHash([]byte(`{"_id":"b"}`)) {
		t.Fatal("different texts hash equal")
	}
}

func TestResolve(t *testing.T) {
	raw := []byte(`{"z":1,"_id":"a","_ts":5,"_deleted":true}`)
	p := engine.Prepared{ID: "a", Lazy: true, Raw: raw, RawHash: engine.RawTextHash(raw)}
	if err := p.Resolve(); err != nil {
		t.Fatal(err)
	}
	want, _, _ := engine.PrepareRaw(nil, raw)
	if p.Lazy || p.ID != "a" || !p.Deleted || string(p.Body) != string(want.Body) || p.Hash != want.Hash || p.RawHash != engine.RawTextHash(raw) {
		t.Errorf("resolved = %+v", p)
	}
	bad := engine.Prepared{ID: "b", Lazy: true, Raw: []byte(`{"_id":"b","x":}`)}
	if err := bad.Resolve(); err == nil {
		t.Error("Resolve of invalid JSON succeeded")
	}
}

// FuzzScanRawID checks that ScanRawID never panics and, for text the raw
// path accepts, finds the _id PrepareRaw finds (unless the text has more
// than one "_id" key, where ScanRawID takes the first and may differ; the
// text hash then decides, see ScanRawID).
func FuzzScanRawID(f *testing.F) {
	for _, c := range []string{`{"_id":"a","x":1}`, `{"x":{"_id":"i"},"_id":"o"}`, `{"_id":"a\"b"}`, `{"s":"\\","_id":"x"}`, `[1]`} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, ok := engine.ScanRawID([]byte(raw))
		if !ok {
			return
		}
		p, _, err := engine.PrepareRaw(nil, []byte(raw))
		if err != nil || strings.Count(raw, `"_id"`) > 1 {
			return
		}
		if p.ID != id {
			t.Fatalf("ScanRawID(%q) = %q, PrepareRaw found %q", raw, id, p.ID)
		}
	})
}

// BenchmarkUnchangedText is what the raw path spends on an entity it hands
// over lazily: the text hash and finding the _id.
func BenchmarkUnchangedText(b *testing.B) {
	b.SetBytes(int64(len(benchDoc)))
	b.ReportAllocs()
	for b.Loop() {
		engine.RawTextHash(benchDoc)
		if _, ok := engine.ScanRawID(benchDoc); !ok {
			b.Fatal("no _id")
		}
	}
}
