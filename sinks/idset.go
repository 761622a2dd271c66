package sinks

import (
	"math/bits"
	"slices"
)

// sortIDHashes sorts 128-bit id hashes with scratch as room (grown and
// returned for the next call): an LSD radix sort on the high 64 bits, a
// byte per pass, skipping the bytes all hashes share (a seenSet bucket's
// top byte), then a comparison pass that only has work to do where high
// halves tie (uniformly distributed: vanishingly rare). The seen set sorts
// buckets of a few thousand hashes this way, whose counts, hashes and
// scratch stay in the CPU's cache.
func sortIDHashes(hs, scratch []idHash) []idHash {
	if len(hs) < 64 {
		slices.SortFunc(hs, cmpIDHash)
		return scratch
	}
	if cap(scratch) < len(hs) {
		scratch = make([]idHash, len(hs))
	}
	src, dst := hs, scratch[:len(hs)]
	var count [256]int
	for shift := uint(0); shift < 64; shift += 8 {
		clear(count[:])
		for _, h := range src {
			count[(h[0]>>shift)&0xff]++
		}
		if count[(src[0][0]>>shift)&0xff] == len(src) {
			continue // every hash has this byte: nothing to order
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, h := range src {
			d := (h[0] >> shift) & 0xff
			dst[count[d]] = h
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &hs[0] {
		copy(hs, src)
	}
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hs[j-1][0] == hs[j][0] && hs[j-1][1] > hs[j][1]; j-- {
			hs[j-1], hs[j] = hs[j], hs[j-1]
		}
	}
	return scratch
}

// containsIDHash reports whether the sorted hs holds h. The high halves are
// uniformly distributed between the first and the last (a whole set, or a
// bucket of one top byte), so an interpolated first guess lands next to
// the answer and the search is a few steps on average.
func containsIDHash(hs []idHash, h idHash) bool {
	n := len(hs)
	if n == 0 || h[0] < hs[0][0] || h[0] > hs[n-1][0] {
		return false
	}
	g := 0
	if span := hs[n-1][0] - hs[0][0]; span > 0 {
		// (h - first) * n / span, in 128 bits: h - first <= span, so the
		// high half of the product is below span and Div64 cannot fail.
		hi, lo := bits.Mul64(h[0]-hs[0][0], uint64(n))
		q, _ := bits.Div64(hi, lo, span)
		g = min(int(q), n-1)
	}
	lo, hi := 0, n
	// Narrow around the guess with a doubling window, then binary search.
	step := 1
	for {
		a, b := max(g-step, 0), min(g+step, n)
		if (a == 0 || cmpIDHash(hs[a], h) <= 0) && (b == n || cmpIDHash(hs[b-1], h) >= 0) {
			lo, hi = a, b
			break
		}
		if a == 0 && b == n {
			break
		}
		step *= 2
	}
	_, found := slices.BinarySearchFunc(hs[lo:hi], h, cmpIDHash)
	return found
}
