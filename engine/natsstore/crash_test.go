package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
	"github.com/ferrydata/ferry/engine/storetest"
)

var errCrash = errors.New("crash")

func put(t *testing.T, tx engine.WriteTx, ds, text string) engine.Record {
	t.Helper()
	p := storetest.Prep(t, text)
	res, rec, err := tx.Put(ds, &p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res != engine.Appended {
		t.Fatalf("Put %s: unchanged", text)
	}
	return rec
}

func writeCommitted(t *testing.T, s engine.Store, ds string, texts ...string) {
	t.Helper()
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range texts {
		put(t, tx, ds, text)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func ids(t *testing.T, s engine.Store, ds string, latest bool) string {
	t.Helper()
	var out []string
	_, err := s.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: latest}, func(r engine.Record) error {
		out = append(out, fmt.Sprintf("%s@%d", r.ID, r.Offset))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

// TestCrashBetweenAppendAndCommit leaves versions in a dataset stream
// without the metadata batch that commits them, as a worker killed in the
// middle of a commit does, and checks that nobody sees them and that the
// next writer repairs the stream: the offsets stay contiguous, nothing is
// duplicated, and the dead writer can no longer commit them.
func TestCrashBetweenAppendAndCommit(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	prefix := newPrefix()
	a := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	b := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})

	writeCommitted(t, a, "ds", `{"_id":"x","n":1}`, `{"_id":"y","n":1}`)
	natsstore.SetAfterAppend(a, func() error { return errCrash })
	tx, _ := a.Begin(ctx)
	put(t, tx, "ds", `{"_id":"x","n":2}`)
	put(t, tx, "ds", `{"_id":"z","n":1}`)
	put(t, tx, "ds", `{"_id":"y","n":1,"_deleted":true}`)
	if err := tx.Commit(); !errors.Is(err, errCrash) {
		t.Fatalf("Commit = %v, want the crash", err)
	}
	// The tail is invisible to every reader.
	for _, s := range []engine.Store{a, b} {
		if got := ids(t, s, "ds", false); got != "x@0 y@1" {
			t.Errorf("scan after the crash = %q", got)
		}
		if r, _, _ := s.Get(ctx, "ds", "x"); string(r.Body) != `{"_id":"x","n":1}` {
			t.Errorf("Get(x) = %s", r.Body)
		}
		if _, ok, _ := s.Get(ctx, "ds", "z"); ok {
			t.Error("uncommitted z is visible")
		}
		if h, _ := s.History(ctx, "ds", "x"); len(h) != 1 {
			t.Errorf("history of x has %d versions", len(h))
		}
	}
	txb, _ := b.Begin(ctx)
	r, ok, err := txb.Latest("ds", "x")
	if err != nil || !ok || string(r.Body) != `{"_id":"x","n":1}` {
		t.Errorf("Latest(x) past the tail = %s %v %v", r.Body, ok, err)
	}
	var live []string
	txb.ForEachLive("ds", func(id string) error { live = append(live, id); return nil })
	if fmt.Sprint(live) != "[x y]" {
		t.Errorf("ForEachLive past the tail = %v", live)
	}
	txb.Rollback()

	// While the crashed writer's session lives, b waits for it, then
	// gives up with a clear error.
	tx, _ = b.Begin(ctx)
	put(t, tx, "ds", `{"_id":"w","n":1}`)
	start := time.Now()
	err = tx.Commit()
	if err == nil || !strings.Contains(err.Error(), "has been appending") {
		t.Fatalf("commit behind a live writer's tail = %v", err)
	}
	if time.Since(start) < 4*time.Second {
		t.Errorf("gave up after %v, want tail_wait (5 s)", time.Since(start))
	}

	// Once it is dead, the next writer repairs.
	if err := natsstore.KillSession(a); err != nil {
		t.Fatal(err)
	}
	writeCommitted(t, b, "ds", `{"_id":"w","n":1}`, `{"_id":"x","n":3}`)
	if got := ids(t, b, "ds", false); got != "x@0 y@1 w@2 x@3" {
		t.Errorf("scan after the repair = %q", got)
	}
	if got := ids(t, b, "ds", true); got != "y@1 w@2 x@3" {
		t.Errorf("latest after the repair = %q", got)
	}
	h, err := b.History(ctx, "ds", "x")
	if err != nil || len(h) != 2 || h[1].Previous != 0 || !h[1].HasPrev {
		t.Errorf("history of x after the repair = %+v, %v", h, err)
	}
	holes, _ := natsstore.Holes(b, "ds")
	if fmt.Sprint(holes) != "[[3 5]]" {
		t.Errorf("holes = %v, want the three uncommitted sequences", holes)
	}
	info, _, _ := b.Dataset(ctx, "ds")
	if info.Versions != 4 || info.Entities != 3 || info.LastOffset != 3 || info.Deleted != 0 {
		t.Errorf("info after the repair = %+v", info)
	}
	if err := b.Check(ctx); err != nil {
		t.Error(err)
	}
	// The garbage is gone from the stream.
	js, _ := jetstream.New(b.Conn())
	st, _ := js.Stream(ctx, natsstore.DatasetStream(b, "ds"))
	if n := st.CachedInfo().State.Msgs; n != 4 {
		t.Errorf("stream holds %d messages, want the 4 committed", n)
	}
	// A continuing scan from an offset after the hole maps it right.
	var got []string
	b.Scan(ctx, "ds", engine.ScanOptions{From: 3}, func(r engine.Record) error {
		got = append(got, fmt.Sprintf("%s@%d", r.ID, r.Offset))
		return nil
	})
	if fmt.Sprint(got) != "[x@3]" {
		t.Errorf("scan from 3 = %v", got)
	}
}

// TestCrashOfTheFirstCommit: a new dataset whose only append never
// committed is dropped and rebuilt from offset 0.
func TestCrashOfTheFirstCommit(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	prefix := newPrefix()
	a := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	b := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	natsstore.SetAfterAppend(a, func() error { return errCrash })
	tx, _ := a.Begin(ctx)
	put(t, tx, "new", `{"_id":"a"}`)
	tx.Commit()
	if _, ok, _ := b.Dataset(ctx, "new"); ok {
		t.Fatal("a dataset whose first commit crashed exists")
	}
	natsstore.KillSession(a)
	writeCommitted(t, b, "new", `{"_id":"b"}`)
	if got := ids(t, b, "new", false); got != "b@0" {
		t.Errorf("scan = %q", got)
	}
	if err := b.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestLeaseFencesCommits: a transaction begun under a lease commits only
// while the lease is held; a worker whose lease was taken over fails as a
// whole, and what it appended is repaired away by the next writer.
func TestLeaseFencesCommits(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	prefix := newPrefix()
	a := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	b := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	ca, _ := a.Cluster()
	cb, _ := b.Cluster()

	la, err := ca.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Acquire(ctx, "p"); !errors.Is(err, engine.ErrLeaseHeld) {
		t.Fatalf("second Acquire = %v, want ErrLeaseHeld", err)
	}
	// Under the lease: commits work.
	tx, _ := a.Begin(engine.WithLease(ctx, la))
	put(t, tx, "out", `{"_id":"1"}`)
	tx.SetPipeState("p", engine.PipeState{Since: "1"})
	if err := tx.Commit(); err != nil {
		t.Fatalf("fenced commit while holding the lease: %v", err)
	}
	// a stalls: its session dies (the process cannot tell) and b takes the
	// pipe over.
	tx, _ = a.Begin(engine.WithLease(ctx, la))
	put(t, tx, "out", `{"_id":"2"}`)
	tx.SetPipeState("p", engine.PipeState{Since: "2"})
	natsstore.KillSession(a)
	lb, err := cb.Acquire(ctx, "p")
	if err != nil {
		t.Fatalf("taking over from a dead session: %v", err)
	}
	// a wakes up and commits: refused, nothing of it lands.
	err = tx.Commit()
	if !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("commit of the stalled worker = %v, want ErrLeaseLost", err)
	}
	if st, _ := b.PipeState(ctx, "p"); st.Since != "1" {
		t.Errorf("pipe state after the refused commit = %q", st.Since)
	}
	if got := ids(t, b, "out", false); got != "1@0" {
		t.Errorf("dataset after the refused commit = %q", got)
	}
	select {
	case <-la.Done():
	default:
		t.Error("the lost lease's Done is not closed")
	}
	// b continues where the last commit left off.
	tx, _ = b.Begin(engine.WithLease(ctx, lb))
	put(t, tx, "out", `{"_id":"2"}`)
	tx.SetPipeState("p", engine.PipeState{Since: "2"})
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "out", false); got != "1@0 2@1" {
		t.Errorf("dataset after the takeover = %q", got)
	}
	if err := b.Check(ctx); err != nil {
		t.Error(err)
	}
	lb.Release(ctx)
	// a takes no lease under the dead session; only once its heartbeat
	// has started a new one.
	dead := natsstore.SessionID(a)
	if l, err := ca.Acquire(ctx, "p"); err == nil {
		if natsstore.SessionID(a) == dead {
			t.Error("a store whose session was lost took a lease without noticing")
		}
		l.Release(ctx)
	}
}

// TestConcurrentWritersOfOneDataset: two stores (workers) write the same
// dataset at once. Every commit either lands whole or fails with
// ErrConflict, and the dataset holds exactly the versions of the commits
// that landed.
func TestConcurrentWritersOfOneDataset(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	prefix := newPrefix()
	stores := []*natsstore.Store{
		natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix}),
		natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix}),
	}
	var mu sync.Mutex
	landed := map[string]bool{}
	var wg sync.WaitGroup
	for w, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				tx, err := s.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				var keys []string
				for j := range 20 {
					id := fmt.Sprintf("w%d-%d-%d", w, i, j)
					p := storetest.Prep(t, fmt.Sprintf(`{"_id":%q}`, id))
					if _, _, err := tx.Put("shared", &p, 1); err != nil {
						t.Error(err)
						tx.Rollback()
						return
					}
					keys = append(keys, id)
				}
				err = tx.Commit()
				if err != nil && !errors.Is(err, natsstore.ErrConflict) && !strings.Contains(err.Error(), "has been appending") {
					t.Errorf("commit: %v", err)
				}
				if err == nil {
					mu.Lock()
					for _, k := range keys {
						landed[k] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	_, err := stores[0].Scan(ctx, "shared", engine.ScanOptions{}, func(r engine.Record) error {
		if seen[r.ID] {
			t.Errorf("%s twice", r.ID)
		}
		seen[r.ID] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(landed) {
		t.Errorf("dataset has %d versions, %d were committed", len(seen), len(landed))
	}
	for k := range landed {
		if !seen[k] {
			t.Errorf("committed %s is missing", k)
		}
	}
	if len(landed) == 0 {
		t.Error("no commit landed")
	}
	if err := stores[0].Check(ctx); err != nil {
		t.Error(err)
	}
	t.Logf("%d of 1200 versions committed", len(landed))
}

// TestBadInput: an unreachable server, a stream someone else made with
// other settings, a transaction too big for one atomic batch.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	_, err := natsstore.Open(ctx, natsstore.Options{URL: "nats://127.0.0.1:1", Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the NATS server at nats://127.0.0.1:1") {
		t.Errorf("unreachable server: %v", err)
	}
	if _, err := natsstore.ParseURL("nats://h:4222?replica=3"); err == nil || !strings.Contains(err.Error(), `unknown parameter "replica"`) {
		t.Errorf("unknown URL parameter: %v", err)
	}
	if o, err := natsstore.ParseURL("nats://u:p@h:4222,h2:4222?prefix=x&replicas=3&lease_ttl=5s"); err != nil || o.Replicas != 3 || o.LeaseTTL != 5*time.Second || o.Prefix != "x" {
		t.Errorf("ParseURL = %+v, %v", o, err)
	}

	srv := natstest.Start(t, t.TempDir())
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Someone else's stream where the metadata stream would go.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER_META", Subjects: []string{"other.m.>"}, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, err = natsstore.Open(ctx, natsstore.Options{URL: srv.ClientURL(), Prefix: "other"})
	for _, want := range []string{"stream OTHER_META exists with settings Ferry cannot use", "not created by Ferry", "allow_atomic is off", "max_age", "nats stream rm OTHER_META"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("incompatible meta stream: %v; want %q", err, want)
		}
	}
	// Someone else's stream where a dataset's would go.
	s := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: "mine", MaxBatch: 5})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsstore.DatasetStream(s, "taken"), Subjects: []string{"mine.d.taken.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	tx, _ := s.Begin(ctx)
	put(t, tx, "taken", `{"_id":"a"}`)
	tx.SetPipeState("p", engine.PipeState{Since: "1"})
	err = tx.Commit()
	if err == nil || !strings.Contains(err.Error(), `dataset "taken": stream MINE_D_taken exists with settings Ferry cannot use`) || !strings.Contains(err.Error(), "retention WorkQueue") {
		t.Errorf("incompatible dataset stream: %v", err)
	}
	if st, _ := s.PipeState(ctx, "p"); st.Since != "" {
		t.Error("the pipe state of a failed commit landed")
	}
	// Too many metadata records for one batch: refused before anything
	// is written.
	tx, _ = s.Begin(ctx)
	put(t, tx, "ok", `{"_id":"a"}`)
	for i := range 5 {
		tx.PutKV("ns", fmt.Sprint(i), []byte("v"))
	}
	err = tx.Commit()
	if err == nil || !strings.Contains(err.Error(), "more than one atomic batch holds (max_batch 5)") {
		t.Errorf("oversized commit: %v", err)
	}
	if _, ok, _ := s.Dataset(ctx, "ok"); ok {
		t.Error("the dataset of a refused commit exists")
	}
	// An _id too long for a subject.
	tx, _ = s.Begin(ctx)
	p := storetest.Prep(t, fmt.Sprintf(`{"_id":%q}`, strings.Repeat("x", 3000)))
	if _, _, err := tx.Put("ok", &p, 1); err == nil || !strings.Contains(err.Error(), "an _id of 3000 bytes cannot be stored in NATS") {
		t.Errorf("long _id: %v", err)
	}
	tx.Rollback()
}

// TestKeepVersions maps keep_versions onto the streams' per-subject limit.
func TestKeepVersions(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	s := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: newPrefix(), KeepVersions: 2})
	for i := range 4 {
		writeCommitted(t, s, "ds", fmt.Sprintf(`{"_id":"a","n":%d}`, i), fmt.Sprintf(`{"_id":"b%d"}`, i))
	}
	h, err := s.History(ctx, "ds", "a")
	if err != nil || len(h) != 2 || h[1].Offset != 6 || h[0].Offset != 4 {
		t.Errorf("history with keep_versions 2 = %v, %v", h, err)
	}
	if r, _, _ := s.Get(ctx, "ds", "a"); string(r.Body) != `{"_id":"a","n":3}` {
		t.Errorf("latest = %s", r.Body)
	}
	if got := ids(t, s, "ds", true); got != "b0@1 b1@3 a@6 b2@5 b3@7" && got != "b0@1 b1@3 b2@5 a@6 b3@7" {
		t.Errorf("latest scan = %q", got)
	}
}

// TestClusterMembersAndNotify checks the worker list and notifications.
func TestClusterMembersAndNotify(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t, t.TempDir())
	prefix := newPrefix()
	a := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	b := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: prefix})
	ca, _ := a.Cluster()
	cb, _ := b.Cluster()
	self, all, err := ca.Members(ctx)
	if err != nil || len(all) != 2 || self != natsstore.SessionID(a) {
		t.Fatalf("Members = %s %v %v", self, all, err)
	}
	if err := ca.Notify(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-cb.Notifications():
		if p != "p1" {
			t.Errorf("notification = %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	b.Close()
	_, all, _ = ca.Members(ctx)
	if len(all) != 1 {
		t.Errorf("after a clean close Members = %v", all)
	}
}
