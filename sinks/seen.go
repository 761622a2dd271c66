package sinks

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"unsafe"
)

// seenSet remembers the _id hashes a full run produced, for deletion
// tracking, with bounded memory: up to max hashes (16 bytes each; at most
// seenMemMax, and about a tenth of the store's resident bound: newSeenSet)
// stay in memory; beyond that they go to a temporary file (os.TempDir) in
// sorted runs, which finish merges into one sorted file that gone reads
// forward beside batches of sorted lookups (a sparse index of every
// block's first hash stays in memory: 8 bytes per 256 ids). A full run of 10 million entities
// then holds ~17 MiB of hashes and 312 KiB of index instead of 160 MiB;
// runs of up to max ids never touch the disk (under the default 150 MiB
// bound: up to 983,040 ids).
//
// In memory the hashes are kept by their top byte, in seenBuckets buckets
// that are sorted one by one (a few thousand hashes each at 1M: sorted in
// the CPU's cache with a small scratch) when the set spills or is sealed.
// Sorting them as one array at the end of a 1M run took 30-40 ms on one
// core plus a 16 MiB scratch, fresh memory to fault in, while nothing else
// ran.
type seenSet struct {
	bk [seenBuckets][]idHash
	// stage collects hashes in arrival order until seenStage of them are
	// dealt into bk at once: a tight loop keeps the 256 buckets' ends in
	// cache, where one append per add, among a committer's other work,
	// missed them.
	stage []idHash
	count int      // hashes in bk and stage
	max   int      // hashes kept in memory (newSeenSet), smaller in tests
	file  *os.File // sorted runs, then (after seal) the merged hashes
	runs  []int64  // run boundaries in file (in hashes)
	total int64
	// After seal with spilled runs: the merged file and the first hash
	// of each block of seenBlock hashes.
	merged *os.File
	firsts []uint64
	n      int64 // distinct hashes, after seal
	// perTop counts the merged file's distinct hashes by their top
	// seenTopBits bits (gone); reads counts gone's reads of the file.
	perTop []uint32
	reads  int64
	// lookupBatch and spoolMem, if set, replace goneBatchMax and the
	// memory of gone's idSpool (tests).
	lookupBatch, spoolMem int
}

// seenTopBits: gone counts the hashes of a spilled set in 2^16 groups.
const seenTopBits = 16

// seenMemMax is how many hashes a seenSet keeps in memory (16 MiB).
const seenMemMax = 1 << 20

// seenSpillMem is how many hashes a seenSet expected to spill keeps in
// memory (4 MiB).
const seenSpillMem = 1 << 18

// seenBoundShare: a seen set keeps about 1/seenBoundShare of the
// process's resident bound in memory at most (newSeenSet; its buckets'
// margins add ~6%).
const seenBoundShare = 10

// seenBlock is how many hashes one read of the merged file covers.
const seenBlock = 256

// seenBuckets is how many buckets the in-memory hashes are kept in, by
// their top byte.
const seenBuckets = 256

// seenStage is how many hashes are collected before they go to buckets.
const seenStage = 4096

// newSeenSet returns an empty set with room for about expect hashes (the
// dataset's size: growing a slice of a million hashes by doubling copies
// it many times over).
//
// The buckets share one allocation, each with room for its share and a
// margin (hashes are uniform: at 1M, 4,096 a bucket give or take 64); a
// bucket that outgrows its room moves out of it (append).
//
// A set expected to outgrow seenMemMax keeps only seenSpillMem hashes in
// memory: it goes to the disk anyway, and smaller spills only mean more
// runs for seal to merge (40 at 10M ids), while the 16 MiB a full buffer
// took was a sixth of a 10M run's heap.
//
// bound is the process's resident memory bound (<= 0: none): a set whose
// hashes would take more than a tenth of it (seenBoundShare) spills too.
// Under a 150 MiB bound that is a 1M run's 16 MiB, which with the heap's
// slack is ~17 MiB the store can no longer keep index pages in (a 1M run
// writing 10% read 29% of its index blocks with pread); the spill costs
// writing and merging 16 MB of hashes once.
func newSeenSet(expect, bound int64) *seenSet {
	memMax := seenMemMax
	if bound > 0 {
		memMax = int(min(int64(memMax), bound/seenBoundShare/int64(unsafe.Sizeof(idHash{}))))
	}
	limit := memMax
	if expect > int64(memMax) {
		limit = min(seenSpillMem, memMax)
	}
	limit = max(limit, seenStage)
	huge := expect <= int64(memMax) // a set expected to spill is not (makeHashes)
	n := int(min(max(expect+expect/16, 1024), int64(limit)))
	per := n/seenBuckets + n/seenBuckets/16 + 16
	all := makeHashes(per*seenBuckets, huge)[:per*seenBuckets]
	s := &seenSet{max: limit}
	for i := range s.bk {
		s.bk[i] = all[i*per : i*per : (i+1)*per]
	}
	return s
}

func (s *seenSet) add(h idHash) error {
	if s.stage == nil {
		s.stage = make([]idHash, 0, seenStage)
	}
	s.stage = append(s.stage, h)
	if len(s.stage) == cap(s.stage) {
		s.deal()
	}
	if s.count++; s.count >= s.max {
		return s.spill()
	}
	return nil
}

// deal moves the staged hashes into their buckets.
func (s *seenSet) deal() {
	for _, h := range s.stage {
		b := &s.bk[h[0]>>56]
		*b = append(*b, h)
	}
	s.stage = s.stage[:0]
}

// sortBuckets deals what is staged and sorts every bucket, with one
// scratch for all.
func (s *seenSet) sortBuckets() {
	s.deal()
	var scratch []idHash
	for _, b := range s.bk {
		scratch = sortIDHashes(b, scratch)
	}
}

// spill writes the in-memory hashes, sorted, as one run.
func (s *seenSet) spill() error {
	if s.file == nil {
		f, err := os.CreateTemp("", "ferry-seen-*")
		if err != nil {
			return fmt.Errorf("deletion tracking: a full run of more than %d entities keeps their id hashes in a temporary file: %w", s.max, err)
		}
		os.Remove(f.Name()) // unlinked: gone when closed, even after a crash
		s.file = f
	}
	s.sortBuckets()
	w := bufio.NewWriterSize(io.NewOffsetWriter(s.file, s.total*16), 64<<10)
	var buf [16]byte
	for i, b := range s.bk {
		for _, h := range b {
			binary.BigEndian.PutUint64(buf[:8], h[0])
			binary.BigEndian.PutUint64(buf[8:], h[1])
			w.Write(buf[:])
		}
		s.bk[i] = b[:0]
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("deletion tracking: writing id hashes: %w", err)
	}
	s.total += int64(s.count)
	s.runs = append(s.runs, s.total)
	s.count = 0
	return nil
}

// seal prepares lookups: sorts the in-memory hashes or, when runs were
// spilled, merges them into one sorted file. Either way it counts the
// distinct hashes (distinct).
func (s *seenSet) seal() error {
	if s.file == nil {
		s.sortBuckets()
		s.n = 0
		for _, b := range s.bk {
			for i := range b {
				if i == 0 || b[i] != b[i-1] {
					s.n++
				}
			}
		}
		return nil
	}
	if s.count > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	s.bk = [seenBuckets][]idHash{}
	out, err := os.CreateTemp("", "ferry-seen-*")
	if err != nil {
		return fmt.Errorf("deletion tracking: %w", err)
	}
	os.Remove(out.Name())
	s.merged = out
	// k-way merge of the runs.
	h := &runHeap{}
	var start int64
	for _, end := range s.runs {
		r := &runReader{r: bufio.NewReaderSize(io.NewSectionReader(s.file, start*16, (end-start)*16), 32<<10)}
		if r.next() {
			heap.Push(h, r)
		}
		start = end
	}
	w := bufio.NewWriterSize(out, 64<<10)
	s.perTop = make([]uint32, 1<<seenTopBits)
	var prev idHash
	first := true
	for h.Len() > 0 {
		r := (*h)[0]
		if first || r.cur != prev {
			if s.n%seenBlock == 0 {
				s.firsts = append(s.firsts, r.cur[0])
			}
			s.perTop[r.cur[0]>>(64-seenTopBits)]++
			w.Write(r.buf[:])
			s.n++
			prev, first = r.cur, false
		}
		if r.next() {
			heap.Fix(h, 0)
			continue
		}
		if r.err != nil {
			return fmt.Errorf("deletion tracking: reading id hashes: %w", r.err)
		}
		heap.Pop(h)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("deletion tracking: writing id hashes: %w", err)
	}
	s.file.Close()
	s.file = nil
	return nil
}

// distinct returns how many different hashes were added; seal must have
// been called.
func (s *seenSet) distinct() int64 { return s.n }

// gone returns the _ids forEach gives that were not added, in forEach's
// order; seal must have been called. Where every added hash is one of
// forEach's (subset), a spilled set first counts forEach's hashes by
// their top bits: a group with as many as the set holds has none
// missing, and only the _ids of the other groups are looked up. It does
// not count when missing, how many _ids forEach gives beyond the set's
// (-1: unknown), is at least the number of groups: about two thirds of
// the groups or more would count short, and a walk of the index costs
// about a fifth of looking every _id up.
//
// A spilled set looks _ids up in batches (lookupBatch): a batch's hashes
// are sorted and merged with the sorted file, which is read forward in
// large reads, skipping what no hash of the batch can be in. Looking
// each _id up with its own 4 KiB read cost a 1M-entity full run that
// deleted 10% ~800,000 reads (2.2 of its 10.8 CPU seconds); a 10M-id run
// that deleted a few entities read the file once per live _id (~10M
// reads) before the groups were counted. forEach must give each _id
// once, the same ids both times it is called.
func (s *seenSet) gone(subset bool, missing int64, forEach func(fn func(id string) error) error) (*idSpool, error) {
	var check []bool // nil: look every _id up
	if subset && s.merged != nil && missing < 1<<seenTopBits {
		live := make([]uint32, 1<<seenTopBits)
		err := forEach(func(id string) error {
			live[hashID(id)[0]>>(64-seenTopBits)]++
			return nil
		})
		if err != nil {
			return nil, err
		}
		check = make([]bool, len(live))
		for i := range live {
			check[i] = live[i] != s.perTop[i]
		}
	}
	out := newIDSpool()
	if s.spoolMem > 0 {
		out.max = s.spoolMem
	}
	if s.merged == nil {
		err := forEach(func(id string) error {
			if h := hashID(id); !containsIDHash(s.bk[h[0]>>56], h) {
				return out.add(id)
			}
			return nil
		})
		if err != nil {
			out.close()
			return nil, err
		}
		return out, nil
	}
	b := &goneBatch{max: s.lookupBatch}
	if b.max <= 0 {
		b.max = goneBatchMax
	}
	flush := func() error {
		err := s.lookupSorted(b, out)
		b.reset()
		return err
	}
	err := forEach(func(id string) error {
		h := hashID(id)
		if check != nil && !check[h[0]>>(64-seenTopBits)] {
			return nil
		}
		if b.add(h, id) {
			return flush()
		}
		return nil
	})
	if err == nil && len(b.c) > 0 {
		err = flush()
	}
	if err != nil {
		out.close()
		return nil, err
	}
	return out, nil
}

// goneBatchMax is how many _ids gone looks up at once (28 bytes each,
// and their text in an arena of at most goneArenaMax bytes): at 10M
// live _ids, ~40 batches, each reading the 160 MB file forward once.
const goneBatchMax = 1 << 18

// goneArenaMax bounds the text of a batch's _ids.
const goneArenaMax = 4 << 20

// seenReadSize is the size of gone's reads of the merged file.
const seenReadSize = 64 << 10

// goneBatch is a batch of _ids gone looks up: their hashes, each with its
// place in the batch, and their text in arena (the i-th from ends[i-1]
// to ends[i]).
type goneBatch struct {
	c     []goneCand
	ends  []uint32
	arena []byte
	max   int
}

type goneCand struct {
	h   idHash
	ord uint32 // place in forEach's order, within the batch
}

// add adds an _id; it reports whether the batch is full.
func (b *goneBatch) add(h idHash, id string) bool {
	b.c = append(b.c, goneCand{h: h, ord: uint32(len(b.c))})
	b.arena = append(b.arena, id...)
	b.ends = append(b.ends, uint32(len(b.arena)))
	return len(b.c) >= b.max || len(b.arena) >= goneArenaMax
}

// id returns the text of the ord-th _id added.
func (b *goneBatch) id(ord uint32) string {
	start := uint32(0)
	if ord > 0 {
		start = b.ends[ord-1]
	}
	return string(b.arena[start:b.ends[ord]])
}

func (b *goneBatch) reset() {
	b.c, b.ends, b.arena = b.c[:0], b.ends[:0], b.arena[:0]
}

// lookupSorted adds to out the _ids of batch b whose hashes the merged
// file lacks, in the order they were added: it sorts the batch by hash
// and walks the file forward beside it.
func (s *seenSet) lookupSorted(b *goneBatch, out *idSpool) error {
	sortCands(b.c)
	r := hashCursor{s: s}
	var missing []uint32
	for i := range b.c {
		found, err := r.find(b.c[i].h)
		if err != nil {
			return fmt.Errorf("deletion tracking: reading id hashes: %w", err)
		}
		if !found {
			missing = append(missing, b.c[i].ord)
		}
	}
	slices.Sort(missing) // back to forEach's order
	for _, o := range missing {
		if err := out.add(b.id(o)); err != nil {
			return err
		}
	}
	return nil
}

// candBits: sortCands places candidates by this many top bits first.
const candBits = 12

// sortCands sorts a batch by hash in place: an American flag pass on the
// top candBits bits (hashes are uniform: a full batch puts ~64 in each of
// 4,096 buckets), then a comparison sort of each bucket, in the CPU's
// cache. One comparison sort of a 256k batch took 0.44 s of a 1M-entity
// run that deleted 10%.
func sortCands(c []goneCand) {
	if len(c) < 1<<10 {
		slices.SortFunc(c, func(x, y goneCand) int { return cmpIDHash(x.h, y.h) })
		return
	}
	var count, next [1 << candBits]int
	for i := range c {
		count[c[i].h[0]>>(64-candBits)]++
	}
	pos := 0
	for b, n := range count {
		next[b] = pos
		pos += n
	}
	start := next
	for b := range count {
		end := start[b] + count[b]
		for next[b] < end {
			x := c[next[b]]
			for d := int(x.h[0] >> (64 - candBits)); d != b; d = int(x.h[0] >> (64 - candBits)) {
				x, c[next[d]] = c[next[d]], x
				next[d]++
			}
			c[next[b]] = x
			next[b]++
		}
	}
	for b, n := range count {
		if n > 1 {
			slices.SortFunc(c[start[b]:start[b]+n], func(x, y goneCand) int { return cmpIDHash(x.h, y.h) })
		}
	}
}

// hashCursor finds hashes, asked in ascending order, in the merged file:
// it reads the file forward, seenReadSize at a time, starting each read
// where the next hash asked can first be (firsts), and searches each
// read's hashes by halves. Walking them one by one cost a 10M-entity run
// that deleted a tenth 3.3 of its 9.3 s in gone.
type hashCursor struct {
	s     *seenSet
	buf   []byte
	start int64 // the position (in hashes) of buf's first hash
	n     int   // hashes in buf
	i     int   // the first of them that may be >= the next hash asked
}

func (c *hashCursor) at(j int) idHash {
	return idHash{binary.BigEndian.Uint64(c.buf[j*16:]), binary.BigEndian.Uint64(c.buf[j*16+8:])}
}

// find reports whether the file holds h; h must not be below the hash
// asked before.
func (c *hashCursor) find(h idHash) (bool, error) {
	for {
		if c.n > 0 && cmpIDHash(h, c.at(c.n-1)) <= 0 {
			c.i += sort.Search(c.n-c.i, func(k int) bool { return cmpIDHash(c.at(c.i+k), h) >= 0 })
			return c.at(c.i) == h, nil
		}
		end := c.start + int64(c.n) // what was read ends below h
		if c.n > 0 && end >= c.s.n {
			return false, nil // past the file's last hash
		}
		// Every hash >= h lies at or after the block before the first
		// block whose first hash's high half is >= h's (equal high
		// halves may straddle a block boundary).
		blk := sort.Search(len(c.s.firsts), func(i int) bool { return c.s.firsts[i] >= h[0] })
		at := max(int64(max(blk-1, 0))*seenBlock, end)
		if at >= c.s.n {
			return false, nil
		}
		if c.buf == nil {
			c.buf = make([]byte, seenReadSize)
		}
		want := min(int64(len(c.buf)/16), c.s.n-at)
		if _, err := (countedReader{c.s}).ReadAt(c.buf[:want*16], at*16); err != nil {
			return false, err
		}
		c.start, c.n, c.i = at, int(want), 0
	}
}

// countedReader reads the merged file, counting the reads (seenSet.reads).
type countedReader struct{ s *seenSet }

func (r countedReader) ReadAt(p []byte, off int64) (int, error) {
	r.s.reads++
	return r.s.merged.ReadAt(p, off)
}

// close removes the temporary files.
func (s *seenSet) close() {
	for _, f := range []*os.File{s.file, s.merged} {
		if f != nil {
			f.Close()
		}
	}
	*s = seenSet{max: s.max}
}

type runReader struct {
	r   *bufio.Reader
	buf [16]byte
	cur idHash
	err error
}

func (r *runReader) next() bool {
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		if err != io.EOF {
			r.err = err
		}
		return false
	}
	r.cur = idHash{binary.BigEndian.Uint64(r.buf[:8]), binary.BigEndian.Uint64(r.buf[8:])}
	return true
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return cmpIDHash(h[i].cur, h[j].cur) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
