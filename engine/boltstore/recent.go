package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine/bloom"
)

// The _id index has two levels, both bbolt buckets inside the dataset's
// bucket:
//
//   - "recent" receives every index update a transaction makes;
//   - "index" holds the rest.
//
// An _id's entry in "recent", when there is one, is the newer: every
// lookup asks "recent" first. Each committing transaction that updated
// the index also moves a slice of "recent" into "index": the next
// ceil(n/recentFanIn) entries in key order from where the previous move
// stopped (rotating through the key space), once "recent" holds more than
// the store's recentMin entries. In steady state "recent" holds about
// recentFanIn transactions' worth of updates.
//
// Why: bbolt copies every page a transaction changes. A new _id with a
// random key lands on a random leaf of the index, so with one level a
// transaction of 10,000 new ids rewrites most of them as separate pages
// (~8,200 of the ~24,000 leaves of a 1M-entry index). With two levels the
// same transaction rewrites the small "recent" tree (~850 leaves) plus the
// leaves of one quarter of "index"'s key range that the moved entries
// land on, in key order. BenchmarkPutNewIDs (1M new ids, 10,000 per
// transaction): 2,649 page writes per transaction with two levels, 7,475
// with one. Fewer dirty pages also mean less heap for bbolt's transaction
// and fewer pages mapped. See docs/performance.md.
//
// Correctness rests only on "recent wins": a move writes the entry to
// "index" and deletes it from "recent" in the same transaction, so every
// committed state answers each lookup with the latest offset. The entry
// count and the rotation point (key recentState) only steer how much is
// moved; a wrong count would cost speed, never an answer. Stores written
// before the split have no "recent" bucket and read as if it were empty.
var (
	bucketRecent   = []byte("recent")
	keyRecentState = []byte("recent-state")
)

const (
	// recentFanIn is how many transactions' worth of updates "recent"
	// holds in steady state; each transaction moves 1/recentFanIn of it.
	recentFanIn = 4
	// defaultRecentMin is the number of entries "recent" may hold before
	// transactions start moving entries to "index". Below it, moving
	// would rewrite "index" leaves for a handful of entries each.
	defaultRecentMin = 4096
)

// idIndex reads the two-level index of one dataset in one transaction.
type idIndex struct {
	recent, main *bolt.Bucket // recent may be nil (a store written before the split, or nothing written yet)
}

func datasetIndex(b *bolt.Bucket) idIndex {
	return idIndex{recent: b.Bucket(bucketRecent), main: b.Bucket(bucketIndex)}
}

// get returns the index value of id, or nil.
func (x idIndex) get(id []byte) []byte {
	if x.recent != nil {
		if v := x.recent.Get(id); v != nil {
			return v
		}
	}
	return x.main.Get(id)
}

// forEach calls fn for every _id in key order with its current index
// value: the two levels merged, "recent" winning. fn must not change
// either bucket.
func (x idIndex) forEach(fn func(k, v []byte) error) error { return x.forEachFrom(nil, fn) }

// forEachFrom is forEach starting at the first _id >= start (nil: the
// first _id). fn may end the walk early by returning errStop.
func (x idIndex) forEachFrom(start []byte, fn func(k, v []byte) error) error {
	first := func(c *bolt.Cursor) ([]byte, []byte) {
		if start == nil {
			return c.First()
		}
		return c.Seek(start)
	}
	mc := x.main.Cursor()
	mk, mv := first(mc)
	var rk, rv []byte
	var rc *bolt.Cursor
	if x.recent != nil {
		rc = x.recent.Cursor()
		rk, rv = first(rc)
	}
	for mk != nil || rk != nil {
		switch c := cmpKeys(mk, rk); {
		case c < 0:
			if err := fn(mk, mv); err != nil {
				return err
			}
			mk, mv = mc.Next()
		case c > 0:
			if err := fn(rk, rv); err != nil {
				return err
			}
			rk, rv = rc.Next()
		default:
			if err := fn(rk, rv); err != nil {
				return err
			}
			mk, mv = mc.Next()
			rk, rv = rc.Next()
		}
	}
	return nil
}

// cmpKeys compares two cursor keys where nil (an exhausted cursor) sorts
// after everything.
func cmpKeys(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

// recentState is what steers moves out of "recent": its entry count and
// the key the next move starts from.
type recentState struct {
	n    uint64
	from []byte
}

func readRecentState(b *bolt.Bucket) recentState {
	v := b.Get(keyRecentState)
	if len(v) < 8 {
		return recentState{}
	}
	return recentState{n: binary.BigEndian.Uint64(v[:8]), from: bytes.Clone(v[8:])}
}

func (r recentState) encode() []byte {
	v := make([]byte, 8+len(r.from))
	binary.BigEndian.PutUint64(v, r.n)
	copy(v[8:], r.from)
	return v
}

// pendingVal is an index update waiting for commit.
type pendingVal struct {
	iv []byte
	// inRecent: the _id already has an entry in "recent" (the update
	// replaces it rather than adding one).
	inRecent bool
}

// flush writes the pending index updates, sorted, to "recent" and moves a
// slice of "recent" to "index". The transaction is writable whenever
// something is pending (Put upgrades it first).
func (st *dsState) flush() error {
	if len(st.pending) == 0 {
		return nil
	}
	if st.recent == nil {
		b, err := st.bucket.CreateBucketIfNotExists(bucketRecent)
		if err != nil {
			return fmt.Errorf("creating the recent index: %w", err)
		}
		st.recent = b
	}
	for i, k := range slices.Sorted(maps.Keys(st.pending)) {
		pv := st.pending[k]
		if err := st.recent.Put([]byte(k), pv.iv); err != nil {
			return fmt.Errorf("index %q: %w", k, err)
		}
		if !pv.inRecent {
			st.rstate.n++
			st.filter.add(k)
		}
		if i%boundEvery == boundEvery-1 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	clear(st.pending)
	if err := st.moveRecent(); err != nil {
		return err
	}
	return st.bucket.Put(keyRecentState, st.rstate.encode())
}

// moveRecent moves the next ceil(n/recentFanIn) entries of "recent" to
// "index", once "recent" holds more than the store's recentMin.
func (st *dsState) moveRecent() error {
	rs := &st.rstate
	if rs.n <= uint64(st.w.s.recentMin) {
		return nil
	}
	want := int((rs.n + recentFanIn - 1) / recentFanIn)
	// Copy the slice first: bbolt's cursor keys point into pages that
	// the writes below replace.
	type kv struct{ k, v []byte }
	moved := make([]kv, 0, want)
	c := st.recent.Cursor()
	fromFirst := len(rs.from) == 0
	k, v := c.Seek(rs.from)
	if k == nil && !fromFirst {
		k, v = c.First()
		fromFirst = true
	}
	for k != nil && len(moved) < want {
		kc := st.w.alloc(len(k))[:len(k)]
		copy(kc, k)
		vc := st.w.alloc(len(v))[:len(v)]
		copy(vc, v)
		moved = append(moved, kv{kc, vc})
		k, v = c.Next()
	}
	if k == nil {
		rs.from = rs.from[:0] // wrap: the next move starts at the first key
	} else {
		rs.from = append(rs.from[:0], k...)
	}
	for i, e := range moved {
		if err := st.index.Put(e.k, e.v); err != nil {
			return fmt.Errorf("index %q: %w", e.k, err)
		}
		if err := st.recent.Delete(e.k); err != nil {
			return fmt.Errorf("index %q: %w", e.k, err)
		}
		if i%boundEvery == boundEvery-1 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	switch n := uint64(len(moved)); {
	case k == nil && fromFirst:
		rs.n = 0 // everything from the first key on moved: "recent" is empty
	case n < rs.n:
		rs.n -= n
	default:
		rs.n = 0
	}
	return nil
}

// recentFilter is a Bloom filter over the keys of one dataset's "recent"
// index, kept in memory so that a write transaction's lookup of an _id
// that is not there (most lookups) skips the "recent" tree. Only write
// transactions use it: they run one at a time under the store's writer
// lock and see the latest committed state.
//
// It holds a superset of the keys in "recent" in every committed state:
// it is built from the bucket at the start of a write transaction (the
// latest committed state), and every key a transaction puts there is
// added before the commit. Keys moved out of "recent", or added by a
// transaction that rolled back, stay in it: harmless false positives,
// cleared when it is rebuilt.
type recentFilter struct {
	bloom *bloom.Filter
	built int // keys when built
	added int // keys added since
}

// recentFilterMinKeys sizes the smallest filter (4 KiB); a filter is
// rebuilt when more keys were added than it held when built, so rebuilds
// cost O(1) per key over time. A filter is 4 bytes per key of "recent"
// (a few tens of thousands of keys for a dataset loaded in transactions
// of 10,000).
const recentFilterMinKeys = 1 << 10

func newRecentFilter(keys int) *recentFilter {
	// Room to double, 16 bits a key: ~0.2% false positives.
	return &recentFilter{bloom: bloom.New(max(keys, recentFilterMinKeys) * 2 * 16), built: keys}
}

// stale reports whether so many keys were added that false positives
// make the filter worth rebuilding.
func (f *recentFilter) stale() bool {
	return f.added > max(f.built, recentFilterMinKeys)
}

func (f *recentFilter) add(id string) {
	h := xxh3.HashString128(id)
	f.bloom.Add(h.Lo, h.Hi)
	f.added++
}

func (f *recentFilter) mayHave(id string) bool {
	h := xxh3.HashString128(id)
	return f.bloom.MayHave(h.Lo, h.Hi)
}

// recentFilterFor returns dataset's filter, rebuilt from b's "recent"
// bucket when it is missing or stale. The caller holds the writer lock and
// b is in the latest committed state.
func (s *Store) recentFilterFor(dataset string, b *bolt.Bucket) *recentFilter {
	if f := s.filters[dataset]; f != nil && !f.stale() {
		return f
	}
	rb := b.Bucket(bucketRecent)
	f := newRecentFilter(int(readRecentState(b).n)) // the count only sizes it
	if rb != nil {
		rb.ForEach(func(k, _ []byte) error {
			f.add(string(k))
			return nil
		})
	}
	f.added = 0
	if s.filters == nil {
		s.filters = map[string]*recentFilter{}
	}
	s.filters[dataset] = f
	return f
}
