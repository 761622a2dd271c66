package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"

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

// flush writes the pending index updates to "recent" and moves a slice of
// the index (the pending updates included) to "index". The transaction is
// writable whenever something is pending (Put upgrades it first).
//
// bbolt keeps a node's entries in one slice until commit splits it into
// pages, so every Put or Delete in the middle of a node shifts the rest of
// it: a transaction that piles many updates onto few nodes, then deletes
// a range of them, does quadratic work (a profile of a 100,000-entity REST
// collect spent 45% of its CPU in that shifting). flush therefore moves
// first, from committed nodes of page size (deleting in descending order,
// so that a node emptied from its end shifts nothing), and only then puts
// what is left; and when the transaction's updates are many against what
// "recent" holds, it rebuilds "recent" from the merged entries in key
// order, which are all appends.
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
	keys := slices.Sorted(maps.Keys(st.pending))
	n := st.rstate.n
	for _, k := range keys {
		if !st.pending[k].inRecent {
			n++
			st.filter.add(k)
		}
	}
	var err error
	if st.w.s.rebuildRecent(len(keys), st.rstate.n) {
		err = st.rebuild(keys, n)
	} else {
		err = st.update(keys, n)
	}
	clear(st.pending)
	if err != nil {
		return err
	}
	return st.bucket.Put(keyRecentState, st.rstate.encode())
}

// rebuildRecent decides how flush applies pending updates to a "recent"
// holding about inRecent entries: rebuild it (true) or update it in place.
// In place, a transaction's updates land on random leaves of "recent",
// pending/leaves each, and each one shifts its node: fine while that is a
// few dozen, quadratic when a large transaction meets a small "recent" (a
// first load, a circuit-breaker run in one transaction). A rebuild costs
// a copy of every entry, by appends, and writes every leaf full.
func (s *Store) rebuildRecent(pending int, inRecent uint64) bool {
	switch s.recentMode {
	case recentModeInPlace:
		return false
	case recentModeRebuild:
		return true
	}
	return uint64(pending)*rebuildRatio >= inRecent
}

// rebuildRatio: flush rebuilds "recent" when a transaction's index
// updates are at least 1/rebuildRatio of the entries there. In steady
// state "recent" holds about three transactions' worth, so ordinary
// transactions update in place. BenchmarkRecentFlush (CPU time per entity,
// 300,000 new ids): at 10,000 per transaction in place 5.2–5.6 µs, rebuilt
// every time 5.3–7.6 µs; at 100,000 per transaction in place 4.0–6.6 µs,
// rebuilt 3.2–3.9 µs.
const rebuildRatio = 2

// Test hooks for how flush applies updates (recentMode).
const (
	recentModeAuto = iota
	recentModeInPlace
	recentModeRebuild
)

// moveCount is how many entries a flush leaving n entries in the two
// levels' "recent" side moves to "index".
func (st *dsState) moveCount(n uint64) int {
	if n <= uint64(st.w.s.recentMin) {
		return 0
	}
	return int((n + recentFanIn - 1) / recentFanIn)
}

// mergedRecent walks "recent" and the sorted pending keys together in key
// order; a pending update wins over the committed entry of its _id.
type mergedRecent struct {
	st     *dsState
	c      *bolt.Cursor
	ck, cv []byte
	keys   []string
	pi     int
}

// next returns the next entry, copied where it points into bbolt's pages
// (the writes that follow replace them), and whether it has a committed
// entry in "recent". ok is false at the end.
func (m *mergedRecent) next() (k, v []byte, committed, ok bool) {
	switch {
	case m.ck == nil && m.pi == len(m.keys):
		return nil, nil, false, false
	case m.pi == len(m.keys) || (m.ck != nil && bytes.Compare(m.ck, []byte(m.keys[m.pi])) < 0):
		k, v = m.copy(m.ck), m.copy(m.cv)
		m.ck, m.cv = m.c.Next()
		return k, v, true, true
	}
	pk := m.keys[m.pi]
	m.pi++
	k = m.copy([]byte(pk))
	if m.ck != nil && string(m.ck) == pk {
		committed = true
		m.ck, m.cv = m.c.Next()
	}
	return k, m.st.pending[pk].iv, committed, true
}

// peek returns the key next would return, or nil at the end.
func (m *mergedRecent) peek() []byte {
	switch {
	case m.ck == nil && m.pi == len(m.keys):
		return nil
	case m.pi == len(m.keys) || (m.ck != nil && bytes.Compare(m.ck, []byte(m.keys[m.pi])) < 0):
		return m.ck
	}
	return []byte(m.keys[m.pi])
}

func (m *mergedRecent) copy(b []byte) []byte {
	c := m.st.w.alloc(len(b))[:len(b)]
	copy(c, b)
	return c
}

// startKey is where this flush's move starts: the stored rotation point,
// or the first key when nothing (committed or pending) is at or after it.
func (st *dsState) startKey(keys []string) []byte {
	from := st.rstate.from
	if len(from) == 0 {
		return nil
	}
	if len(keys) > 0 && keys[len(keys)-1] >= string(from) {
		return from
	}
	if k, _ := st.recent.Cursor().Last(); k != nil && bytes.Compare(k, from) >= 0 {
		return from
	}
	return nil
}

// update applies the pending updates (keys, sorted) in place: first the
// move of the next slice of the merged index to "index", then the
// remaining updates to "recent". n is the entry count with the pending
// updates applied.
func (st *dsState) update(keys []string, n uint64) error {
	if want := st.moveCount(n); want > 0 {
		from := st.startKey(keys)
		c := st.recent.Cursor()
		m := mergedRecent{st: st, c: c, keys: keys, pi: sort.SearchStrings(keys, string(from))}
		m.ck, m.cv = c.Seek(from)
		p0 := m.pi
		var del [][]byte // committed entries moved, to delete from "recent"
		moved := 0
		for moved < want {
			k, v, committed, ok := m.next()
			if !ok {
				break
			}
			if err := st.index.Put(k, v); err != nil {
				return fmt.Errorf("index %q: %w", k, err)
			}
			if committed {
				del = append(del, k)
			}
			moved++
			if moved%boundEvery == 0 {
				st.w.s.boundMapped(st.w.tx)
			}
		}
		next := m.peek()
		st.rstate.from = append(st.rstate.from[:0], next...) // empty at the end: the next move starts at the first key
		for i := len(del) - 1; i >= 0; i-- {
			if err := st.recent.Delete(del[i]); err != nil {
				return fmt.Errorf("index %q: %w", del[i], err)
			}
		}
		keys = slices.Delete(keys, p0, m.pi) // moved straight to "index"
		if next == nil && from == nil {
			n = 0 // everything moved
		} else {
			n -= uint64(min(uint64(moved), n))
		}
	}
	for i, k := range keys {
		if err := st.recent.Put([]byte(k), st.pending[k].iv); err != nil {
			return fmt.Errorf("index %q: %w", k, err)
		}
		if i%boundEvery == boundEvery-1 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	st.rstate.n = n
	return nil
}

// rebuild applies the pending updates (keys, sorted) by rewriting
// "recent": the merged entries in key order, less the slice that moves to
// "index", go into a new bucket by appends, its pages filled.
func (st *dsState) rebuild(keys []string, n uint64) error {
	want := st.moveCount(n)
	from := st.startKey(keys)
	c := st.recent.Cursor()
	m := mergedRecent{st: st, c: c, keys: keys}
	m.ck, m.cv = c.First()
	type kv struct{ k, v []byte }
	kept := make([]kv, 0, n)
	moved := 0
	var next []byte
	for i := 1; ; i++ {
		k, v, _, ok := m.next()
		if !ok {
			break
		}
		if i%boundEvery == 0 {
			st.w.s.boundMapped(st.w.tx)
		}
		if moved < want && bytes.Compare(k, from) >= 0 {
			if err := st.index.Put(k, v); err != nil {
				return fmt.Errorf("index %q: %w", k, err)
			}
			moved++
			continue
		}
		if next == nil && moved > 0 && bytes.Compare(k, from) >= 0 {
			next = k
		}
		kept = append(kept, kv{k, v})
	}
	st.rstate.from = append(st.rstate.from[:0], next...)
	st.w.s.bulk.Add(1)
	err := st.bucket.DeleteBucket(bucketRecent)
	st.w.s.bulk.Add(-1)
	if err != nil {
		return fmt.Errorf("rebuilding the recent index: %w", err)
	}
	b, err := st.bucket.CreateBucket(bucketRecent)
	if err != nil {
		return fmt.Errorf("rebuilding the recent index: %w", err)
	}
	b.FillPercent = 1.0
	st.recent = b
	for i, e := range kept {
		if err := b.Put(e.k, e.v); err != nil {
			return fmt.Errorf("index %q: %w", e.k, err)
		}
		if i%boundEvery == boundEvery-1 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	st.rstate.n = uint64(len(kept))
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
