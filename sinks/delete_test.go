package sinks

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestDeletedOfMatchesMap: the deleted version deletedOf makes from a
// stored body's text is byte for byte the one made through the decoded
// map (deletedOfMap), with and without mark_deletion_tracked, over bodies
// with keys that sort before and after "_deleted", a "$deletion_tracked"
// already set, escapes, numbers as written and nesting.
func TestDeletedOfMatchesMap(t *testing.T) {
	texts := []string{
		`{"_id":"a"}`,
		`{"_id":"a","name":"x"}`,
		`{"$ids":["crm:1"],"A":1,"Z":[1,2],"_id":"a","a":{"b":"c"},"~":null}`,
		`{"$deletion_tracked":false,"_id":"a"}`,
		`{"$deletion_tracked":"yes","_id":"a","z":true}`,
		`{"_id":"\u00e9\"q\\","s":"line\nbreak \u2028 \ud83d\ude00","n":1.50,"m":-0,"e":1E+5,"big":123456789012345678901234567890}`,
		`{"_id":"a","_deleted":false,"x":1}`,
		`{"_id":"a","nested":{"_deleted":true,"$x":[{"_id":"b"}]}}`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		texts = append(texts, randomEntityText(rng, i))
	}
	for _, mark := range []bool{false, true} {
		r := &datasetRun{d: &Dataset{MarkDeletionTracked: mark}}
		for _, text := range texts {
			e, err := engine.DecodeEntity([]byte(text))
			if err != nil {
				t.Fatalf("%s: %v", text, err)
			}
			stored, err := engine.Prepare(e)
			if err != nil {
				t.Fatalf("%s: %v", text, err)
			}
			got, err := r.deletedOf(stored.Body)
			if err != nil {
				t.Fatalf("deletedOf(%s): %v", stored.Body, err)
			}
			want, err := r.deletedOfMap(stored.Body)
			if err != nil {
				t.Fatalf("deletedOfMap(%s): %v", stored.Body, err)
			}
			if !bytes.Equal(got.Body, want.Body) || got.Hash != want.Hash || got.ID != want.ID || !got.Deleted || !want.Deleted {
				t.Errorf("mark %v, body %s:\n got %s (%s, deleted %v)\nwant %s (%s, deleted %v)", mark, stored.Body, got.Body, got.ID, got.Deleted, want.Body, want.ID, want.Deleted)
			}
		}
	}
}

// randomEntityText makes an entity's JSON text with random keys (some
// sorting before "_deleted") and values.
func randomEntityText(rng *rand.Rand, i int) string {
	keys := []string{"$ids", "$origin", "$deletion_tracked", "A", "Name", "_x", "a", "b", "name", "zz", "é", "0"}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"_id":"id-%d"`, i)
	for _, k := range keys {
		if rng.IntN(2) == 0 {
			continue
		}
		fmt.Fprintf(&b, `,%q:`, k)
		switch rng.IntN(5) {
		case 0:
			fmt.Fprintf(&b, "%d", rng.IntN(1e6)-5e5)
		case 1:
			fmt.Fprintf(&b, "%q", fmt.Sprintf("v%x\t\"", rng.Uint32()))
		case 2:
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		case 3:
			fmt.Fprintf(&b, `{"k":[1,2.5,"x"],"_deleted":%v}`, rng.IntN(2) == 0)
		default:
			b.WriteString("[]")
		}
	}
	b.WriteByte('}')
	return b.String()
}
