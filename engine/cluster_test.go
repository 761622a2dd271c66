package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
	"github.com/ferrydata/ferry/pipes/all"
)

// worker is one in-process worker on a shared NATS store.
type worker struct {
	store  *natsstore.Store
	eng    *engine.Engine
	cancel context.CancelFunc
	done   chan struct{}
}

func startWorker(t *testing.T, url, prefix string, plan *engine.Plan) *worker {
	t.Helper()
	s := natstest.Store(t, url, natsstore.Options{Prefix: prefix})
	c, err := s.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(s, plan, nil)
	eng.Cluster = c
	sched := engine.NewScheduler(eng)
	sched.Rebalance = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{store: s, eng: eng, cancel: cancel, done: make(chan struct{})}
	go func() {
		sched.Run(ctx)
		close(w.done)
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// TestWorkersShareThePipes runs two workers on one store: every pipe
// runs, on one worker at a time, on its schedule once (not once per
// worker); when a worker dies without a word, the other takes its pipes
// over and they continue from their committed state.
func TestWorkersShareThePipes(t *testing.T) {
	if enginetest.OnNATS() {
		t.Skip("runs on NATS anyway")
	}
	srv := natstest.Start(t, t.TempDir())
	var cfg []string
	const pipes = 6
	for i := range pipes {
		cfg = append(cfg, fmt.Sprintf(`{"_id":"p%d","type":"pipe","pump":{"schedule_interval":1},
			"source":{"type":"embedded","entities":[{"_id":"a","n":%d},{"_id":"b"}]}}`, i, i))
	}
	plan := compile(t, all.Registry(), "["+strings.Join(cfg, ",")+"]")
	prefix := "share"
	a := startWorker(t, srv.ClientURL(), prefix, plan)
	b := startWorker(t, srv.ClientURL(), prefix, plan)
	ctx := context.Background()

	runsOf := func(s engine.Store, pipe string) []engine.RunRecord {
		runs, err := s.Runs(ctx, pipe, 0)
		if err != nil {
			t.Fatal(err)
		}
		return runs
	}
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, limit)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("every pipe ran twice", 90*time.Second, func() bool {
		for i := range pipes {
			if len(runsOf(a.store, fmt.Sprintf("p%d", i))) < 2 {
				return false
			}
		}
		return true
	})
	// Runs of one pipe never overlap, and a schedule of 1 s does not fire
	// twice a second (it would with one pump per worker).
	check := func(s engine.Store) {
		for i := range pipes {
			runs := runsOf(s, fmt.Sprintf("p%d", i))
			for j := 1; j < len(runs); j++ {
				newer, older := runs[j-1], runs[j]
				if newer.Start.Before(older.End) {
					t.Errorf("p%d: runs overlap: %v-%v and %v-%v", i, older.Start, older.End, newer.Start, newer.End)
				}
				if gap := newer.Start.Sub(older.Start); gap < 500*time.Millisecond {
					t.Errorf("p%d: two runs %v apart on a 1 s schedule (fired by two workers?)", i, gap)
				}
				if newer.Error != "" {
					t.Errorf("p%d: run failed: %s", i, newer.Error)
				}
			}
		}
	}
	check(a.store)

	// a dies without releasing anything: its connection drops, its
	// session and leases expire.
	before := map[string]int{}
	for i := range pipes {
		before[fmt.Sprintf("p%d", i)] = len(runsOf(b.store, fmt.Sprintf("p%d", i)))
	}
	a.cancel()
	a.store.Conn().Close()
	<-a.done
	waitFor("b runs every pipe after a died", 60*time.Second, func() bool {
		for p, n := range before {
			if len(runsOf(b.store, p)) < n+2 {
				return false
			}
		}
		return true
	})
	check(b.store)
	for i := range pipes {
		p := fmt.Sprintf("p%d", i)
		info, _, _ := b.store.Dataset(ctx, p)
		if info.Versions != 2 || info.Entities != 2 {
			t.Errorf("%s: %+v; want the two entities once each", p, info)
		}
	}
	if err := b.store.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestRunElsewhereIsRefused: a run of a pipe another worker holds fails
// with ErrLeaseHeld, writing nothing; once released, it runs.
func TestRunElsewhereIsRefused(t *testing.T) {
	if enginetest.OnNATS() {
		t.Skip("runs on NATS anyway")
	}
	srv := natstest.Start(t, t.TempDir())
	plan := compile(t, all.Registry(), `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a"}]}}]`)
	ctx := context.Background()
	var engines []*engine.Engine
	for range 2 {
		s := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: "refuse"})
		c, _ := s.Cluster()
		e := engine.New(s, plan, nil)
		e.Cluster = c
		engines = append(engines, e)
	}
	l, err := engines[0].Cluster.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	_, err = engines[1].Run(ctx, "p", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "held by another worker") {
		t.Errorf("run of a pipe held elsewhere = %v", err)
	}
	if runs, _ := engines[1].Store.Runs(ctx, "p", 0); len(runs) != 0 {
		t.Errorf("a refused run was recorded: %+v", runs)
	}
	l.Release(ctx)
	if rec, err := engines[1].Run(ctx, "p", engine.RunOptions{}); err != nil || rec.Written != 1 {
		t.Errorf("run after release = %+v, %v", rec, err)
	}
}
