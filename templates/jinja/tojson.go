package jinja

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// appendJSON appends v, a Ferry JSON value, as Jinja2's tojson writes it:
// Python json.dumps with sort_keys=True, separators ", " and ": ",
// ensure_ascii, plus Jinja2's HTML-safe escapes of < > & '. Numbers are
// written exactly as their json.Number text.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case json.Number:
		if x == "" {
			return nil, fmt.Errorf("empty number")
		}
		return append(b, x...), nil
	case string:
		return appendJSONString(b, x), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ", "...)
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendJSONString(b, k)
			b = append(b, ": "...)
			var err error
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("cannot write %T as JSON", v)
}

// appendJSONString writes s with Python's ensure_ascii escaping (every
// character outside printable ASCII as \uXXXX, astral characters as
// surrogate pairs) and Jinja2's htmlsafe escapes.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch r {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '<', '>', '&', '\'':
			b = appendU(b, r)
		default:
			switch {
			case r >= 0x20 && r < 0x7f:
				b = append(b, byte(r))
			case r == utf8.RuneError:
				b = appendU(b, 0xfffd)
			case r > 0xffff:
				r -= 0x10000
				b = appendU(b, 0xd800+(r>>10))
				b = appendU(b, 0xdc00+(r&0x3ff))
			default:
				b = appendU(b, r)
			}
		}
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	h := strconv.FormatInt(int64(r), 16)
	return append(append(b, `\u`+strings.Repeat("0", 4-len(h))...), h...)
}
