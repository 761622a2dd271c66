package bloom

import "sync/atomic"

// Filter is a Bloom filter with four probes (double hashing of the two
// halves of a 128-bit hash). Not safe for concurrent use.
type Filter struct {
	bits []uint64
	mask uint64
}

// New returns an empty filter of at least nbits bits (rounded up to a
// power of two, at least 64). With n keys and 4 probes the false-positive
// rate is about (1 - e^(-4n/nbits))^4: 0.1% at 16 bits a key.
func New(nbits int) *Filter {
	n := 64
	for n < nbits {
		n <<= 1
	}
	return &Filter{bits: make([]uint64, n/64), mask: uint64(n - 1)}
}

// Add records the hash (lo, hi) and reports whether it may have been
// added before.
func (f *Filter) Add(lo, hi uint64) (seen bool) {
	seen = true
	y := hi | 1
	for i := range uint64(4) {
		bit := (lo + i*y) & f.mask
		w, m := bit/64, uint64(1)<<(bit%64)
		if f.bits[w]&m == 0 {
			seen = false
			f.bits[w] |= m
		}
	}
	return seen
}

// MayHave reports whether (lo, hi) may have been added: false means it
// certainly was not.
func (f *Filter) MayHave(lo, hi uint64) bool {
	y := hi | 1
	for i := range uint64(4) {
		bit := (lo + i*y) & f.mask
		if f.bits[bit/64]&(uint64(1)<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// AddShared is Add for a filter that other goroutines read with
// MayHaveShared meanwhile: each word is or-ed atomically. Only one
// goroutine may add at a time.
func (f *Filter) AddShared(lo, hi uint64) {
	y := hi | 1
	for i := range uint64(4) {
		bit := (lo + i*y) & f.mask
		atomic.OrUint64(&f.bits[bit/64], uint64(1)<<(bit%64))
	}
}

// MayHaveShared is MayHave for a filter that one goroutine may be adding
// to with AddShared meanwhile: it loads each word atomically, so it sees
// every key whose AddShared returned before the call.
func (f *Filter) MayHaveShared(lo, hi uint64) bool {
	y := hi | 1
	for i := range uint64(4) {
		bit := (lo + i*y) & f.mask
		if atomic.LoadUint64(&f.bits[bit/64])&(uint64(1)<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// Words returns the filter's bits, for storing it. The slice is the
// filter's own: do not change it while the filter is in use.
func (f *Filter) Words() []uint64 { return f.bits }

// FromWords returns a filter over words as Words returned them (a power of
// two of them, at least one), or false when there are not.
func FromWords(words []uint64) (*Filter, bool) {
	n := len(words)
	if n == 0 || n&(n-1) != 0 {
		return nil, false
	}
	return &Filter{bits: words, mask: uint64(n*64 - 1)}, true
}
