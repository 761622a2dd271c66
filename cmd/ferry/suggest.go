package main

import (
	"fmt"
	"strings"
)

// didYouMean returns ` (did you mean "x"?)` naming the candidate closest
// to name when one is close (edit distance at most a third of the name's
// length, at least 1, or a prefix either way), else "".
func didYouMean(name string, candidates []string) string {
	best, bestD := "", -1
	for _, cand := range candidates {
		if cand == name {
			continue
		}
		d := editDistance(strings.ToLower(name), strings.ToLower(cand))
		if strings.HasPrefix(cand, name) || strings.HasPrefix(name, cand) {
			d = min(d, 1)
		}
		if bestD < 0 || d < bestD || (d == bestD && cand < best) {
			best, bestD = cand, d
		}
	}
	if bestD < 0 || bestD > max(1, len([]rune(name))/3) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, by runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
