package engine_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestRunRecordCounts: Counts lists every integer field by its JSON name,
// not the store's sequence number.
func TestRunRecordCounts(t *testing.T) {
	rec := engine.RunRecord{Seq: 9, Pipe: "p", Read: 5, Written: 3, Unchanged: 1, Deleted: 2, Start: time.Now()}
	var got []string
	sum := int64(0)
	rec.Counts(func(name, key string, n int64) {
		got = append(got, name+"/"+key)
		sum += n
	})
	for _, want := range []string{"read/", "written/", "unchanged/", "deleted/"} {
		if !slices.Contains(got, want) {
			t.Errorf("Counts lacks %s: %v", want, got)
		}
	}
	if slices.Contains(got, "seq/") || sum != 11 {
		t.Errorf("Counts = %v (sum %d, want 11 without seq)", got, sum)
	}
}

type recordingObserver struct {
	mu     sync.Mutex
	events []string
}

func (o *recordingObserver) RunStarted(p *engine.Pipe) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "start "+p.ID)
}

func (o *recordingObserver) RunFinished(p *engine.Pipe, rec engine.RunRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "finish "+p.ID+" "+strings.TrimSpace(rec.Error))
}

// TestObserverSeesRunsAndReceives: every run and receive is bracketed by
// RunStarted and RunFinished, failed ones included.
func TestObserverSeesRunsAndReceives(t *testing.T) {
	eng, _ := newEngine(t, all.Registry(), `[
	 {"_id":"ok","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]}},
	 {"_id":"bad","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]},"transform":{"type":"jq","expression":"error(\"no\")"}},
	 {"_id":"hook","type":"pipe","source":{"type":"http_endpoint","allow_anonymous":true}}]`)
	obs := &recordingObserver{}
	eng.Observer = obs
	ctx := context.Background()
	eng.Run(ctx, "ok", engine.RunOptions{})
	eng.Run(ctx, "bad", engine.RunOptions{})
	if _, err := eng.Receive(ctx, "hook", []engine.Entity{{"_id": "x"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"start ok", "finish ok", "start bad", "finish bad", "start hook", "finish hook"}
	if len(obs.events) != len(want) {
		t.Fatalf("events %q, want %q", obs.events, want)
	}
	for i := range want {
		if !strings.HasPrefix(obs.events[i], want[i]) {
			t.Errorf("event %d = %q, want %q", i, obs.events[i], want[i])
		}
	}
	if !strings.Contains(obs.events[3], "no") || strings.TrimSpace(obs.events[1]) != "finish ok" {
		t.Errorf("the records' errors: %q", obs.events)
	}
}
