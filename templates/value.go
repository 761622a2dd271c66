package templates

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Values during evaluation model Python values:
//
//	nil            None
//	bool           bool
//	int64          int (*big.Int when it does not fit; only printed and compared)
//	float64        float
//	string         str
//	[]any          list
//	tuple          tuple
//	map[string]any dict (iterated in sorted key order: Go maps keep no order)
//	undefined      jinja2.Undefined
//	*loopContext   Jinja's loop variable
//	*boundMethod   a method looked up on a value ("abc".upper)

type tuple []any

// undefined is jinja2.Undefined: it prints as "", is falsy, iterates as
// empty, and raises UndefinedError on arithmetic, ordering, calls and
// attribute access.
type undefined struct {
	name string // the undefined variable, or ""
	hint string // the message to raise instead of "'name' is undefined"
}

func (u undefined) err() error {
	if u.hint != "" {
		return &UndefinedError{Name: u.name, msg: u.hint}
	}
	return &UndefinedError{Name: u.name}
}

// UndefinedError is raised when an undefined value is used for more than
// printing or testing (jinja2.exceptions.UndefinedError).
type UndefinedError struct {
	Name string // the undefined variable name, when the value is a variable
	msg  string
}

// Error returns Jinja2's message, e.g. "'my' is undefined".
func (e *UndefinedError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("'%s' is undefined", e.Name)
}

// loopContext is Jinja's "loop" variable, built from pongo2's forloop.
type loopContext struct {
	index, length, depth int
}

type boundMethod struct {
	recv any
	name string
}

// fromGo converts a Go value from the caller (decoded JSON with UseNumber,
// or plain Go scalars) into the evaluation model.
func fromGo(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []any, tuple, map[string]any, undefined, *big.Int, *loopContext, *boundMethod:
		return v
	case json.Number:
		return numberValue(string(x))
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u <= math.MaxInt64 {
			return int64(u)
		}
		return new(big.Int).SetUint64(u)
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = rv.Index(i).Interface()
		}
		return out
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			out := make(map[string]any, rv.Len())
			it := rv.MapRange()
			for it.Next() {
				out[it.Key().String()] = it.Value().Interface()
			}
			return out
		}
	}
	return fmt.Sprint(v)
}

// numberValue turns JSON number text into int64, *big.Int or float64, the
// way Python's json module does (a number with a fraction or exponent is a
// float).
func numberValue(s string) any {
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if b, ok := new(big.Int).SetString(s, 10); ok {
			return b
		}
	}
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

// pyStr is Python's str() of a value, which is what Jinja2 prints.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case undefined:
		return ""
	}
	return pyRepr(v)
}

// pyRepr is Python's repr() of a value.
func pyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

func writeRepr(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case *big.Int:
		b.WriteString(x.String())
	case float64:
		b.WriteString(pyFloatRepr(x))
	case string:
		writeStrRepr(b, x)
	case undefined:
		b.WriteString("Undefined")
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		b.WriteByte(']')
	case tuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteString(", ")
			}
			writeStrRepr(b, k)
			b.WriteString(": ")
			writeRepr(b, x[k])
		}
		b.WriteByte('}')
	case *loopContext:
		fmt.Fprintf(b, "<LoopContext %d/%d>", x.index, x.length)
	case *boundMethod:
		fmt.Fprintf(b, "<built-in method %s of %s object>", x.name, typeName(x.recv))
	default:
		writeRepr(b, fromGo(v))
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeStrRepr writes Python's repr() of a str.
func writeStrRepr(b *strings.Builder, s string) {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r < 0x7f && r >= 0x20 || r > 0x7f && unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			fmt.Fprintf(b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
}

// pyFloatRepr is Python's repr() of a float: the shortest round-tripping
// digits, fixed notation for exponents in [-4, 16), else scientific with a
// signed two-digit exponent.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if exp >= -4 && exp < 16 {
		switch {
		case exp < 0:
			return sign + "0." + strings.Repeat("0", -exp-1) + digits
		case len(digits) <= exp+1:
			return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
		default:
			return sign + digits[:exp+1] + "." + digits[exp+1:]
		}
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if exp < 0 {
		es, exp = "-", -exp
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
}

// typeName is Python's type name, for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case tuple:
		return "tuple"
	case map[string]any:
		return "dict"
	case undefined:
		return "Undefined"
	case *loopContext:
		return "LoopContext"
	case *boundMethod:
		return "builtin_function_or_method"
	}
	return fmt.Sprintf("%T", v)
}

// truthy is Python's bool().
func truthy(v any) bool {
	switch x := v.(type) {
	case nil, undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case *big.Int:
		return x.Sign() != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case tuple:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// asNumber returns v as int64 or float64 (bools count as ints, as in Python).
func asNumber(v any) (i int64, f float64, isFloat, ok bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, 0, false, true
		}
		return 0, 0, false, true
	case int64:
		return x, 0, false, true
	case float64:
		return 0, x, true, true
	}
	return 0, 0, false, false
}

// pyEqual is Python's ==.
func pyEqual(a, b any) bool {
	if ai, af, aFloat, ok := asNumber(a); ok {
		bi, bf, bFloat, ok := asNumber(b)
		if !ok {
			if bb, isBig := b.(*big.Int); isBig && !aFloat {
				return bb.Cmp(big.NewInt(ai)) == 0
			}
			return false
		}
		switch {
		case !aFloat && !bFloat:
			return ai == bi
		case aFloat && bFloat:
			return af == bf
		case aFloat:
			return af == float64(bi)
		default:
			return float64(ai) == bf
		}
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case *big.Int:
		switch y := b.(type) {
		case *big.Int:
			return x.Cmp(y) == 0
		case int64:
			return x.Cmp(big.NewInt(y)) == 0
		}
		return false
	case undefined:
		_, ok := b.(undefined)
		return ok
	case []any:
		y, ok := b.([]any)
		return ok && seqEqual(x, y)
	case tuple:
		y, ok := b.(tuple)
		return ok && seqEqual(x, y)
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !pyEqual(fromGo(v), fromGo(w)) {
				return false
			}
		}
		return true
	}
	return a == b
}

func seqEqual(x, y []any) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !pyEqual(fromGo(x[i]), fromGo(y[i])) {
			return false
		}
	}
	return true
}

// pyCompare is Python's ordering (<0, 0, >0) for numbers, strings and
// sequences; other combinations raise TypeError.
func pyCompare(op string, a, b any) (int, error) {
	if u, ok := a.(undefined); ok {
		return 0, u.err()
	}
	if u, ok := b.(undefined); ok {
		return 0, u.err()
	}
	if ai, af, aFloat, ok := asNumber(a); ok {
		if bi, bf, bFloat, ok := asNumber(b); ok {
			if !aFloat && !bFloat {
				return cmpOrdered(ai, bi), nil
			}
			if !aFloat {
				af = float64(ai)
			}
			if !bFloat {
				bf = float64(bi)
			}
			return cmpOrdered(af, bf), nil
		}
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	case []any:
		if y, ok := b.([]any); ok {
			return seqCompare(op, x, y)
		}
	case tuple:
		if y, ok := b.(tuple); ok {
			return seqCompare(op, x, y)
		}
	}
	return 0, fmt.Errorf("'%s' not supported between instances of '%s' and '%s'", op, typeName(a), typeName(b))
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func seqCompare(op string, x, y []any) (int, error) {
	for i := 0; i < len(x) && i < len(y); i++ {
		a, b := fromGo(x[i]), fromGo(y[i])
		if pyEqual(a, b) {
			continue
		}
		return pyCompare(op, a, b)
	}
	return cmpOrdered(int64(len(x)), int64(len(y))), nil
}

// iterate returns the items of an iterable the way Python iterates it.
func iterate(v any) ([]any, error) {
	switch x := v.(type) {
	case undefined:
		return nil, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromGo(e)
		}
		return out, nil
	case tuple:
		return iterate([]any(x))
	case string:
		out := make([]any, 0, len(x))
		for _, r := range x {
			out = append(out, string(r))
		}
		return out, nil
	case map[string]any:
		keys := sortedKeys(x)
		out := make([]any, len(keys))
		for i, k := range keys {
			out[i] = k
		}
		return out, nil
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}

// pyLen is Python's len().
func pyLen(v any) (int, error) {
	switch x := v.(type) {
	case undefined:
		return 0, nil
	case string:
		return utf8.RuneCountInString(x), nil
	case []any:
		return len(x), nil
	case tuple:
		return len(x), nil
	case map[string]any:
		return len(x), nil
	}
	return 0, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}
