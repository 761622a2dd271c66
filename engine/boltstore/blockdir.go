package boltstore

import (
	"bytes"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// Reading index blocks with pread.
//
// A lookup in a run normally seeks bbolt's cursor to the block and reads
// it through bbolt's shared mapping of the file. Every page it touches
// then counts in the process's RSS, and the kernel maps neighbouring
// cached pages with it. When the runs of the datasets in use do not fit
// in what the resident bound leaves beside the heap (releaseIn finds
// that), lookups spread over all of them fault pages back in after every
// release: at 1M ids under a 150 MiB bound, or at 10M under the default,
// most of a lookup-heavy run's time went to faulting.
//
// In that case the store switches that dataset (Store.preadFlag) to
// reading a run's blocks with pread into the lookup's own buffer, until a
// release finds that its runs fit again. The file's pages stay
// in the kernel's page cache, where they do not count in RSS, and a
// lookup costs one system call (~2.5 µs here) instead of faults and
// releases. Where the runs fit, the mapping stays: a mapped block costs
// no call at all.
//
// To pread a block its place in the file must be known without the
// cursor. Each run keeps, once built, a blockDir: per block, the first
// key's 8-byte prefix, the block's file offset and size, and its xxh3
// (28 bytes per block of ~60 entries: ~5 MB at 10M ids).
// It is built with the cursor, inside a transaction, from the address
// bbolt's mapping gives each block (offset = address - mapping start).
//
// A run's blocks never change, but bbolt moves them: a leaf is written
// to a new page when a neighbouring key is put or deleted, and the old
// page is reused once no transaction can see it. So a directory can go
// stale, and a pread of a stale place may even race a write to it. The
// checksum decides: a block whose bytes hash as recorded is that block
// (whatever page it was read from, its content is the run's immutable
// content); any other read rebuilds the directory in the current
// transaction and, if it still does not match, the lookup takes the
// cursor. A block that is not in the mapping (written by the current
// write transaction, still in memory) means no directory for this
// transaction: its lookups take the cursor.
type blockDir struct {
	prefix []uint64 // each block's first key, its first 8 bytes
	off    []int64  // each block's offset in the file
	size   []uint32
	sum    []uint64 // each block's xxh3
}

// buildDir builds f's directory from rb as its transaction sees it, or
// returns nil if a block is not in the store's mapping.
func (s *Store) buildDir(rb *bolt.Bucket, f *runFile) *blockDir {
	info := s.db.Info()
	size := uintptr(rb.Tx().Size())
	if info == nil || info.Data == 0 || size == 0 {
		return nil
	}
	d := &blockDir{}
	if f.count > 0 {
		n := int(f.count/48) + 1 // bench-sized entries fill ~60 per block
		d.prefix, d.off = make([]uint64, 0, n), make([]int64, 0, n)
		d.size, d.sum = make([]uint32, 0, n), make([]uint64, 0, n)
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
		d.sum = append(d.sum, xxh3.Hash(v))
	}
	if len(d.off) == 0 {
		return nil
	}
	return d
}

// readBlockGet is runFile.get through the directory: ok false means the
// lookup must take the cursor instead.
func (f *runFile) readBlockGet(s *Store, rb *bolt.Bucket, id []byte, sc *lookupScratch) (v []byte, ok bool) {
	if s.pageFile == nil {
		return nil, false
	}
	txid := uint64(rb.Tx().ID()) + 1
	d := f.dir.Load()
	if d == nil {
		if f.noDirTx.Load() == txid {
			return nil, false
		}
		if d = s.buildDir(rb, f); d == nil {
			f.noDirTx.Store(txid)
			return nil, false
		}
		f.dir.Store(d)
	}
	p := keyPrefix(id)
	// The last block whose first key's prefix is <= id's; where prefixes
	// tie, the first key itself decides (below).
	i := sort.Search(len(d.prefix), func(j int) bool { return d.prefix[j] > p }) - 1
	rebuilt := false
	for i >= 0 {
		b, good := sc.readBlock(s, d, i)
		if !good {
			if rebuilt {
				return nil, false
			}
			// Stale: the blocks moved since the directory was built.
			if d = s.buildDir(rb, f); d == nil {
				f.dir.Store(nil)
				f.noDirTx.Store(txid)
				return nil, false
			}
			f.dir.Store(d)
			rebuilt = true
			i = sort.Search(len(d.prefix), func(j int) bool { return d.prefix[j] > p }) - 1
			continue
		}
		n := blockCount(b)
		if n == 0 {
			return nil, false
		}
		if k0, _ := blockEntry(b, n, 0); k0 == nil {
			return nil, false
		} else if bytes.Compare(k0, id) > 0 {
			i-- // the prefixes tie; the block before may hold id
			continue
		}
		return sc.keep(blockGet(b, id)), true
	}
	return nil, true // id sorts before the run's first block
}

// readBlock reads block i of d into sc's buffer; good is false if its
// bytes are not the block's.
func (sc *lookupScratch) readBlock(s *Store, d *blockDir, i int) (b []byte, good bool) {
	n := int(d.size[i])
	if cap(sc.buf) < n {
		sc.buf = make([]byte, n)
	}
	b = sc.buf[:n]
	if m, _ := s.pageFile.ReadAt(b, d.off[i]); m != n {
		return nil, false
	}
	return b, xxh3.Hash(b) == d.sum[i]
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

// preadFlag returns dataset name's flag: whether its lookups read run
// blocks with pread. The flag lives as long as the store.
func (s *Store) preadFlag(name string) *atomic.Bool {
	s.preadMu.Lock()
	defer s.preadMu.Unlock()
	f := s.pread[name]
	if f == nil {
		if s.pread == nil {
			s.pread = map[string]*atomic.Bool{}
		}
		f = &atomic.Bool{}
		f.Store(s.preadDefault)
		s.pread[name] = f
	}
	return f
}
