package boltstore

import (
	"bytes"
	"encoding/binary"
	"math"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// Index blocks read through a directory, with pread or in the mapping.
//
// A lookup in a run used to seek bbolt's cursor to the block: three
// branch pages and a leaf, each first touch of a page header a cache and
// TLB miss. Each run now keeps, once built, a blockDir: per block, the
// first key's 8-byte prefix and the block's offset and size in the file
// (20 bytes per block of ~55-70 entries: ~3-4 MB at 10M ids). A lookup
// searches the prefixes in memory and reads the one block it needs:
//
//   - through bbolt's mapping, at the block's offset (the default);
//   - with pread into the lookup's own buffer, when the dataset's runs do
//     not fit in what the resident bound leaves beside the heap (a
//     release finds that; runReads). When part of them fits, blocks in
//     the part kept mapped are read there, the others with pread.
//     Mapped, they would be faulted back in after every release: at 1M
//     ids under a 150 MiB bound, or at 10M under the default, most of a
//     lookup-heavy run's time went to faulting. Read with pread, the
//     blocks stay in the kernel's page cache, where they do not count in
//     RSS, at one system call per lookup (~2.5 µs on the 2-core VM).
//
// A directory is built through the cursor inside a transaction, from the
// address bbolt's mapping gives each block (offset = address - mapping
// start). A run's blocks never change, but bbolt moves them: a leaf is
// written to a new page when a key near it is put or deleted, and the old
// page is reused once no open transaction can see it. Only a transaction
// that writes or drops runs changes the runs' buckets; it records its id
// in Store.runsChanged before it commits, and once it has committed,
// checkMoves marks the runs whose blocks it may have moved
// (runFile.moved; dirmoves.go). A directory built in snapshot B is
// therefore believed by a transaction of snapshot R when moved <= B <= R
// and that check is done: no block of the run moved since B, and a move
// committed later (C > R) cannot reuse a page R can see until R ends. A
// stale directory is rebuilt; one newer than R (built by a later reader)
// is not used by R, whose lookup takes the cursor. A block that is not in
// the mapping (written by the current write transaction, still in
// memory) means no directory for this transaction: its lookups take the
// cursor.
//
// The prefixes are taken after the bytes every key of the run shares
// (skip: the common prefix of its first and last key). Ids like
// "customer-0001234" share their first 8 bytes, and a directory of those
// bytes would tie on every block: a lookup had to read its way back
// through the tied blocks one by one (a 1M unchanged re-sync of such ids
// took 4.0 s against 0.8 s for ids that differ early). Ties that remain
// (a run of several id families, each with a long prefix of its own) are
// searched by the blocks' first keys, in log steps.
type blockDir struct {
	built  uint64   // the snapshot (transaction id) it was built in
	skip   int      // the bytes every key of the run starts with (runFile.min[:skip])
	prefix []uint64 // each block's first key after skip, its next 8 bytes
	off    []int64  // each block's offset in the file
	size   []uint32
}

// runSkip is the length of the prefix every key of f shares: the common
// prefix of its first and last key (keys sort between them).
func runSkip(f *runFile) int {
	n := min(len(f.min), len(f.max))
	for i := range n {
		if f.min[i] != f.max[i] {
			return i
		}
	}
	return n
}

// add notes a block whose first key is k (the key in the runs' bucket
// after the run's block prefix) at off; false when k does not start
// with the run's shared prefix, which a run's block cannot.
func (d *blockDir) add(f *runFile, k []byte, off int64, size int) bool {
	if len(k) < d.skip || !bytes.Equal(k[:d.skip], f.min[:d.skip]) {
		return false
	}
	d.prefix = append(d.prefix, keyPrefix(k[d.skip:]))
	d.off = append(d.off, off)
	d.size = append(d.size, uint32(size))
	return true
}

// snapshot returns the id of the last commit tx sees.
func snapshot(tx *bolt.Tx) uint64 {
	if tx.Writable() {
		return uint64(tx.ID()) - 1
	}
	return uint64(tx.ID())
}

// buildDir builds f's directory from rb as its transaction sees it, or
// returns nil if a block is not in the store's mapping.
func (s *Store) buildDir(rb *bolt.Bucket, f *runFile) *blockDir {
	info := s.db.Info()
	size := uintptr(rb.Tx().Size())
	if info == nil || info.Data == 0 || size == 0 || rb.Root() == 0 {
		// (A bucket inline in its parent's leaf moves with that leaf,
		// which commits that write no run rewrite too.)
		return nil
	}
	d := &blockDir{built: snapshot(rb.Tx()), skip: runSkip(f)}
	if f.count > 0 {
		n := int(f.count/48) + 1 // bench-sized entries fill ~60 per block
		d.prefix, d.off, d.size = make([]uint64, 0, n), make([]int64, 0, n), make([]uint32, 0, n)
	}
	prefix := blockPrefix(f.id, 0)
	c := rb.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 0 {
			return nil
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
		if p < info.Data || p-info.Data+uintptr(len(v)) > size {
			return nil // in memory: written by this write transaction
		}
		if !d.add(f, k[len(prefix):], int64(p-info.Data), len(v)) {
			return nil
		}
	}
	if len(d.off) == 0 {
		return nil
	}
	return d
}

// buildDirFromFile builds f's directory as buildDir does, but from the
// file with pread instead of through the mapping: where a dataset's blocks
// are read with pread, a build through the mapping maps all of the run's
// leaves only to note where they are (at 10M ids under a 150 MiB bound,
// the builds at the start of a run mapped ~730 MB at ~1 MB/ms and outran
// the releases). It descends the bucket's B+tree from its root to the
// leaves that can hold the run's keys and reads each once; bbolt's page
// layout is read as keep.go reads it. Only in read transactions: a write
// transaction's changes are not in the file yet. Pages a transaction can
// reach are not rewritten while it is open, so the file holds what tx
// sees, and the directory is as good as one built through the mapping in
// the same snapshot. nil when something does not parse as expected; the
// caller then builds through the mapping.
func (s *Store) buildDirFromFile(rb *bolt.Bucket, f *runFile, sc *lookupScratch) *blockDir {
	tx := rb.Tx()
	root := uint64(rb.Root())
	if tx.Writable() || s.pageFile == nil || root == 0 {
		return nil
	}
	info := s.db.Info()
	if info == nil {
		return nil
	}
	pageSize := info.PageSize
	b := &dirBuild{s: s, f: f, maxPage: uint64(tx.Size()) / uint64(pageSize), pageSize: pageSize, prefix: blockPrefix(f.id, 0)}
	b.upper = append([]byte(nil), b.prefix...)
	binary.BigEndian.PutUint64(b.upper[1:], f.id+1) // f.id+1 < 2^64: run ids are a sequence
	b.d = &blockDir{built: snapshot(tx), skip: runSkip(f)}
	if f.count > 0 {
		n := int(f.count/48) + 1
		b.d.prefix, b.d.off, b.d.size = make([]uint64, 0, n), make([]int64, 0, n), make([]uint32, 0, n)
	}
	if cap(sc.buf) < pageSize {
		sc.buf = make([]byte, pageSize)
	}
	b.buf = sc.buf[:pageSize]
	if !b.visit(root, 0) || len(b.d.off) == 0 {
		return nil
	}
	sc.buf = b.buf[:0]
	return b.d
}

// dirBuild is one buildDirFromFile.
type dirBuild struct {
	s             *Store
	f             *runFile
	maxPage       uint64
	pageSize      int
	prefix, upper []byte // the run's keys are in [prefix, upper)
	buf           []byte
	d             *blockDir
}

// maxTreeDepth bounds the descent: a B+tree of 16 KiB pages this deep
// would hold more pages than any file.
const maxTreeDepth = 32

// visit adds the blocks under page id to the directory, in key order.
func (b *dirBuild) visit(id uint64, depth int) bool {
	if depth > maxTreeDepth {
		return false
	}
	flags, count, _, ok := b.s.readPage(id, b.maxPage, b.pageSize, &b.buf)
	if !ok {
		return false
	}
	page := b.buf
	switch flags {
	case leafPageFlag:
		base := int64(id) * int64(b.pageSize)
		for i := range int(count) {
			eflags, k, val, vsize, ok := leafElement(page, i)
			if !ok {
				return false
			}
			if bytes.Compare(k, b.upper) >= 0 {
				break
			}
			if !bytes.HasPrefix(k, b.prefix) {
				continue
			}
			if eflags != 0 || vsize == 0 {
				return false // a nested bucket, or an empty block: not a run's
			}
			if !b.d.add(b.f, k[len(b.prefix):], base+int64(val), int(vsize)) {
				return false
			}
		}
		return true
	case branchPageFlag:
		// Child i holds the keys in [key i, key i+1): visit those that
		// can hold keys in [prefix, upper). The page buffer is reused
		// below, so the children are noted first.
		var kids []uint64
		for i := range int(count) {
			key, child, ok := branchElement(page, i)
			if !ok {
				return false
			}
			if bytes.Compare(key, b.upper) >= 0 {
				break // this child and the next start past the run
			}
			if i+1 < int(count) {
				next, _, ok := branchElement(page, i+1)
				if !ok {
					return false
				}
				if bytes.Compare(next, b.prefix) <= 0 {
					continue // the next child starts at or before the run's first key
				}
			}
			kids = append(kids, child)
		}
		for _, c := range kids {
			if !b.visit(c, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// dirBuildRoom is the room left below the resident bound before a
// directory is built. A build maps the leaves of one run (at most
// defaultRunEntries entries, ~2 MB of blocks, more with fault-around);
// checked only after each build, 10M lookups under a 150 MiB bound peaked
// at 156 MiB.
const dirBuildRoom = 8 << 20

// writeDirAfter is how many lookups in write transactions a run without
// a current directory serves through the cursor before one is built.
// A write transaction builds through the mapping (its runs need not be
// in the file yet), which maps all of the run's leaves, 1-2 MB, and
// commits that move blocks make directories stale again: a 10M load,
// whose writer looks up only the _ids its filter cannot rule out, built
// 5,834 directories in 6.4 s, each for a lookup or two, and the
// resident memory they mapped between two checks took it to its bound.
// A writer that looks up many _ids (a transform re-run into a filled
// dataset) still gets the directory after this many.
const writeDirAfter = 64

// readBlockGet is runFile.get through the directory: ok false means the
// lookup must take the cursor instead. Blocks that start at or past the
// file offset mappedBelow are read with pread.
func (f *runFile) readBlockGet(s *Store, rb *bolt.Bucket, id []byte, sc *lookupScratch, mappedBelow int64) (v []byte, ok bool) {
	tx := rb.Tx()
	txid := uint64(tx.ID()) + 1
	snap := snapshot(tx)
	d := f.dir.Load()
	if d == nil || s.dirStale(f, d) {
		if f.noDirTx.Load() == txid {
			return nil, false
		}
		if tx.Writable() && f.dirMisses.Add(1) <= writeDirAfter {
			// The cursor, until the run has had writeDirAfter such
			// lookups (see writeDirAfter).
			return nil, false
		}
		// Where every block is read with pread, the directory is too.
		// (Where part of the runs stays mapped, a build through the
		// mapping measured better: 1M runs writing 10% under a 150 MiB
		// bound peaked at 144-151 MiB that way, 149-159 from the file.)
		d = nil
		if mappedBelow == 0 {
			d = s.buildDirFromFile(rb, f, sc)
		}
		if d == nil {
			// A build maps the run's leaves, up to a few MB with the
			// kernel's fault-around: make room for it first, and check
			// again after it.
			s.boundAhead(tx, dirBuildRoom)
			if d = s.buildDir(rb, f); d == nil {
				f.noDirTx.Store(txid)
				return nil, false
			}
		}
		f.dir.Store(d)
		f.dirMisses.Store(0)
		// After a build through the mapping, and after one from the
		// file too: lookups of the blocks kept mapped fault pages in
		// meanwhile, and builds are where a run's lookups check.
		s.boundMapped(tx)
	}
	if d.built > snap {
		return nil, false // built by a later snapshot than this one
	}
	if len(id) < d.skip || !bytes.Equal(id[:d.skip], f.min[:d.skip]) {
		return nil, true // every key of the run starts with those bytes
	}
	p := keyPrefix(id[d.skip:])
	// The last block whose first key's prefix is <= id's. Where prefixes
	// tie, its first key may sort after id and a block before hold it:
	// the tied blocks' first keys decide. (A smaller prefix means a
	// smaller first key: those need no reading.)
	i := sort.Search(len(d.prefix), func(j int) bool { return d.prefix[j] > p }) - 1
	if i >= 0 && d.prefix[i] == p {
		lo := sort.Search(i, func(j int) bool { return d.prefix[j] >= p })
		var ok bool
		if i, ok = sc.lastAtMost(s, tx, d, lo, i, id, mappedBelow); !ok {
			return nil, false
		}
	}
	if i < 0 {
		return nil, true // id sorts before the run's first block
	}
	pread := d.off[i] >= mappedBelow
	b := sc.block(s, tx, d, i, pread)
	if blockCount(b) == 0 {
		return nil, false
	}
	if v = blockGet(b, id, &sc.dec); pread || isCompact(b) {
		v = sc.keep(v)
	}
	return v, true
}

// lastAtMost returns the last of blocks lo..hi of d whose first key is
// <= id, lo-1 when none is; ok false when a block cannot be read or does
// not parse. It searches them in log steps, reading each block it probes.
func (sc *lookupScratch) lastAtMost(s *Store, tx *bolt.Tx, d *blockDir, lo, hi int, id []byte, mappedBelow int64) (i int, ok bool) {
	a, z := lo, hi+1 // the first key of block a-1 is <= id, that of block z is > id
	for a < z {
		m := int(uint(a+z) >> 1)
		b := sc.block(s, tx, d, m, d.off[m] >= mappedBelow)
		n := blockCount(b)
		if n == 0 {
			return 0, false
		}
		k0 := blockKey(b, n, 0)
		if k0 == nil {
			return 0, false
		}
		if bytes.Compare(k0, id) > 0 {
			z = m
		} else {
			a = m + 1
		}
	}
	return a - 1, true
}

// block returns block i of d: read into sc's buffer with pread, or the
// mapping's bytes (nil if it cannot be read).
func (sc *lookupScratch) block(s *Store, tx *bolt.Tx, d *blockDir, i int, pread bool) []byte {
	n, off := int(d.size[i]), d.off[i]
	sc.blockReads++
	if pread {
		if s.pageFile == nil {
			return nil
		}
		if cap(sc.buf) < n {
			sc.buf = make([]byte, n)
		}
		b := sc.buf[:n]
		if m, _ := s.pageFile.ReadAt(b, off); m != n {
			return nil
		}
		return b
	}
	return sc.mapped(s, tx, off, n)
}

// mapped returns n bytes of the file at off in tx's mapping, nil if
// they are not in it.
func (sc *lookupScratch) mapped(s *Store, tx *bolt.Tx, off int64, n int) []byte {
	if sc.tx != tx {
		// The mapping does not move while a transaction is open (a
		// remap waits for readers; a writer remaps only as it commits).
		info := s.db.Info()
		if info == nil {
			return nil
		}
		// The mapping's start as a pointer: it is not Go memory, so
		// the collector neither moves nor frees it.
		sc.tx, sc.base, sc.size = tx, *(*unsafe.Pointer)(unsafe.Pointer(&info.Data)), tx.Size()
	}
	if sc.base == nil || off < 0 || off+int64(n) > sc.size {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(sc.base, off)), n)
}

// warmHint is what warm found for one lookup: the mapped block of the
// bottom level that holds its _id if that level does (nil: not known
// without reading the file; the lookup finds it), and the _id's xxh3-128,
// which the lookup needs too.
type warmHint struct {
	b []byte
	h xxh3.Uint128
}

// lastLevelBlock returns the mapped block of the bottom level that holds
// id if that level does: the block a lookup that reaches the bottom level
// reads. nil when that is not known without reading the file (no
// directory yet, one built by a later snapshot or stale, first keys tied,
// the block read with pread).
func (x idIndex) lastLevelBlock(id []byte) []byte {
	sc := x.sc
	// Level 0's runs overlap; find searches it otherwise.
	if len(x.levels) < 2 || sc == nil || sc.s == nil {
		return nil
	}
	lv := x.levels[len(x.levels)-1]
	lo, hi := 0, len(lv) // the first run whose last key is >= id
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(lv[m].max, id) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(lv) || bytes.Compare(id, lv[lo].min) < 0 {
		return nil
	}
	f := lv[lo]
	d := f.dir.Load()
	tx := x.rb.Tx()
	if d == nil || d.built > snapshot(tx) || sc.s.dirStale(f, d) ||
		len(id) < d.skip || !bytes.Equal(id[:d.skip], f.min[:d.skip]) {
		return nil
	}
	p := keyPrefix(id[d.skip:])
	lo, hi = 0, len(d.prefix) // the first block whose prefix is > p
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.prefix[m] <= p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo - 1
	// Where id's prefix is a block's, readBlockGet reads first keys to
	// choose.
	if i < 0 || d.prefix[i] == p || d.off[i] >= sc.reads.mappedBelow() {
		return nil
	}
	return sc.mapped(sc.s, tx, d.off[i], int(d.size[i]))
}

// warmSpan is how much of a block's start warm touches first: a compact
// block's header, key-prefix table and offsets for ~70 entries, where a
// lookup's binary search goes.
const warmSpan = 448

// warm prepares the lookups of ids (in that order) in the bottom level:
// it finds the block each will read there (x.sc.warmHints) and touches the
// cache lines the lookup will read in it, each step for all ids in one
// tight loop, so that the cache and TLB misses of a group of lookups
// overlap where each lookup alone waits for its own. (At 1M _ids the runs
// are ~60 MB, far past the caches; the first touch of a block and of its
// entry were a fifth of an unchanged re-sync's CPU.) It changes nothing:
// the lookups read the same bytes after it.
func (x idIndex) warm(ids [][]byte) {
	sc := x.sc
	sc.warmHints = sc.warmHints[:0]
	// Where every block is read with pread (runs past the bound: 10M
	// _ids under 150 MiB) there is nothing to touch.
	mapped := sc.reads.mappedBelow() > 0
	for _, id := range ids {
		w := warmHint{h: xxh3.Hash128(id)}
		if mapped {
			w.b = x.lastLevelBlock(id)
		}
		sc.warmHints = append(sc.warmHints, w)
	}
	var sum byte
	for off := 0; off < warmSpan; off += 64 {
		for _, h := range sc.warmHints {
			if off < len(h.b) {
				sum += h.b[off]
			}
		}
	}
	// The entry a lookup will compare first: the table, now cached,
	// gives its offset. The offsets first, then the touches, in a loop
	// of loads that do not wait for each other.
	sc.entries = sc.entries[:0]
	for k, h := range sc.warmHints {
		if e := compactFirst(h.b, ids[k]); e < len(h.b) {
			sc.entries = append(sc.entries, h.b[e:e+1])
		}
	}
	for _, e := range sc.entries {
		sum += e[0]
	}
	sc.warmSum += sum
}

// compactFirst returns the offset in compact block b of the first entry
// whose key prefix is id's (where blockGet starts comparing keys), or
// len(b) if b is not a compact block or has none.
func compactFirst(b, id []byte) int {
	if !isCompact(b) {
		return len(b)
	}
	n := blockCount(b)
	if n == 0 {
		return len(b)
	}
	i := compactSearch(b, n, shortPrefix(id, int(b[3])))
	if i == n {
		return len(b)
	}
	return int(binary.BigEndian.Uint16(b[compactOffsets(n)+2*i:]))
}

// keep copies v out of the lookup buffer, which the next read reuses:
// callers hold values as long as they hold the mapping's. Copies go into
// chunks that are never reused, so each stays valid. With sc.transient
// it returns v as it is.
func (sc *lookupScratch) keep(v []byte) []byte {
	if v == nil || sc.transient {
		return v
	}
	if cap(sc.vals)-len(sc.vals) < len(v) {
		sc.vals = make([]byte, 0, max(16<<10, len(v)))
	}
	sc.vals = append(sc.vals, v...)
	return sc.vals[len(sc.vals)-len(v) : len(sc.vals) : len(sc.vals)]
}

// runReads says how lookups read one dataset's run blocks: through the
// mapping when a block starts below an offset of the file, with pread from
// there on. Releases set it (keep.go): all mapped when the runs fit in
// what the bound leaves beside the heap, the lowest of their pages mapped
// when only part of them fits, all read with pread when too little does.
// Both ways read the same bytes; the choice is only where they count.
type runReads struct {
	below atomic.Int64
	// decided is set once a release or readsFor has chosen.
	decided atomic.Bool
}

// allMapped is runReads' offset when every block is read in the mapping.
const allMapped = math.MaxInt64

func (r *runReads) mapAll()   { r.below.Store(allMapped); r.decided.Store(true) }
func (r *runReads) preadAll() { r.below.Store(0); r.decided.Store(true) }

// mapBelow has blocks that start below off read in the mapping, the
// others with pread.
func (r *runReads) mapBelow(off int64) { r.below.Store(off); r.decided.Store(true) }

// mappedBelow returns the offset below which blocks are read in the
// mapping (a nil r: all of them).
func (r *runReads) mappedBelow() int64 {
	if r == nil {
		return allMapped
	}
	return r.below.Load()
}

// minRunEntryBytes is no more than any index entry takes in a run block:
// in a compact one (block.go), a 4-byte table entry, a 2-byte offset, the
// key's length and at least 1 byte of key, at least 1 byte of varint and
// the 17 bytes of a 25-byte value after its first 8 (wide blocks take 14
// more).
const minRunEntryBytes = 26

// readsFor returns dataset name's runReads (reads), deciding it the first
// time when the dataset's runs are surely larger than the resident bound:
// then its lookups and directory builds use pread from the start, instead
// of mapping the runs until the first release (at 10M ids under a 150
// MiB bound, the directory builds at the start of a run mapped ~1 MB per
// millisecond until then).
func (s *Store) readsFor(name string, levels runLevels) *runReads {
	r := s.reads(name)
	if r.decided.Load() || s.residentLimit <= 0 {
		return r
	}
	var entries uint64
	for _, lv := range levels {
		for _, f := range lv {
			entries += f.count
		}
	}
	if int64(entries)*minRunEntryBytes > s.residentLimit {
		r.preadAll()
	}
	return r
}

// reads returns dataset name's runReads, which lives as long as the store.
func (s *Store) reads(name string) *runReads {
	s.preadMu.Lock()
	defer s.preadMu.Unlock()
	f := s.pread[name]
	if f == nil {
		if s.pread == nil {
			s.pread = map[string]*runReads{}
		}
		f = &runReads{}
		// Not decided yet: the first release (or readsFor) decides.
		if s.preadDefault {
			f.below.Store(0)
		} else {
			f.below.Store(allMapped)
		}
		s.pread[name] = f
	}
	return f
}
