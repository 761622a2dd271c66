package pipes_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes"
)

// The randomized test keeps small input datasets with few distinct
// equality values, edits them at random over several incremental runs
// (and a few full runs), and after every run compares the merge pipe's
// output with a brute-force model: union-find over all live entities,
// composite ids, the default strategy, and $replaced tombstones for the
// output _ids that stopped applying.

// modelDatasets: alias, dataset and the properties holding equality
// values per key space. Space "k" links a.k, b.k and c.j; space "m"
// links a.m and c.m.
var modelDatasets = []struct {
	name   string
	spaces map[string]string // space -> property
}{
	{"A", map[string]string{"k": "k", "m": "m"}},
	{"B", map[string]string{"k": "k"}},
	{"C", map[string]string{"k": "j", "m": "m"}},
}

const modelConfig = `[{"_id":"g","type":"pipe","batch_size":%d,"checkpoint_interval":%d,
  "transform":{"type":"jq","expression":"if .boom == true then error(\"boom\") else . end"},
  "source":{"type":"merge","version":2,"identity":%q,"datasets":["A a","B b","C c"],
    "equality":[["eq","a.k","b.k"],["eq","b.k","c.j"]],
    "equality_sets":[["a.m","c.m"]]}}]`

// modelEnt is one input entity's latest version, as JSON text.
type modelEnt struct {
	ds   int
	id   string
	text string
	ent  map[string]any
}

// randValue returns a random equality value: mostly a small number (as
// integer or decimal text), sometimes null, a list or missing.
func randValue(r *rand.Rand) (string, bool) {
	switch n := r.IntN(10); {
	case n == 0:
		return "", false
	case n == 1:
		return "null", true
	case n == 2:
		return fmt.Sprintf("[%d,%d]", r.IntN(4), r.IntN(4)), true
	case n == 3:
		return "[]", true
	case n == 4:
		return fmt.Sprintf("%d.0", r.IntN(4)), true
	default:
		return strconv.Itoa(r.IntN(4)), true
	}
}

func randEntity(r *rand.Rand, ds int, id string) string {
	parts := []string{fmt.Sprintf(`"_id":%q`, id), fmt.Sprintf(`"v":%d`, r.IntN(100))}
	var props []string
	for _, prop := range modelDatasets[ds].spaces {
		props = append(props, prop)
	}
	slices.Sort(props)
	for _, prop := range props {
		if v, ok := randValue(r); ok {
			if prop == "m" && v != "null" && v != "[]" && !strings.HasPrefix(v, "[") {
				v = strconv.Itoa(7 + r.IntN(2)) // space m: fewer links
			}
			parts = append(parts, fmt.Sprintf("%q:%s", prop, v))
		}
	}
	if r.IntN(6) == 0 {
		parts = append(parts, `"_deleted":true`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// modelKeys returns an entity's equality keys ("space:value").
func modelKeys(me *modelEnt) []string {
	if d, _ := me.ent["_deleted"].(bool); d {
		return nil
	}
	var keys []string
	for space, prop := range modelDatasets[me.ds].spaces {
		var vals []any
		switch v := me.ent[prop].(type) {
		case []any:
			vals = v
		case nil:
		default:
			vals = []any{v}
		}
		for _, v := range vals {
			if v == nil {
				continue
			}
			f, err := strconv.ParseFloat(fmt.Sprint(v), 64)
			if err != nil {
				panic(err)
			}
			keys = append(keys, fmt.Sprintf("%s:%g", space, f))
		}
	}
	return keys
}

// modelOutput computes the expected output entities (by _id, canonical
// JSON) of the current inputs.
func modelOutput(t *testing.T, inputs map[string]*modelEnt, identity string) map[string]string {
	var all []*modelEnt
	for _, me := range inputs {
		all = append(all, me)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].ds != all[j].ds {
			return all[i].ds < all[j].ds
		}
		return all[i].id < all[j].id
	})
	parent := make([]int, len(all))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	owner := map[string]int{}
	for i, me := range all {
		for _, k := range modelKeys(me) {
			if j, ok := owner[k]; ok {
				parent[find(i)] = find(j)
			} else {
				owner[k] = i
			}
		}
	}
	groups := map[int][]*modelEnt{}
	var roots []int
	for i, me := range all {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], me) // all is sorted, so groups are too
	}
	out := map[string]string{}
	for _, r := range roots {
		g := groups[r]
		var idParts []string
		var ids []any
		props := map[string][]any{}
		for _, me := range g {
			idParts = append(idParts, strconv.Itoa(me.ds), me.id)
			ids = append(ids, "~:"+modelDatasets[me.ds].name+":"+me.id)
			for k, v := range me.ent {
				if !strings.HasPrefix(k, "_") {
					props[k] = append(props[k], v)
				}
			}
		}
		ent := map[string]any{"_id": strings.Join(idParts, "|"), "$ids": ids}
		if identity == "first" {
			ent["_id"] = g[0].id
		}
		for k, vals := range props {
			if len(vals) == 1 {
				ent[k] = vals[0]
				continue
			}
			l := []any{}
			for _, v := range vals {
				if lv, ok := v.([]any); ok {
					l = append(l, lv...)
				} else {
					l = append(l, v)
				}
			}
			ent[k] = l
		}
		if d, _ := g[0].ent["_deleted"].(bool); d {
			if len(g) != 1 {
				t.Fatalf("model: deleted entity %s merged", g[0].id)
			}
			ent["_deleted"] = true
		}
		b, err := engine.AppendCanonical(nil, ent)
		if err != nil {
			t.Fatal(err)
		}
		out[ent["_id"].(string)] = string(b)
	}
	return out
}

// nextOutput is what the output dataset must hold after a run that takes
// it from prev to the inputs' current merge cur: every current entity,
// and for every earlier _id that no longer applies and was live, a
// $replaced tombstone with its $ids.
func nextOutput(t *testing.T, prev, cur map[string]string) map[string]string {
	next := map[string]string{}
	for id, body := range cur {
		next[id] = body
	}
	for id, body := range prev {
		if _, ok := cur[id]; ok {
			continue
		}
		v, _ := engine.DecodeValue([]byte(body))
		old := v.(map[string]any)
		if d, _ := old["_deleted"].(bool); d {
			next[id] = body
			continue
		}
		b, _ := engine.AppendCanonical(nil, map[string]any{"_id": id, "_deleted": true, "$replaced": true, "$ids": old["$ids"]})
		next[id] = string(b)
	}
	return next
}

func TestMergeRandomizedAgainstModel(t *testing.T) {
	for _, v := range []struct {
		name         string
		seeds        int
		batch, check int
		chunk        int
		identity     string
		failures     bool
	}{
		{"one chunk per run", 24, 100, 100, 0, "composite", false},
		{"identity first", 10, 100, 100, 0, "first", false},
		{"small batches", 10, 2, 1, 0, "composite", false},
		{"failed runs", 16, 2, 1, 0, "composite", true},
		{"many chunks", 12, 3, 2, 3, "composite", false},
		{"many chunks, failed runs", 12, 3, 2, 3, "composite", true},
	} {
		t.Run(v.name, func(t *testing.T) {
			seeds := v.seeds
			if n, err := strconv.Atoi(os.Getenv("FERRY_MERGE_SEEDS")); err == nil {
				seeds = n // e.g. FERRY_MERGE_SEEDS=1000 for a longer search
			}
			for seed := range seeds {
				t.Run(strconv.Itoa(seed), func(t *testing.T) {
					runModel(t, uint64(seed), v.batch, v.check, v.chunk, v.identity, v.failures)
				})
			}
		})
	}
}

// runModel runs one seed. With failures, a round may plant "boom" in an
// entity, which fails the run in a transform after some of its batches
// were committed; the next round removes it, and the output must then
// be the model's, taking what the failed run committed as the output
// before.
func runModel(t *testing.T, seed uint64, batch, check, chunk int, identity string, failures bool) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 0x6d65726765))
	e := setup(t, fmt.Sprintf(modelConfig, batch, check, identity), nil)
	src := e.eng.Plan.Pipe("g").Source
	if chunk > 0 {
		pipes.SetMergeChunk(src, chunk)
	}
	inputs := map[string]*modelEnt{}
	ids := [3][]string{}
	expected := map[string]string{}
	exact := chunk == 0
	var boom *modelEnt
	failed := 0
	for round := range 10 {
		// Edit: new entities, changed or deleted ones.
		edits := 1 + r.IntN(6)
		if round == 0 {
			edits = 6 + r.IntN(8)
		}
		pending := [3][]string{}
		for range edits {
			ds := r.IntN(3)
			var id string
			if len(ids[ds]) == 0 || r.IntN(3) == 0 {
				id = fmt.Sprintf("%c%d", 'a'+ds, len(ids[ds])+1)
				ids[ds] = append(ids[ds], id)
			} else {
				id = ids[ds][r.IntN(len(ids[ds]))]
			}
			text := randEntity(r, ds, id)
			v, err := engine.DecodeValue([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			inputs[fmt.Sprint(ds, "/", id)] = &modelEnt{ds: ds, id: id, text: text, ent: v.(map[string]any)}
			pending[ds] = append(pending[ds], text)
		}
		if boom != nil {
			// Take the boom out again (a new version of that entity).
			text := strings.Replace(boom.text, `,"boom":true`, "", 1)
			v, _ := engine.DecodeValue([]byte(text))
			inputs[fmt.Sprint(boom.ds, "/", boom.id)] = &modelEnt{ds: boom.ds, id: boom.id, text: text, ent: v.(map[string]any)}
			pending[boom.ds] = append(pending[boom.ds], text)
			boom = nil
		} else if failures && round > 0 && r.IntN(2) == 0 {
			ds := r.IntN(3)
			if len(ids[ds]) > 0 {
				id := ids[ds][r.IntN(len(ids[ds]))]
				text := strings.TrimSuffix(randEntity(r, ds, id), "}") + `,"boom":true}`
				v, _ := engine.DecodeValue([]byte(text))
				boom = &modelEnt{ds: ds, id: id, text: text, ent: v.(map[string]any)}
				inputs[fmt.Sprint(ds, "/", id)] = boom
				pending[ds] = append(pending[ds], text)
			}
		}
		for ds, texts := range pending {
			if len(texts) > 0 {
				putJSON(t, e.store, modelDatasets[ds].name, int64(round+1), "["+strings.Join(texts, ",")+"]")
			}
		}
		full := round > 0 && r.IntN(4) == 0
		if _, err := e.eng.Run(ctx, "g", engine.RunOptions{Reset: full}); err != nil {
			if boom == nil || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("round %d: %v", round, err)
			}
			// What the failed run committed is the output the next run
			// starts from.
			failed++
			expected = latest(t, e.store, "g")
			continue
		}
		if boom != nil {
			t.Fatalf("round %d: the run did not fail on %s", round, boom.text)
		}
		cur := modelOutput(t, inputs, identity)
		expected = nextOutput(t, expected, cur)
		got := latest(t, e.store, "g")
		if err := pipes.CheckMergeIndex(ctx, e.store, src); err != nil {
			t.Fatalf("round %d (full %v): index: %v", round, full, err)
		}
		if j, err := pipes.MergeJournal(ctx, e.store, src); err != nil || len(j) > 0 {
			t.Fatalf("round %d: journal not cleared: %v %v", round, j, err)
		}
		if exact {
			compareOutputs(t, round, full, inputs, got, expected)
			continue
		}
		// With several chunks a run may emit and replace _ids on the
		// way: the live output must be the model's, everything else
		// deleted.
		live := map[string]string{}
		for id, body := range got {
			if !strings.Contains(body, `"_deleted":true`) {
				live[id] = body
			}
		}
		want := map[string]string{}
		for id, body := range cur {
			if !strings.Contains(body, `"_deleted":true`) {
				want[id] = body
			}
		}
		compareOutputs(t, round, full, inputs, live, want)
		for id, body := range cur {
			if got[id] != body {
				t.Fatalf("round %d: %q = %s, want %s", round, id, got[id], body)
			}
		}
	}
}

func compareOutputs(t *testing.T, round int, full bool, inputs map[string]*modelEnt, got, want map[string]string) {
	t.Helper()
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var diffs []string
	for _, id := range ids {
		if got[id] != want[id] {
			diffs = append(diffs, fmt.Sprintf("%q:\n   got  %s\n   want %s", id, got[id], want[id]))
		}
	}
	if len(diffs) > 0 {
		var in []string
		for _, me := range inputs {
			in = append(in, me.text)
		}
		slices.Sort(in)
		t.Fatalf("round %d (full %v): output differs from the model:\n%s\ninputs:\n%s", round, full, strings.Join(diffs, "\n"), strings.Join(in, "\n"))
	}
}
