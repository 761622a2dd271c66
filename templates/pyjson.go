package templates

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf16"
)

// PythonJSON encodes v the way Python's json.dumps(v, sort_keys=True,
// indent=indent) does with the default ensure_ascii=True: keys sorted,
// non-ASCII escaped as \uXXXX, separators ", " and ": " when indent < 0
// (Python's indent=None) and "," plus newline-and-indent otherwise. Floats
// print as Python's repr. A json.Number is written as its own text, so
// numbers read from JSON keep their exact spelling (Python would rewrite
// 1.50 as 1.5; Ferry keeps numbers exact). v may hold nil, bool, string,
// json.Number, Go integers and floats, []any and map[string]any.
func PythonJSON(v any, indent int) ([]byte, error) {
	var b strings.Builder
	if err := writePyJSON(&b, v, indent, 0); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func writePyJSON(b *strings.Builder, v any, indent, depth int) error {
	newline := func(d int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*d))
		}
	}
	itemSep := ", "
	if indent >= 0 {
		itemSep = ","
	}
	switch x := v.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(x), 64); err != nil && !strings.Contains(err.Error(), "range") {
			return fmt.Errorf("invalid JSON number %q", string(x))
		}
		b.WriteString(string(x))
		return nil
	case float64:
		switch {
		case math.IsNaN(x):
			b.WriteString("NaN")
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloatRepr(x))
		}
		return nil
	case tuple:
		return writePyJSON(b, []any(x), indent, depth)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(itemSep)
			}
			newline(depth + 1)
			if err := writePyJSON(b, e, indent, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte(']')
		return nil
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteString(itemSep)
			}
			newline(depth + 1)
			writePyJSONString(b, k)
			b.WriteString(": ")
			if err := writePyJSON(b, x[k], indent, depth+1); err != nil {
				return err
			}
		}
		newline(depth)
		b.WriteByte('}')
		return nil
	case string:
		writePyJSONString(b, x)
		return nil
	}
	switch x := fromGo(v).(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case *big.Int:
		b.WriteString(x.String())
	case float64, string, []any, map[string]any:
		return writePyJSON(b, x, indent, depth)
	default:
		return fmt.Errorf("object of type %s is not JSON serializable", typeName(x))
	}
	return nil
}

// writePyJSONString writes s as json.dumps does with ensure_ascii=True.
func writePyJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(b, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}

// htmlSafeJSON is Jinja2's tojson filter: json.dumps(sort_keys=True) with
// <, >, & and ' escaped.
func htmlSafeJSON(v any) (string, error) {
	if u, ok := v.(undefined); ok {
		return "", fmt.Errorf("object of type Undefined is not JSON serializable: %w", u.err())
	}
	out, err := PythonJSON(v, -1)
	if err != nil {
		return "", err
	}
	return strings.NewReplacer("<", `\u003c`, ">", `\u003e`, "&", `\u0026`, "'", `\u0027`).Replace(string(out)), nil
}
