package sinks

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
)

func TestIDHashSet(t *testing.T) {
	for _, n := range []int{0, 1, 5, 255, 256, 1000, 100_000} {
		var hs []idHash
		for i := 0; i < n; i++ {
			hs = append(hs, hashID(fmt.Sprint("id-", i)))
		}
		// Ties in the high half must still sort by the low half.
		if n > 10 {
			hs = append(hs, idHash{hs[3][0], hs[3][1] + 1}, idHash{hs[3][0], hs[3][1] - 1}, hs[7])
		}
		rand.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
		want := slices.Clone(hs)
		slices.SortFunc(want, cmpIDHash)
		sortIDHashes(hs, nil)
		if !slices.Equal(hs, want) {
			t.Fatalf("n=%d: radix sort differs from a comparison sort", n)
		}
		for i := 0; i < n; i++ {
			if !containsIDHash(hs, hashID(fmt.Sprint("id-", i))) {
				t.Fatalf("n=%d: id-%d not found", n, i)
			}
		}
		for i := n; i < n+1000; i++ {
			if containsIDHash(hs, hashID(fmt.Sprint("id-", i))) {
				t.Fatalf("n=%d: id-%d found but never added", n, i)
			}
		}
		for _, edge := range []idHash{{0, 0}, {^uint64(0), ^uint64(0)}} {
			if containsIDHash(hs, edge) != slices.Contains(hs, edge) {
				t.Fatalf("n=%d: edge %v", n, edge)
			}
		}
	}
}

func BenchmarkIDHashSet(b *testing.B) {
	const n = 1_000_000
	hs := make([]idHash, n)
	for i := range hs {
		hs[i] = hashID(fmt.Sprint("id-", i))
	}
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			c := slices.Clone(hs)
			sortIDHashes(c, nil)
		}
	})
	sorted := slices.Clone(hs)
	sortIDHashes(sorted, nil)
	b.Run("contains", func(b *testing.B) {
		i := 0
		for b.Loop() {
			containsIDHash(sorted, hs[i%n])
			i++
		}
	})
}

// BenchmarkSeenSet fills a seen set with 1M uniform hashes (add) and seals
// it (sort and count), as a 1M full run does at its end.
func BenchmarkSeenSet(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	hs := make([]idHash, 1<<20-10)
	for i := range hs {
		hs[i] = idHash{rng.Uint64(), rng.Uint64()}
	}
	var add, seal time.Duration
	for b.Loop() {
		s := newSeenSet(int64(len(hs)), 0)
		t0 := time.Now()
		for _, h := range hs {
			if err := s.add(h); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		if err := s.seal(); err != nil {
			b.Fatal(err)
		}
		add, seal = add+t1.Sub(t0), seal+time.Since(t1)
		if s.distinct() != int64(len(hs)) {
			b.Fatalf("distinct = %d", s.distinct())
		}
	}
	b.ReportMetric(float64(add.Milliseconds())/float64(b.N), "add-ms/op")
	b.ReportMetric(float64(seal.Milliseconds())/float64(b.N), "seal-ms/op")
}

func BenchmarkIDHashSetBaseline(b *testing.B) {
	const n = 1_000_000
	hs := make([]idHash, n)
	for i := range hs {
		hs[i] = hashID(fmt.Sprint("id-", i))
	}
	b.Run("sortfunc", func(b *testing.B) {
		for b.Loop() {
			c := slices.Clone(hs)
			slices.SortFunc(c, cmpIDHash)
		}
	})
	sorted := slices.Clone(hs)
	slices.SortFunc(sorted, cmpIDHash)
	b.Run("binarysearch", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_, _ = slices.BinarySearchFunc(sorted, hs[i%n], cmpIDHash)
			i++
		}
	})
}

// TestSeenSetSpills checks the seen set against a map, in memory and
// spilled to sorted runs on disk, with duplicates and with many hashes
// sharing their high half (so that equal high halves straddle the blocks
// the spilled lookups read).
func TestSeenSetSpills(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i, c := range []struct{ max, n int }{{1 << 20, 3000}, {300, 5000}, {1000, 1000}, {7, 0}, {1 << 20, 20_000}, {6000, 20_000}} {
		// The zero value, and sets sized for their hashes (whose
		// buckets, with these skewed hashes, outgrow their room).
		s := &seenSet{max: c.max}
		if i >= 4 {
			s = newSeenSet(int64(c.n), 0)
			s.max = c.max
		}
		model := map[idHash]bool{}
		var added []idHash
		for i := 0; i < c.n; i++ {
			var h idHash
			if i > 0 && rng.IntN(5) == 0 {
				h = added[rng.IntN(len(added))] // a duplicate
			} else {
				h = idHash{uint64(rng.IntN(40)) << 58, rng.Uint64()}
			}
			if err := s.add(h); err != nil {
				t.Fatal(err)
			}
			model[h] = true
			added = append(added, h)
		}
		if err := s.seal(); err != nil {
			t.Fatal(err)
		}
		if spilled := s.merged != nil; spilled != (c.n >= c.max) {
			t.Errorf("max %d, n %d: spilled %v", c.max, c.n, spilled)
		}
		for h := range model {
			if ok, err := s.has(h); !ok || err != nil {
				t.Fatalf("max %d: added %x not found (%v)", c.max, h, err)
			}
		}
		for range 2000 {
			h := idHash{uint64(rng.IntN(41)) << 58, rng.Uint64()}
			if ok, err := s.has(h); ok != model[h] || err != nil {
				t.Fatalf("max %d: has(%x) = %v (%v), want %v", c.max, h, ok, err, model[h])
			}
		}
		s.close()
	}
}

// TestSeenSetLarge fills a seen set large enough for its hashes to be
// advised into huge pages (hashmem_linux.go), with duplicates, and checks
// it against a map, in memory and spilled.
func TestSeenSetLarge(t *testing.T) {
	for _, limit := range []int{seenMemMax, 300_000} {
		t.Run(fmt.Sprint("max ", limit), func(t *testing.T) { testSeenSetLarge(t, limit) })
	}
}

// testSeenSetLarge: with limit below the 400,000 hashes added, the set
// spills a run, and seal merges.
func testSeenSetLarge(t *testing.T, limit int) {
	const n = 400_000
	s := newSeenSet(n, 0)
	s.max = limit
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[idHash]bool{}
	var added []idHash
	for i := 0; i < n; i++ {
		h := idHash{rng.Uint64(), rng.Uint64()}
		if i%10 == 0 && len(added) > 0 {
			h = added[rng.IntN(len(added))]
		}
		added = append(added, h)
		model[h] = true
		if err := s.add(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.seal(); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if got := s.distinct(); got != int64(len(model)) {
		t.Fatalf("distinct = %d, want %d", got, len(model))
	}
	for i := 0; i < 10_000; i++ {
		h := added[rng.IntN(len(added))]
		if ok, err := s.has(h); err != nil || !ok {
			t.Fatalf("has(%x) = %v, %v; it was added", h, ok, err)
		}
		h = idHash{rng.Uint64(), rng.Uint64()}
		if ok, _ := s.has(h); ok != model[h] {
			t.Fatalf("has(%x) = %v, want %v", h, ok, model[h])
		}
	}
}

// TestSeenSetSpillMemory: a set expected to fit keeps up to seenMemMax
// hashes in memory; one expected to spill keeps only seenSpillMem, in
// buckets that hold about that many. Under a resident bound, a set whose
// hashes would take more than a tenth of it is expected to spill.
func TestSeenSetSpillMemory(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		expect, bound int64
		max           int
	}{
		{1000, 0, seenMemMax}, {seenMemMax, 0, seenMemMax}, {seenMemMax + 1, 0, seenSpillMem}, {10_000_000, 0, seenSpillMem},
		// 240 MiB: a tenth holds more than seenMemMax hashes.
		{seenMemMax, 240 * mib, seenMemMax}, {seenMemMax + 1, 240 * mib, seenSpillMem},
		// 150 MiB: a tenth holds 983,040 hashes.
		{900_000, 150 * mib, 983_040}, {1_000_000, 150 * mib, seenSpillMem},
		// 20 MiB: a tenth holds fewer hashes than seenSpillMem.
		{1_000_000, 20 * mib, 131_072}, {1000, 20 * mib, 131_072},
	} {
		s := newSeenSet(c.expect, c.bound)
		room := 0
		for _, b := range s.bk {
			room += cap(b)
		}
		if s.max != c.max || room > c.max+c.max/8+seenBuckets*16 {
			t.Errorf("expecting %d under bound %d: keeps up to %d hashes in room for %d, want %d", c.expect, c.bound, s.max, room, c.max)
		}
		s.close()
	}
}

// TestSeenSetGone: a spilled set finds the live _ids it does not hold,
// with and without knowing that every hash it holds is live; knowing it,
// it reads the file only for the groups of hashes that count short.
func TestSeenSetGone(t *testing.T) {
	var live, want []string
	s := &seenSet{max: 300}
	for i := range 5000 {
		id := fmt.Sprintf("id-%d", i)
		live = append(live, id)
		if i%700 == 3 {
			want = append(want, id) // not produced by the run
			continue
		}
		if err := s.add(hashID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.seal(); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if s.merged == nil {
		t.Fatal("the set did not spill")
	}
	forEach := func(fn func(id string) error) error {
		for _, id := range live {
			if err := fn(id); err != nil {
				return err
			}
		}
		return nil
	}
	fileReads := int64(s.n*16/seenReadSize + 2) // one batch reading the file forward
	for _, subset := range []bool{false, true} {
		for _, batch := range []int{0, 64} {
			s.lookupBatch, s.reads = batch, 0
			got := spooled(t)(s.gone(subset, -1, forEach))
			if !slices.Equal(got, want) {
				t.Fatalf("subset %v, batches of %d: gone %v, want %v", subset, batch, got, want)
			}
			// Without subset every _id is looked up: in batches, each
			// reading the file forward in large reads (the build before
			// read it once per _id: 5,000 reads). With it, only the _ids
			// of groups that count short are.
			limit := fileReads
			if batch > 0 {
				limit = int64((len(live)+batch-1)/batch) * fileReads
			}
			if subset {
				limit = int64(2*len(want) + 2)
			}
			if s.reads > limit || s.reads == 0 {
				t.Errorf("subset %v, batches of %d: %d reads of the file for %d ids, %d gone; want 1 to %d", subset, batch, s.reads, len(live), len(want), limit)
			}
		}
	}
}

// TestSeenSetGoneRandom: gone agrees with a map over spilled sets of
// several sizes, batch sizes and shares of missing _ids.
func TestSeenSetGoneRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		n, max, batch, spool int
		missing              float64
	}{
		{3000, 500, 0, 0, 0.1}, {3000, 500, 17, 100, 0.5}, {20000, 4096, 1000, 0, 0.01}, {20000, 4096, 300, 1000, 0.9}, {5000, 100, 1, 0, 0.2},
		{3000, 1 << 20, 0, 50, 0.3}, // in memory, the _ids to delete spilled
	} {
		s := &seenSet{max: c.max, lookupBatch: c.batch, spoolMem: c.spool}
		var live, want []string
		for i := range c.n {
			id := fmt.Sprintf("%x-%d", rng.Uint64(), i)
			live = append(live, id)
			if rng.Float64() < c.missing {
				want = append(want, id)
				continue
			}
			if err := s.add(hashID(id)); err != nil {
				t.Fatal(err)
			}
			if i%7 == 0 { // added twice: the file holds it once
				if err := s.add(hashID(id)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.seal(); err != nil {
			t.Fatal(err)
		}
		if spilled := s.merged != nil; spilled != (c.max < c.n-len(want)) {
			t.Fatalf("%+v: spilled %v", c, spilled)
		}
		forEach := func(fn func(id string) error) error {
			for _, id := range live {
				if err := fn(id); err != nil {
					return err
				}
			}
			return nil
		}
		// missing at 1<<seenTopBits: a subset is not counted by groups.
		for _, m := range []struct {
			subset  bool
			missing int64
		}{{false, -1}, {true, -1}, {true, int64(len(want))}, {true, 1 << seenTopBits}} {
			got := spooled(t)(s.gone(m.subset, m.missing, forEach))
			if !slices.Equal(got, want) {
				t.Errorf("%+v, %+v: gone %d ids, want %d (first difference at %d)", c, m, len(got), len(want), firstDiff(got, want))
			}
		}
		s.close()
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// boundStore is a store with a resident bound (engine.ResidentBounded).
type boundStore struct {
	engine.Store
	bound int64
}

func (b boundStore) ResidentBound() int64 { return b.bound }

// TestSeenSetFollowsStoreBound: a full run's seen set is sized within the
// resident bound of the store it writes to, where it has one.
func TestSeenSetFollowsStoreBound(t *testing.T) {
	for _, c := range []struct {
		store engine.Store
		max   int
	}{{boundStore{bound: 150 << 20}, seenSpillMem}, {boundStore{bound: 240 << 20}, seenMemMax}, {boundStore{}, seenMemMax}, {nil, seenMemMax}} {
		r := &datasetRun{rc: &engine.RunContext{Store: c.store}, entities: 1_000_000}
		s := r.newSeen()
		if s.max != c.max {
			t.Errorf("store %#v: a 1M run's seen set keeps up to %d hashes, want %d", c.store, s.max, c.max)
		}
		s.close()
	}
}

// TestSortCands: sortCands orders batches of every size by hash, the
// ties on high halves included.
func TestSortCands(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 2, 1000, 1024, 5000, 70000} {
		c := make([]goneCand, n)
		for i := range c {
			c[i] = goneCand{h: idHash{rng.Uint64(), rng.Uint64()}, ord: uint32(i)}
			if i%5 == 4 { // a tie on the high half
				c[i].h[0] = c[i-1].h[0]
			}
		}
		want := slices.Clone(c)
		slices.SortFunc(want, func(x, y goneCand) int { return cmpIDHash(x.h, y.h) })
		sortCands(c)
		if !slices.Equal(c, want) {
			t.Fatalf("%d candidates: not sorted", n)
		}
	}
}

// spooled returns a function that reads every _id of a spool gone
// returned, in parts of 100.
func spooled(t *testing.T) func(s *idSpool, err error) []string {
	return func(s *idSpool, err error) []string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		var all, part []string
		for {
			if part, err = s.next(100, part); err != nil {
				t.Fatal(err)
			}
			if len(part) == 0 {
				break
			}
			all = append(all, part...)
		}
		if len(all) != s.len() {
			t.Fatalf("read %d _ids of a spool of %d", len(all), s.len())
		}
		return all
	}
}

// TestIDSpool: a spool gives back what was added, in order, in parts of
// any size, whether it stayed in memory or spilled (long _ids included).
func TestIDSpool(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ n, max int }{{0, 1 << 20}, {1, 1 << 20}, {1000, 1 << 20}, {1000, 10}, {5000, 4096}} {
		s := newIDSpool()
		s.max = c.max
		var want []string
		for i := range c.n {
			id := fmt.Sprintf("id-%d", i)
			if rng.IntN(50) == 0 {
				id += strings.Repeat("é", 20000) // past a uvarint byte and the reader's buffer
			}
			want = append(want, id)
			if err := s.add(id); err != nil {
				t.Fatal(err)
			}
		}
		if spilled := s.file != nil; spilled != (c.max < 1<<20 && c.n > 0) {
			t.Errorf("%+v: spilled %v", c, spilled)
		}
		var got, part []string
		for {
			var err error
			if part, err = s.next(1+rng.IntN(300), part); err != nil {
				t.Fatal(err)
			}
			if len(part) == 0 {
				break
			}
			got = append(got, part...)
		}
		s.close()
		if !slices.Equal(got, want) {
			t.Errorf("%+v: got %d _ids back (first difference at %d), want %d", c, len(got), firstDiff(got, want), len(want))
		}
	}
}

// has reports whether h was added, through the lookup gone uses (a
// cursor of its own, so any order will do); seal must have been called.
func (s *seenSet) has(h idHash) (bool, error) {
	if s.merged == nil {
		return containsIDHash(s.bk[h[0]>>56], h), nil
	}
	c := hashCursor{s: s}
	return c.find(h)
}
