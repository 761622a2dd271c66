package engine

import "context"

// queueBytes bounds the entity bytes (prepared bodies, item.bytes) queued
// between a run's producer and its committer. The queue holds up to
// checkpoint_interval batches, ~6 MB of bodies and their text for the
// bench's 300-byte entities; of 10 KB documents it held 100 MB, and with
// the batches the ordering stage keeps ahead a 500 MB load of them peaked
// at 820 MB of RSS under a 150 MiB bound.
const queueBytes = 8 << 20

// byteGate bounds the bytes of a queue of items with a single sender: the
// sender acquires an item's bytes before it sends it and the receiver
// releases them as it takes it. Room is counted in units of gateUnit; an
// item larger than the whole bound takes all of it, and waits until the
// queue is empty. A nil gate bounds nothing.
type byteGate struct{ units chan struct{} }

// gateUnit is the gate's unit of room.
const gateUnit = 64 << 10

func newByteGate(limit int) *byteGate {
	n := max(1, limit/gateUnit)
	g := &byteGate{units: make(chan struct{}, n)}
	for range n {
		g.units <- struct{}{}
	}
	return g
}

// need is how many units n bytes take.
func (g *byteGate) need(n int) int { return min(cap(g.units), (n+gateUnit-1)/gateUnit) }

// acquire takes room for n bytes, waiting while the queue holds too much;
// false when ctx ends first (the item is then not sent).
func (g *byteGate) acquire(ctx context.Context, n int) bool {
	if g == nil {
		return true
	}
	for range g.need(n) {
		select {
		case <-g.units:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// release gives back the room of an item of n bytes taken from the queue.
// It never waits: only room acquired is given back.
func (g *byteGate) release(n int) {
	if g == nil {
		return
	}
	for range g.need(n) {
		g.units <- struct{}{}
	}
}
