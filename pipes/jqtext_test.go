package pipes

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/itchyny/gojq"

	"github.com/ferrydata/ferry/engine"
)

// jqTextPrograms are in the text path's subset; TestJQTextCompiles holds
// that they compile for it.
var jqTextPrograms = []string{
	`.`,
	`. + {x: .a}`,
	`. + {x: .a, a: .x}`,
	`{_id, name}`,
	`{_id: ._id, n: .name, c: .address.city, z: .address.zip.nope}`,
	`{_id, "with space": .a, "é": 1, "q\"k": .name}`,
	`{_id, k: 1.50, f: 1e2, b: -0, big: 123456789012345678901234567890, s: "x\u00e9\n", t: true, nul: null, arr: [1, "a", [2.0]], o: {z: 1, a: 2}}`,
	`{_id, p: $pipe}`,
	`{_id, u: ._updated, ts: ._ts, prev: ._previous, h: ._hash}`,
	`{_id, whole: .}`,
	`{_id, nested: {a: .a, inner: {b: .name}}}`,
	`del(.a)`,
	`del(.a, .name, .nope)`,
	`del(.a) | . + {x: 1}`,
	`. + {x: .a} | del(.a) | {_id, x, y: .x}`,
	`{a: .name} + . + {b: ._id}`,
	`(. + {x: .a})`,
	`. + {_deleted: true}`,
	`. + {_deleted: .active}`,
	`. + {_filtered: true}`,
	`. + {_id: .name}`,
	`. + {_id: .id}`,
	`{_id: .address}`,
	`{x: 1}`,
	`. + {x: .name.first}`,
	`. + {x: .tags.first}`,
	`. + {x: .nul.y.z}`,
	`. + {x: .a, _ts: 5}`,
	`. + {x: (.a)}`,
	`{_id: ("crm-" + ._id), n: (.name + " " + .id + "!"), c: (.address + {x: 1}), d: (.nope + .name), e: (null + null)}`,
	`. + {x: (.address + .nope), y: (1 + 2)}`,
}

// jqNotText are not in the subset.
var jqNotText = []string{
	`{_id, "\(1)": 2} | .`,
	`. + {x: .a + (1, 2)}`,
	`. + {x: (.a | tostring)}`,
	`.[]`,
	`. as $x | $x`,
	`def f: .; f`,
	`{_id, (.name): 1}`,
	`. + {x: .tags[0]}`,
	`. + {x: .a?}`,
	`del(.address.city)`,
	`. + {x: "\(.a)"}`,
	`empty`,
	`., .`,
	`. + .a`,
	`{$pipe}`,
	`. + {x: (1, 2)}`,
	`. + {x: [.a]}`,
	"{_id, a: .name.first, a: 1}", // jq evaluates .name.first, which may fail
	`{_id, "x": @base64}`,
	`. + {x: ..}`,
	`. + {x: .["a"]}`,
	`. + {x: .a[]}`,
	`{_id} | .x = 1`,
	`. + {x: -.a}`,
	`. + {x: {} }.y`,
	`. + {x: (null |= 1)}`,
	`{_id, x: [1, (null = 2)]}`,
	`{_id, x: {k: (null += 2)}}`,
	`{_id, x: ((null, null) //= 1)}`,
}

var jqTextEntities = []string{
	`{"_id":"e1","a":1,"name":"N1","address":{"city":"Oslo","zip":"0150"},"tags":["x"],"active":true}`,
	`{"_id":"e2","a":"str","name":{"first":"F"},"address":null,"balance":0.50,"big":1e400}`,
	`{"_id":"e3","a":null,"name":"","active":false,"nul":null}`,
	`{"_id":"e\u00e9\"4","a":[1,{"b":2}],"é":3,"\u0001k":"v","q\"k":1}`,
	`{"_id":"e5","_deleted":true,"a":{"deep":{"deeper":1}}}`,
	`{"_id":"e6","name":12,"id":"7","address":{"city":null,"city2":"x"}}`,
	`{"_id":"e7","tags":{"first":"t"},"x":"old","_filtered":true}`,
	`{"_id":"e8","a":-0,"name":"\ud83d\ude00","address":{"zip":{"nope":9}}}`,
	`{"_id":"e9"}`,
}

func compileJQForTest(t testing.TB, expr string) *JQ {
	t.Helper()
	tr, err := newJQ(&engine.Build{Pipe: "p1"}, map[string]any{"expression": expr})
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return tr.(*JQ)
}

// recordOf stores text as a record would hold it.
func recordOf(t testing.TB, text string, off uint64) (*engine.Record, bool) {
	p, _, err := engine.PrepareRaw(nil, []byte(text))
	if err != nil {
		return nil, false
	}
	return &engine.Record{Offset: off, TS: 1733300000000000 + int64(off), Previous: off / 2, HasPrev: off%2 == 0, Hash: p.Hash, ID: p.ID, Deleted: p.Deleted, Body: p.Body}, true
}

// mapPath is what the decoded path stores for rec: the prepared outputs,
// or an error.
func mapPath(t testing.TB, tr *JQ, rec *engine.Record) ([]engine.Prepared, error) {
	e, err := rec.EntityWith(engine.NewDecoder())
	if err != nil {
		t.Fatalf("record %s: %v", rec.Body, err)
	}
	out, err := tr.Transform(context.Background(), []engine.Entity{e})
	if err != nil {
		return nil, err
	}
	var ps []engine.Prepared
	for _, o := range out {
		p, err := engine.Prepare(o)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// checkText compares the text path with the decoded path on one record:
// where the text path answers, the decoded path must store exactly that.
func checkText(t testing.TB, tr *JQ, rec *engine.Record) (took bool) {
	t.Helper()
	run := tr.RecordPreparer().(*textRun)
	arena := []byte("prefix")
	got, arena, ok := run.PrepareRecord(rec, arena)
	if !bytes.HasPrefix(arena, []byte("prefix")) {
		t.Fatalf("arena lost what it held: %q", arena)
	}
	want, err := mapPath(t, tr, rec)
	if !ok {
		return false
	}
	if err != nil || len(want) != 1 {
		t.Fatalf("text path answered %s for %s, decoded path gave %d entities, error %v", got.Body, rec.Body, len(want), err)
	}
	w := want[0]
	if got.ID != w.ID || got.Deleted != w.Deleted || got.Filtered != w.Filtered || !bytes.Equal(got.Body, w.Body) || got.Hash != w.Hash {
		t.Fatalf("record %s:\ntext    %q %q deleted=%v filtered=%v %s\ndecoded %q %q deleted=%v filtered=%v %s",
			rec.Body, got.ID, got.Body, got.Deleted, got.Filtered, got.Hash, w.ID, w.Body, w.Deleted, w.Filtered, w.Hash)
	}
	return true
}

func TestJQTextCompiles(t *testing.T) {
	for _, expr := range jqTextPrograms {
		if compileJQForTest(t, expr).text == nil {
			t.Errorf("%s: not compiled for the text path", expr)
		}
	}
	for _, expr := range jqNotText {
		if compileJQForTest(t, expr).text != nil {
			t.Errorf("%s: compiled for the text path", expr)
		}
	}
}

// TestJQTextMatchesGojq runs every program of the subset on every entity
// through both paths: the text path must store byte for byte what the
// decoded path stores, and answer for the cases it is meant to cover.
func TestJQTextMatchesGojq(t *testing.T) {
	declined := map[string]bool{
		// a path through a string or a number: jq's error
		"`. + {x: .name.first}` e1": true, "`. + {x: .name.first}` e3": true, "`. + {x: .name.first}` e6": true,
		"`. + {x: .name.first}` e8":                                          true,
		"`{_id, nested: {a: .a, inner: {b: .name}}}` x":                      true,
		"`. + {x: .tags.first}` e1":                                          true,
		"`{_id: ._id, n: .name, c: .address.city, z: .address.zip.nope}` e1": true,
		// _id not a non-empty string
		"`. + {_id: .name}` e2": true, "`. + {_id: .name}` e3": true, "`. + {_id: .name}` e6": true, "`. + {_id: .name}` e7": true,
		"`. + {_id: .name}` e9": true, "`. + {_id: .name}` e4": true, "`. + {_id: .name}` e5": true, "`. + {_id: .id}` e1": true, "`. + {_id: .id}` e2": true, "`. + {_id: .id}` e3": true,
		"`. + {_id: .id}` e4": true, "`. + {_id: .id}` e5": true, "`. + {_id: .id}` e7": true, "`. + {_id: .id}` e8": true, "`. + {_id: .id}` e9": true,
		"`{x: 1}` *": true,
		// a string and an object or a number
		"`{_id: (\"crm-\" + ._id), n: (.name + \" \" + .id + \"!\"), c: (.address + {x: 1}), d: (.nope + .name), e: (null + null)}` e2": true,
		"`{_id: (\"crm-\" + ._id), n: (.name + \" \" + .id + \"!\"), c: (.address + {x: 1}), d: (.nope + .name), e: (null + null)}` e6": true, "`{_id: .address}` *": true,
	}
	for _, expr := range jqTextPrograms {
		tr := compileJQForTest(t, expr)
		for i, text := range jqTextEntities {
			rec, ok := recordOf(t, text, uint64(10+i))
			if !ok {
				t.Fatalf("entity %d does not prepare", i)
			}
			took := checkText(t, tr, rec)
			name := fmt.Sprintf("`%s` e%d", expr, i+1)
			if !took && !declined[name] && !declined[fmt.Sprintf("`%s` *", expr)] {
				t.Errorf("%s: the text path declined", name)
			}
		}
	}
}

// FuzzJQText runs arbitrary programs of the subset on arbitrary entities
// through both paths.
func FuzzJQText(f *testing.F) {
	for _, expr := range jqTextPrograms {
		for _, text := range jqTextEntities {
			f.Add(expr, text)
		}
	}
	f.Fuzz(func(t *testing.T, expr, text string) {
		q, err := gojq.Parse(expr)
		if err != nil {
			return
		}
		if _, err := gojq.Compile(q, gojq.WithVariables([]string{"$pipe"})); err != nil {
			return
		}
		tr := compileJQForTest(t, expr)
		if tr.text == nil {
			return
		}
		checkFromText(t, tr, []byte(text))
		rec, ok := recordOf(t, text, 7)
		if !ok {
			return
		}
		checkText(t, tr, rec)
	})
}

// checkFromText compares the text path with the decoded path on an
// entity as a source hands it over (engine.RawReader): where the text
// path answers, the decoded path must store exactly that.
func checkFromText(t *testing.T, tr *JQ, raw []byte) {
	t.Helper()
	var s engine.PrepareScratch
	text, err := s.CanonicalObject(nil, raw)
	e, derr := engine.DecodeEntity(raw)
	if (err == nil) != (derr == nil || derr == engine.ErrNoID || strings.Contains(derr.Error(), "entity _id")) {
		t.Fatalf("%q: canonical text error %v, decoder error %v", raw, err, derr)
	}
	if err != nil || derr != nil {
		return
	}
	got, _, ok := tr.RecordPreparer().PrepareText(text, nil)
	if !ok {
		return
	}
	out, err := tr.Transform(context.Background(), []engine.Entity{e})
	if err != nil || len(out) != 1 {
		t.Fatalf("text path answered %s for %s, decoded path gave %d entities, error %v", got.Body, raw, len(out), err)
	}
	w, err := engine.Prepare(out[0])
	if err != nil || got.ID != w.ID || got.Deleted != w.Deleted || got.Filtered != w.Filtered || !bytes.Equal(got.Body, w.Body) || got.Hash != w.Hash {
		t.Fatalf("entity %s:\ntext    %q %s\ndecoded %q %s (%v)", raw, got.ID, got.Body, w.ID, w.Body, err)
	}
}

// TestJQOutputDoesNotShareConstants: gojq hands out a program's constant
// objects to every run; normalizing the output must copy them rather
// than write into them (two workers would race, and an entity changed
// downstream would change the program), on both paths of a batch.
func TestJQOutputDoesNotShareConstants(t *testing.T) {
	tr := compileJQForTest(t, `{_id, o: {p: {z: 1, s: "x"}, l: [1, "a"]}}`)
	run := func() engine.Entity {
		out, err := tr.Transform(context.Background(), []engine.Entity{{"_id": "a"}})
		if err != nil || len(out) != 1 {
			t.Fatalf("%v %v", out, err)
		}
		return out[0]
	}
	first := run()
	o := first["o"].(map[string]any)
	o["p"].(map[string]any)["w"] = "changed downstream"
	o["l"].([]any)[1] = "changed downstream"
	again, err := engine.Prepare(run())
	if err != nil || string(again.Body) != `{"_id":"a","o":{"l":[1,"a"],"p":{"s":"x","z":1}}}` {
		t.Fatalf("second run stored %s (%v)", again.Body, err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				tr.Transform(context.Background(), []engine.Entity{{"_id": "a"}})
			}
		}()
	}
	wg.Wait()
}
