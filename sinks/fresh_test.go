package sinks

import (
	"fmt"
	"testing"
)

// TestFreshIDs: every id added is reported seen when added again, before
// and after the move to the large filter, and ids never added are rarely
// reported seen.
func TestFreshIDs(t *testing.T) {
	for _, n := range []int{1, 300, freshSmallIDs, freshSmallIDs + 1, 200_000} {
		f := newFreshIDs()
		falsePos := 0
		for i := range n {
			if f.add(hashID(fmt.Sprint("id-", i))) {
				falsePos++
			}
		}
		if (f.big != nil) != (n > freshSmallIDs) {
			t.Errorf("n=%d: large filter %v", n, f.big != nil)
		}
		for i := range n {
			if !f.add(hashID(fmt.Sprint("id-", i))) {
				t.Fatalf("n=%d: id-%d added before, reported new", n, i)
			}
		}
		if falsePos > n/100 {
			t.Errorf("n=%d: %d new ids reported seen", n, falsePos)
		}
	}
}
