package engine

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"
)

func TestAppendCanonical(t *testing.T) {
	big1, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	cases := []struct {
		v    any
		want string
	}{
		{nil, `null`},
		{true, `true`},
		{false, `false`},
		{json.Number("1.50"), `1.50`},
		{json.Number(""), `0`},
		{"", `""`},
		{"a\"b\\c\n\r\t\x01\x1f<>&\u2028é", `"a\"b\\c\n\r\t\u0001\u001f<>&` + "\u2028" + `é"`},
		{"bad\xffutf8", "\"bad\uFFFDutf8\""},
		{map[string]any{"b": 1, "a": []any{}, "A": map[string]any{}, "_x": nil}, `{"A":{},"_x":null,"a":[],"b":1}`},
		{[]any{1, int64(-2), 2.5, nil}, `[1,-2,2.5,null]`},
		{[]map[string]any{{"a": 1}}, `[{"a":1}]`},
		{big1, `123456789012345678901234567890`},
		{math.NaN(), `null`},
		{math.Inf(-1), `null`},
		{1e20, `100000000000000000000`},
	}
	for _, c := range cases {
		if got := canon(t, c.v); got != c.want {
			t.Errorf("AppendCanonical(%#v) = %s, want %s", c.v, got, c.want)
		}
	}
	if _, err := AppendCanonical(nil, map[string]any{"k": struct{}{}}); err == nil || !strings.Contains(err.Error(), `key "k"`) {
		t.Errorf("unsupported type error = %v, want it to name the key", err)
	}
	if _, err := AppendCanonical(nil, []any{make(chan int)}); err == nil {
		t.Error("a channel encoded")
	}
}

// Floats (from transforms) are written as encoding/json writes them.
func TestAppendCanonicalFloatsMatchEncodingJSON(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 0.1, 2.5, 1e-7, 1.5e-9, -3e-10, 1e6, 1e17, 1e20, 1e21, 1.23456789e28, 123.456, 5e-324, math.MaxFloat64, 1 << 53} {
		want, _ := json.Marshal(f)
		if got := canon(t, f); got != string(want) {
			t.Errorf("AppendCanonical(%g) = %s, encoding/json = %s", f, got, want)
		}
	}
}

func TestPrepare(t *testing.T) {
	p, err := Prepare(Entity{"_id": "a", "b": json.Number("2"), "a": "x", "_updated": 5, "_ts": 1, "_hash": "h", "_previous": nil, "_foo": 1, "$ids": []any{"~:x:a"}, "nested": map[string]any{"_keep": true}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"$ids":["~:x:a"],"_id":"a","a":"x","b":2,"nested":{"_keep":true}}`; string(p.Body) != want {
		t.Errorf("Body = %s, want %s", p.Body, want)
	}
	if p.ID != "a" || p.Deleted || p.Filtered {
		t.Errorf("Prepared = %+v", p)
	}
	if p.Hash != HashBytes(p.Body) || len(p.Hash.String()) != 32 || strings.Trim(p.Hash.String(), "0123456789abcdef") != "" {
		t.Errorf("Hash = %s, want 32 lower-case hex digits of HashBytes(Body)", p.Hash)
	}
}

func TestPrepareHashRules(t *testing.T) {
	hash := func(text string) Hash {
		t.Helper()
		e, err := DecodeEntity([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		p, err := Prepare(e)
		if err != nil {
			t.Fatal(err)
		}
		return p.Hash
	}
	same := [][2]string{
		{`{"_id":"a","x":1,"y":2}`, `{"y":2,"x":1,"_id":"a"}`},
		{`{"_id":"a"}`, `{"_id":"a","_deleted":false}`},
		{`{"_id":"a"}`, `{"_id":"a","_updated":3,"_ts":4,"_previous":2,"_hash":"x","_filtered":true}`},
		{`{"_id":"a", "x" : [ 1 , 2 ]}`, `{"_id":"a","x":[1,2]}`},
		{`{"_id":"a","s":"\u00e9"}`, `{"_id":"a","s":"é"}`},
	}
	for _, c := range same {
		if hash(c[0]) != hash(c[1]) {
			t.Errorf("%s and %s hash differently", c[0], c[1])
		}
	}
	differ := [][2]string{
		{`{"_id":"a"}`, `{"_id":"b"}`},
		{`{"_id":"a"}`, `{"_id":"a","_deleted":true}`},
		{`{"_id":"a","x":1}`, `{"_id":"a","x":1.0}`}, // numbers as written
		{`{"_id":"a","x":1}`, `{"_id":"a","x":"1"}`},
		{`{"_id":"a"}`, `{"_id":"a","$x":1}`},
		{`{"_id":"a","x":[1,2]}`, `{"_id":"a","x":[2,1]}`},
		{`{"_id":"a","n":{"_k":1}}`, `{"_id":"a","n":{}}`},
		{`{"_id":"a","x":12345678901234567890}`, `{"_id":"a","x":12345678901234567891}`},
	}
	for _, c := range differ {
		if hash(c[0]) == hash(c[1]) {
			t.Errorf("%s and %s hash the same", c[0], c[1])
		}
	}
}

func TestPrepareDeletedAndFiltered(t *testing.T) {
	p, _ := Prepare(Entity{"_id": "a", "_deleted": true, "_filtered": true, "x": json.Number("1")})
	if !p.Deleted || !p.Filtered || string(p.Body) != `{"_deleted":true,"_id":"a","x":1}` {
		t.Errorf("Prepared = %+v body %s", p, p.Body)
	}
	p, _ = Prepare(Entity{"_id": "a", "_deleted": "yes"})
	if p.Deleted || string(p.Body) != `{"_id":"a"}` {
		t.Errorf("_deleted \"yes\" = %+v body %s", p, p.Body)
	}
}

func TestPrepareErrors(t *testing.T) {
	cases := []struct {
		e    Entity
		want string
	}{
		{Entity{"x": 1}, "entity has no _id"},
		{Entity{"_id": json.Number("1")}, "_id is a number"},
		{Entity{"_id": ""}, "_id is a string, not a non-empty string"},
		{Entity{"_id": nil}, "_id is null"},
		{Entity{"_id": "a", "x": struct{}{}}, `entity "a": key "x"`},
	}
	for _, c := range cases {
		if _, err := Prepare(c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Prepare(%v) error = %v, want %q", c.e, err, c.want)
		}
	}
}

func TestPrepareAppendArena(t *testing.T) {
	var arena []byte
	var ps []Prepared
	for i := 0; i < 200; i++ {
		var p Prepared
		var err error
		p, arena, err = PrepareAppend(arena, Entity{"_id": strings.Repeat("x", i%7+1), "i": i, "pad": strings.Repeat("p", i)})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for i, p := range ps {
		q, _ := Prepare(Entity{"_id": strings.Repeat("x", i%7+1), "i": i, "pad": strings.Repeat("p", i)})
		if string(p.Body) != string(q.Body) || p.Hash != q.Hash {
			t.Fatalf("body %d changed after the arena grew: %s", i, p.Body)
		}
	}
	// A failed call leaves the arena as it was.
	n := len(arena)
	if _, arena2, err := PrepareAppend(arena, Entity{"_id": "a", "x": struct{}{}}); err == nil || len(arena2) != n {
		t.Errorf("failed PrepareAppend: err %v, arena %d -> %d", err, n, len(arena2))
	}
}

func TestRecordJSON(t *testing.T) {
	p, _ := Prepare(Entity{"_id": "a", "n": json.Number("12345678901234567890.10")})
	r := Record{Offset: 7, TS: 1700000000000000, Previous: 3, HasPrev: true, Hash: p.Hash, ID: "a", Body: p.Body}
	want := `{"_id":"a","n":12345678901234567890.10,"_hash":"` + p.Hash.String() + `","_previous":3,"_ts":1700000000000000,"_updated":7}`
	if got := string(r.AppendJSON(nil)); got != want {
		t.Errorf("AppendJSON = %s, want %s", got, want)
	}
	e, err := r.Entity()
	if err != nil {
		t.Fatal(err)
	}
	if canon(t, e) != `{"_hash":"`+p.Hash.String()+`","_id":"a","_previous":3,"_ts":1700000000000000,"_updated":7,"n":12345678901234567890.10}` {
		t.Errorf("Entity() = %s", canon(t, e))
	}
	r.HasPrev = false
	r.Body = []byte(`{}`)
	if got := string(r.AppendJSON(nil)); !strings.HasPrefix(got, `{"_hash":`) || !strings.Contains(got, `"_previous":null`) {
		t.Errorf("AppendJSON of empty body = %s", got)
	}
	if !json.Valid(r.AppendJSON(nil)) {
		t.Error("AppendJSON output is not valid JSON")
	}
}

// FuzzCanonical checks that canonical text is valid JSON, stable under
// re-decoding, and that Prepare hashes equal documents equally.
func FuzzCanonical(f *testing.F) {
	f.Add([]byte(`{"_id":"a","b":[1,{"c":"\u0001"}],"_x":1}`))
	f.Add([]byte(`{"_id":"z","_deleted":true,"$k":1.0e5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeValue(data)
		if err != nil {
			return
		}
		c := canon(t, v)
		if !json.Valid([]byte(c)) {
			t.Fatalf("canonical %q is not valid JSON", c)
		}
		v2, err := DecodeValue([]byte(c))
		if err != nil || canon(t, v2) != c {
			t.Fatalf("canonical %q not stable (%v)", c, err)
		}
		if e, ok := v.(map[string]any); ok {
			p1, err1 := Prepare(e)
			p2, err2 := Prepare(v2.(map[string]any))
			if (err1 == nil) != (err2 == nil) || (err1 == nil && p1.Hash != p2.Hash) {
				t.Fatalf("Prepare differs after re-decoding %q", c)
			}
		}
	})
}
