package boltstore

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Releasing the mapping (see releaseIn) drops every page of the file from
// the process's page tables, including the _id index pages that the next
// lookups need again at once. Page faults then dominate a run that looks
// up every entity. The store therefore keeps the index pages of the
// datasets it used recently ("hot") mapped when it releases, as far as
// they fit in the resident bound, and releases the rest (log pages, mostly
// mapped as neighbours of index pages by the kernel's fault-around).

// hotDatasets remembers which datasets' indexes were used recently.
type hotDatasets struct {
	mu   sync.Mutex
	seen map[string]time.Time
	// pages is each index tree's size in pages when last walked, so a
	// release does not walk a tree that cannot fit.
	pages map[string]int
	// overflow is, for each index tree walked leaf by leaf, the overflow
	// of every leaf in its last walk (walkIndex).
	overflow map[string]map[uint64]uint32
	// walks holds the last complete walk of each small index tree
	// (keepRuns).
	walks map[string]treeWalk
}

// treeWalk is an index tree's pages as a walk found them, under the root
// page it started from.
type treeWalk struct {
	root             uint64
	branches, leaves []uint64
}

// maxWalkCached is the most pages a tree may have for its walk to be kept
// (up to three trees a hot dataset, dropped when it cools): a release walks
// every hot dataset's trees, and with thousands of small datasets hot the
// walks' preads took a fifth of a run's CPU, though most trees had not
// changed. A tree whose root page is the one it had is taken to be the
// tree walked. Should a changed tree have got its old root page back, the
// release keeps some other pages mapped instead of its own, until the
// root moves again: only which pages stay mapped depends on the walks,
// never what a lookup reads. Large trees are walked each time (their walk
// is rarer next to their use, and their page lists would stay on the
// heap).
const maxWalkCached = 1024

func (h *hotDatasets) walk(key string, root uint64) (treeWalk, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.walks[key]
	return w, ok && w.root == root
}

func (h *hotDatasets) setWalk(key string, w treeWalk) {
	h.mu.Lock()
	if h.walks == nil {
		h.walks = map[string]treeWalk{}
	}
	h.walks[key] = w
	h.mu.Unlock()
}

func (h *hotDatasets) overflows(name string) map[uint64]uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.overflow[name]
}

func (h *hotDatasets) setOverflows(name string, o map[uint64]uint32) {
	h.mu.Lock()
	if h.overflow == nil {
		h.overflow = map[string]map[uint64]uint32{}
	}
	h.overflow[name] = o
	h.mu.Unlock()
}

func (h *hotDatasets) lastPages(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pages[name]
}

func (h *hotDatasets) setPages(name string, n int) {
	h.mu.Lock()
	if h.pages == nil {
		h.pages = map[string]int{}
	}
	h.pages[name] = n
	h.mu.Unlock()
}

// hotFor is how long a dataset counts as hot after its index was used.
const hotFor = 30 * time.Second

func (h *hotDatasets) mark(name string) {
	h.mu.Lock()
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	h.seen[name] = time.Now()
	h.mu.Unlock()
}

// list returns the hot datasets, most recently used first, forgetting
// those used longer than hotFor ago.
func (h *hotDatasets) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	names := make([]string, 0, len(h.seen))
	for n, t := range h.seen {
		if now.Sub(t) > hotFor {
			delete(h.seen, n)
			delete(h.pages, n)
			delete(h.pages, recentKey(n))
			delete(h.pages, runsKey(n))
			delete(h.overflow, runsKey(n))
			delete(h.walks, n)
			delete(h.walks, recentKey(n))
			delete(h.walks, runsKey(n))
			continue
		}
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return h.seen[b].Compare(h.seen[a]) })
	return names
}

// pageRun is a run of pages [start, end).
type pageRun struct{ start, end uint64 }

// Page layout (bbolt's on-disk format, host byte order: little-endian on
// every platform Ferry releases for): id(8) flags(2) count(2)
// overflow(4), then for branch pages count elements of pos(4) ksize(4)
// pgid(8).
const (
	pageHeaderSize    = 16
	branchElementSize = 16
	branchPageFlag    = 0x01
	leafPageFlag      = 0x02
)

// branchElement returns element i of a branch page: its key (the first key
// of the child's subtree) and the child's page id; ok false if it does not
// fit in page.
func branchElement(page []byte, i int) (key []byte, child uint64, ok bool) {
	e := pageHeaderSize + i*branchElementSize
	if e < 0 || e+branchElementSize > len(page) {
		return nil, 0, false
	}
	pos := int(binary.LittleEndian.Uint32(page[e:]))
	ksize := int(binary.LittleEndian.Uint32(page[e+4:]))
	k0 := e + pos
	if k0 < e || k0+ksize < k0 || k0+ksize > len(page) {
		return nil, 0, false
	}
	return page[k0 : k0+ksize], binary.LittleEndian.Uint64(page[e+8:]), true
}

// leafElementSize is a leaf element: flags(4) pos(4) ksize(4) vsize(4).
const leafElementSize = 16

// leafElement returns element i of a leaf page: its flags (1: a nested
// bucket), its key, and where in page its value starts and how long it is;
// ok false if it does not fit in page.
func leafElement(page []byte, i int) (flags uint32, key []byte, val, vsize int, ok bool) {
	e := pageHeaderSize + i*leafElementSize
	if e < 0 || e+leafElementSize > len(page) {
		return 0, nil, 0, 0, false
	}
	flags = binary.LittleEndian.Uint32(page[e:])
	pos := int(binary.LittleEndian.Uint32(page[e+4:]))
	ksize := int(binary.LittleEndian.Uint32(page[e+8:]))
	vsize = int(binary.LittleEndian.Uint32(page[e+12:]))
	k0 := e + pos
	if k0 < e || k0+ksize < k0 || k0+ksize+vsize < k0+ksize || k0+ksize+vsize > len(page) {
		return 0, nil, 0, 0, false
	}
	return flags, page[k0 : k0+ksize], k0 + ksize, vsize, true
}

// partialKeepMin: a release keeps part of a dataset's index runs mapped
// when at least 1/partialKeepMin of their leaves fit in its budget; with
// less, every lookup reads its block with pread.
const partialKeepMin = 4

// keepRuns returns the sorted, merged page runs of the hot datasets'
// index trees as tx sees them: as many whole trees as fit in budget bytes,
// and the lowest leaves of index runs of which only part fits. It reads
// branch pages with pread from the file: tx pins them, so they cannot
// change meanwhile.
func (s *Store) keepRuns(tx *bolt.Tx, pageSize int, budget int64) []pageRun {
	if s.pageFile == nil {
		return nil
	}
	if budget <= 0 {
		for _, name := range s.hot.list() {
			s.reads(name).preadAll() // nothing fits, the runs least of all
		}
		s.notePressure(true)
		return nil
	}
	root := tx.Bucket(bucketDatasets)
	if root == nil {
		return nil
	}
	maxPage := uint64(tx.Size()) / uint64(pageSize)
	var pages []uint64
	buf := make([]byte, pageSize)
	hot := s.hot.list()
	// The hot datasets' buckets and their index trees' roots, read with
	// pread as the trees are (treeRoots); nil when the file's pages do not
	// look right, and then looked up through the mapping.
	roots := s.treeRoots(uint64(root.Root()), hot, maxPage, pageSize, &buf)
	for _, name := range hot {
		var b *bolt.Bucket
		if roots == nil {
			if b = root.Bucket([]byte(name)); b == nil {
				continue
			}
		} else if _, ok := roots[name]; !ok {
			continue
		}
		// The parts of the index (recent.go): "recent" first, the
		// smaller and the more used, then the runs, then "index" (stores
		// from before the runs). The runs' leaves hold blocks of more than
		// a page: their headers are read for the overflow.
		for _, tree := range [...]struct {
			bucket []byte
			key    string
			leaves bool
		}{{bucketRecent, recentKey(name), false}, {bucketIxRuns, runsKey(name), true}, {bucketIndex, name, false}} {
			var treeRoot uint64
			if roots != nil {
				treeRoot = roots[name][string(tree.bucket)]
			} else if ib := b.Bucket(tree.bucket); ib != nil {
				treeRoot = uint64(ib.Root())
			}
			if treeRoot == 0 {
				continue // absent, or inline in its dataset's bucket
			}
			// Runs that do not fit are read with pread from now on
			// (blockdir.go): mapped, they would be faulted back in after
			// every release. Runs that fit again are mapped again.
			var reads *runReads
			if tree.leaves {
				reads = s.reads(name)
			}
			room := int(budget/int64(pageSize)) - len(pages)
			// An index grows by a fraction between releases: if it did
			// not fit last time by more than that, do not read it again
			// (the runs: unless part of them would fit, below).
			if last := s.hot.lastPages(tree.key); last*7/8 > room && (reads == nil || room < last/partialKeepMin) {
				if reads != nil {
					reads.preadAll()
					s.notePressure(true)
				}
				continue
			}
			w, ok := s.hot.walk(tree.key, treeRoot)
			branches, leaves := w.branches, w.leaves
			if !ok {
				if branches, leaves, ok = s.walkIndex(tree.key, treeRoot, maxPage, pageSize, buf, tree.leaves, room); !ok {
					continue
				}
				// (A walk of the runs past room did not read the leaves'
				// overflow: not complete, not kept.)
				if n := len(branches) + len(leaves); n <= maxWalkCached && (!tree.leaves || n <= room) {
					s.hot.setWalk(tree.key, treeWalk{treeRoot, branches, leaves})
				}
			}
			s.hot.setPages(tree.key, len(branches)+len(leaves))
			if len(branches)+len(leaves) > room {
				// Keeping part of a B+tree saves little: its lookups
				// spread over all of it, and a lookup that misses the
				// part kept faults. The runs' blocks can be read either
				// way, so their lowest pages stay mapped, as many as
				// fit, and lookups of blocks past them use pread.
				if reads == nil {
					continue
				}
				fit := room - len(branches)
				if fit < len(leaves)/partialKeepMin {
					reads.preadAll()
					s.notePressure(true)
					continue
				}
				leaves = slices.Clone(leaves) // a kept walk's is shared
				slices.Sort(leaves)
				reads.mapBelow(int64(leaves[fit]) * int64(pageSize))
				s.notePressure(true)
				pages = append(pages, branches...)
				pages = append(pages, leaves[:fit]...)
				continue
			}
			if reads != nil {
				reads.mapAll()
			}
			pages = append(pages, branches...)
			pages = append(pages, leaves...)
		}
	}
	if len(pages) == 0 {
		return nil
	}
	slices.Sort(pages)
	runs := make([]pageRun, 0, len(pages)/2+1)
	for _, p := range pages {
		if n := len(runs); n > 0 && runs[n-1].end >= p {
			runs[n-1].end = max(runs[n-1].end, p+1)
			continue
		}
		runs = append(runs, pageRun{p, p + 1})
	}
	return runs
}

// indexTrees are the names of a dataset's index trees, sorted, as
// treeRoots looks them up.
var indexTrees = func() [][]byte {
	t := [][]byte{bucketRecent, bucketIxRuns, bucketIndex}
	slices.SortFunc(t, bytes.Compare)
	return t
}()

// treeRoots returns, for each of the datasets named in hot that the
// "datasets" bucket rooted at page root holds, the root pages of its index
// trees (indexTrees; a tree inline in its dataset's bucket or absent has
// none). It reads the buckets' pages with pread, as walkIndex reads the
// trees: a release that looked each hot dataset's bucket up through the
// mapping faulted a page of each back in, with the kernel's fault-around
// up to 64 KiB, and with 3,000 datasets, all hot in a run of their 3,000
// pipes, that mapped more than the release dropped (peaks of 230-240 MiB
// under a 150 MiB bound) and took a third of the run's CPU. nil when a
// page does not look right (or root is 0, an inline bucket). Like the
// walks, it reads the last commit: in a write transaction a dataset it
// dropped is still found, which only keeps its pages mapped a little
// longer.
func (s *Store) treeRoots(root uint64, hot []string, maxPage uint64, pageSize int, buf *[]byte) map[string]map[string]uint64 {
	if root == 0 {
		return nil
	}
	want := make([][]byte, len(hot))
	for i, name := range hot {
		want[i] = []byte(name)
	}
	slices.SortFunc(want, bytes.Compare)
	dsRoots := make(map[string]uint64, len(want))
	if !s.findBuckets(root, maxPage, pageSize, buf, want, dsRoots, 0) {
		return nil
	}
	out := make(map[string]map[string]uint64, len(dsRoots))
	for name, r := range dsRoots {
		trees := make(map[string]uint64, len(indexTrees))
		if r != 0 && !s.findBuckets(r, maxPage, pageSize, buf, indexTrees, trees, 0) {
			return nil
		}
		out[name] = trees
	}
	return out
}

// bucketLeafFlag marks a leaf element that is a nested bucket: its value
// starts with the bucket's root page id, 0 for a bucket inline in the
// value.
const bucketLeafFlag = 0x01

// findBuckets notes in found the root page of each nested bucket named in
// want (sorted) that the B+tree rooted at page id holds, descending only
// into subtrees whose key range holds a wanted name. Pages are read with
// pread into *buf; false when one does not look right.
func (s *Store) findBuckets(id, maxPage uint64, pageSize int, buf *[]byte, want [][]byte, found map[string]uint64, depth int) bool {
	if depth > maxTreeDepth || len(want) == 0 {
		return depth <= maxTreeDepth
	}
	flags, count, _, ok := s.readPage(id, maxPage, pageSize, buf)
	if !ok {
		return false
	}
	page := *buf
	// atOrAfter is the index of the first wanted name >= k.
	atOrAfter := func(k []byte) int {
		i, _ := slices.BinarySearchFunc(want, k, bytes.Compare)
		return i
	}
	switch flags {
	case leafPageFlag:
		for i := range int(count) {
			ef, k, val, vsize, ok := leafElement(page, i)
			if !ok {
				return false
			}
			if ef&bucketLeafFlag == 0 {
				continue
			}
			if j := atOrAfter(k); j < len(want) && bytes.Equal(want[j], k) {
				if vsize < 8 {
					return false
				}
				found[string(k)] = binary.LittleEndian.Uint64(page[val:])
			}
		}
		return true
	case branchPageFlag:
		// Child i holds the keys in [key i, key i+1). The page buffer is
		// reused below, so the children to visit are noted first.
		var kids []uint64
		lo := 0
		for i := range int(count) {
			_, child, ok := branchElement(page, i)
			if !ok {
				return false
			}
			hi := len(want)
			if i+1 < int(count) {
				next, _, ok := branchElement(page, i+1)
				if !ok {
					return false
				}
				hi = atOrAfter(next)
			}
			if lo < hi {
				kids = append(kids, child)
			}
			lo = hi
		}
		for _, c := range kids {
			if !s.findBuckets(c, maxPage, pageSize, buf, want, found, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// walkIndex collects the branch pages (with their overflow) and the leaf
// pages of the B+tree rooted at id. Leaves are the children of the lowest
// branch level (the tree is balanced); with overflow false they are taken
// to be one page each and not read, so only branch pages cost a read,
// else each leaf's header is read for its overflow pages (key names the
// tree for the overflows remembered from its last walk). ok is false if a
// page does not look right, in which case nothing is kept for this tree.
//
// When the branches and leaves alone already exceed room pages, the
// leaves' headers are not read: the tree cannot be kept anyway, and the
// count returned is a lower bound. (At 10M ids the runs have tens of
// thousands of leaves: reading each header made the first release of an
// unchanged run take ~0.4 s, while its lookups mapped the process to 157
// MiB under a 150 MiB bound; the run's 12 releases took 3.5 s, now 0.2 s.)
func (s *Store) walkIndex(key string, id, maxPage uint64, pageSize int, buf []byte, overflow bool, room int) (branches, leaves []uint64, ok bool) {
	branches, leaves, ok = s.walkTree(id, maxPage, pageSize, buf)
	if !ok || !overflow || len(branches)+len(leaves) > room {
		return branches, leaves, ok
	}
	// A leaf's overflow is read once, with pread, then taken from the
	// tree's last walk while the leaf is in it: a 1M dataset's runs have
	// ~5,000 leaves, and under a tight bound a run writing 10% releases
	// before most commits, which read every header each time (0.5 s of
	// preads a run). A leaf page freed and reused since may have another
	// overflow, remembered for as long as the page stays a leaf of the
	// tree; that only changes which pages stay mapped, never what a lookup
	// reads (in files of 16 KiB pages, the default, only leaves of run
	// descriptions overflow, and lookups do not read them). (Reading the headers in the mapping instead faulted in
	// the leaves not mapped before the release dropped anything: 1M jq
	// runs under 150 MiB peaked at 157-188.)
	last := s.hot.overflows(key)
	next := make(map[uint64]uint32, len(leaves))
	var hdr [pageHeaderSize]byte
	all := make([]uint64, 0, len(leaves))
	for _, p := range leaves {
		n, known := last[p]
		if !known {
			if _, err := s.pageFile.ReadAt(hdr[:], int64(p)*int64(pageSize)); err != nil || binary.LittleEndian.Uint64(hdr[:]) != p {
				return nil, nil, false
			}
			n = binary.LittleEndian.Uint32(hdr[12:])
		}
		if p+uint64(n) >= maxPage {
			return nil, nil, false
		}
		next[p] = n
		for i := uint64(0); i <= uint64(n); i++ {
			all = append(all, p+i)
		}
	}
	s.hot.setOverflows(key, next)
	return branches, all, true
}

// walkTree is walkIndex without reading leaves.
func (s *Store) walkTree(id, maxPage uint64, pageSize int, buf []byte) (branches, leaves []uint64, ok bool) {
	// Find the depth along the leftmost path.
	var level []uint64
	cur := id
	for {
		flags, count, _, ok := s.readPage(cur, maxPage, pageSize, &buf)
		if !ok {
			return nil, nil, false
		}
		if flags == leafPageFlag {
			if cur == id {
				return nil, []uint64{id}, true
			}
			break
		}
		if flags != branchPageFlag || count == 0 {
			return nil, nil, false
		}
		cur = binary.LittleEndian.Uint64(buf[pageHeaderSize+8:])
		level = append(level, cur)
	}
	// Breadth-first over branch levels; the last level's children are leaves.
	depth := len(level) // number of branch levels
	frontier := []uint64{id}
	for d := 0; d < depth; d++ {
		var next []uint64
		for _, p := range frontier {
			flags, count, overflow, ok := s.readPage(p, maxPage, pageSize, &buf)
			if !ok || flags != branchPageFlag {
				return nil, nil, false
			}
			for i := uint64(0); i <= uint64(overflow); i++ {
				branches = append(branches, p+i)
			}
			for i := 0; i < int(count); i++ {
				_, child, ok := branchElement(buf, i)
				if !ok || child >= maxPage {
					return nil, nil, false
				}
				next = append(next, child)
			}
		}
		frontier = next
	}
	return branches, frontier, true
}

// readPage reads page id (with its overflow) into *buf and returns its
// header fields.
func (s *Store) readPage(id, maxPage uint64, pageSize int, buf *[]byte) (flags, count uint16, overflow uint32, ok bool) {
	if id < 2 || id >= maxPage {
		return 0, 0, 0, false
	}
	b := (*buf)[:pageSize]
	if _, err := s.pageFile.ReadAt(b, int64(id)*int64(pageSize)); err != nil {
		return 0, 0, 0, false
	}
	if binary.LittleEndian.Uint64(b) != id {
		return 0, 0, 0, false
	}
	flags = binary.LittleEndian.Uint16(b[8:])
	count = binary.LittleEndian.Uint16(b[10:])
	overflow = binary.LittleEndian.Uint32(b[12:])
	if overflow > 0 {
		if id+uint64(overflow) >= maxPage {
			return 0, 0, 0, false
		}
		n := (int(overflow) + 1) * pageSize
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		b = (*buf)[:n]
		if _, err := s.pageFile.ReadAt(b, int64(id)*int64(pageSize)); err != nil {
			return 0, 0, 0, false
		}
	}
	*buf = b
	return flags, count, overflow, true
}

// openPageFile opens the store file for reading index pages.
func openPageFile(path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	return f
}

// recentKey names a dataset's "recent" index tree in hotDatasets.pages.
func recentKey(dataset string) string { return dataset + "\x00recent" }

// runsKey names a dataset's index runs in hotDatasets.pages.
func runsKey(dataset string) string { return dataset + "\x00runs" }
