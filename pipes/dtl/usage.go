package dtl

import "sort"

// Functions returns the sorted names of every supported DTL function,
// expression and transform functions alike (for `ferry compat`).
func Functions() []string {
	seen := map[string]struct{}{}
	for n := range exprTable() {
		seen[n] = struct{}{}
	}
	for n := range transformTable() {
		seen[n] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// UsedFunctions counts every function name used in a rules object (or any
// DTL fragment), walking like CORPUS.md: a list whose first element is a
// string is a call (counted, then its arguments walked, except those of
// "comment" and "literal"); other lists and dict values are walked, except the
// "datasets" of a hops spec. Unknown
// names are counted too, so callers can diff the result against
// [Functions].
func UsedFunctions(rules any) map[string]int {
	counts := map[string]int{}
	countCalls(rules, counts)
	return counts
}

func countCalls(v any, counts map[string]int) {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			return
		}
		if name, ok := x[0].(string); ok {
			counts[name]++
			if name == "comment" || name == "literal" {
				return
			}
			for _, a := range x[1:] {
				countCalls(a, counts)
			}
			return
		}
		for _, e := range x {
			countCalls(e, counts)
		}
	case map[string]any:
		for k, e := range x {
			if k == "datasets" { // hops dataset specs are not calls
				continue
			}
			countCalls(e, counts)
		}
	}
}
