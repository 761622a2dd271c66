package bloom

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// filter is what TestFilter and TestBlocked check of both filters.
type filter interface {
	Add(lo, hi uint64) bool
	MayHave(lo, hi uint64) bool
}

// checkFilter adds n random keys to f and checks that Add reports "seen"
// exactly when MayHave would have said so, that every added key is found,
// and that at most maxFP of 100,000 other keys are false positives.
func checkFilter(t *testing.T, f filter, seed uint64, n, maxFP int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	type h struct{ lo, hi uint64 }
	var added []h
	for range n {
		x := h{rng.Uint64(), rng.Uint64()}
		if may, seen := f.MayHave(x.lo, x.hi), f.Add(x.lo, x.hi); may != seen {
			t.Fatalf("MayHave %v before Add, Add says seen %v", may, seen)
		}
		added = append(added, x)
	}
	for _, x := range added {
		if !f.MayHave(x.lo, x.hi) || !f.Add(x.lo, x.hi) {
			t.Fatalf("added hash %x not found", x)
		}
	}
	fp := 0
	for range 100_000 {
		if f.MayHave(rng.Uint64(), rng.Uint64()) {
			fp++
		}
	}
	if fp > maxFP {
		t.Errorf("%d false positives in 100,000, want at most %d", fp, maxFP)
	}
	t.Logf("%d false positives in 100,000", fp)
}

func TestFilter(t *testing.T) {
	// 16 bits a key: about 0.2% false positives; allow 1%.
	checkFilter(t, New(1<<16), 3, 4096, 1000)
	if got := len(New(100).bits); got != 2 {
		t.Errorf("New(100): %d words, want 2 (128 bits)", got)
	}
}

// TestFilterExact: a filter of a size that is not a power of two scales
// its probes to the size; at 10 bits a key its false-positive rate is
// about (1 - e^(-0.4))^4, 1.2% (a probe that left part of the filter
// unused, or wrapped, would be far above 1.6%; one of 16 bits a key, as New
// would round to, below 0.5%).
func TestFilterExact(t *testing.T) {
	f := NewExact(10 * 32768)
	if len(f.bits) != 5120 || f.mask != 0 || f.size != 327680 {
		t.Fatalf("NewExact(327680): %d words, mask %d, size %d", len(f.bits), f.mask, f.size)
	}
	checkFilter(t, f, 9, 32768, 1600)
	fp := 0
	rng := rand.New(rand.NewPCG(11, 12))
	for range 100_000 {
		if f.MayHave(rng.Uint64(), rng.Uint64()) {
			fp++
		}
	}
	if fp < 800 {
		t.Errorf("%d false positives in 100,000 at 10 bits a key: the filter is bigger than asked", fp)
	}
	if g := NewExact(1 << 16); g.mask != 1<<16-1 {
		t.Errorf("NewExact(1<<16): mask %d, want a power of two's", g.mask)
	}
	if g := NewExact(1); len(g.bits) != 1 {
		t.Errorf("NewExact(1): %d words, want 1", len(g.bits))
	}
}

// TestPowerOfTwoProbes pins how a filter whose size is a power of two
// probes (stored filters of store formats 3 and 4 were all made so): bit
// lo + i*(hi|1) masked to the size, for i = 0..3.
func TestPowerOfTwoProbes(t *testing.T) {
	for _, f := range []*Filter{New(1 << 12), NewExact(1 << 12)} {
		lo, hi := uint64(0x0123456789abcdef), uint64(0xfedcba9876543210)
		f.Add(lo, hi)
		want := make([]uint64, 1<<12/64)
		for i := range uint64(4) {
			bit := (lo + i*(hi|1)) & (1<<12 - 1)
			want[bit/64] |= 1 << (bit % 64)
		}
		if !slices.Equal(f.Words(), want) {
			t.Fatalf("bits after one Add differ from the masked probes")
		}
	}
}

// TestFromWords: a filter read back from its words finds what was added,
// whatever its size, and probes as the original did.
func TestFromWords(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, f := range []*Filter{New(1 << 12), NewExact(10 * 1000), NewExact(64 * 3)} {
		keys := make([][2]uint64, 300)
		for i := range keys {
			keys[i] = [2]uint64{rng.Uint64(), rng.Uint64()}
			f.Add(keys[i][0], keys[i][1])
		}
		g, ok := FromWords(append([]uint64(nil), f.Words()...))
		if !ok || g.size != f.size || g.mask != f.mask {
			t.Fatalf("FromWords of %d words: ok %v, size %d mask %d; want size %d mask %d", len(f.bits), ok, g.size, g.mask, f.size, f.mask)
		}
		for _, k := range keys {
			if !g.MayHave(k[0], k[1]) {
				t.Fatalf("%d-word filter read back: added hash %x not found", len(f.bits), k)
			}
		}
		for range 1000 {
			lo, hi := rng.Uint64(), rng.Uint64()
			if f.MayHave(lo, hi) != g.MayHave(lo, hi) {
				t.Fatalf("%d-word filter read back answers differently for %x %x", len(f.bits), lo, hi)
			}
		}
	}
	if _, ok := FromWords(nil); ok {
		t.Error("FromWords(nil) accepted")
	}
}

// TestBlocked: at 16 bits a key the false-positive rate stays near a
// standard filter's (~0.3%; a filter that ignored the block or reused
// probe bits would be far above 0.6%).
func TestBlocked(t *testing.T) {
	checkFilter(t, NewBlocked(1<<20), 5, 1<<16, 600)
	if g := NewBlocked(100); len(g.bits) != blockWords || g.blocks != 0 {
		t.Errorf("NewBlocked(100): %d words, block mask %d; want one block", len(g.bits), g.blocks)
	}
	if g := NewBlocked(1 << 24); len(g.bits) != 1<<18 || g.blocks != 1<<15-1 {
		t.Errorf("NewBlocked(1<<24): %d words, block mask %d", len(g.bits), g.blocks)
	}
}

// BenchmarkAdd compares adding 1M keys to 2 MiB filters, as an initial
// load's sink does for its "produced before" check.
func BenchmarkAdd(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	keys := make([][2]uint64, 1<<20)
	for i := range keys {
		keys[i] = [2]uint64{rng.Uint64(), rng.Uint64()}
	}
	for _, c := range []struct {
		name string
		f    filter
	}{{"filter", New(1 << 24)}, {"blocked", NewBlocked(1 << 24)}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				k := keys[i&(len(keys)-1)]
				c.f.Add(k[0], k[1])
				i++
			}
		})
	}
}

// TestShared: keys added with AddShared are seen by MayHave and by
// MayHaveShared in another goroutine once added (run with -race).
func TestShared(t *testing.T) {
	for _, f := range []*Filter{New(1 << 14), NewExact(10 * 512)} {
		checkShared(t, f)
	}
}

func checkShared(t *testing.T, f *Filter) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	hashes := make([][2]uint64, 512)
	for i := range hashes {
		hashes[i] = [2]uint64{rng.Uint64(), rng.Uint64()}
	}
	added := make(chan int, len(hashes))
	done := make(chan error)
	go func() {
		for i := range added {
			if h := hashes[i]; !f.MayHaveShared(h[0], h[1]) {
				done <- fmt.Errorf("hash %d not seen after AddShared", i)
				return
			}
		}
		done <- nil
	}()
	for i, h := range hashes {
		f.AddShared(h[0], h[1])
		added <- i
	}
	close(added)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		if !f.MayHave(h[0], h[1]) || !f.Add(h[0], h[1]) {
			t.Fatalf("hash %x added with AddShared not found", h)
		}
	}
}
