package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestByteGate: a sender waits while the queue holds its bound, goes on
// once the receiver releases, and gives up when its context ends; an item
// larger than the bound takes all of it. A nil gate bounds nothing.
func TestByteGate(t *testing.T) {
	ctx := context.Background()
	g := newByteGate(4 * gateUnit)
	if !g.acquire(ctx, 3*gateUnit) || !g.acquire(ctx, 1) {
		t.Fatal("acquire within the bound failed")
	}
	done := make(chan bool)
	go func() { done <- g.acquire(ctx, gateUnit) }()
	select {
	case <-done:
		t.Fatal("acquire past the bound did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	g.release(1)
	if !<-done {
		t.Fatal("acquire after a release failed")
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if g.acquire(short, 1) {
		t.Fatal("acquire on a full gate succeeded")
	}
	g.release(3 * gateUnit)
	g.release(gateUnit)
	if !g.acquire(ctx, 100*gateUnit) || len(g.units) != 0 {
		t.Fatalf("an item over the bound: %d units left, want 0", len(g.units))
	}
	g.release(100 * gateUnit)
	if len(g.units) != 4 {
		t.Fatalf("%d units after releasing everything, want 4", len(g.units))
	}
	var none *byteGate
	if !none.acquire(short, 1<<30) {
		t.Fatal("a nil gate refused")
	}
	none.release(1 << 30)
}

// TestRawItemOneArena: the bodies of a batch of large documents are carved
// from one array, so a body in flight keeps only its own batch's memory
// (an arena sized for small entities grew by reallocating, and bodies kept
// every array alive: about three times the bodies).
func TestRawItemOneArena(t *testing.T) {
	var b RawBatch
	for i := range 100 {
		b.Values = append(b.Values, fmt.Appendf(nil, `{"_id":"doc-%d","body":%q}`, i, strings.Repeat("abcdefghij", 1000)))
	}
	it := rawItem(b, false, &PrepareScratch{})
	if it.err != nil || len(it.prepared) != 100 {
		t.Fatalf("rawItem: %v, %d prepared", it.err, len(it.prepared))
	}
	base := unsafe.Pointer(unsafe.SliceData(it.prepared[0].Body))
	off := 0
	for i, p := range it.prepared {
		if got := unsafe.Pointer(unsafe.SliceData(p.Body)); got != unsafe.Add(base, off) {
			t.Fatalf("body %d is not where the one before ended: the arena was reallocated", i)
		}
		off += len(p.Body)
	}
}
