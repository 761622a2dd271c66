package bloom

import (
	"fmt"
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

// TestShared: keys added with AddShared are seen by MayHave and by
// MayHaveShared in another goroutine once added (run with -race).
func TestShared(t *testing.T) {
	f := New(1 << 14)
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
