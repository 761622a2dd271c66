package engine_test

import (
	"bytes"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

var rawCases = []string{
	`{"_id":"1","b":2,"a":1}`,
	` { "_id" : "x" , "z": [3, {"y": 1, "x": "é"}], "_ts": 5, "_deleted": false, "$ids": ["~:a:1"] } `,
	`{"_id":"d","_deleted":true,"v":1.50e+10,"n":null,"t":true,"f":false}`,
	`{"_id":"f","_filtered":true,"k":"a\"b\\c\nd\u00e9\ud83d\ude00"}`,
	`{"_id":"dup","a":1,"a":2,"b":{"c":1,"c":[]}}`,
	`{"_id":"bad-utf8","s":"` + "\xff\xfe" + `"}`,
	`{"_id":"keys","é":1,"e":2,"E":3,"_x":4,"":5}`,
	`{"_id":"nest","a":{"b":{"c":{"d":[[],[{}],{}]}}}}`,
	`{"_id":"big","n":123456789012345678901234567890,"m":-0.000000000000000000001}`,
}

var rawErrors = []string{
	`{"a":1}`, `{"_id":1}`, `{"_id":""}`, `[1]`, `{"_id":"1",}`, `{"_id":"1"} x`, `{"_id":"1","a":01}`,
	`{"_id":"1","a":"\x"}`, `{"_id":"1","a":tru}`, `{"_id":"1"`, `"s"`, ``,
}

func checkRaw(t *testing.T, raw string) {
	t.Helper()
	want, werr := func() (engine.Prepared, error) {
		e, err := engine.DecodeEntity([]byte(raw))
		if err != nil {
			return engine.Prepared{}, err
		}
		return engine.Prepare(e)
	}()
	got, _, gerr := engine.PrepareRaw(nil, []byte(raw))
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: map path error %v, raw path error %v", raw, werr, gerr)
	}
	if werr != nil {
		return
	}
	if !bytes.Equal(got.Body, want.Body) || got.Hash != want.Hash || got.ID != want.ID || got.Deleted != want.Deleted || got.Filtered != want.Filtered {
		t.Fatalf("%q:\nraw %s %+v\nmap %s %+v", raw, got.Body, got, want.Body, want)
	}
}

func TestPrepareRawMatchesPrepare(t *testing.T) {
	for _, c := range rawCases {
		checkRaw(t, c)
	}
	for _, c := range rawErrors {
		if _, _, err := engine.PrepareRaw(nil, []byte(c)); err == nil {
			t.Errorf("%q: no error", c)
		}
		checkRaw(t, c)
	}
}

// FuzzPrepareRaw checks that the raw path accepts exactly what the decoder
// accepts and produces the same canonical body and hash.
func FuzzPrepareRaw(f *testing.F) {
	for _, c := range append(rawCases, rawErrors...) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkRaw(t, raw)
	})
}

// BenchmarkPrepareRaw measures the raw path's canonical form and hash as
// the runner uses it (one PrepareScratch per goroutine).
func BenchmarkPrepareRaw(b *testing.B) {
	var arena []byte
	var scratch engine.PrepareScratch
	b.SetBytes(int64(len(benchDoc)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if _, arena, err = scratch.PrepareRaw(arena[:0], benchDoc); err != nil {
			b.Fatal(err)
		}
	}
}
