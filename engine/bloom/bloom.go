package bloom

import (
	"math/bits"
	"sync/atomic"
)

// Filter is a Bloom filter with four probes (double hashing of the two
// halves of a 128-bit hash). Not safe for concurrent use.
//
// A probe's bit is the probe's 64-bit hash masked to the filter's size
// where that is a power of two, and scaled to it (the high word of hash
// times size, Lemire's multiply-shift reduction) otherwise: the size alone
// decides, so a stored filter reads back the same either way.
type Filter struct {
	bits []uint64
	mask uint64 // size-1 where the size in bits is a power of two, else 0
	size uint64 // in bits
}

// New returns an empty filter of at least nbits bits (rounded up to a
// power of two, at least 64). With n keys and 4 probes the false-positive
// rate is about (1 - e^(-4n/nbits))^4: 0.24% at 16 bits a key.
func New(nbits int) *Filter {
	n := 64
	for n < nbits {
		n <<= 1
	}
	return newFilter(make([]uint64, n/64))
}

// NewExact returns an empty filter of nbits bits rounded up to a whole
// word (at least 64): a filter sized for its keys, where New's rounding to
// a power of two gave between 1 and 2 times the bits asked for (index runs
// of 32,768 keys at 10 bits a key got 16).
func NewExact(nbits int) *Filter {
	return newFilter(make([]uint64, max(1, (nbits+63)/64)))
}

func newFilter(words []uint64) *Filter {
	n := uint64(len(words)) * 64
	f := &Filter{bits: words, size: n}
	if n&(n-1) == 0 {
		f.mask = n - 1
	}
	return f
}

// bit returns the bit probe x falls on.
func (f *Filter) bit(x uint64) uint64 {
	if f.mask != 0 {
		return x & f.mask
	}
	hi, _ := bits.Mul64(x, f.size)
	return hi
}

// Add records the hash (lo, hi) and reports whether it may have been
// added before.
func (f *Filter) Add(lo, hi uint64) (seen bool) {
	seen = true
	y := hi | 1
	for i := range uint64(4) {
		bit := f.bit(lo + i*y)
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
		bit := f.bit(lo + i*y)
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
		bit := f.bit(lo + i*y)
		atomic.OrUint64(&f.bits[bit/64], uint64(1)<<(bit%64))
	}
}

// MayHaveShared is MayHave for a filter that one goroutine may be adding
// to with AddShared meanwhile: it loads each word atomically, so it sees
// every key whose AddShared returned before the call.
func (f *Filter) MayHaveShared(lo, hi uint64) bool {
	y := hi | 1
	for i := range uint64(4) {
		bit := f.bit(lo + i*y)
		if atomic.LoadUint64(&f.bits[bit/64])&(uint64(1)<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// Words returns the filter's bits, for storing it. The slice is the
// filter's own: do not change it while the filter is in use.
func (f *Filter) Words() []uint64 { return f.bits }

// FromWords returns a filter over words as Words returned them (at least
// one), or false when there are none.
func FromWords(words []uint64) (*Filter, bool) {
	if len(words) == 0 {
		return nil, false
	}
	return newFilter(words), true
}
