package dtl

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
)

// globMatch reports whether s matches the Python fnmatch pattern (case
// sensitive, as fnmatch.fnmatchcase): '*' any run, '?' one character,
// '[seq]' / '[!seq]' a character class with ranges; an unclosed '[' is
// literal. A pattern without wildcards matches only itself. The matcher
// backtracks only to the last '*', so it runs in O(len(pattern)*len(s)).
func globMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(str) {
		if px < len(p) {
			switch p[px] {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				ok, n, valid := matchClass(p[px+1:], str[sx])
				if !valid {
					if str[sx] == '[' {
						px++
						sx++
						continue
					}
				} else if ok {
					px += 1 + n
					sx++
					continue
				}
			default:
				if p[px] == str[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		px = starP + 1
		starS++
		sx = starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchClass matches c against the class body after '['; it returns whether
// c is in the class, how many runes the body and closing ']' take, and
// whether the class was closed.
func matchClass(p []rune, c rune) (matched bool, n int, valid bool) {
	i := 0
	negate := false
	if i < len(p) && p[i] == '!' {
		negate = true
		i++
	}
	first := true
	for i < len(p) {
		if p[i] == ']' && !first {
			return matched != negate, i + 1, true
		}
		first = false
		lo, hi := p[i], p[i]
		i++
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi = p[i+1]
			i += 2
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	return false, 0, false
}

// murmur3x64_128 is MurmurHash3_x64_128, the hash behind Python's
// mmh3.hash128 that Sesam's hash128 uses; seed is mmh3's 32-bit seed.
func murmur3x64_128(data []byte, seed uint32) (h1, h2 uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	h1, h2 = uint64(seed), uint64(seed)
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
func hash128String(s string, seed uint32) string {
	h1, h2 := murmur3x64_128([]byte(s), seed)
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
