package bloom

import (
	"math/rand/v2"
	"testing"
)

func TestFilter(t *testing.T) {
	f := New(1 << 16)
	rng := rand.New(rand.NewPCG(3, 4))
	type h struct{ lo, hi uint64 }
	var added []h
	for range 4096 {
		x := h{rng.Uint64(), rng.Uint64()}
		// Add reports "seen" exactly when MayHave would have said so.
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
	// 16 bits a key: about 0.2% false positives; allow 1%.
	fp := 0
	for range 100_000 {
		if f.MayHave(rng.Uint64(), rng.Uint64()) {
			fp++
		}
	}
	if fp > 1000 {
		t.Errorf("%d false positives in 100,000", fp)
	}
	if got := len(New(100).bits); got != 2 {
		t.Errorf("New(100): %d words, want 2 (128 bits)", got)
	}
}
