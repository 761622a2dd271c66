package engine

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// scanStringSlow is scanString one byte at a time.
func scanStringSlow(data []byte, i int) (int, int) {
	flags := 0
	for i < len(data) {
		switch c := data[i]; {
		case c == '"':
			return i, flags
		case c == '\\':
			flags |= strEscape
			i += 2
			continue
		case c < 0x20:
			return i, flags | strControl
		case c >= utf8.RuneSelf:
			flags |= strNonASCII
		}
		i++
	}
	return len(data), flags | strOpen
}

func FuzzScanString(f *testing.F) {
	for _, s := range []string{`abc"`, `a\"b"`, "ab\x01cdefghijk\"", `\\\\"`, "é\"", strings.Repeat("x", 30) + `\` + strings.Repeat("y", 9) + `"`, `unterminated`, `x\`} {
		f.Add([]byte(s), 0)
	}
	f.Fuzz(func(t *testing.T, data []byte, start int) {
		if start < 0 || start > len(data) {
			return
		}
		e1, f1 := scanString(data, start)
		e2, f2 := scanStringSlow(data, start)
		if f1&strOpen != 0 {
			e1 = len(data)
		}
		if e2 > len(data) {
			e2 = len(data)
		}
		if e1 != e2 || f1 != f2 {
			t.Fatalf("%q from %d: fast %d %b, slow %d %b", data, start, e1, f1, e2, f2)
		}
	})
}
