package dtl

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
	"unicode/utf8"
)

// globMatch reports whether s matches the Python fnmatch pattern (case
// sensitive, as fnmatch.fnmatchcase): '*' any run, '?' one character,
// '[seq]' / '[!seq]' a character class with ranges; an unclosed '[' is
// literal. A pattern without wildcards matches only itself.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		pc, pw := utf8.DecodeRuneInString(pattern)
		switch pc {
		case '*':
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(s); {
				if globMatch(pattern, s[i:]) {
					return true
				}
				if i == len(s) {
					break
				}
				_, w := utf8.DecodeRuneInString(s[i:])
				i += w
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			_, w := utf8.DecodeRuneInString(s)
			s, pattern = s[w:], pattern[pw:]
		case '[':
			if s == "" {
				return false
			}
			sc, sw := utf8.DecodeRuneInString(s)
			ok, rest, valid := matchClass(pattern[1:], sc)
			if !valid { // literal '['
				if sc != '[' {
					return false
				}
				s, pattern = s[sw:], pattern[pw:]
				continue
			}
			if !ok {
				return false
			}
			s, pattern = s[sw:], rest
		default:
			if s == "" {
				return false
			}
			sc, sw := utf8.DecodeRuneInString(s)
			if sc != pc {
				return false
			}
			s, pattern = s[sw:], pattern[pw:]
		}
	}
	return s == ""
}

// matchClass matches c against the class body after '['; it returns whether
// c is in the class, the pattern after ']' and whether the class was closed.
func matchClass(p string, c rune) (matched bool, rest string, valid bool) {
	negate := false
	if len(p) > 0 && p[0] == '!' {
		negate = true
		p = p[1:]
	}
	first := true
	for len(p) > 0 {
		if p[0] == ']' && !first {
			return matched != negate, p[1:], true
		}
		first = false
		lo, w := utf8.DecodeRuneInString(p)
		p = p[w:]
		hi := lo
		if len(p) >= 2 && p[0] == '-' && p[1] != ']' {
			hi, w = utf8.DecodeRuneInString(p[1:])
			p = p[1+w:]
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return false, "", false
}

// murmur3x64_128 is MurmurHash3_x64_128 (seed 0), the hash behind Python's
// mmh3.hash128 that Sesam's hash128 uses.
func murmur3x64_128(data []byte) (h1, h2 uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	n := len(data)
	nblocks := n / 16
	for i := 0; i < nblocks; i++ {
		k1 := binary.LittleEndian.Uint64(data[i*16:])
		k2 := binary.LittleEndian.Uint64(data[i*16+8:])
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	tail := data[nblocks*16:]
	var k1, k2 uint64
	for i := len(tail) - 1; i >= 8; i-- {
		k2 ^= uint64(tail[i]) << (uint(i-8) * 8)
	}
	if len(tail) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	for i := min(len(tail), 8) - 1; i >= 0; i-- {
		k1 ^= uint64(tail[i]) << (uint(i) * 8)
	}
	if len(tail) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// hash128String returns mmh3.hash128(s) as Python prints it: the unsigned
// 128-bit integer h1 + h2<<64, in decimal.
func hash128String(s string) string {
	h1, h2 := murmur3x64_128([]byte(s))
	n := new(big.Int).SetUint64(h2)
	n.Lsh(n, 64)
	n.Or(n, new(big.Int).SetUint64(h1))
	return n.String()
}

// newUUID4 returns a random RFC 4122 version 4 UUID string.
func newUUID4() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
