package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeOrderedDuplicates(t *testing.T) {
	v, err := decodeOrdered([]byte(`{"a": 1, "b": {"x": [true, null, "s"]}, "a": 2.50}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendJSON(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"a":2.50,"b":{"x":[true,null,"s"]}}` {
		t.Errorf("got %s", got)
	}
}

func TestDecodeOrderedErrors(t *testing.T) {
	for src, off := range map[string]int{`{"a": 1,}`: 8, `[1, 2`: 5, `{} x`: 3, ``: 0, `{"a" 1}`: 5} {
		_, err := decodeOrdered([]byte(src))
		je, ok := err.(*jsonError)
		if !ok {
			t.Errorf("%q: got %v, want a *jsonError", src, err)
			continue
		}
		if je.Offset != off {
			t.Errorf("%q: offset %d, want %d (%s)", src, je.Offset, off, je.Msg)
		}
	}
}

// FuzzDecodeOrdered checks the ordered decoder against encoding/json: the
// same documents are accepted, with the same values (last duplicate wins),
// and re-encoding round-trips.
func FuzzDecodeOrdered(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `[{"x":[1,2.5e3,"\u00f8"]},null,true]`, `"s"`, `{"a":}`, `{"<>&":"\u2028"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeOrdered(data)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		werr := dec.Decode(&want)
		if werr == nil && !json.Valid(data) {
			werr = errors.New("trailing data")
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("decodeOrdered err=%v, encoding/json err=%v for %q", err, werr, data)
		}
		if err != nil {
			return
		}
		enc, err := appendJSON(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var got any
		dec = json.NewDecoder(bytes.NewReader(enc))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("re-encoding %q gave invalid JSON %q: %v", data, enc, err)
		}
		if d := jsonDiff("", got, want); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}
