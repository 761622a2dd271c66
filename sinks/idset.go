package sinks

import (
	"math/bits"
	"slices"
)

// sortIDHashes sorts 128-bit id hashes: an LSD radix sort on the high 64
// bits (uniformly distributed, so ties are vanishingly rare), then a
// comparison pass that only has work to do where high halves tie. For a
// million hashes this is several times faster than a comparison sort.
// Its scratch, as large as hs, comes from makeHashes (huge pages if huge).
func sortIDHashes(hs []idHash, huge bool) {
	if len(hs) < 256 {
		slices.SortFunc(hs, cmpIDHash)
		return
	}
	src, dst := hs, makeHashes(len(hs), huge)[:len(hs)]
	for shift := uint(0); shift < 64; shift += 16 {
		var count [1 << 16]int
		for _, h := range src {
			count[(h[0]>>shift)&0xffff]++
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, h := range src {
			b := (h[0] >> shift) & 0xffff
			dst[count[b]] = h
			count[b]++
		}
		src, dst = dst, src
	}
	// Four passes: the result is back in hs.
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hs[j-1][0] == hs[j][0] && hs[j-1][1] > hs[j][1]; j-- {
			hs[j-1], hs[j] = hs[j], hs[j-1]
		}
	}
}

// containsIDHash reports whether the sorted hs holds h. The high halves are
// uniformly distributed, so an interpolated first guess lands next to the
// answer and the search is a few steps on average.
func containsIDHash(hs []idHash, h idHash) bool {
	n := len(hs)
	if n == 0 {
		return false
	}
	guess, _ := bits.Mul64(h[0], uint64(n))
	lo, hi := 0, n
	// Narrow around the guess with a doubling window, then binary search.
	g := int(guess)
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
