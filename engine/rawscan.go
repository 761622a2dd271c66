package engine

import (
	"fmt"
	"unicode/utf8"
)

// Structural scanning of JSON text: the members of an object and the
// elements of an array, as the exact bytes of their values, without
// decoding them. A source that receives many entities in one document (a
// REST page) uses them to hand each entity over as text (RawReader), so
// that PrepareRaw, not a map, makes its stored form.
//
// These functions check the structure they walk (brackets, keys, colons,
// commas, nothing after the document) but not the values they hand out:
// a value's extent is found from its brackets and strings only, and the
// caller decodes it or passes it to PrepareRaw, which validates it. Every
// byte of a document is therefore checked by one or the other.

// ScanRawObject calls fn with each member of the JSON object text obj
// (whitespace around it allowed), in order, duplicates included: the key
// (its bytes in obj when it has no escapes, else a decoded copy; either
// may be kept) and the value's text. It stops at fn's first error and
// returns it; malformed structure is a *SyntaxError with the offset in
// obj.
func ScanRawObject(obj []byte, fn func(key, val []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return &SyntaxError{Offset: i, Msg: "expected an object"}
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return rawEnd(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return &SyntaxError{Offset: i, Msg: "expected object key string"}
		}
		ks := i + 1
		ke, flags := scanString(obj, ks)
		var key []byte
		switch {
		case flags&(strOpen|strControl) != 0:
			return &SyntaxError{Offset: ke, Msg: "malformed object key string"}
		case flags&strEscape != 0:
			d := decoder{data: obj, pos: i}
			k, err := d.string()
			if err != nil {
				return err
			}
			key = []byte(k)
		case flags&strNonASCII != 0 && !utf8.Valid(obj[ks:ke]):
			return &SyntaxError{Offset: ks, Msg: "invalid UTF-8 in object key"}
		default:
			key = obj[ks:ke]
		}
		i = skipWS(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return &SyntaxError{Offset: i, Msg: "expected ':' after object key"}
		}
		i = skipWS(obj, i+1)
		end, err := rawValueEnd(obj, i)
		if err != nil {
			return err
		}
		if err := fn(key, obj[i:end]); err != nil {
			return err
		}
		i = skipWS(obj, end)
		if i >= len(obj) {
			return &SyntaxError{Offset: i, Msg: "unexpected end of input in object"}
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
			continue
		case '}':
			return rawEnd(obj, i+1)
		}
		return &SyntaxError{Offset: i, Msg: "expected ',' or '}' in object"}
	}
}

// AppendRawElements appends the text of each element of the JSON array
// text arr (whitespace around it allowed) to dst.
func AppendRawElements(dst [][]byte, arr []byte) ([][]byte, error) {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return dst, &SyntaxError{Offset: i, Msg: "expected an array"}
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return dst, rawEnd(arr, i+1)
	}
	for {
		end, err := rawValueEnd(arr, i)
		if err != nil {
			return dst, err
		}
		dst = append(dst, arr[i:end:end])
		i = skipWS(arr, end)
		if i >= len(arr) {
			return dst, &SyntaxError{Offset: i, Msg: "unexpected end of input in array"}
		}
		switch arr[i] {
		case ',':
			i = skipWS(arr, i+1)
			continue
		case ']':
			return dst, rawEnd(arr, i+1)
		}
		return dst, &SyntaxError{Offset: i, Msg: "expected ',' or ']' in array"}
	}
}

// rawEnd checks that only whitespace follows i.
func rawEnd(data []byte, i int) error {
	if i = skipWS(data, i); i != len(data) {
		return &SyntaxError{Offset: i, Msg: fmt.Sprintf("unexpected %q after top-level value", data[i])}
	}
	return nil
}

// rawValueEnd returns the index just after the value that starts at i:
// a string up to its closing quote, an object or array up to the bracket
// that closes it (strings inside skipped whole; which bracket closes is
// not checked), anything else up to the next delimiter or whitespace.
func rawValueEnd(data []byte, i int) (int, error) {
	if i >= len(data) {
		return i, &SyntaxError{Offset: i, Msg: "unexpected end of input"}
	}
	switch data[i] {
	case '"':
		end := stringEnd(data, i+1)
		if end < 0 {
			return len(data), &SyntaxError{Offset: i, Msg: "unterminated string"}
		}
		return end + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end := stringEnd(data, j+1)
				if end < 0 {
					return len(data), &SyntaxError{Offset: j, Msg: "unterminated string"}
				}
				j = end
			case '{', '[':
				depth++
				if depth > maxDepth {
					return j, &SyntaxError{Offset: j, Msg: "nesting too deep"}
				}
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return len(data), &SyntaxError{Offset: len(data), Msg: "unexpected end of input"}
	case ',', '}', ']', ':':
		return i, &SyntaxError{Offset: i, Msg: "expected a value"}
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, nil
		}
		j++
	}
	return j, nil
}

// stringEnd returns the index of the quote that closes the string whose
// contents start at i, or -1. Raw control characters are stepped over
// (the value's validation reports them).
func stringEnd(data []byte, i int) int {
	for {
		end, flags := scanString(data, i)
		switch {
		case flags&strOpen != 0:
			return -1
		case flags&strControl != 0:
			i = end + 1
		default:
			return end
		}
	}
}
