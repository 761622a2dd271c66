package pipetest

import (
	"fmt"
	"strings"
)

// maxEdits bounds the Myers search: texts that differ in more lines than
// this (after their common start and end) are shown as one replaced
// block, which is what such a diff would read like anyway.
const maxEdits = 1000

// op is one line of an edit script: ' ' kept, '-' only in a, '+' only in b.
type op struct {
	kind byte
	line string
}

// Unified returns a unified diff (as diff -u prints it, with context
// lines of context) turning a into b, named aName and bName in the
// header; "" when they are equal. Both texts are split into lines; a
// missing final newline is shown as such.
func Unified(aName, bName, a, b string, context int) string {
	if a == b {
		return ""
	}
	al, bl := lines(a), lines(b)
	ops := script(al, bl)
	// Line numbers before each op, in a and in b.
	apos, bpos := make([]int, len(ops)+1), make([]int, len(ops)+1)
	for i, o := range ops {
		apos[i+1], bpos[i+1] = apos[i], bpos[i]
		if o.kind != '+' {
			apos[i+1]++
		}
		if o.kind != '-' {
			bpos[i+1]++
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", aName, bName)
	i := 0
	for {
		for i < len(ops) && ops[i].kind == ' ' {
			i++
		}
		if i == len(ops) {
			break
		}
		// A hunk: this change and every later one separated from the
		// previous by at most 2*context kept lines, with context around.
		last := i
		for j := i + 1; j < len(ops); j++ {
			if ops[j].kind == ' ' {
				continue
			}
			if j-last-1 > 2*context {
				break
			}
			last = j
		}
		start, end := max(i-context, 0), min(last+1+context, len(ops))
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(apos[start], apos[end]-apos[start]), hunkRange(bpos[start], bpos[end]-bpos[start]))
		for _, o := range ops[start:end] {
			sb.WriteByte(o.kind)
			sb.WriteString(strings.TrimSuffix(o.line, "\n"))
			sb.WriteByte('\n')
			if !strings.HasSuffix(o.line, "\n") {
				sb.WriteString("\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return sb.String()
}

// hunkRange renders "start,count" as diff -u does (1-based; an empty
// range names the line before it).
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprint(start + 1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// lines splits s after each newline (the last line may lack one).
func lines(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.SplitAfter(s, "\n")
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// script returns an edit script from a to b with the fewest changes
// (Myers' O(ND) algorithm on what remains after the common start and
// end), or, past maxEdits, the middle as one deletion and one insertion.
func script(a, b []string) []op {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var out []op
	for _, l := range a[:pre] {
		out = append(out, op{' ', l})
	}
	out = append(out, myers(a[pre:len(a)-suf], b[pre:len(b)-suf])...)
	for _, l := range a[len(a)-suf:] {
		out = append(out, op{' ', l})
	}
	return out
}

// myers diffs a and b. trace[d] keeps the furthest x per diagonal k in
// -d-1..d+1 before step d (a window, so memory grows with the number of
// edits squared, not with the lengths).
func myers(a, b []string) []op {
	n, m := len(a), len(b)
	if n == 0 || m == 0 || disjoint(a, b) {
		return replace(a, b)
	}
	limit := min(n+m, maxEdits)
	off := limit + 1
	v := make([]int, 2*limit+3)
	var trace [][]int
	found := false
	for d := 0; d <= limit && !found; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = true
				break
			}
		}
	}
	if !found {
		return replace(a, b)
	}
	// Backtrack from (n, m) through the saved windows.
	var rev []op
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		w := trace[d]
		at := func(k int) int { return w[k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			rev = append(rev, op{' ', a[x-1]})
			x, y = x-1, y-1
		}
		if d > 0 {
			if x == px {
				rev = append(rev, op{'+', b[y-1]})
			} else {
				rev = append(rev, op{'-', a[x-1]})
			}
		}
		x, y = px, py
	}
	out := make([]op, len(rev))
	for i, o := range rev {
		out[len(rev)-1-i] = o
	}
	return out
}

// disjoint reports whether a and b share no line (then nothing can be
// kept, and the search would be all cost).
func disjoint(a, b []string) bool {
	in := make(map[string]bool, len(a))
	for _, l := range a {
		in[l] = true
	}
	for _, l := range b {
		if in[l] {
			return false
		}
	}
	return true
}

// replace is the script that deletes all of a and inserts all of b.
func replace(a, b []string) []op {
	out := make([]op, 0, len(a)+len(b))
	for _, l := range a {
		out = append(out, op{'-', l})
	}
	for _, l := range b {
		out = append(out, op{'+', l})
	}
	return out
}
