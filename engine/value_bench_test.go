package engine_test

import (
	stdjson "encoding/json"
	"fmt"
	"testing"

	gojson "github.com/goccy/go-json"

	"github.com/ferrydata/ferry/engine"
)

// benchDoc is a ~300-byte nested entity like the ones `ferry bench` makes.
var benchDoc = []byte(`{"_id":"204f3206a286688b-0000","id":12345,"name":"Customer 12345","email":"customer12345@example.com","active":true,"balance":1234.56,"a":12345,"address":{"street":"12345 Main Street","city":"Springfield","zip":"02345","country":"NO"},"tags":["retail","tier-2"],"updated":"2026-11-12T10:45:00Z","version":0}`)

// BenchmarkDecode compares entity decoders with exact numbers: Ferry's
// hand-written decoder (with and without key interning) against
// encoding/json and goccy/go-json, both with UseNumber.
func BenchmarkDecode(b *testing.B) {
	b.Run("ferry", func(b *testing.B) {
		b.SetBytes(int64(len(benchDoc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := engine.DecodeEntity(benchDoc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ferry-interned", func(b *testing.B) {
		d := engine.NewDecoder()
		b.SetBytes(int64(len(benchDoc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := d.DecodeEntity(benchDoc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(benchDoc)))
		b.ReportAllocs()
		for b.Loop() {
			dec := stdjson.NewDecoder(bytesReader(benchDoc))
			dec.UseNumber()
			var v map[string]any
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy-go-json", func(b *testing.B) {
		b.SetBytes(int64(len(benchDoc)))
		b.ReportAllocs()
		for b.Loop() {
			dec := gojson.NewDecoder(bytesReader(benchDoc))
			dec.UseNumber()
			var v map[string]any
			if err := dec.Decode(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPrepare measures the canonical form plus xxh3-128 hash that
// every dataset write computes.
func BenchmarkPrepare(b *testing.B) {
	e, err := engine.DecodeEntity(benchDoc)
	if err != nil {
		b.Fatal(err)
	}
	var arena []byte
	b.ReportAllocs()
	for b.Loop() {
		var p engine.Prepared
		p, arena, err = engine.PrepareAppend(arena[:0], e)
		if err != nil || p.ID == "" {
			b.Fatal(err)
		}
	}
}

type sliceReader struct {
	b []byte
	i int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, fmt.Errorf("EOF")
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func bytesReader(b []byte) *sliceReader { return &sliceReader{b: b} }
