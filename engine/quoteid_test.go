package engine

import (
	"strconv"
	"strings"
	"testing"
)

func TestQuoteID(t *testing.T) {
	long := strings.Repeat("x", 70000) + "-1"
	for _, tc := range []struct{ id, want string }{
		{"crm-person:1", `"crm-person:1"`},
		{"a\"b\n", `"a\"b\n"`},
		{strings.Repeat("y", 96), `"` + strings.Repeat("y", 96) + `"`},
		{long, `"` + strings.Repeat("x", 96) + `"… (70002 bytes)`},
		// A cut inside a multi-byte character backs up to its start.
		{strings.Repeat("y", 95) + strings.Repeat("é", 10), `"` + strings.Repeat("y", 95) + `"… (115 bytes)`},
		// Not UTF-8: cut where it is.
		{strings.Repeat("\x80", 200), strconv.Quote(strings.Repeat("\x80", 96)) + "… (200 bytes)"},
	} {
		if got := QuoteID(tc.id); got != tc.want {
			t.Errorf("QuoteID(%.20q…): %s, want %s", tc.id, got, tc.want)
		}
	}
}
