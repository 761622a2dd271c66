package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

func pipeIDs(ps []*engine.Pipe) string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ",")
}

// hopsConfig has a pipe hopping into a dataset written by a pipe listed
// after it, and a connector-like loop: coll stamps $origin from coll-share
// (transform-collect-rest), coll-share is fed by coll through coll-tr and
// looks up its own output.
const hopsConfig = `[
 {"_id":"orders","type":"pipe","source":{"type":"embedded","entities":[{"_id":"o1","customer":"1"}]},
  "transform":{"type":"dtl","rules":{"default":[["copy","*"],
    ["add","name",["first",["hops",{"datasets":["customers c"],"where":[["eq","_S.customer","c._id"]],"return":"c.name"}]]]]}},
  "pump":{"mode":"manual"}},
 {"_id":"customers","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","name":"Ann"}]},"pump":{"mode":"manual"}},
 {"_id":"coll","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","id":1}]},
  "transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"coll-share"}}},
 {"_id":"coll-share","type":"pipe","source":{"type":"dataset","dataset":"coll-tr"},
  "transform":{"type":"dtl","rules":{"default":[["copy","*"],["add","old",["lookup-entity","coll-share","_S._id"]]]}}},
 {"_id":"coll-tr","type":"pipe","source":{"type":"dataset","dataset":"coll"}}]`

// TestPlanHops checks that hopped datasets order and signal pipes without
// becoming inputs, and that a hop closing a loop does not reorder it.
func TestPlanHops(t *testing.T) {
	plan := compile(t, all.Registry(), hopsConfig)
	orders := plan.Pipe("orders")
	if strings.Join(orders.Hops, ",") != "customers" || len(orders.Inputs) != 0 {
		t.Errorf("orders: hops %v inputs %v", orders.Hops, orders.Inputs)
	}
	if got := strings.Join(plan.Pipe("coll").Hops, ","); got != "coll-share" {
		t.Errorf("coll hops = %s", got)
	}
	order, cycles := plan.Order()
	if got := pipeIDs(order); got != "customers,orders,coll,coll-tr,coll-share" {
		t.Errorf("order = %s", got)
	}
	if len(cycles) != 0 {
		t.Errorf("cycles = %v; a hop must not make one", cycles)
	}
	for ds, want := range map[string]string{
		"customers":  "orders",
		"coll":       "coll-tr",
		"coll-share": "coll", // not coll-share itself: it looks up its own output
	} {
		if got := pipeIDs(plan.Readers(ds)); got != want {
			t.Errorf("Readers(%s) = %s, want %s", ds, got, want)
		}
	}
}

// TestRunUntilStableHops runs the hopped dataset's writer first, so the
// join sees its data in the first pass.
func TestRunUntilStableHops(t *testing.T) {
	ctx := context.Background()
	eng, s := newEngine(t, all.Registry(), hopsConfig)
	recs, err := eng.RunUntilStable(ctx, nil, engine.RunOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Errorf("%d runs, want 5 (one pass)", len(recs))
	}
	if r, _, _ := s.Get(ctx, "orders", "o1"); !strings.Contains(string(r.Body), `"name":"Ann"`) {
		t.Errorf("orders/o1 = %s", r.Body)
	}
}

// TestRunUntilStableMerge settles A -> merge(A,B) -> C and a union in one
// call, and a loop through a merge whose second dataset is written after
// it: the multi-dataset token is checked per dataset.
func TestRunUntilStableMerge(t *testing.T) {
	ctx := context.Background()
	eng, s := newEngine(t, all.Registry(), `[
 {"_id":"c","type":"pipe","source":{"type":"dataset","dataset":"m"}},
 {"_id":"m","type":"pipe","source":{"type":"merge_datasets","datasets":["a","b"]}},
 {"_id":"u","type":"pipe","source":{"type":"union_datasets","datasets":["a","b"]}},
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","v":"a"},{"_id":"2","v":"a"}]}},
 {"_id":"b","type":"pipe","source":{"type":"embedded","entities":[{"_id":"3","v":"b"}]}}]`)
	recs, err := eng.RunUntilStable(ctx, nil, engine.RunOptions{}, 0)
	if err != nil {
		t.Fatalf("RunUntilStable: %v", err)
	}
	if len(recs) != 5 {
		t.Errorf("%d runs, want 5 (one pass)", len(recs))
	}
	if info := dsInfo(t, s, "c"); info.Entities != 3 {
		t.Errorf("c has %d entities, want 3", info.Entities)
	}
	if info := dsInfo(t, s, "u"); info.Entities != 3 {
		t.Errorf("u has %d entities, want 3", info.Entities)
	}
	recs, err = eng.RunUntilStable(ctx, nil, engine.RunOptions{}, 0)
	if err != nil || len(recs) != 5 {
		t.Errorf("second call: %d runs, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Read != 0 && r.SyncType == "incremental" {
			t.Errorf("second call: %s read %d", r.Pipe, r.Read)
		}
	}

	// m2 merges a with l, which is written from m2's own output: l's
	// entities reach m2 only in a later pass, when m2 is behind on l. The
	// loop settles by design (l drops what it wrote), so m2 allows it.
	eng, s = newEngine(t, all.Registry(), `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"x"}]}},
 {"_id":"m2","type":"pipe","allow_cycle":true,"source":{"type":"merge_datasets","datasets":["a","l"]}},
 {"_id":"l","type":"pipe","source":{"type":"dataset","dataset":"m2"},
  "transform":{"type":"jq","expression":"select(._id | startswith(\"l-\") | not) | ._id = \"l-\" + ._id"}}]`)
	if _, err := eng.RunUntilStable(ctx, nil, engine.RunOptions{}, 0); err != nil {
		t.Fatalf("loop: %v", err)
	}
	if _, ok, _ := s.Get(ctx, "m2", "l-x"); !ok {
		t.Error("m2 did not read l's entity: its token was not seen as behind")
	}
}

// TestSchedulerSignalsHoppers checks that a change in a hopped dataset
// triggers the pipe hopping into it.
func TestSchedulerSignalsHoppers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, s := newEngine(t, all.Registry(), hopsConfig)
	sched := engine.NewScheduler(eng)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	if err := sched.Trigger("customers"); err != nil {
		t.Fatal(err)
	}
	// orders (manual) runs only because customers changed.
	waitForRun(t, s, "orders")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// A run started outside the scheduler (the HTTP API calls Engine.Run
// directly) signals the readers of the dataset it changed too.
func TestDirectRunSignalsReaders(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, s := newEngine(t, all.Registry(), hopsConfig)
	sched := engine.NewScheduler(eng)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	if _, err := eng.Run(ctx, "customers", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForRun(t, s, "orders")
	cancel()
	<-done
}

// waitForRun waits until pipe has a run record; orders is a manual pipe, so
// only a signal can have run it.
func waitForRun(t *testing.T, s engine.Store, pipe string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if runs, _ := s.Runs(context.Background(), pipe, 0); len(runs) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never ran after the dataset it hops into changed", pipe)
		}
	}
}
