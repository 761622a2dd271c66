package engine_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes/all"
)

// fakeSource yields entities e000.. with _updated = index. It is
// chronological: each batch's token is its last index. FailAfter > 0 makes
// Next fail once that many batches of a run were returned.
type fakeSource struct {
	mu        sync.Mutex
	N         int
	FailAfter int
	Ents      []engine.Entity // overrides N when set
	Opened    chan struct{}
	PageSize  int // entities per batch instead of the pipe's batch_size (a REST page)
}

func (f *fakeSource) SupportsSince() bool { return true }

func (f *fakeSource) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Opened != nil {
		select {
		case f.Opened <- struct{}{}:
		default:
		}
	}
	start := 0
	if req.Since != "" {
		n, err := strconv.Atoi(req.Since)
		if err != nil {
			return nil, err
		}
		start = n + 1
	}
	ents := f.Ents
	if ents == nil {
		for i := 0; i < f.N; i++ {
			ents = append(ents, engine.Entity{"_id": fmt.Sprintf("e%03d", i), "i": i})
		}
	}
	if start > len(ents) {
		start = len(ents)
	}
	size := req.BatchSize
	if f.PageSize > 0 {
		size = f.PageSize
	}
	return &fakeReader{ents: ents[start:], pos: start, size: size, failAfter: f.FailAfter}, nil
}

type fakeReader struct {
	ents      []engine.Entity
	pos       int
	size      int
	failAfter int
	batches   int
}

func (r *fakeReader) Next(ctx context.Context) (engine.Batch, error) {
	if r.failAfter > 0 && r.batches == r.failAfter {
		return engine.Batch{}, errors.New("source broke")
	}
	if len(r.ents) == 0 {
		return engine.Batch{}, engine.EOF
	}
	n := min(r.size, len(r.ents))
	b := engine.Batch{Since: strconv.Itoa(r.pos + n - 1)}
	for _, e := range r.ents[:n] {
		cp := engine.Entity{}
		for k, v := range e {
			cp[k] = v
		}
		b.Entities = append(b.Entities, cp)
	}
	r.ents, r.pos = r.ents[n:], r.pos+n
	r.batches++
	return b, nil
}

func (r *fakeReader) Close() error { return nil }

type funcTransform func(ctx context.Context, in []engine.Entity) ([]engine.Entity, error)

func (f funcTransform) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	return f(ctx, in)
}

type failSink struct{ err error }

func (failSink) OutputDataset() string { return "" }
func (s failSink) Write(context.Context, []engine.Entity) error {
	return s.err
}

const anySchema = `{"type":"object"}`

// registry returns the standard registry plus the fakes: source "fake"
// (src), transform "func" (fn) and sink "fail".
func registry(src *fakeSource, fn funcTransform) *engine.Registry {
	r := all.Registry()
	r.RegisterSource("fake", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Source, error) { return src, nil })
	r.RegisterTransform("func", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Transform, error) { return fn, nil })
	r.RegisterSink("fail", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Sink, error) {
		return failSink{err: errors.New("sink down")}, nil
	})
	return r
}

func loadConfig(t *testing.T, text string) *engine.Config {
	t.Helper()
	return enginetest.Config(t, t.TempDir(), text)
}

func compile(t *testing.T, reg *engine.Registry, text string) *engine.Plan {
	t.Helper()
	return enginetest.Plan(t, reg, t.TempDir(), text)
}

func openStore(t *testing.T) engine.Store {
	t.Helper()
	return enginetest.OpenStore(t, t.TempDir())
}

func newEngine(t *testing.T, reg *engine.Registry, text string) (*engine.Engine, engine.Store) {
	t.Helper()
	return enginetest.NewEngine(t, reg, t.TempDir(), text)
}

func dsInfo(t *testing.T, s engine.Store, name string) engine.DatasetInfo {
	t.Helper()
	info, _, err := s.Dataset(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func latestIDs(t *testing.T, s engine.Store, ds string) map[string]engine.Record {
	t.Helper()
	out := map[string]engine.Record{}
	_, err := s.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		out[r.ID] = r
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func since(t *testing.T, s engine.Store, pipe string) string {
	t.Helper()
	st, err := s.PipeState(context.Background(), pipe)
	if err != nil {
		t.Fatal(err)
	}
	return st.Since
}

func TestRunEmbeddedToDataset(t *testing.T) {
	ctx := context.Background()
	eng, s := newEngine(t, all.Registry(), `[{"_id":"p","type":"pipe","batch_size":2,
		"source":{"type":"embedded","entities":[{"_id":"a","n":1},{"_id":"b","n":12345678901234567890.10},{"_id":"c","_deleted":true}]}}]`)
	rec, err := eng.Run(ctx, "p", engine.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SyncType != "full" || rec.Read != 3 || rec.Written != 3 || rec.Unchanged != 0 || rec.Error != "" {
		t.Errorf("first run = %+v", rec)
	}
	info := dsInfo(t, s, "p")
	if info.Versions != 3 || info.Deleted != 1 || !info.Populated {
		t.Errorf("dataset = %+v", info)
	}
	if r, _, _ := s.Get(ctx, "p", "b"); string(r.Body) != `{"_id":"b","n":12345678901234567890.10}` {
		t.Errorf("b = %s (numbers must keep their text)", r.Body)
	}
	rec, err = eng.Run(ctx, "p", engine.RunOptions{})
	if err != nil || rec.Written != 0 || rec.Unchanged != 3 || rec.SyncType != "full" {
		t.Errorf("second run = %+v, %v", rec, err)
	}
	runs, _ := s.Runs(ctx, "p", 0)
	if len(runs) != 2 || runs[0].Unchanged != 3 {
		t.Errorf("run log = %+v", runs)
	}
	st, _ := s.PipeState(ctx, "p")
	if st.LastRun.IsZero() || st.LastError != "" {
		t.Errorf("pipe state = %+v", st)
	}
	if _, err := eng.Run(ctx, "nope", engine.RunOptions{}); err == nil || !strings.Contains(err.Error(), `unknown pipe "nope"`) {
		t.Errorf("unknown pipe: %v", err)
	}
}

// checkConsistent asserts that the committed entities and the stored offset
// agree: every entity up to the offset is there exactly once, nothing after.
func checkConsistent(t *testing.T, s engine.Store, n int) int {
	t.Helper()
	tok := since(t, s, "p")
	last := -1
	if tok != "" {
		var err error
		if last, err = strconv.Atoi(tok); err != nil {
			t.Fatalf("offset %q", tok)
		}
	}
	got := latestIDs(t, s, "p")
	for i := 0; i < n; i++ {
		_, ok := got[fmt.Sprintf("e%03d", i)]
		if ok != (i <= last) {
			t.Errorf("entity e%03d committed=%v but the stored offset is %d", i, ok, last)
		}
	}
	if info := dsInfo(t, s, "p"); info.Versions != uint64(len(got)) {
		t.Errorf("%d versions for %d ids: something was written twice", info.Versions, len(got))
	}
	return last
}

func TestCrashSafety(t *testing.T) {
	cases := []struct {
		name       string
		checkpoint int
		groupBytes int
		failAfter  int
	}{
		{"checkpoint every batch", 1, 0, 3},
		{"groups of three batches", 3, 0, 7},
		{"group by bytes", 100, 1, 4},
		{"one group", 100, 0, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			src := &fakeSource{N: 20, FailAfter: c.failAfter}
			reg := registry(src, nil)
			eng, s := newEngine(t, reg, fmt.Sprintf(`{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":%d,"source":{"type":"fake"}}`, c.checkpoint))
			eng.GroupBytes = c.groupBytes
			eng.GroupDuration = time.Hour
			_, err := eng.Run(ctx, "p", engine.RunOptions{})
			{
				if err == nil || !strings.Contains(err.Error(), "source broke") || !strings.Contains(err.Error(), `pipe "p"`) {
					t.Fatalf("run error = %v, want the source error naming the pipe", err)
				}
				last := checkConsistent(t, s, 20)
				if last < 0 {
					t.Errorf("nothing committed before the failure")
				}
				runs, _ := s.Runs(ctx, "p", 1)
				if len(runs) != 1 || !strings.Contains(runs[0].Error, "source broke") {
					t.Errorf("failed run not logged: %+v", runs)
				}
			}
			// Re-run without failure: continues after the last commit.
			src.FailAfter = 0
			rec, err := eng.Run(ctx, "p", engine.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rec.SyncType != "incremental" {
				t.Errorf("re-run sync type %q, want incremental", rec.SyncType)
			}
			if last := checkConsistent(t, s, 20); last != 19 {
				t.Errorf("offset after the complete run = %d, want 19", last)
			}
			for id := range latestIDs(t, s, "p") {
				if h, _ := s.History(ctx, "p", id); len(h) != 1 {
					t.Errorf("%s has %d versions, want 1", id, len(h))
				}
			}
		})
	}
}

// TestStoppedResyncRunsFullAgain: a reset or rescan run (or the run
// after ResetPipe) that stops, after some of its commits or before any,
// leaves the next run a full one, which deletion-tracks what the source
// lost; once complete, runs are incremental again. (A first load that
// stops goes on incrementally: TestCrashSafety.)
func TestStoppedResyncRunsFullAgain(t *testing.T) {
	for _, c := range []struct {
		name      string
		opts      engine.RunOptions
		resetPipe bool
		early     bool // the first batch fails (in the transform): nothing committed
	}{
		{"rescan, stopped after commits", engine.RunOptions{Rescan: true}, false, false},
		{"reset, stopped after commits", engine.RunOptions{Reset: true}, false, false},
		{"rescan, stopped before a commit", engine.RunOptions{Rescan: true}, false, true},
		{"reset, stopped before a commit", engine.RunOptions{Reset: true}, false, true},
		{"ResetPipe, stopped after commits", engine.RunOptions{}, true, false},
		{"ResetPipe, stopped before a commit", engine.RunOptions{}, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			src := &fakeSource{N: 20}
			var failing atomic.Bool
			fn := func(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
				if failing.Load() {
					return nil, errors.New("source broke")
				}
				return in, nil
			}
			eng, s := newEngine(t, registry(src, fn), `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"fake"},"transform":{"type":"func"}}`)
			if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil {
				t.Fatal(err)
			}
			// The source lost four entities; the re-sync breaks after
			// three batches.
			src.Ents = nil
			for i := range 16 {
				src.Ents = append(src.Ents, engine.Entity{"_id": fmt.Sprintf("e%03d", i), "i": i})
			}
			if c.early {
				failing.Store(true)
			} else {
				src.FailAfter = 3
			}
			if c.resetPipe {
				if err := eng.ResetPipe(ctx, "p"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := eng.Run(ctx, "p", c.opts); err == nil || !strings.Contains(err.Error(), "source broke") {
				t.Fatalf("re-sync: %v, want the source's error", err)
			}
			if st, _ := s.PipeState(ctx, "p"); !st.RescanRequested {
				t.Fatalf("state after the stopped re-sync: %+v, want the rescan request kept", st)
			}
			if c.early {
				want := "19"
				if c.resetPipe {
					want = ""
				}
				if st, _ := s.PipeState(ctx, "p"); st.Since != want {
					t.Fatalf("state after a re-sync that committed nothing: %+v, want token %q", st, want)
				}
			}
			src.FailAfter = 0
			failing.Store(false)
			rec, err := eng.Run(ctx, "p", engine.RunOptions{})
			if err != nil || rec.SyncType != "full" || rec.Deleted != 4 {
				t.Fatalf("run after the stopped re-sync: %+v, %v; want full with 4 deleted", rec, err)
			}
			if rec, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil || rec.SyncType != "incremental" {
				t.Fatalf("run after the complete re-sync: %+v, %v; want incremental", rec, err)
			}
		})
	}
}

func TestTransformErrorWritesNothingOfTheBatch(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprint("single=", single), func(t *testing.T) {
			ctx := context.Background()
			src := &fakeSource{N: 12}
			sink := `{}`
			if single {
				sink = `{"circuit_breaker_threshold_count":1000}`
			}
			eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":4,"checkpoint_interval":1,"source":{"type":"fake"},
				"transform":{"type":"jq","expression":"if ._id == \"e006\" then error(\"boom\") else . + {seen: true} end"},"sink":`+sink+`}`)
			if single {
				// Arm the breaker: it only works on a populated dataset.
				tx, _ := s.Begin(ctx)
				tx.SetPopulated("p")
				tx.Commit()
			}
			_, err := eng.Run(ctx, "p", engine.RunOptions{})
			var ee *engine.EntityError
			if !errors.As(err, &ee) || ee.ID != "e006" || !strings.Contains(err.Error(), `entity "e006"`) || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("error = %v, want an EntityError naming e006", err)
			}
			got := latestIDs(t, s, "p")
			for i := 4; i < 8; i++ {
				if _, ok := got[fmt.Sprintf("e%03d", i)]; ok {
					t.Errorf("e%03d of the failing batch was written", i)
				}
			}
			wantSince, wantN := "3", 4
			if single {
				wantSince, wantN = "", 0
			}
			if tok := since(t, s, "p"); tok != wantSince || len(got) != wantN {
				t.Errorf("offset %q with %d entities, want %q with %d", tok, len(got), wantSince, wantN)
			}
		})
	}
}

func TestInvalidEntities(t *testing.T) {
	cases := []struct {
		ent  engine.Entity
		want string
	}{
		{engine.Entity{"x": 1}, "invalid entity (entity has no _id): {\"x\":1}"},
		{engine.Entity{"_id": 5}, "invalid entity (entity _id is a number"},
		{engine.Entity{"_id": "ok", "bad": struct{}{}}, `entity "ok"`},
	}
	for _, c := range cases {
		src := &fakeSource{Ents: []engine.Entity{{"_id": "fine"}, c.ent}}
		eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","source":{"type":"fake"}}`)
		_, err := eng.Run(context.Background(), "p", engine.RunOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("entity %v: error %v, want %q", c.ent, err, c.want)
		}
		if n := len(latestIDs(t, s, "p")); n != 0 {
			t.Errorf("entity %v: %d entities written from the bad batch", c.ent, n)
		}
		// External sinks check _id too.
		eng, _ = newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","source":{"type":"fake"},"sink":{"type":"null"}}`)
		if _, err := eng.Run(context.Background(), "p", engine.RunOptions{}); err == nil && c.ent["_id"] != "ok" {
			t.Errorf("null sink accepted %v", c.ent)
		}
	}
}

func TestTransformPanicIsAnError(t *testing.T) {
	src := &fakeSource{N: 3}
	eng, _ := newEngine(t, registry(src, func(context.Context, []engine.Entity) ([]engine.Entity, error) {
		panic("interpreter bug")
	}), `{"_id":"p","type":"pipe","source":{"type":"fake"},"transform":{"type":"func"}}`)
	_, err := eng.Run(context.Background(), "p", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "transform panicked") || !strings.Contains(err.Error(), "transform 0") {
		t.Errorf("error = %v", err)
	}
}

func TestIfSourceEmptyFail(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{N: 3}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","source":{"type":"fake","if_source_empty":"fail"}}`)
	if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	src.N = 0
	_, err := eng.Run(ctx, "p", engine.RunOptions{Reset: true})
	if err == nil || !strings.Contains(err.Error(), "if_source_empty") {
		t.Fatalf("empty full run: %v, want if_source_empty error", err)
	}
	if info := dsInfo(t, s, "p"); info.Deleted != 0 || info.Versions != 3 {
		t.Errorf("empty source deleted entities: %+v", info)
	}
}

func TestIfSourceEmptyOnlyFailsFullRuns(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{N: 3}
	eng, _ := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","source":{"type":"fake","if_source_empty":"fail"}}`)
	if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	rec, err := eng.Run(ctx, "p", engine.RunOptions{})
	if err != nil || rec.SyncType != "incremental" {
		t.Errorf("incremental run with nothing new: %+v, %v; want success", rec, err)
	}
}

func TestResetAndRescan(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{N: 4}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","source":{"type":"fake"}}`)
	eng.Run(ctx, "p", engine.RunOptions{})
	if rec, _ := eng.Run(ctx, "p", engine.RunOptions{}); rec.SyncType != "incremental" || rec.Read != 0 {
		t.Errorf("second run = %+v", rec)
	}
	if rec, _ := eng.Run(ctx, "p", engine.RunOptions{Rescan: true}); rec.SyncType != "full" || rec.Read != 4 || rec.Unchanged != 4 {
		t.Errorf("rescan = %+v", rec)
	}
	if err := eng.ResetPipe(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if tok := since(t, s, "p"); tok != "" {
		t.Errorf("offset after reset = %q", tok)
	}
	if rec, _ := eng.Run(ctx, "p", engine.RunOptions{}); rec.SyncType != "full" || rec.Read != 4 {
		t.Errorf("run after reset = %+v", rec)
	}
	if rec, _ := eng.Run(ctx, "p", engine.RunOptions{Reset: true}); rec.SyncType != "full" || rec.Read != 4 {
		t.Errorf("reset run = %+v", rec)
	}
}

func TestExternalSinkFailureKeepsOffset(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{N: 4}
	eng, s := newEngine(t, registry(src, nil), `[{"_id":"bad","type":"pipe","source":{"type":"fake"},"sink":{"type":"fail"}},
		{"_id":"good","type":"pipe","batch_size":1,"checkpoint_interval":1,"source":{"type":"fake"},"sink":{"type":"null"}}]`)
	_, err := eng.Run(ctx, "bad", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "sink: sink down") {
		t.Errorf("error = %v", err)
	}
	if tok := since(t, s, "bad"); tok != "" {
		t.Errorf("offset moved to %q although the sink failed", tok)
	}
	rec, err := eng.Run(ctx, "good", engine.RunOptions{})
	if err != nil || rec.Written != 4 || since(t, s, "good") != "3" {
		t.Errorf("null sink run = %+v, %v, offset %q", rec, err, since(t, s, "good"))
	}
}

const chain = `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","v":1},{"_id":"2","v":2}]}},
 {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"},"transform":{"type":"jq","expression":". + {w: (.v * 10)}"},"pump":{"mode":"manual"}},
 {"_id":"c","type":"pipe","source":{"type":"dataset","dataset":"b"},"pump":{"mode":"manual"}}
]`

func TestRunUntilStable(t *testing.T) {
	ctx := context.Background()
	eng, s := newEngine(t, all.Registry(), chain)
	recs, err := eng.RunUntilStable(ctx, nil, engine.RunOptions{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range recs {
		order = append(order, r.Pipe)
	}
	if strings.Join(order, ",") != "a,b,c" {
		t.Errorf("run order = %v", order)
	}
	if r, _, _ := s.Get(ctx, "c", "2"); string(r.Body) != `{"_id":"2","v":2,"w":20}` {
		t.Errorf("c/2 = %s", r.Body)
	}
	recs, err = eng.RunUntilStable(ctx, []string{"c", "b"}, engine.RunOptions{}, 3)
	if err != nil || len(recs) != 2 || recs[0].Pipe != "b" || recs[0].Written+recs[1].Written != 0 {
		t.Errorf("second pass = %+v, %v", recs, err)
	}
	if _, err := eng.RunUntilStable(ctx, []string{"zz"}, engine.RunOptions{}, 1); err == nil {
		t.Error("unknown pipe accepted")
	}
}

func TestSchedulerTriggerAndSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng, s := newEngine(t, all.Registry(), `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]},"pump":{"mode":"manual"}},
 {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"},"pump":{"mode":"manual"}},
 {"_id":"off","type":"pipe","source":{"type":"dataset","dataset":"a"},"pump":{"mode":"off"}}]`)
	sched := engine.NewScheduler(eng)
	if err := sched.Trigger("zz"); err == nil {
		t.Error("Trigger(unknown) succeeded")
	}
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	if err := sched.Trigger("a"); err != nil {
		t.Fatal(err)
	}
	// b runs because a changed its input (signalling); wait for it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if runs, _ := s.Runs(context.Background(), "b", 0); len(runs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never ran after a changed its input")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	if runs, _ := s.Runs(context.Background(), "off", 0); len(runs) != 0 {
		t.Errorf("pipe with mode off ran %d times", len(runs))
	}
	if r, ok, _ := s.Get(context.Background(), "b", "1"); !ok || r.ID != "1" {
		t.Error("b did not copy a's entity")
	}
}

func TestRunsOfOnePipeDoNotOverlap(t *testing.T) {
	src := &fakeSource{N: 50}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":3,"checkpoint_interval":1,"source":{"type":"fake"}}`)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := eng.Run(context.Background(), "p", engine.RunOptions{Reset: i%2 == 0}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if info := dsInfo(t, s, "p"); info.Versions != 50 {
		t.Errorf("%d versions after concurrent runs, want 50", info.Versions)
	}
}

func TestProgressCallback(t *testing.T) {
	src := &fakeSource{N: 6}
	eng, _ := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"fake"}}`)
	var reads []int64
	eng.Progress = func(pipe string, st engine.RunStats) { reads = append(reads, st.Read) }
	eng.Run(context.Background(), "p", engine.RunOptions{})
	if len(reads) == 0 || reads[len(reads)-1] != 6 {
		t.Errorf("progress reads = %v", reads)
	}
}

// runLoggingCommits runs pipe "p" and returns, after each commit, the
// entities written so far and the pipe's stored token.
func runLoggingCommits(t *testing.T, eng *engine.Engine, s engine.Store) (written []int64, since []string) {
	t.Helper()
	eng.Progress = func(pipe string, st engine.RunStats) {
		ps, err := s.PipeState(context.Background(), "p")
		if err != nil {
			t.Error(err)
		}
		written, since = append(written, st.Written), append(since, ps.Since)
	}
	if _, err := eng.Run(context.Background(), "p", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	return written, since
}

// TestLargeBatchesCommitInChunks: source batches larger than batch_size
// (REST pages) are cut into chunks of batch_size, and a transaction ends
// after checkpoint_interval chunks but only at the end of a source batch:
// each page is committed whole, with its token.
func TestLargeBatchesCommitInChunks(t *testing.T) {
	src := &fakeSource{N: 300, PageSize: 100}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":10,"checkpoint_interval":2,"source":{"type":"fake"}}`)
	written, since := runLoggingCommits(t, eng, s)
	if len(written) < 3 || fmt.Sprint(written[:3]) != "[100 200 300]" {
		t.Fatalf("written after each commit = %v, want [100 200 300 ...]", written)
	}
	if fmt.Sprint(since[:3]) != "[99 199 299]" {
		t.Errorf("token after each commit = %q; want each page's", since)
	}
}

// TestHugeBatchCommitsAtByteLimit: a source batch larger than the group
// byte limit (an API that answers with its whole collection) is still
// committed in groups of about that size, not as one transaction; its
// token comes with its last chunk.
func TestHugeBatchCommitsAtByteLimit(t *testing.T) {
	src := &fakeSource{N: 300, PageSize: 300}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":10,"checkpoint_interval":2,"source":{"type":"fake"}}`)
	eng.GroupBytes = 1000 // about 50 of these small entities
	written, since := runLoggingCommits(t, eng, s)
	if len(written) < 4 || written[0] >= 300 || written[len(written)-1] != 300 {
		t.Fatalf("written after each commit = %v, want several commits up to 300", written)
	}
	if since[0] != "" || since[len(since)-1] != "299" {
		t.Errorf("token after each commit = %q; want none before the last chunk, then 299", since)
	}
}

// TestLargeBatchWithHookStaysWhole: a batch with a Commit hook is not
// split, so the hook commits with all of its entities.
func TestLargeBatchWithHookStaysWhole(t *testing.T) {
	src := &hookSource{fakeSource: &fakeSource{N: 100, PageSize: 100}}
	reg := all.Registry()
	reg.RegisterSource("fake", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Source, error) { return src, nil })
	eng, _ := newEngine(t, reg, `{"_id":"p","type":"pipe","batch_size":10,"checkpoint_interval":2,"source":{"type":"fake"}}`)
	var written []int64
	eng.Progress = func(pipe string, st engine.RunStats) { written = append(written, st.Written) }
	if _, err := eng.Run(context.Background(), "p", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(written) == 0 || written[0] != 100 {
		t.Errorf("written after each commit = %v, want the whole batch of 100 in the first", written)
	}
}

// hookSource wraps fakeSource so that every batch carries a Commit hook
// writing "last=<token>" into KV namespace "hook" (and failing when the
// token is failAt).
type hookSource struct {
	*fakeSource
	failAt string
}

func (h *hookSource) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	r, err := h.fakeSource.Open(ctx, req)
	if err != nil {
		return nil, err
	}
	return &hookReader{Reader: r, failAt: h.failAt}, nil
}

type hookReader struct {
	engine.Reader
	failAt string
}

func (r *hookReader) Next(ctx context.Context) (engine.Batch, error) {
	b, err := r.Reader.Next(ctx)
	if err != nil {
		return b, err
	}
	tok := b.Since
	b.Commit = func(tx engine.WriteTx) error {
		if tok == r.failAt {
			return errors.New("hook refused")
		}
		return tx.PutKV("hook", "last", []byte(tok))
	}
	return b, nil
}

func TestBatchCommitHook(t *testing.T) {
	ctx := context.Background()
	for _, sink := range []string{`{"type":"dataset"}`, `{"type":"null"}`} {
		t.Run(sink, func(t *testing.T) {
			src := &hookSource{fakeSource: &fakeSource{N: 10}, failAt: "7"}
			reg := all.Registry()
			reg.RegisterSource("fake", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Source, error) { return src, nil })
			eng, s := newEngine(t, reg, `[{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,
				"source":{"type":"fake"},"sink":`+sink+`}]`)
			if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err == nil || !strings.Contains(err.Error(), "hook refused") {
				t.Fatalf("run = %v; want the hook's error", err)
			}
			// The batches before the failing one committed with their hook;
			// the failing batch's token and hook did not.
			v, _, _ := s.GetKV(ctx, "hook", "last")
			if string(v) != "5" || since(t, s, "p") != "5" {
				t.Errorf("hook state %q, token %q; want both 5", v, since(t, s, "p"))
			}
			src.failAt = ""
			if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil {
				t.Fatal(err)
			}
			if v, _, _ := s.GetKV(ctx, "hook", "last"); string(v) != "9" {
				t.Errorf("after the second run hook state = %q, want 9", v)
			}
		})
	}
}

// parallelFunc is a transform that says it may run on several batches at
// once (engine.ParallelTransform).
type parallelFunc func(ctx context.Context, in []engine.Entity) ([]engine.Entity, error)

func (f parallelFunc) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	return f(ctx, in)
}
func (parallelFunc) ParallelSafe() bool { return true }

// TestParallelTransformsKeepOrder: batches of a pipe whose transforms are
// all ParallelSafe are transformed at once, yet reach the store in the
// order they were read (offsets follow the source, the token is the
// last batch's), and a failing batch stops the run after the batches
// before it, with nothing of it or after it written.
func TestParallelTransformsKeepOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, failAt := range []int{-1, 37} {
		t.Run(fmt.Sprint("fail at ", failAt), func(t *testing.T) {
			ctx := context.Background()
			var running, most atomic.Int32
			fn := parallelFunc(func(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				i := in[0]["i"].(int)
				// Later batches tend to finish first.
				time.Sleep(time.Duration((7-i%7)*300) * time.Microsecond)
				if i/2 == failAt/2 && failAt >= 0 {
					return nil, errors.New("boom")
				}
				for _, e := range in {
					e["t"] = true
				}
				return in, nil
			})
			src := &fakeSource{N: 100}
			reg := registry(src, nil)
			reg.RegisterTransform("par", engine.Spec{Schema: anySchema}, func(*engine.Build, map[string]any) (engine.Transform, error) { return fn, nil })
			eng, s := newEngine(t, reg, `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":3,"source":{"type":"fake"},"transform":{"type":"par"}}`)
			_, err := eng.Run(ctx, "p", engine.RunOptions{})
			want := 100
			if failAt >= 0 {
				if err == nil || !strings.Contains(err.Error(), "boom") {
					t.Fatalf("run error = %v, want boom", err)
				}
				want = failAt / 2 * 2 / 6 * 6 // whole groups of 3 batches before the failing one
			} else if err != nil {
				t.Fatal(err)
			}
			var ids []string
			if _, err := s.Scan(ctx, "p", engine.ScanOptions{}, func(r engine.Record) error {
				ids = append(ids, r.ID)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(ids) != want {
				t.Fatalf("%d entities written, want %d", len(ids), want)
			}
			for i, id := range ids {
				if id != fmt.Sprintf("e%03d", i) {
					t.Fatalf("offset %d holds %s: batches out of order", i, id)
				}
			}
			if want > 0 {
				if tok := since(t, s, "p"); tok != strconv.Itoa(want-1) {
					t.Errorf("token %q, want %d", tok, want-1)
				}
			}
			if most.Load() < 2 {
				t.Errorf("at most %d batches transformed at once, want several", most.Load())
			}
		})
	}
}

// TestParallelDatasetPipeDecodesInWorkers: a dataset source hands its
// batches over undecoded when the pipe's transforms run in parallel
// (engine.DecodeDeferrer); the output is what the pipe computes one batch
// at a time, in the source's order.
func TestParallelDatasetPipeDecodesInWorkers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ctx := context.Background()
	var ents []string
	for i := range 300 {
		ents = append(ents, fmt.Sprintf(`{"_id":"x%03d","a":%d,"n":{"k":[%d,"s"]}}`, (i*7)%300, i, i))
	}
	eng, s := newEngine(t, all.Registry(), `[
		{"_id":"a","type":"pipe","source":{"type":"embedded","entities":[`+strings.Join(ents, ",")+`]}},
		{"_id":"b","type":"pipe","batch_size":7,"checkpoint_interval":2,"source":{"type":"dataset","dataset":"a"},
		 "transform":{"type":"jq","expression":". + {x: (.a * 2)}"}}]`)
	for _, p := range []string{"a", "b"} {
		if _, err := eng.Run(ctx, p, engine.RunOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []engine.Record
	if _, err := s.Scan(ctx, "b", engine.ScanOptions{}, func(r engine.Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 {
		t.Fatalf("%d entities in b, want 300", len(got))
	}
	for i, r := range got {
		want := fmt.Sprintf(`{"_id":"x%03d","a":%d,"n":{"k":[%d,"s"]},"x":%d}`, (i*7)%300, i, i, 2*i)
		if string(r.Body) != want {
			t.Fatalf("offset %d: %s, want %s", i, r.Body, want)
		}
	}
}

// TestParallelPrepareKeepsOrder: a pipe without transforms into a dataset
// prepares batches on several workers; they still commit in read order,
// Commit hooks included.
func TestParallelPrepareKeepsOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ctx := context.Background()
	src := &fakeSource{N: 301}
	eng, s := newEngine(t, registry(src, nil), `{"_id":"p","type":"pipe","batch_size":3,"checkpoint_interval":4,"source":{"type":"fake"}}`)
	if _, err := eng.Run(ctx, "p", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	i := 0
	if _, err := s.Scan(ctx, "p", engine.ScanOptions{}, func(r engine.Record) error {
		if r.ID != fmt.Sprintf("e%03d", i) {
			return fmt.Errorf("offset %d holds %s: batches out of order", i, r.ID)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if i != 301 || since(t, s, "p") != "300" {
		t.Fatalf("%d entities, token %q; want 301 and 300", i, since(t, s, "p"))
	}
}
