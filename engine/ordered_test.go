package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestOrderedReadAhead checks how far ordered reads ahead of a sender that
// does not take items: 2 x depth jobs per worker while deep is set, 2 per
// worker once it is cleared (the reader holds the rest of its tokens), and
// that the items still go out in order and all of them once the sender
// takes them.
func TestOrderedReadAhead(t *testing.T) {
	const workers, depth, jobs = 2, 8, 200
	var deep atomic.Bool
	deep.Store(true)
	var read atomic.Int64
	next := func(ctx context.Context) (int, error) {
		n := read.Add(1)
		if n > jobs {
			return 0, EOF
		}
		return int(n), nil
	}
	newWorker := func() func(context.Context, int) []item {
		return func(_ context.Context, j int) []item { return []item{{read: j}} }
	}
	// waitRead waits until the reader stops advancing and returns how far
	// it got.
	waitRead := func() int64 {
		last := int64(-1)
		for {
			time.Sleep(50 * time.Millisecond)
			n := read.Load()
			if n == last {
				return n
			}
			last = n
		}
	}
	gate := make(chan bool)
	got := make(chan int, jobs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ordered(context.Background(), workers, depth, &deep, next, newWorker, func(it item) bool {
			<-gate
			got <- it.read
			return true
		})
	}()
	// The sender holds item 1: the reader is at most 2 x depth x workers
	// jobs ahead (plus the one it blocks on taking a token for).
	if n := waitRead(); n < 2*depth*workers || n > 2*depth*workers+1 {
		t.Fatalf("deep: read %d jobs ahead, want %d", n, 2*depth*workers)
	}
	// Cleared: once the queue drains below 2 per worker, it stays there.
	deep.Store(false)
	for i := 0; i < 2*depth*workers; i++ {
		gate <- true
	}
	before := read.Load()
	if n := waitRead(); n-before > 2*workers+1 {
		t.Fatalf("shallow: read %d more jobs after %d were taken, want at most %d", n-before, 2*depth*workers, 2*workers)
	}
	close(gate) // the sender takes everything now
	<-done
	close(got)
	want := 1
	for j := range got {
		if j != want {
			t.Fatalf("item %d went out as number %d", j, want)
		}
		want++
	}
	if want != jobs+1 {
		t.Fatalf("%d items went out, want %d", want-1, jobs)
	}
}
