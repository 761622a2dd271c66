package sinks

import (
	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/bloom"
)

// freshIDs is the set of _ids a run into an empty dataset has produced: a
// Bloom filter, so "not produced" is certain and "produced" may be wrong,
// which costs the store one index lookup (engine.Prepared.KnownNew).
//
// A load of 1M ids needs 2 MiB for ~0.3% false positives, but most runs
// into an empty dataset are small: the first run of each of thousands of
// pipes. Allocating (and zeroing) 2 MiB for each of them took an eighth
// of the CPU of a run of 3,000 pipes of 300 entities, and the collector
// much of the rest. So a run starts with a 64 KiB filter and notes the
// hashes it adds (up to 512 KiB of them); past freshSmallIDs of them it
// moves to the 2 MiB filter, adding the hashes noted, and notes no more.
type freshIDs struct {
	small, big *bloom.Blocked
	noted      []idHash
	// touched keeps hashBatch's loads from being dropped as unused.
	touched uint64
}

// freshSmallIDs is how many ids the small filter takes (~16 bits an id
// in 64 KiB: ~0.3% false positives when full).
const freshSmallIDs = 1 << 15

func newFreshIDs() *freshIDs {
	return &freshIDs{small: bloom.NewBlocked(1 << 19)}
}

// touch loads the filter's block for h (bloom.Blocked.Touch).
func (f *freshIDs) touch(h idHash) uint64 {
	if f.big != nil {
		return f.big.Touch(h[0])
	}
	return f.small.Touch(h[0])
}

// hashBatch returns the _id hashes of batch in dst, having touched the
// filter block of each: the adds that follow then find their blocks
// cached. (The 2 MiB filter of a large load is far past the caches:
// its adds, one cache miss each, were a fifteenth of the committer's
// CPU in a 1M load.)
func (f *freshIDs) hashBatch(dst []idHash, batch []engine.Prepared) []idHash {
	dst = dst[:0]
	for i := range batch {
		dst = append(dst, hashID(batch[i].ID))
	}
	// The touches in a loop of their own: between two hashes there is
	// too much work for a second miss to start before the first ends.
	var sum uint64
	for _, h := range dst {
		sum += f.touch(h)
	}
	f.touched += sum
	return dst
}

// add records h and reports whether it may have been added before. A
// hash the small filter takes for seen is noted all the same: it may be
// a false positive, and the large filter must not miss it.
func (f *freshIDs) add(h idHash) (seen bool) {
	if f.big != nil {
		return f.big.Add(h[0], h[1])
	}
	seen = f.small.Add(h[0], h[1])
	f.noted = append(f.noted, h)
	if len(f.noted) > freshSmallIDs {
		f.big = bloom.NewBlocked(1 << 24)
		for _, n := range f.noted {
			f.big.Add(n[0], n[1])
		}
		f.small, f.noted = nil, nil
	}
	return seen
}
