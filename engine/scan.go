package engine

import (
	"encoding/binary"
	"math/bits"
)

// String scanning, eight bytes at a time. Most of an entity's bytes are
// string contents, and a byte-at-a-time loop with a branch per byte spent
// about 18 instructions per byte there (callgrind on BenchmarkPrepareRaw).
// scanString looks at a machine word per step and only drops to single
// bytes at the quote, a backslash, a control character or a non-ASCII
// byte.

// Flags scanString reports about a string's contents.
const (
	strEscape   = 1 << iota // has a backslash escape
	strNonASCII             // has a byte >= 0x80 (UTF-8 still to validate)
	strControl              // has a raw control character (invalid JSON)
	strOpen                 // no closing quote before the end of the data
)

const (
	swarOnes  = 0x0101010101010101
	swarHighs = 0x8080808080808080
)

// swarZero has the high bit set in the bytes of w that are zero (and,
// above a zero byte, possibly in others: only the lowest set byte is
// exact, which is all the callers use).
func swarZero(w uint64) uint64 { return (w - swarOnes) & ^w & swarHighs }

// swarSpecial marks the bytes of w that end a run of plain string
// contents: a quote, a backslash, a control character or a byte >= 0x80.
func swarSpecial(w uint64) uint64 {
	return swarZero(w^(swarOnes*'"')) | swarZero(w^(swarOnes*'\\')) | (w-swarOnes*0x20)&^w&swarHighs | w&swarHighs
}

// scanString scans string contents starting at data[i] (just after the
// opening quote) and returns the index of the closing quote (len(data)
// when there is none) and what the contents hold. With strControl, end
// is the index of the first control character. Escapes are skipped, not
// validated: a string with strEscape needs the decoder's full rules.
func scanString(data []byte, i int) (end int, flags int) {
	for {
		for i+8 <= len(data) {
			m := swarSpecial(binary.LittleEndian.Uint64(data[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		if i >= len(data) {
			return len(data), flags | strOpen
		}
		switch c := data[i]; {
		case c == '"':
			return i, flags
		case c == '\\':
			flags |= strEscape
			i += 2
		case c < 0x20:
			return i, flags | strControl
		case c >= 0x80:
			flags |= strNonASCII
			i++
		default:
			i++
		}
	}
}
