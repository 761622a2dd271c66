package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/bloom"
)

// Sorted runs: the levels of the _id index below "recent".
//
// Index updates arrive with random _ids. Written into one B+tree, each
// lands on its own leaf and bbolt copies that whole page at commit; at a
// million entries that was most of an initial load's time (a load without
// any index writes ran at 4x the speed). Below "recent", the index is
// therefore a small log-structured merge tree kept inside the dataset's
// bucket, like LevelDB's levels:
//
//   - a run is an immutable sorted list of (_id, index value) entries,
//     stored as blocks of about 4 KB (bucket "ixruns", key 'b' + run id +
//     the block's first _id) and a description (key 'm' + run id: entry
//     count, first and last _id, a Bloom filter of its _ids);
//   - level 0 holds runs written by flushes, newest first; their key
//     ranges overlap. Levels 1 and up each hold runs with disjoint key
//     ranges, in key order, each level about levelRatio times the one
//     above;
//   - key "ixlevels" of the dataset's bucket lists each level's run ids.
//
// A flush that has at least the store's recentMin entries between "recent"
// and its own updates writes them as one new level-0 run and empties
// "recent" (smaller ones go into "recent", a B+tree, as before). Then
// compactions merge runs downwards: all of level 0 with level 1 when level
// 0 has l0Runs runs, and one run of a level over its size with the runs
// it overlaps in the next level. Merging writes runs sequentially, packed;
// a new _id costs a few copies of ~60 bytes instead of a page.
//
// Lookups ask, in order: the transaction's pending updates, "recent",
// level 0 newest first, each level (the one run whose range covers the
// _id), then "index" (what stores from before the runs hold; read-only
// now). The first entry found is the latest: every step writes newer
// entries above older ones, and a compaction replaces its inputs with
// their merge (the newest entry of each _id) in the same transaction.
// Bloom filters, kept in memory per run, skip runs that cannot hold the
// _id.
//
// Everything is in bbolt and changes in the writing transaction, so a
// crash leaves the index as the last commit left it. Runs are cached in
// memory by id (their descriptions never change); ids come from a
// store-wide sequence, so a rolled-back id is only reused by a run that
// was never cached.
var (
	bucketIxRuns = []byte("ixruns")
	keyIxLevels  = []byte("ixlevels")
	keyL0Merge   = []byte("ixl0merge")
)

const (
	// runBlockSize is the target size of a run's block: a block, its key
	// and the leaf header fit one 4 KiB page (the page size of older
	// files; four blocks fit a 16 KiB page).
	runBlockSize = 3800
	// defaultRecentMin: "recent" and a flush's updates together at least
	// this many become a run.
	defaultRecentMin = 8192
	// defaultL0Runs level-0 runs trigger their merge into level 1.
	defaultL0Runs = 16
	// defaultL1Entries is level 1's size; level i+1 is levelRatio times
	// level i.
	defaultL1Entries = 1 << 17
	levelRatio       = 8
	// defaultRunEntries is the size at which merges into levels >= 1
	// start a new run, so one run of a level overlaps few of the next.
	defaultRunEntries = 1 << 15
	// maxGrandOverlap: a merged run ends where it would overlap more than
	// this many runs' worth (defaultRunEntries each) of the level below.
	maxGrandOverlap = 4
	// defaultCompactBudget: a transaction stops compacting once it has
	// merged this many entries (at least one step runs), which bounds the
	// memory a commit holds.
	defaultCompactBudget = 1 << 17
	// runBloomBits is the size of a run's Bloom filter in bits a key
	// (bloom.NewExact): about 1.2% false positives, each costing one
	// block lookup. The filters stay in memory, 1.25 MB per million
	// entries; rounded up to a power of two, as before store format 5,
	// merged runs of 32,768 entries got 16 bits a key (0.24%), and a 10M
	// dataset's filters took 18 MB of a load's heap.
	runBloomBits = 10
)

// runFile describes one run. It never changes once written.
type runFile struct {
	id       uint64
	count    uint64
	min, max []byte
	bloom    *bloom.Filter
	// dir places the run's blocks in the file for lookups by pread
	// (blockdir.go); nil until built. noDirTx is 1 + the id of the
	// transaction in which it could not be built.
	dir     atomic.Pointer[blockDir]
	noDirTx atomic.Uint64
	// dirMisses counts the lookups of write transactions that found no
	// current directory since the last build (writeDirAfter).
	dirMisses atomic.Int64
	// moved is the id of the last commit that may have moved some of its
	// blocks in the file (checkMoves): a directory built before it is
	// stale.
	moved atomic.Uint64
}

// l0Merge is a merge of level 0 into level 1 in progress: it spans
// transactions so that a commit holds one step's output (a few times
// runEntries) instead of level 0 and level 1 rewritten at once. Its
// runs are the oldest of level 0 (newest first), there until the merge
// ends; every entry of theirs with a key <= done is merged into level 1,
// and every run of level 1 lies wholly on one side of done.
//
// Lookups need not know about it: an entry of runs with a key <= done is
// the newest of its _id in them, and the merge wrote exactly that entry
// to level 1, so whichever a lookup finds first gives the same value.
// Key "ixl0merge" of the dataset's bucket holds it (absent: no merge in
// progress); it names its runs, and one that does not name the oldest
// runs of level 0 (written by a version of Ferry that had merged them
// all at once) is ignored.
type l0Merge struct {
	runs []*runFile
	done []byte // nil: nothing merged yet
}

func (m *l0Merge) encode() []byte {
	v := binary.AppendUvarint(nil, uint64(len(m.runs)))
	for _, f := range m.runs {
		v = binary.BigEndian.AppendUint64(v, f.id)
	}
	if m.done == nil {
		return append(v, 0)
	}
	v = append(v, 1)
	return append(v, m.done...)
}

// decodeL0Merge reads a merge in progress for level 0 l0; nil if v
// names other runs than its oldest.
func decodeL0Merge(v []byte, l0 []*runFile) (*l0Merge, error) {
	bad := errors.New("corrupt state of the merge of index level 0")
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k)/8 < n || uint64(len(v)-k)-8*n < 1 {
		return nil, bad
	}
	v = v[k:]
	if n == 0 || n > uint64(len(l0)) {
		return nil, nil
	}
	m := &l0Merge{runs: l0[len(l0)-int(n):]}
	for _, f := range m.runs {
		if binary.BigEndian.Uint64(v) != f.id {
			return nil, nil
		}
		v = v[8:]
	}
	switch v[0] {
	case 0:
		if len(v) != 1 {
			return nil, bad
		}
	case 1:
		m.done = bytes.Clone(v[1:])
	default:
		return nil, bad
	}
	m.runs = slices.Clone(m.runs)
	return m, nil
}

// runLevels is an index's runs: [0] newest first, [i>0] by key.
type runLevels [][]*runFile

func (l runLevels) entries(level int) uint64 {
	var n uint64
	if level < len(l) {
		for _, f := range l[level] {
			n += f.count
		}
	}
	return n
}

func runMetaKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{'m'}, id)
}

// blockPrefix returns 'b' + id, with room for a key after it.
func blockPrefix(id uint64, extra int) []byte {
	p := make([]byte, 9, 9+extra)
	p[0] = 'b'
	binary.BigEndian.PutUint64(p[1:], id)
	return p
}

func encodeRunMeta(f *runFile) []byte {
	words := f.bloom.Words()
	v := make([]byte, 0, 8+2*binary.MaxVarintLen64+len(f.min)+len(f.max)+8*len(words))
	v = binary.BigEndian.AppendUint64(v, f.count)
	v = binary.AppendUvarint(v, uint64(len(f.min)))
	v = append(v, f.min...)
	v = binary.AppendUvarint(v, uint64(len(f.max)))
	v = append(v, f.max...)
	for _, w := range words {
		v = binary.LittleEndian.AppendUint64(v, w)
	}
	return v
}

func decodeRunMeta(id uint64, v []byte) (*runFile, error) {
	bad := fmt.Errorf("corrupt description of index run %d", id)
	if len(v) < 8 {
		return nil, bad
	}
	f := &runFile{id: id, count: binary.BigEndian.Uint64(v)}
	v = v[8:]
	for _, dst := range []*[]byte{&f.min, &f.max} {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return nil, bad
		}
		*dst = bytes.Clone(v[k : k+int(n)])
		v = v[k+int(n):]
	}
	if len(v)%8 != 0 {
		return nil, bad
	}
	words := make([]uint64, len(v)/8)
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(v[8*i:])
	}
	var ok bool
	if f.bloom, ok = bloom.FromWords(words); !ok {
		return nil, bad
	}
	return f, nil
}

func encodeLevels(l runLevels) []byte {
	var v []byte
	for _, lv := range l {
		v = binary.AppendUvarint(v, uint64(len(lv)))
		for _, f := range lv {
			v = binary.BigEndian.AppendUint64(v, f.id)
		}
	}
	return v
}

// runsOf reads the runs of the dataset bucket b as tx sees them.
func (s *Store) runsOf(b *bolt.Bucket) (runLevels, *bolt.Bucket, error) {
	v := b.Get(keyIxLevels)
	rb := b.Bucket(bucketIxRuns)
	if len(v) == 0 {
		return nil, rb, nil
	}
	if rb == nil {
		return nil, nil, errors.New("index runs listed but missing")
	}
	var l runLevels
	for len(v) > 0 {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k)/8 < n {
			return nil, nil, errors.New("corrupt list of index runs")
		}
		v = v[k:]
		lv := make([]*runFile, n)
		for i := range lv {
			f, err := s.runFile(rb, binary.BigEndian.Uint64(v))
			if err != nil {
				return nil, nil, err
			}
			lv[i] = f
			v = v[8:]
		}
		l = append(l, lv)
	}
	return l, rb, nil
}

// runFile returns run id's description, from the cache or rb.
func (s *Store) runFile(rb *bolt.Bucket, id uint64) (*runFile, error) {
	s.runMu.Lock()
	f := s.runCache[id]
	s.runMu.Unlock()
	if f != nil {
		return f, nil
	}
	v := rb.Get(runMetaKey(id))
	if v == nil {
		return nil, fmt.Errorf("index run %d is missing", id)
	}
	f, err := decodeRunMeta(id, v)
	if err != nil {
		return nil, err
	}
	s.runMu.Lock()
	if s.runCache == nil {
		s.runCache = map[uint64]*runFile{}
	}
	// One copy per run: another reader may have cached it meanwhile, and
	// marks (runFile.moved) go to the cached copy.
	if c := s.runCache[id]; c != nil {
		f = c
	} else if !s.runDropped[id] {
		s.runCache[id] = f
	}
	s.runMu.Unlock()
	return f, nil
}

// cacheRuns adds runs a committed transaction wrote and forgets those it
// replaced. A reader of an older state may still load a replaced run from
// its snapshot: runDropped keeps it from caching it again (which would
// keep it in memory for good), until no read transaction older than this
// commit can be open.
func (s *Store) cacheRuns(add, drop []*runFile) {
	if len(add)+len(drop) == 0 {
		return
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.runCache == nil {
		s.runCache = map[uint64]*runFile{}
	}
	if s.runDropped == nil {
		s.runDropped = map[uint64]bool{}
	}
	for _, f := range drop {
		delete(s.runCache, f.id)
		s.runDropped[f.id] = true
	}
	for _, f := range add {
		if !s.runDropped[f.id] && s.runCache[f.id] == nil {
			s.runCache[f.id] = f
		}
	}
	if s.db.Stats().OpenTxN == 0 {
		clear(s.runDropped)
	}
}

// lookupScratch is what a series of lookups in one transaction reuses:
// a cursor on the runs' bucket (bbolt grows a new cursor's stack on
// every seek) and the key buffer. Not safe for concurrent use.
type lookupScratch struct {
	rb  *bolt.Bucket
	c   *bolt.Cursor
	key []byte
	// hits: most lookups are expected to find their _id (read views of
	// text that mostly arrives unchanged), so the bottom level's Bloom
	// filter is not asked. It holds most _ids, and a check that passes
	// reads four words far apart; the filter only saves the seek of an
	// _id that is not there.
	hits bool
	// s is the store (nil: lookups take the cursor) and reads how the
	// dataset's blocks are read (Store.reads); buf and vals serve lookups
	// that read blocks with pread (blockdir.go), and lookups in compact
	// blocks, whose values are decoded into dec and kept in vals.
	s              *Store
	reads          *runReads
	buf, vals, dec []byte
	// transient: the caller is done with a value before its next
	// lookup, so values in buf and dec are not copied out (keep). A read
	// view of 1M _ids copied 41 MB that way, for the collector to free.
	transient bool
	// warmSum keeps warm's loads from being dropped as unused.
	warmSum byte
	// warmHints are warm's findings for a group of lookups; warmed, if
	// set, is the one for the lookup in progress (runLevels.find).
	// entries is warm's scratch.
	warmHints []warmHint
	warmed    *warmHint
	entries   [][]byte
	// tx, base and size: the mapping as tx has it (blockdir.go).
	tx   *bolt.Tx
	base unsafe.Pointer
	size int64
	// blockReads counts the blocks read through directories (tests).
	blockReads int
}

// find returns id's entry in the runs, or nil. h is id's xxh3-128.
func (l runLevels) find(rb *bolt.Bucket, id []byte, h xxh3.Uint128, sc *lookupScratch) []byte {
	for i, lv := range l {
		if i == 0 {
			for _, f := range lv {
				if bytes.Compare(id, f.min) >= 0 && bytes.Compare(id, f.max) <= 0 && f.bloom.MayHave(h.Lo, h.Hi) {
					if v := f.get(rb, id, sc); v != nil {
						return v
					}
				}
			}
			continue
		}
		if i == len(l)-1 && sc != nil && sc.warmed != nil && sc.hits && blockCount(sc.warmed.b) > 0 {
			// warm found the block: the one readBlockGet would read
			// (the bottom level's filter is not asked with hits).
			v := blockGet(sc.warmed.b, id, &sc.dec)
			if isCompact(sc.warmed.b) {
				v = sc.keep(v)
			}
			return v
		}
		j := sort.Search(len(lv), func(j int) bool { return bytes.Compare(lv[j].max, id) >= 0 })
		if j < len(lv) && bytes.Compare(id, lv[j].min) >= 0 && ((sc != nil && sc.hits && i == len(l)-1) || lv[j].bloom.MayHave(h.Lo, h.Hi)) {
			if v := lv[j].get(rb, id, sc); v != nil {
				return v
			}
		}
	}
	return nil
}

// get looks id up in the run: the block whose first key is the greatest
// <= id, then a binary search in it.
func (f *runFile) get(rb *bolt.Bucket, id []byte, sc *lookupScratch) []byte {
	if sc != nil && sc.s != nil {
		if v, ok := f.readBlockGet(sc.s, rb, id, sc, sc.reads.mappedBelow()); ok {
			return v
		}
	}
	var key []byte
	var c *bolt.Cursor
	if sc != nil {
		if sc.rb != rb {
			sc.rb, sc.c = rb, rb.Cursor()
		}
		c = sc.c
		sc.key = append(binary.BigEndian.AppendUint64(append(sc.key[:0], 'b'), f.id), id...)
		key = sc.key
	} else {
		key = append(blockPrefix(f.id, len(id)), id...)
		c = rb.Cursor()
	}
	k, v := seekFloor(c, key[:9], key)
	if k == nil {
		return nil
	}
	if sc == nil || !isCompact(v) {
		return blockGet(v, id, nil) // new memory, or the mapping's
	}
	return sc.keep(blockGet(v, id, &sc.dec))
}

// seekFloor moves c to the last key in [prefix, key] and returns it with
// its value (nil, nil if there is none). prefix is a run's block prefix
// and key starts with it, so the key found, if any, is a block of that
// run: the one holding key's entry, if the run has it.
//
// It is Seek, then Prev when key itself is not there; except that bbolt's
// Prev returns nil when it steps onto a leaf that a Delete of the same
// write transaction emptied (bbolt rebalances leaves only at commit; Next
// steps over empty leaves, Prev does not). A merge step run in the
// transaction that had just dropped the runs of another step met such
// leaves: it read nothing of an upper run past the key it resumed from,
// and that run's tail was lost from the index (10M loads with the levels
// far behind). So when Prev finds nothing, seekFloor walks forward from
// prefix instead. It does the same when Seek finds no key at or after
// key (never in a runs' bucket, where the runs' descriptions sort after
// their blocks), rather than call Last: in a transaction that emptied
// every leaf, bbolt's Last does not return (FuzzSeekFloor found it).
func seekFloor(c *bolt.Cursor, prefix, key []byte) (k, v []byte) {
	k, v = c.Seek(key)
	if k != nil {
		if bytes.Equal(k, key) {
			return k, v
		}
		if k, v = c.Prev(); k != nil {
			if bytes.Compare(k, prefix) < 0 {
				return nil, nil // the run has no block <= key
			}
			return k, v
		}
	}
	var floor []byte
	for k, _ = c.Seek(prefix); k != nil && bytes.Compare(k, key) <= 0; k, _ = c.Next() {
		floor = k
	}
	if floor == nil {
		return nil, nil
	}
	return c.Seek(floor)
}

// gatherBoundEvery: mergeRuns checks the bound every this many blocks
// (~256 KB, with fault-around up to a few MB) while it notes its sources'
// blocks. At 256 blocks a check of a merge beside the writer found the
// process at 148.6 MiB under a 150 MiB bound (logged from resident()):
// 10M loads peaked at 147.98-151.08 MiB (three of five past the bound);
// at 64, with mergeRoom at 6 MiB, at 146.62-146.90 in four.
const gatherBoundEvery = 64

// mergeRoom is the room below the bound at which a merge releases the
// mapping: between two checks it maps up to a few MB (the leaves of
// gatherBoundEvery blocks with the kernel's fault-around), which checks
// only past the bound would add to the peak.
const mergeRoom = 6 << 20

// runWriter writes a sorted stream of entries as runs of one level,
// starting a new run every maxEntries (0: one run).
type runWriter struct {
	// st is the dataset written to; nil: the writer keeps what it writes
	// in held, with run ids 0, for a write transaction to install
	// (merges beside the writer, bgmerge.go).
	st         *dsState
	held       []heldRun
	arena      arena // the blocks' memory when st is nil
	rb         *bolt.Bucket
	maxEntries uint64
	expect     uint64 // entries still to come, to size Bloom filters
	cur        *runFile
	out        []*runFile
	// grand is the level below the one written, gi the first of its runs
	// not yet passed, overlap the entries of those passed while writing
	// the current run (see merge).
	grand    []*runFile
	gi       int
	overlap  uint64
	maxGrand uint64
	blk      blockBuilder // the block being built
	first    []byte       // its first key
	// last is the key added last; it stays valid until the run ends (the
	// callers' keys live until the commit), which copies it as its max.
	last []byte
}

func (st *dsState) runsBucket() (*bolt.Bucket, error) {
	if st.rb != nil {
		return st.rb, nil
	}
	rb, err := st.bucket.CreateBucketIfNotExists(bucketIxRuns)
	if err != nil {
		return nil, fmt.Errorf("creating the index runs: %w", err)
	}
	rb.FillPercent = 1.0
	st.rb = rb
	return rb, nil
}

func (st *dsState) newRunWriter(expect, maxEntries uint64) (*runWriter, error) {
	rb, err := st.runsBucket()
	if err != nil {
		return nil, err
	}
	return &runWriter{st: st, rb: rb, maxEntries: maxEntries, expect: expect}, nil
}

func (rw *runWriter) add(k, v []byte) error {
	if rw.cur != nil && (rw.maxEntries > 0 && rw.cur.count >= rw.maxEntries || rw.grandFull(k)) {
		if err := rw.finishRun(); err != nil {
			return err
		}
		rw.overlap = 0
	}
	if rw.cur == nil {
		var id uint64
		if rw.st != nil {
			var err error
			if id, err = rw.st.w.tx.Bucket(bucketStore).NextSequence(); err != nil {
				return fmt.Errorf("numbering an index run: %w", err)
			}
		}
		n := rw.expect
		if rw.maxEntries > 0 {
			n = min(n, rw.maxEntries)
		}
		rw.cur = &runFile{id: id, min: bytes.Clone(k), bloom: bloom.NewExact(int(max(n, 64)) * runBloomBits)}
		if rw.st == nil {
			rw.held = append(rw.held, heldRun{f: rw.cur})
		}
	}
	if !rw.blk.fits(k, v) {
		if err := rw.flushBlock(); err != nil {
			return err
		}
	}
	if len(rw.blk.offs) == 0 {
		rw.first = append(rw.first[:0], k...)
	}
	if err := rw.blk.add(k, v); err != nil {
		return err
	}
	h := xxh3.Hash128(k)
	rw.cur.bloom.Add(h.Lo, h.Hi)
	rw.cur.count++
	rw.last = k
	if rw.expect > 0 {
		rw.expect--
	}
	return nil
}

// alloc returns an empty slice with capacity n for a block or its key:
// from the transaction's arena, or the writer's own when it holds what it
// writes.
func (rw *runWriter) alloc(n int) []byte {
	if rw.st != nil {
		return rw.st.w.alloc(n)
	}
	return rw.arena.alloc(n)
}

// flushBlock puts the block being built (or holds it). Its memory must
// live until the commit (bbolt keeps the slices): it comes from an arena.
func (rw *runWriter) flushBlock() error {
	if len(rw.blk.offs) == 0 {
		return nil
	}
	n := rw.blk.size()
	b := rw.alloc(n)[:n]
	rw.blk.encode(b)
	key := rw.alloc(9 + len(rw.first))[:9]
	key[0] = 'b'
	binary.BigEndian.PutUint64(key[1:], rw.cur.id)
	key = append(key, rw.first...)
	if rw.st == nil {
		h := &rw.held[len(rw.held)-1]
		h.keys, h.blocks = append(h.keys, key), append(h.blocks, b)
		return nil
	}
	if err := rw.rb.Put(key, b); err != nil {
		return fmt.Errorf("writing an index run: %w", err)
	}
	return nil
}

// grandFull reports whether the run being written, extended to k, would
// overlap more than maxGrand entries of the level below the one written.
func (rw *runWriter) grandFull(k []byte) bool {
	for rw.gi < len(rw.grand) && bytes.Compare(k, rw.grand[rw.gi].max) > 0 {
		if rw.cur != nil && rw.cur.count > 0 {
			rw.overlap += rw.grand[rw.gi].count
		}
		rw.gi++
	}
	return rw.maxGrand > 0 && rw.overlap > rw.maxGrand
}

func (rw *runWriter) finishRun() error {
	if rw.cur == nil {
		return nil
	}
	if err := rw.flushBlock(); err != nil {
		return err
	}
	rw.cur.max = bytes.Clone(rw.last)
	if rw.st != nil {
		if err := rw.rb.Put(runMetaKey(rw.cur.id), encodeRunMeta(rw.cur)); err != nil {
			return fmt.Errorf("writing an index run: %w", err)
		}
		rw.st.w.newRuns = append(rw.st.w.newRuns, rw.cur)
		rw.st.runsTouched = true
	}
	rw.out = append(rw.out, rw.cur)
	rw.cur = nil
	return nil
}

func (rw *runWriter) finish() ([]*runFile, error) {
	if err := rw.finishRun(); err != nil {
		return nil, err
	}
	return rw.out, nil
}

// runIter walks the entries of runs in order (runs in key order with
// disjoint ranges, or a single run).
type runIter struct {
	rb     *bolt.Bucket
	c      *bolt.Cursor
	files  []*runFile
	fi     int
	blk    []byte
	n, i   int
	k, v   []byte
	err    error
	prefix []byte
	dec    []byte // v, when decoded from a compact block
}

func newRunIter(rb *bolt.Bucket, files []*runFile) *runIter {
	return &runIter{rb: rb, c: rb.Cursor(), files: files}
}

// seek positions the iterator at the first entry >= start (nil: the
// first entry).
func (it *runIter) seek(start []byte) {
	it.fi = 0
	if start != nil {
		it.fi = sort.Search(len(it.files), func(j int) bool { return bytes.Compare(it.files[j].max, start) >= 0 })
	}
	if it.fi >= len(it.files) {
		it.k = nil
		return
	}
	f := it.files[it.fi]
	it.prefix = blockPrefix(f.id, 0)
	if start == nil || bytes.Compare(start, f.min) <= 0 {
		it.load(it.c.Seek(it.prefix))
	} else {
		key := append(blockPrefix(f.id, len(start)), start...)
		it.load(seekFloor(it.c, it.prefix, key))
	}
	for it.k != nil && bytes.Compare(it.k, start) < 0 {
		it.next()
	}
}

// load makes the block (k, v) current, or moves to the next run when k
// is not a block of the current one.
func (it *runIter) load(k, v []byte) {
	for {
		if k != nil && bytes.HasPrefix(k, it.prefix) && len(k) > 9 {
			it.blk, it.n, it.i = v, blockCount(v), 0
			if it.n == 0 {
				it.err = fmt.Errorf("corrupt block in index run %d", it.files[it.fi].id)
				it.k = nil
				return
			}
			it.entry()
			return
		}
		it.fi++
		if it.fi >= len(it.files) {
			it.k, it.v = nil, nil
			return
		}
		it.prefix = blockPrefix(it.files[it.fi].id, 0)
		k, v = it.c.Seek(it.prefix)
	}
}

func (it *runIter) entry() {
	it.k, it.v = blockEntry(it.blk, it.n, it.i, &it.dec)
	if it.k == nil {
		it.err = fmt.Errorf("corrupt block in index run %d", it.files[it.fi].id)
	}
}

func (it *runIter) next() {
	if it.k == nil {
		return
	}
	if it.i++; it.i < it.n {
		it.entry()
		return
	}
	it.load(it.c.Next())
}

// flushRun writes the pending updates (keys, sorted) and all of "recent"
// as a new level-0 run, empties "recent", and compacts.
func (st *dsState) flushRun(keys []string) error {
	var rc *bolt.Cursor
	m := mergedRecent{st: st, keys: keys}
	if st.recent != nil {
		rc = st.recent.Cursor()
		m.c = rc
		m.ck, m.cv = rc.First()
	}
	rw, err := st.newRunWriter(uint64(len(keys))+st.rstate.n, 0)
	if err != nil {
		return err
	}
	for i := 1; ; i++ {
		k, v, ok := m.next()
		if !ok {
			break
		}
		if err := rw.add(k, v); err != nil {
			return err
		}
		if i%(4*boundEvery) == 0 {
			st.w.s.boundMapped(st.w.tx)
		}
	}
	out, err := rw.finish()
	if err != nil {
		return err
	}
	if st.recent != nil {
		st.w.s.bulk.Add(1)
		err := st.bucket.DeleteBucket(bucketRecent)
		st.w.s.bulk.Add(-1)
		if err != nil {
			return fmt.Errorf("emptying the recent index: %w", err)
		}
		st.recent = nil
	}
	st.rstate = recentState{}
	if len(st.levels) == 0 {
		st.levels = runLevels{nil}
	}
	st.levels[0] = append(slices.Clone(out), st.levels[0]...)
	st.levelsDirty = true
	return st.compact()
}

// compact merges runs downwards while a level is over its size, until
// the transaction has merged the store's compactBudget entries. With
// merges beside the writer (the default), it installs the step that
// finished beside it, if any, and plans the next one, which starts once
// this transaction commits; it merges here only when the levels fall too
// far behind.
func (st *dsState) compact() error {
	s := st.w.s
	merged := 0
	if s.background {
		behind := st.behind()
		m, running := s.takeMerge(st.name, behind)
		switch {
		case m != nil:
			n, err := st.installMerge(m)
			if err != nil {
				return err
			}
			merged += n
		case running:
			return nil // one merge beside the writer at a time
		}
		if !st.behind() {
			p, err := st.planMerge(max(s.compactBudget, s.runEntries))
			st.bgPlan = p
			return err
		}
	}
	for merged < s.compactBudget {
		p, err := st.planMerge(max(s.compactBudget-merged, s.runEntries))
		if err != nil || p == nil {
			return err
		}
		rw, err := st.newRunWriter(0, uint64(s.runEntries))
		if err != nil {
			return err
		}
		r, err := mergeRuns(st.rb, p.step, rw, func() { s.boundAhead(st.w.tx, mergeRoom) })
		if err != nil {
			return err
		}
		if err := st.applyMerge(p, r); err != nil {
			return err
		}
		merged += r.n
	}
	return nil
}

// behind reports whether the levels fell so far behind their sizes that
// the writer merges itself rather than wait for merges beside it.
func (st *dsState) behind() bool {
	return len(st.levels) > 0 && len(st.levels[0]) >= 3*st.w.s.l0Runs || st.overSize(3) >= 0
}

// overSize returns the lowest level below 0 holding more than times its
// size (level 1: l1Entries, each next levelRatio times more), or -1.
func (st *dsState) overSize(times uint64) int {
	limit := uint64(st.w.s.l1Entries)
	for i := 1; i < len(st.levels); i++ {
		if st.levels.entries(i) > times*limit {
			return i
		}
		limit *= levelRatio
	}
	return -1
}

// mergePlan is one merge step: what it reads, and where its output goes.
type mergePlan struct {
	step mergeStep
	// l0 is the merge of level 0 this is a step of, as it stood when
	// planned; nil: the run step.upper[0][0] of level from is merged down.
	l0   *l0Merge
	from int
}

// planMerge returns the next merge step, or nil when every level is
// within its size. The level furthest over its size goes first (mostDue),
// as in LevelDB: a level left over its size while the levels above it
// are merged makes every merge into it long (a run of the level above
// overlaps more of it) and every lookup slower (level 0's runs are each
// asked). A step of the merge of level 0 stops once it read budget
// entries; see applyMerge.
func (st *dsState) planMerge(budget int) (*mergePlan, error) {
	from := st.mostDue()
	if from == 0 {
		m := st.l0m
		if m == nil {
			m = &l0Merge{runs: slices.Clone(st.levels[0])}
		}
		below, err := st.l1After(m.done)
		if err != nil {
			return nil, err
		}
		var upper [][]*runFile
		for _, f := range m.runs {
			upper = append(upper, []*runFile{f})
		}
		return &mergePlan{l0: m, step: mergeStep{upper: upper, after: m.done, below: below, grand: st.levelAt(2), stopAt: budget}}, nil
	}
	if from < 0 {
		return nil, nil
	}
	pick := st.cheapest(from)
	return &mergePlan{from: from, step: mergeStep{upper: [][]*runFile{{pick}}, below: st.overlapping(from+1, pick), grand: st.levelAt(from + 2)}}, nil
}

// cheapest returns the run of level i (>= 1) whose merge into the level
// below rewrites the fewest entries of that level per entry it moves
// down (RocksDB's "min overlapping ratio"; the oldest run on a tie). A
// run of a level written while the level below was small spans much of
// it once it grew; taking the oldest run first, as Ferry did, made such
// runs' long merges the rule at 10M ids. Levels below 0 are in key order
// with disjoint runs, so one pass over both finds every run's overlap.
func (st *dsState) cheapest(i int) *runFile {
	below := st.levelAt(i + 1)
	var pick *runFile
	var pickCost float64
	j := 0
	for _, f := range st.levels[i] {
		for j < len(below) && bytes.Compare(below[j].max, f.min) < 0 {
			j++
		}
		var over uint64
		for k := j; k < len(below) && bytes.Compare(below[k].min, f.max) <= 0; k++ {
			over += below[k].count
		}
		cost := float64(over) / float64(max(f.count, 1))
		if pick == nil || cost < pickCost || cost == pickCost && f.id < pick.id {
			pick, pickCost = f, cost
		}
	}
	return pick
}

// mostDue returns the level whose merge is most due, or -1 when none is:
// the one with the highest score of at least 1, level 0 scoring its runs
// over l0Runs (at least 1 while a merge of it is under way, so that the
// merge finishes) and each level below its entries over its size. Ties
// go to the upper level.
func (st *dsState) mostDue() int {
	s := st.w.s
	best, score := -1, 1.0
	if l0 := st.levelAt(0); len(l0) > 0 {
		sc := float64(len(l0)) / float64(s.l0Runs)
		if st.l0m != nil {
			sc = max(sc, 1)
		}
		if sc >= score {
			best, score = 0, sc
		}
	}
	limit := float64(s.l1Entries)
	for i := 1; i < len(st.levels); i++ {
		if sc := float64(st.levels.entries(i)) / limit; sc > score {
			best, score = i, sc
		}
		limit *= levelRatio
	}
	return best
}

// l1After returns the runs of level 1 past done (all: done nil), which a
// step of the merge of level 0 reads.
func (st *dsState) l1After(done []byte) ([]*runFile, error) {
	var below []*runFile
	for _, f := range st.levelAt(1) {
		if done != nil && bytes.Compare(f.max, done) <= 0 {
			continue
		}
		if done != nil && bytes.Compare(f.min, done) <= 0 {
			return nil, fmt.Errorf("index run %d of level 1 straddles the merge of level 0 (done to %q)", f.id, done)
		}
		below = append(below, f)
	}
	return below, nil
}

// overlapping returns the runs of level i that overlap run f's range.
func (st *dsState) overlapping(i int, f *runFile) []*runFile {
	var below []*runFile
	for _, g := range st.levelAt(i) {
		if bytes.Compare(g.max, f.min) >= 0 && bytes.Compare(g.min, f.max) <= 0 {
			below = append(below, g)
		}
	}
	return below
}

// applyMerge replaces a step's inputs with its output r.out, written in
// this transaction.
//
// A step of the merge of level 0 replaces the level-1 runs it read to
// their end; the level-0 runs stay until the last step drops them. Between
// steps level 0 still holds entries already merged; a lookup that finds
// one there finds the same value level 1 now has (see l0Merge), so that
// merge may span transactions and a commit holds one step's output, not
// the whole merge's.
func (st *dsState) applyMerge(p *mergePlan, r mergeResult) error {
	below := p.step.below
	if p.l0 == nil {
		pick := p.step.upper[0][0]
		if r.belowDone != len(below) || !r.finished {
			return fmt.Errorf("merging index run %d: %d of %d runs below merged", pick.id, r.belowDone, len(below))
		}
		if err := st.dropRuns(append([]*runFile{pick}, below...)); err != nil {
			return err
		}
		st.levels[p.from] = without(st.levels[p.from], []*runFile{pick})
		st.replaceIn(p.from+1, below, r.out)
		return nil
	}
	if err := st.dropRuns(below[:r.belowDone]); err != nil {
		return err
	}
	st.replaceIn(1, below[:r.belowDone], r.out)
	if r.finished {
		if err := st.dropRuns(p.l0.runs); err != nil {
			return err
		}
		st.levels[0] = without(st.levels[0], p.l0.runs)
		st.l0m = nil
	} else {
		st.l0m = &l0Merge{runs: p.l0.runs, done: r.last}
	}
	return nil
}

// levelAt returns level i's runs (nil past the last level).
func (st *dsState) levelAt(i int) []*runFile {
	if i < len(st.levels) {
		return st.levels[i]
	}
	return nil
}

// replaceIn replaces runs old of level i with runs add, keeping the
// level in key order.
func (st *dsState) replaceIn(i int, old, add []*runFile) {
	for len(st.levels) <= i {
		st.levels = append(st.levels, nil)
	}
	lv := append(without(st.levels[i], old), add...)
	slices.SortFunc(lv, func(a, b *runFile) int { return bytes.Compare(a.min, b.min) })
	st.levels[i] = lv
	st.levelsDirty = true
}

// without returns a copy of lv without the runs in drop.
func without(lv, drop []*runFile) []*runFile {
	return slices.DeleteFunc(slices.Clone(lv), func(f *runFile) bool {
		return slices.ContainsFunc(drop, func(d *runFile) bool { return d.id == f.id })
	})
}

func keyRange(fs []*runFile) (lo, hi []byte) {
	for i, f := range fs {
		if i == 0 || bytes.Compare(f.min, lo) < 0 {
			lo = f.min
		}
		if i == 0 || bytes.Compare(f.max, hi) > 0 {
			hi = f.max
		}
	}
	return lo, hi
}

// mergeStep is what one merge reads: upper, newest first (each a
// single run or a level's runs in key order; the newest entry of each
// _id wins), from the first key after after (nil: from the start); below,
// the runs of the level written to that overlap them, in key order and
// older than all of upper, read in whole runs; grand, the level below
// that one.
type mergeStep struct {
	upper [][]*runFile
	after []byte
	below []*runFile
	grand []*runFile
	// stopAt > 0 ends the step early: at the first end of a run of below
	// (or anywhere, where below has none) once stopAt entries were read.
	stopAt int
}

// mergeResult is what a step read and wrote: n entries read, the runs
// out it wrote, the last key it wrote, how many runs of below it read to
// their end (the first belowDone), and whether upper is read to its end.
type mergeResult struct {
	n         int
	out       []*runFile
	last      []byte
	belowDone int
	finished  bool
}

// mergeRuns writes the merge of a step's runs, from runs' bucket rb, as
// new runs with rw (whose maxEntries sets their size); bound, if not nil,
// is called now and then to bound the mapped memory. It reads every
// input block before writing: the blocks stay valid (they are in the
// mapped file, which changes only at commit) and no cursor walks the
// bucket while it changes.
//
// A new run also ends where it would overlap more than maxGrandOverlap
// entries of grand (the level below the one written), as in LevelDB: that
// bounds the step that later merges it one level down.
func mergeRuns(rb *bolt.Bucket, ms mergeStep, rw *runWriter, bound func()) (mergeResult, error) {
	type src struct {
		blocks [][]byte
		first  []bool // blocks[i] is the first block of a run
		bi, i  int
		k, v   []byte
		dec    []byte // v, when decoded from a compact block
	}
	var total uint64
	c := rb.Cursor()
	gather := func(s *src, f *runFile, after []byte) error {
		if after != nil && bytes.Compare(after, f.max) >= 0 {
			return nil
		}
		total += f.count
		p := blockPrefix(f.id, 0)
		k, v := c.Seek(p)
		if after != nil && bytes.Compare(after, f.min) > 0 {
			// Start at the block holding the first key after after: the
			// last block whose first key is <= after.
			key := append(blockPrefix(f.id, len(after)), after...)
			k, v = seekFloor(c, p, key)
		}
		for n := 0; k != nil && bytes.HasPrefix(k, p) && len(k) > 9; k, v = c.Next() {
			if blockCount(v) == 0 {
				return fmt.Errorf("corrupt block in index run %d", f.id)
			}
			s.blocks = append(s.blocks, v)
			s.first = append(s.first, n == 0)
			// Noting where each block is maps the runs' leaves, tens
			// of MB in a few ms at 10M ids: check the bound as it goes
			// (a release leaves the slices valid; the merge below
			// faults what it reads back in).
			if n++; bound != nil && n%gatherBoundEvery == 0 {
				bound()
			}
		}
		return nil
	}
	var srcs []*src
	for _, fs := range ms.upper {
		s := &src{}
		for _, f := range fs {
			if err := gather(s, f, ms.after); err != nil {
				return mergeResult{}, err
			}
		}
		srcs = append(srcs, s)
	}
	upper := srcs
	var low *src
	if len(ms.below) > 0 {
		low = &src{}
		for _, f := range ms.below {
			if err := gather(low, f, nil); err != nil {
				return mergeResult{}, err
			}
		}
		srcs = append(srcs, low)
	}
	step := func(s *src) error {
		for s.bi < len(s.blocks) {
			if s.i < blockCount(s.blocks[s.bi]) {
				s.k, s.v = blockEntry(s.blocks[s.bi], blockCount(s.blocks[s.bi]), s.i, &s.dec)
				s.i++
				if s.k == nil {
					return errors.New("corrupt block in an index run")
				}
				return nil
			}
			s.bi, s.i = s.bi+1, 0
		}
		s.k, s.v = nil, nil
		return nil
	}
	for _, s := range srcs {
		if err := step(s); err != nil {
			return mergeResult{}, err
		}
		for s != low && s.k != nil && ms.after != nil && bytes.Compare(s.k, ms.after) <= 0 {
			if err := step(s); err != nil {
				return mergeResult{}, err
			}
		}
	}
	// atRunStart: low is between two of its runs (its next entry is a
	// run's first, or it has none left).
	atRunStart := func() bool {
		return low == nil || low.k == nil || low.i == 1 && low.first[low.bi]
	}
	upperDone := func() bool {
		for _, s := range upper {
			if s.k != nil {
				return false
			}
		}
		return true
	}
	rw.expect, rw.grand, rw.maxGrand = total, ms.grand, maxGrandOverlap*rw.maxEntries
	var r mergeResult
	var last []byte
	for {
		if atRunStart() && (upperDone() || ms.stopAt > 0 && r.n >= ms.stopAt) {
			break
		}
		var best *src
		for _, s := range srcs {
			if s.k != nil && (best == nil || bytes.Compare(s.k, best.k) < 0) {
				best = s
			}
		}
		if best == nil {
			break
		}
		k, v := best.k, best.v
		if err := rw.add(k, v); err != nil {
			return mergeResult{}, err
		}
		last = k
		for _, s := range srcs {
			// best is the first (newest) source holding k.
			for s.k != nil && bytes.Equal(s.k, k) {
				r.n++
				if err := step(s); err != nil {
					return mergeResult{}, err
				}
			}
		}
		if bound != nil && r.n%(4*boundEvery) == 0 {
			bound()
		}
	}
	var err error
	if r.out, err = rw.finish(); err != nil {
		return mergeResult{}, err
	}
	r.finished = upperDone()
	r.last = bytes.Clone(last)
	if low != nil {
		r.belowDone = len(ms.below)
		if low.k != nil {
			r.belowDone = 0
			for _, f := range low.first[:low.bi] {
				if f {
					r.belowDone++
				}
			}
		}
	}
	return r, nil
}

// dropRuns deletes runs' blocks and descriptions (last key first, so
// that emptying a node from its end shifts nothing).
func (st *dsState) dropRuns(fs []*runFile) error {
	// Both loops map the runs' leaves (tens of MB at once at 10M ids):
	// they check the bound as a merge does.
	s := st.w.s
	c := st.rb.Cursor()
	var keys [][]byte
	for _, f := range fs {
		p := blockPrefix(f.id, 0)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(k) > 9; k, _ = c.Next() {
			if keys = append(keys, k); len(keys)%gatherBoundEvery == 0 {
				s.boundAhead(st.w.tx, mergeRoom)
			}
		}
		keys = append(keys, runMetaKey(f.id))
	}
	slices.SortFunc(keys, bytes.Compare)
	for i := len(keys) - 1; i >= 0; i-- {
		if err := st.rb.Delete(keys[i]); err != nil {
			return fmt.Errorf("dropping index runs: %w", err)
		}
		if i%gatherBoundEvery == 0 {
			s.boundAhead(st.w.tx, mergeRoom)
		}
	}
	st.w.dropRuns = append(st.w.dropRuns, fs...)
	st.runsTouched = true
	return nil
}

// checkL0Merge verifies the merge of level 0 in progress in dataset
// bucket b, if any: every run of level 1 lies wholly on one side of the
// key it has merged to.
func checkL0Merge(b *bolt.Bucket, levels runLevels) error {
	v := b.Get(keyL0Merge)
	if v == nil || len(levels) == 0 {
		return nil
	}
	m, err := decodeL0Merge(v, levels[0])
	if err != nil || m == nil || m.done == nil || len(levels) < 2 {
		return err
	}
	for _, f := range levels[1] {
		if bytes.Compare(f.min, m.done) <= 0 && bytes.Compare(f.max, m.done) > 0 {
			return fmt.Errorf("index run %d of level 1 straddles the merge of level 0 (done to %q)", f.id, m.done)
		}
	}
	return nil
}

// checkRuns verifies the runs of one index: each run's blocks hold its
// count of entries in strictly increasing key order within its range,
// its Bloom filter may hold every one of them (a filter that says no to a
// key of its run hides that key from lookups), and the runs of each level
// below 0 are in key order with disjoint ranges.
func (x idIndex) checkRuns() error {
	for i, lv := range x.levels {
		for j, f := range lv {
			it := newRunIter(x.rb, []*runFile{f})
			it.seek(nil)
			var n uint64
			var prev []byte
			for ; it.k != nil; it.next() {
				if n > 0 && bytes.Compare(prev, it.k) >= 0 {
					return fmt.Errorf("index run %d (level %d): keys out of order at %q", f.id, i, it.k)
				}
				if bytes.Compare(it.k, f.min) < 0 || bytes.Compare(it.k, f.max) > 0 {
					return fmt.Errorf("index run %d (level %d): key %q outside its range", f.id, i, it.k)
				}
				if len(it.v) != indexValSize && len(it.v) != indexValRaw {
					return fmt.Errorf("index run %d (level %d): corrupt entry for %s", f.id, i, engine.QuoteID(string(it.k)))
				}
				if h := xxh3.Hash128(it.k); !f.bloom.MayHave(h.Lo, h.Hi) {
					return fmt.Errorf("index run %d (level %d): its Bloom filter does not hold %q", f.id, i, it.k)
				}
				prev, n = it.k, n+1
			}
			if it.err != nil {
				return it.err
			}
			if n != f.count {
				return fmt.Errorf("index run %d (level %d): %d entries, its description says %d", f.id, i, n, f.count)
			}
			if i > 0 && j > 0 && bytes.Compare(lv[j-1].max, f.min) >= 0 {
				return fmt.Errorf("index runs %d and %d of level %d overlap or are out of order", lv[j-1].id, f.id, i)
			}
		}
	}
	return nil
}
