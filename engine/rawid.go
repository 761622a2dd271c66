package engine

import (
	"bytes"
	"unicode/utf8"

	"github.com/zeebo/xxh3"
)

// RawTextHash is the 64-bit hash of an entity's JSON text that the store
// keeps with the _id (Prepared.RawHash). Equal hashes of the same _id mean
// the same text, and the same text means the same stored version, so an
// unchanged entity costs a hash and a lookup instead of a canonicalization.
// A false match needs a 64-bit collision between two texts of one _id
// (about 2^-64 per changed entity); the canonical _hash stays 128-bit.
// 0 is reserved for "unknown".
func RawTextHash(raw []byte) uint64 {
	h := xxh3.Hash(raw)
	if h == 0 {
		h = 1
	}
	return h
}

// ScanRawID finds the root _id of an entity's JSON text without decoding
// or validating it: it returns the first root member "_id" when that is a
// string without escapes (and valid UTF-8). ok is false whenever it is unsure (escapes, odd
// syntax, no _id); callers then prepare the text in full. A wrong answer
// can only cost a lookup: whether the text is unchanged is decided by
// RawTextHash, which was stored for text that passed PrepareRaw.
func ScanRawID(raw []byte) (id string, ok bool) {
	b, ok := scanRawID(raw)
	return string(b), ok
}

// scanRawID is ScanRawID returning the _id's bytes in raw.
func scanRawID(raw []byte) ([]byte, bool) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipWS(raw, i)
		if i >= len(raw) || raw[i] != '"' {
			return nil, false
		}
		ks := i + 1
		ke := plainStringEnd(raw, ks)
		if ke < 0 {
			return nil, false
		}
		i = skipWS(raw, ke+1)
		if i >= len(raw) || raw[i] != ':' {
			return nil, false
		}
		i = skipWS(raw, i+1)
		if ke-ks == 3 && raw[ks] == '_' && raw[ks+1] == 'i' && raw[ks+2] == 'd' {
			if i >= len(raw) || raw[i] != '"' {
				return nil, false
			}
			ve := plainStringEnd(raw, i+1)
			if ve < 0 || ve == i+1 || !utf8.Valid(raw[i+1:ve]) {
				return nil, false
			}
			return raw[i+1 : ve], true
		}
		if i = skipRawValue(raw, i); i < 0 {
			return nil, false
		}
		i = skipWS(raw, i)
		if i >= len(raw) || raw[i] != ',' {
			return nil, false
		}
		i++
	}
}

func skipWS(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// plainStringEnd returns the index of the closing quote of the string
// starting at i (after its opening quote), or -1 if it has escapes or
// control characters or does not end.
func plainStringEnd(raw []byte, i int) int {
	j := bytes.IndexByte(raw[i:], '"')
	if j < 0 {
		return -1
	}
	for _, c := range raw[i : i+j] {
		if c == '\\' || c < 0x20 {
			return -1
		}
	}
	return i + j
}

// skipRawValue returns the index after the value starting at i, or -1.
// Strings may have escapes here; nesting is tracked by brackets only.
func skipRawValue(raw []byte, i int) int {
	depth := 0
	for i < len(raw) {
		switch c := raw[i]; c {
		case '"':
			i++
			for i < len(raw) && raw[i] != '"' {
				if raw[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(raw) {
				return -1
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i
			}
			i++
		default:
			i++
		}
		if depth == 0 && i < len(raw) && (raw[i] == ',' || raw[i] == '}' || raw[i] == ']') {
			return i
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}
