package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// evenPreparer maps records with an even offset as text (their body with
// "t" added) and declines the others.
type evenPreparer struct{}

func (evenPreparer) PrepareRecord(rec *Record, arena []byte) (Prepared, []byte, bool) {
	if rec.Offset%2 == 1 {
		return Prepared{}, arena, false
	}
	start := len(arena)
	arena = append(arena, rec.Body[:len(rec.Body)-1]...)
	arena = append(arena, `,"t":true}`...)
	body := arena[start:]
	return Prepared{ID: rec.ID, Body: body, Hash: HashBytes(body)}, arena, true
}

func (evenPreparer) PrepareText([]byte, []byte) (Prepared, []byte, bool) {
	return Prepared{}, nil, false
}

// twiceTransform is the decoded path: each entity twice, the second with
// a suffixed _id; "bad" fails.
type twiceTransform struct{}

func (twiceTransform) Transform(_ context.Context, in []Entity) ([]Entity, error) {
	var out []Entity
	for _, e := range in {
		if e["_id"] == "bad" {
			return nil, &EntityError{ID: "bad", Err: fmt.Errorf("no")}
		}
		out = append(out, Entity{"_id": e["_id"]}, Entity{"_id": e["_id"].(string) + "'"})
	}
	return out, nil
}

func (twiceTransform) RecordPreparer() RecordPreparer { return evenPreparer{} }

// TestRecordItems: records the preparer takes and records it declines
// (decoded and transformed in their place) come out in order, cut into
// chunks of the batch size, all but the last marked part, the last
// carrying the token; a failure ends the items with it.
func TestRecordItems(t *testing.T) {
	e := &Engine{}
	p := &Pipe{ID: "p", BatchSize: 3, Transforms: []Transform{twiceTransform{}}}
	prep := recordPreparer(p)
	if prep == nil {
		t.Fatal("no record preparer")
	}
	recs := func(ids ...string) []Record {
		var out []Record
		for i, id := range ids {
			out = append(out, Record{Offset: uint64(i), ID: id, Body: []byte(`{"_id":"` + id + `"}`)})
		}
		return out
	}
	b := Batch{Since: "tok", Records: recs("a", "b", "c", "d", "e"), Decode: func(*Decoder) ([]Entity, error) { panic("decoded the whole batch") }}
	items := e.batchItems(context.Background(), p, b, true, nil, prep)
	var got []string
	for i, it := range items {
		var ids []string
		for _, pr := range it.prepared {
			ids = append(ids, pr.ID+"="+string(pr.Body))
		}
		got = append(got, fmt.Sprintf("part=%v since=%q read=%d [%s]", it.part, it.since, it.read, strings.Join(ids, " ")))
		if it.err != nil {
			t.Fatalf("item %d: %v", i, it.err)
		}
	}
	want := []string{
		`part=true since="" read=0 [a={"_id":"a","t":true} b={"_id":"b"} b'={"_id":"b'"}]`,
		`part=true since="" read=0 [c={"_id":"c","t":true} d={"_id":"d"} d'={"_id":"d'"}]`,
		`part=false since="tok" read=5 [e={"_id":"e","t":true}]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("items:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	items = e.batchItems(context.Background(), p, Batch{Records: recs("a", "bad", "c")}, true, nil, prep)
	last := items[len(items)-1]
	if last.err == nil || !strings.Contains(last.err.Error(), `transform 0: entity "bad": no`) {
		t.Fatalf("last item: %+v", last)
	}
	// Without a sink to prepare for, the records are decoded as before.
	items = e.batchItems(context.Background(), p, Batch{Records: recs("a"), Decode: func(*Decoder) ([]Entity, error) { return []Entity{{"_id": "x"}}, nil }}, false, nil, prep)
	if len(items) != 1 || len(items[0].entities) != 2 || items[0].entities[0]["_id"] != "x" {
		t.Fatalf("items: %+v", items)
	}
}
