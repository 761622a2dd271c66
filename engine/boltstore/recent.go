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

// The _id index of a dataset has these parts, newest first (a lookup
// takes the first entry it finds):
//
//   - "recent", a bbolt bucket: small transactions' updates;
//   - sorted runs in levels (runs.go): every larger write, and "recent"
//     once it holds the store's recentMin entries;
//   - "index", a bbolt bucket: the whole index of stores written before
//     the runs (store format 2 and older). Nothing writes it any more;
//     entries there are found when nothing newer has the _id.
//
// recentState's count steers when "recent" becomes a run; a wrong count
// would cost speed, never an answer. Its second field (where format 2
// moved entries from) is no longer used.
var (
	bucketRecent   = []byte("recent")
	keyRecentState = []byte("recent-state")
)

// idIndex reads the _id index of one dataset in one transaction.
type idIndex struct {
	recent, main *bolt.Bucket // either may be nil
	levels       runLevels
	rb           *bolt.Bucket // the runs' bucket (nil without runs)
	// sc, if set, is reused by lookups (one goroutine only).
	sc *lookupScratch
	// rf, if set, covers recent's keys in this transaction's state
	// (Store.viewFilter): an _id it rules out skips the tree.
	rf *recentFilter
}

// datasetIndex returns the index of dataset name (bucket b) as its
// transaction sees it.
func (s *Store) datasetIndex(b *bolt.Bucket, name string) (idIndex, error) {
	levels, rb, err := s.runsOf(b)
	if err != nil {
		return idIndex{}, err
	}
	return idIndex{recent: b.Bucket(bucketRecent), main: b.Bucket(bucketIndex), levels: levels, rb: rb, sc: &lookupScratch{s: s, reads: s.readsFor(name, levels)}}, nil
}

// get returns the index value of id, or nil.
func (x idIndex) get(id []byte) []byte { return x.getHashed(id, xxh3.Hash128(id)) }

// getHashed is get for an id whose xxh3-128 is h.
func (x idIndex) getHashed(id []byte, h xxh3.Uint128) []byte {
	if x.recent != nil && (x.rf == nil || x.rf.mayHave(h)) {
		if v := x.recent.Get(id); v != nil {
			return v
		}
	}
	return x.below(id, h)
}

// below looks id (hash h) up in the runs and "index", not in "recent".
func (x idIndex) below(id []byte, h xxh3.Uint128) []byte {
	if len(x.levels) > 0 {
		if v := x.levels.find(x.rb, id, h, x.sc); v != nil {
			return v
		}
	}
	if x.main != nil {
		return x.main.Get(id)
	}
	return nil
}

// forEach calls fn for every _id in key order with its current index
// value: all parts merged, the newest winning. fn must not change the
// index.
func (x idIndex) forEach(fn func(k, v []byte) error) error { return x.forEachFrom(nil, fn) }

// ixSource is one part of the index, walked in key order.
type ixSource interface {
	key() []byte
	val() []byte
	next()
}

type cursorSource struct {
	c    *bolt.Cursor
	k, v []byte
}

func (c *cursorSource) key() []byte { return c.k }
func (c *cursorSource) val() []byte { return c.v }
func (c *cursorSource) next()       { c.k, c.v = c.c.Next() }

func (it *runIter) key() []byte { return it.k }
func (it *runIter) val() []byte { return it.v }

// forEachFrom is forEach starting at the first _id >= start (nil: the
// first _id). fn may end the walk early by returning errStop.
func (x idIndex) forEachFrom(start []byte, fn func(k, v []byte) error) error {
	var srcs []ixSource // newest first
	var iters []*runIter
	cursor := func(b *bolt.Bucket) {
		if b == nil {
			return
		}
		c := &cursorSource{c: b.Cursor()}
		if start == nil {
			c.k, c.v = c.c.First()
		} else {
			c.k, c.v = c.c.Seek(start)
		}
		srcs = append(srcs, c)
	}
	run := func(fs []*runFile) {
		if len(fs) == 0 {
			return
		}
		it := newRunIter(x.rb, fs)
		it.seek(start)
		srcs = append(srcs, it)
		iters = append(iters, it)
	}
	cursor(x.recent)
	for i, lv := range x.levels {
		if i == 0 {
			for _, f := range lv {
				run([]*runFile{f})
			}
		} else {
			run(lv)
		}
	}
	cursor(x.main)
	for {
		var best ixSource
		var bk []byte
		for _, s := range srcs {
			if k := s.key(); k != nil && (best == nil || bytes.Compare(k, bk) < 0) {
				best, bk = s, k
			}
		}
		if best == nil {
			break
		}
		if err := fn(bk, best.val()); err != nil {
			return err
		}
		for _, s := range srcs {
			for k := s.key(); k != nil && bytes.Equal(k, bk); k = s.key() {
				s.next()
			}
		}
	}
	for _, it := range iters {
		if it.err != nil {
			return it.err
		}
	}
	return nil
}

// recentState is "recent"'s entry count. Format 2 stores follow it with
// the key their next move started from, which is no longer used.
type recentState struct {
	n uint64
}

func readRecentState(b *bolt.Bucket) recentState {
	v := b.Get(keyRecentState)
	if len(v) < 8 {
		return recentState{}
	}
	return recentState{n: binary.BigEndian.Uint64(v[:8])}
}

func (r recentState) encode() []byte {
	return binary.BigEndian.AppendUint64(nil, r.n)
}

// pendingVal is an index update waiting for commit.
type pendingVal struct {
	iv []byte
	// inRecent: the _id already has an entry in "recent" (the update
	// replaces it rather than adding one).
	inRecent bool
}

// flush applies the pending index updates: into "recent" when it stays
// under the store's recentMin entries, else as a new run with all of
// "recent" (runs.go). The transaction is writable whenever something is
// pending (Put upgrades it first).
func (st *dsState) flush() error {
	st.flushes++
	if len(st.pending) == 0 {
		return st.writeLevels() // a merge step installed alone (bgmerge.go)
	}
	keys := slices.Sorted(maps.Keys(st.pending))
	added := uint64(0)
	for _, k := range keys {
		if !st.pending[k].inRecent {
			added++
		}
	}
	var err error
	if st.rstate.n+added >= uint64(st.w.s.recentMin) {
		err = st.flushRun(keys)
	} else {
		err = st.putRecent(keys, added)
	}
	clear(st.pending)
	if err != nil {
		return err
	}
	if err := st.writeLevels(); err != nil {
		return err
	}
	return st.bucket.Put(keyRecentState, st.rstate.encode())
}

// writeLevels writes the list of index runs and the state of the merge of
// level 0 if they changed.
func (st *dsState) writeLevels() error {
	if st.levelsDirty {
		if err := st.bucket.Put(keyIxLevels, encodeLevels(st.levels)); err != nil {
			return fmt.Errorf("writing the list of index runs: %w", err)
		}
		var err error
		if st.l0m != nil {
			err = st.bucket.Put(keyL0Merge, st.l0m.encode())
		} else {
			err = st.bucket.Delete(keyL0Merge)
		}
		if err != nil {
			return fmt.Errorf("writing the state of the merge of index level 0: %w", err)
		}
		st.levelsDirty = false
	}
	return nil
}

// putRecent puts the pending updates (keys, sorted; added of them new to
// "recent") into "recent".
func (st *dsState) putRecent(keys []string, added uint64) error {
	if st.recent == nil {
		b, err := st.bucket.CreateBucketIfNotExists(bucketRecent)
		if err != nil {
			return fmt.Errorf("creating the recent index: %w", err)
		}
		st.recent = b
	}
	for i, k := range keys {
		pv := st.pending[k]
		if !pv.inRecent {
			st.filter.add(k)
		}
		if err := st.recent.Put([]byte(k), pv.iv); err != nil {
			return fmt.Errorf("index %q: %w", k, err)
		}
		if i%boundEvery == boundEvery-1 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	st.rstate.n += added
	return nil
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

// next returns the next entry; ok is false at the end. The slices stay
// valid until the transaction ends.
func (m *mergedRecent) next() (k, v []byte, ok bool) {
	switch {
	case m.ck == nil && m.pi == len(m.keys):
		return nil, nil, false
	case m.pi == len(m.keys) || (m.ck != nil && bytes.Compare(m.ck, []byte(m.keys[m.pi])) < 0):
		k, v = m.ck, m.cv
		m.ck, m.cv = m.c.Next()
		return k, v, true
	}
	pk := m.keys[m.pi]
	m.pi++
	if m.ck != nil && string(m.ck) == pk {
		m.ck, m.cv = m.c.Next()
	}
	return []byte(pk), m.st.pending[pk].iv, true
}

// recentFilter is a Bloom filter over the keys of one dataset's "recent"
// index, kept in memory so that a lookup of an _id that is not there (most
// lookups) skips the "recent" tree.
//
// It holds a superset of the keys in "recent" in every committed state
// from the one it was built from (at, a bbolt transaction id) on: it is
// built from the bucket at the start of a write transaction (the latest
// committed state), and every key a transaction puts there is added before
// the commit. Keys moved out of "recent", or added by a transaction that
// rolled back, stay in it: harmless false positives, cleared when it is
// rebuilt.
//
// Write transactions add to it and read it under the store's writer lock.
// Read views (ViewRaw) read it too, meanwhile: the bits are added and
// loaded atomically, and a view uses the filter only when its own state is
// at or after at (Store.viewFilter). A view of an older state asks the
// tree, as before.
type recentFilter struct {
	bloom *bloom.Filter
	built int    // keys when built
	added int    // keys added since (only the writer reads it)
	at    uint64 // the committed state it was built from (bbolt txid)
}

// recentFilterMinKeys sizes the smallest filter (4 KiB); a filter is
// rebuilt when more keys were added than it held when built, so rebuilds
// cost O(1) per key over time. A filter is 4 bytes per key of "recent"
// (a few tens of thousands of keys for a dataset loaded in transactions
// of 10,000).
const recentFilterMinKeys = 1 << 10

func newRecentFilter(keys int, at uint64) *recentFilter {
	// Room to double, 16 bits a key: ~0.2% false positives.
	return &recentFilter{bloom: bloom.New(max(keys, recentFilterMinKeys) * 2 * 16), built: keys, at: at}
}

// stale reports whether so many keys were added that false positives
// make the filter worth rebuilding.
func (f *recentFilter) stale() bool {
	return f.added > max(f.built, recentFilterMinKeys)
}

func (f *recentFilter) add(id string) {
	h := xxh3.HashString128(id)
	f.bloom.AddShared(h.Lo, h.Hi)
	f.added++
}

// mayHave reports whether the _id whose xxh3-128 is h may be in
// "recent".
func (f *recentFilter) mayHave(h xxh3.Uint128) bool {
	return f.bloom.MayHaveShared(h.Lo, h.Hi)
}

// recentFilterFor returns dataset's filter, rebuilt from b's "recent"
// bucket when it is missing or stale. The caller holds the writer lock and
// b is in the latest committed state: no write to this dataset yet in its
// transaction.
func (s *Store) recentFilterFor(dataset string, b *bolt.Bucket) *recentFilter {
	s.filtersMu.RLock()
	f := s.filters[dataset]
	s.filtersMu.RUnlock()
	if f != nil && !f.stale() {
		return f
	}
	rb := b.Bucket(bucketRecent)
	// The state b shows: a read transaction's ID is the state it reads,
	// a writable one's the state it will commit (writeTx begins read-only
	// and upgrades under the writer lock, so both read the same state).
	at := uint64(b.Tx().ID())
	if b.Tx().Writable() {
		at--
	}
	f = newRecentFilter(int(readRecentState(b).n), at) // the count only sizes it
	if rb != nil {
		rb.ForEach(func(k, _ []byte) error {
			f.add(string(k))
			return nil
		})
	}
	f.added = 0
	s.filtersMu.Lock()
	if s.filters == nil {
		s.filters = map[string]*recentFilter{}
	}
	s.filters[dataset] = f
	s.filtersMu.Unlock()
	return f
}

// viewFilter returns dataset's recent filter if it covers the committed
// state tx reads (see recentFilter), else nil. tx must have begun before
// the call.
func (s *Store) viewFilter(dataset string, tx *bolt.Tx) *recentFilter {
	s.filtersMu.RLock()
	f := s.filters[dataset]
	s.filtersMu.RUnlock()
	if f == nil || uint64(tx.ID()) < f.at {
		return nil
	}
	return f
}
