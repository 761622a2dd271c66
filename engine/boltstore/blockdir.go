package boltstore

import (
	"bytes"
	"math"
	"sort"
	"sync/atomic"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// Index blocks read through a directory, with pread or in the mapping.
//
// A lookup in a run used to seek bbolt's cursor to the block: three
// branch pages and a leaf, each first touch of a page header a cache and
// TLB miss. Each run now keeps, once built, a blockDir: per block, the
// first key's 8-byte prefix and the block's offset and size in the file
// (20 bytes per block of ~60 entries: ~4 MB at 10M ids). A lookup
// searches the prefixes in memory and reads the one block it needs:
//
//   - through bbolt's mapping, at the block's offset (the default);
//   - with pread into the lookup's own buffer, when the dataset's runs do
//     not fit in what the resident bound leaves beside the heap (a
//     release finds that; runReads). When part of them fits, blocks in
//     the part kept mapped are read there, the others with pread. Mapped, they would be
//     faulted back in after every release: at 1M ids under a 150 MiB
//     bound, or at 10M under the default, most of a lookup-heavy run's
//     time went to faulting. Read with pread, the blocks stay in the
//     kernel's page cache, where they do not count in RSS, at one system
//     call per lookup (~2.5 µs on the 2-core VM).
//
// A directory is built through the cursor inside a transaction, from the
// address bbolt's mapping gives each block (offset = address - mapping
// start). A run's blocks never change, but bbolt moves them: a leaf is
// written to a new page when a key near it is put or deleted, and the old
// page is reused once no open transaction can see it. Only a transaction
// that writes or drops runs changes the runs' buckets, and it records its
// id in Store.runsChanged before it commits. A directory built in
// snapshot B is therefore believed by a transaction of snapshot R when
// runsChanged <= B <= R: no run moved since B, and a move committed later
// (C > R) cannot reuse a page R can see until R ends. A directory older
// than runsChanged is rebuilt; one newer than R (built by a later reader)
// is not used by R, whose lookup takes the cursor. A block that is not in
// the mapping (written by the current write transaction, still in
// memory) means no directory for this transaction: its lookups take the
// cursor.
type blockDir struct {
	built  uint64   // the snapshot (transaction id) it was built in
	prefix []uint64 // each block's first key, its first 8 bytes
	off    []int64  // each block's offset in the file
	size   []uint32
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
	if info == nil || info.Data == 0 || size == 0 {
		return nil
	}
	d := &blockDir{built: snapshot(rb.Tx())}
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
		d.prefix = append(d.prefix, keyPrefix(k[len(prefix):]))
		d.off = append(d.off, int64(p-info.Data))
		d.size = append(d.size, uint32(len(v)))
	}
	if len(d.off) == 0 {
		return nil
	}
	return d
}

// dirBuildRoom is the room left below the resident bound before a
// directory is built. A build maps the leaves of one run (at most
// defaultRunEntries entries, ~2 MB of blocks, more with fault-around);
// checked only after each build, 10M lookups under a 150 MiB bound peaked
// at 156 MiB.
const dirBuildRoom = 8 << 20

// readBlockGet is runFile.get through the directory: ok false means the
// lookup must take the cursor instead. Blocks that start at or past the
// file offset mappedBelow are read with pread.
func (f *runFile) readBlockGet(s *Store, rb *bolt.Bucket, id []byte, sc *lookupScratch, mappedBelow int64) (v []byte, ok bool) {
	tx := rb.Tx()
	txid := uint64(tx.ID()) + 1
	snap := snapshot(tx)
	d := f.dir.Load()
	if d == nil || d.built < s.runsChanged.Load() {
		if f.noDirTx.Load() == txid {
			return nil, false
		}
		// A build maps the run's leaves, up to a few MB with the
		// kernel's fault-around: make room for it first, and check
		// again after it.
		s.boundAhead(tx, dirBuildRoom)
		if d = s.buildDir(rb, f); d == nil {
			f.noDirTx.Store(txid)
			return nil, false
		}
		f.dir.Store(d)
		s.boundMapped(tx)
	}
	if d.built > snap {
		return nil, false // built by a later snapshot than this one
	}
	p := keyPrefix(id)
	// The last block whose first key's prefix is <= id's; where prefixes
	// tie, the first key itself decides (below).
	for i := sort.Search(len(d.prefix), func(j int) bool { return d.prefix[j] > p }) - 1; i >= 0; i-- {
		pread := d.off[i] >= mappedBelow
		b := sc.block(s, tx, d, i, pread)
		n := blockCount(b)
		if n == 0 {
			return nil, false
		}
		if d.prefix[i] == p {
			// The prefixes tie: the block's first key may sort after id,
			// and the block before hold it. (A smaller prefix means a
			// smaller first key: no need to read it.)
			if k0, _ := blockEntry(b, n, 0); k0 == nil {
				return nil, false
			} else if bytes.Compare(k0, id) > 0 {
				continue
			}
		}
		if v = blockGet(b, id); pread {
			v = sc.keep(v)
		}
		return v, true
	}
	return nil, true // id sorts before the run's first block
}

// block returns block i of d: read into sc's buffer with pread, or the
// mapping's bytes (nil if it cannot be read).
func (sc *lookupScratch) block(s *Store, tx *bolt.Tx, d *blockDir, i int, pread bool) []byte {
	n, off := int(d.size[i]), d.off[i]
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

// keep copies v out of the lookup buffer, which the next read reuses:
// callers hold values as long as they hold the mapping's. Copies go into
// chunks that are never reused, so each stays valid.
func (sc *lookupScratch) keep(v []byte) []byte {
	if v == nil {
		return nil
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
type runReads struct{ below atomic.Int64 }

// allMapped is runReads' offset when every block is read in the mapping.
const allMapped = math.MaxInt64

func (r *runReads) mapAll()   { r.below.Store(allMapped) }
func (r *runReads) preadAll() { r.below.Store(0) }

// mapBelow has blocks that start below off read in the mapping, the
// others with pread.
func (r *runReads) mapBelow(off int64) { r.below.Store(off) }

// mappedBelow returns the offset below which blocks are read in the
// mapping (a nil r: all of them).
func (r *runReads) mappedBelow() int64 {
	if r == nil {
		return allMapped
	}
	return r.below.Load()
}

// anyPread reports whether some blocks are read with pread.
func (r *runReads) anyPread() bool { return r.mappedBelow() != allMapped }

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
		if s.preadDefault {
			f.preadAll()
		} else {
			f.mapAll()
		}
		s.pread[name] = f
	}
	return f
}
