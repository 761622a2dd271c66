package boltstore

import (
	"bytes"
	"encoding/binary"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// logReader reads versions from a dataset's log tree with pread, as the
// transaction found it committed, instead of through the mapping:
// LatestMany reads versions all over the log, and through the mapping
// each was a page fault (27 µs apiece on the 2-core VM at 10M entities,
// where the memory bound keeps little of the log mapped; 27 of the 91 s
// of a run that deleted a million). Each read is one pread of a leaf
// (branch pages are read once and kept decoded), none when the next
// offset is on the leaf read last.
//
// The pages of the tree a write transaction started from do not change
// until it commits (bbolt writes changed pages elsewhere), so what it
// reads is what bbolt would give. Versions written in the transaction
// are not in that tree: get reports them missing and LatestMany reads
// them through bbolt, as it does anything a page that does not look
// right would have held.
type logReader struct {
	s        *Store
	root     uint64
	maxPage  uint64
	pageSize int
	branches map[uint64]*logBranch
	buf      []byte // the last page read
	// The leaf in buf (leafID 0: none) and its first and last keys.
	leafID      uint64
	count       int
	first, last uint64
	key         [8]byte
}

// logBranch is a branch page of a log tree: its children's first keys
// (offsets) and page ids.
type logBranch struct{ keys, children []uint64 }

// maxLogBranches bounds the branch pages a logReader keeps (~11 KB each
// with 16 KiB pages; a 10M-entity log has ~300).
const maxLogBranches = 1024

// newLogReader returns a reader of log (a bucket of tx), or nil where
// there is none: no file to read, or a tree without pages of its own.
func (s *Store) newLogReader(tx *bolt.Tx, log *bolt.Bucket) *logReader {
	root := uint64(log.Root())
	if s.pageFile == nil || root == 0 {
		return nil
	}
	info := s.db.Info()
	if info == nil {
		return nil
	}
	ps := info.PageSize
	return &logReader{s: s, root: root, maxPage: uint64(tx.Size()) / uint64(ps), pageSize: ps, branches: map[uint64]*logBranch{}, buf: make([]byte, ps)}
}

// get returns the stored version at offset off, valid until the next
// get; ok false when the tree does not hold it (or does not look right).
func (r *logReader) get(off uint64) ([]byte, bool) {
	if r.leafID == 0 || off < r.first || off > r.last {
		if !r.descend(off) {
			return nil, false
		}
	}
	binary.BigEndian.PutUint64(r.key[:], off)
	bad := false
	i := sort.Search(r.count, func(i int) bool {
		_, k, _, _, ok := leafElement(r.buf, i)
		if !ok {
			bad = true
			return true
		}
		return bytes.Compare(k, r.key[:]) >= 0
	})
	if bad || i == r.count {
		return nil, false
	}
	flags, k, val, vsize, ok := leafElement(r.buf, i)
	if !ok || flags&bucketLeafFlag != 0 || !bytes.Equal(k, r.key[:]) {
		return nil, false
	}
	return r.buf[val : val+vsize], true
}

// descend reads the leaf that would hold off into buf.
func (r *logReader) descend(off uint64) bool {
	r.leafID = 0
	id := r.root
	for range maxTreeDepth {
		b := r.branches[id]
		if b == nil {
			flags, count, _, ok := r.s.readPage(id, r.maxPage, r.pageSize, &r.buf)
			if !ok || count == 0 {
				return false
			}
			if flags == leafPageFlag {
				_, k0, _, _, ok0 := leafElement(r.buf, 0)
				_, k1, _, _, ok1 := leafElement(r.buf, int(count)-1)
				if !ok0 || !ok1 || len(k0) != 8 || len(k1) != 8 {
					return false
				}
				r.leafID, r.count = id, int(count)
				r.first, r.last = binary.BigEndian.Uint64(k0), binary.BigEndian.Uint64(k1)
				return true
			}
			if flags != branchPageFlag {
				return false
			}
			b = &logBranch{keys: make([]uint64, count), children: make([]uint64, count)}
			for i := range int(count) {
				k, child, ok := branchElement(r.buf, i)
				if !ok || len(k) != 8 {
					return false
				}
				b.keys[i], b.children[i] = binary.BigEndian.Uint64(k), child
			}
			if len(r.branches) >= maxLogBranches {
				clear(r.branches)
			}
			r.branches[id] = b
		}
		// The last child whose first key is <= off (the first when none
		// is), as bbolt's own search goes.
		i := max(sort.Search(len(b.keys), func(i int) bool { return b.keys[i] > off })-1, 0)
		id = b.children[i]
	}
	return false
}
