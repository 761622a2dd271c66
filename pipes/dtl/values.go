package dtl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"
)

// store turns a multi-value into the single JSON value Sesam would write:
// no element is null, one element is that element, several are a list.
func store(m []any) any {
	switch len(m) {
	case 0:
		return nil
	case 1:
		return m[0]
	default:
		return m[:len(m):len(m)]
	}
}

// spread turns a stored value back into a multi-value: null is empty, a list
// is its elements and anything else is a one-element sequence.
func spread(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	default:
		return []any{x}
	}
}

// one wraps a single value as a multi-value.
func one(v any) []any { return []any{v} }

// truthy reports whether a condition's multi-value counts as true: its first
// element must be the boolean true. Decision: Sesam documents conditions as
// boolean expressions; anything that is not literally true (null, strings,
// numbers, empty) is false, as in Sesam's "only literal true" rule for
// _deleted.
func truthy(m []any) bool {
	if len(m) == 0 {
		return false
	}
	b, ok := m[0].(bool)
	return ok && b
}

func boolM(b bool) []any { return []any{b} }

// Transit string prefixes (SPEC a).
const (
	prefixNI       = "~:"
	prefixDatetime = "~t"
	prefixUUID     = "~u"
	prefixURI      = "~r"
	prefixBytes    = "~b"
	prefixDecimal  = "~f"
)

// isTransit reports whether s encodes a typed value (NI, datetime, UUID,
// URI, bytes, decimal) rather than a plain string.
func isTransit(s string) bool {
	if len(s) < 2 || s[0] != '~' {
		return false
	}
	switch s[:2] {
	case prefixNI, prefixDatetime, prefixUUID, prefixURI, prefixBytes, prefixDecimal:
		return true
	}
	return false
}

func isNI(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, prefixNI)
}

func isDatetime(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, prefixDatetime)
}

// toRat converts a numeric value to an exact rational. Besides json.Number it
// accepts Go numeric types, so callers that did not decode with UseNumber
// still compare correctly, and "~f" transit decimals.
func toRat(v any) (*big.Rat, bool) {
	switch x := v.(type) {
	case json.Number:
		r, ok := new(big.Rat).SetString(string(x))
		return r, ok
	case int:
		return new(big.Rat).SetInt64(int64(x)), true
	case int64:
		return new(big.Rat).SetInt64(x), true
	case int32:
		return new(big.Rat).SetInt64(int64(x)), true
	case uint64:
		return new(big.Rat).SetInt(new(big.Int).SetUint64(x)), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		return new(big.Rat).SetFloat64(x), true
	case string:
		if strings.HasPrefix(x, prefixDecimal) {
			r, ok := new(big.Rat).SetString(x[2:])
			return r, ok
		}
	}
	return nil, false
}

func isNumber(v any) bool {
	switch x := v.(type) {
	case json.Number, int, int64, int32, uint64, float64:
		return true
	case string:
		return strings.HasPrefix(x, prefixDecimal)
	}
	return false
}

// isInteger reports whether v is a number with an integral value written
// without a fraction or exponent (Python int).
func isInteger(v any) bool {
	switch x := v.(type) {
	case int, int64, int32, uint64:
		return true
	case json.Number:
		_, ok := new(big.Int).SetString(string(x), 10)
		return ok
	}
	return false
}

// ratNumber renders an exact rational as a json.Number: integers as
// integers, other values as exact decimals when the denominator allows it,
// else with 20 significant fraction digits.
func ratNumber(r *big.Rat) json.Number {
	if r.IsInt() {
		return json.Number(r.Num().String())
	}
	if s, exact := r.FloatPrec(); exact {
		return json.Number(r.FloatString(s))
	}
	return json.Number(strings.TrimRight(r.FloatString(20), "0"))
}

// typeRank implements Sesam's cross-type sort order (SPEC a):
// null < bool < number < datetime < uuid < NI < URI < string < dict < list < bytes.
func typeRank(v any) int {
	switch x := v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case string:
		switch {
		case strings.HasPrefix(x, prefixDecimal):
			return 2
		case strings.HasPrefix(x, prefixDatetime):
			return 3
		case strings.HasPrefix(x, prefixUUID):
			return 4
		case strings.HasPrefix(x, prefixNI):
			return 5
		case strings.HasPrefix(x, prefixURI):
			return 6
		case strings.HasPrefix(x, prefixBytes):
			return 10
		}
		return 7
	case map[string]any:
		return 8
	case []any:
		return 9
	}
	if isNumber(v) {
		return 2
	}
	return 11
}

// compareValues orders two values by Sesam's sort order; within a type,
// numbers compare exactly, datetimes chronologically, strings by code point,
// lists element-wise and dicts by canonical JSON.
func compareValues(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	switch ra {
	case 0:
		return 0
	case 1:
		ba, bb := a.(bool), b.(bool)
		switch {
		case ba == bb:
			return 0
		case !ba:
			return -1
		default:
			return 1
		}
	case 2:
		x, okx := toRat(a)
		y, oky := toRat(b)
		if okx && oky {
			return x.Cmp(y)
		}
	case 3:
		ta, ea := parseTransitTime(a.(string))
		tb, eb := parseTransitTime(b.(string))
		if ea == nil && eb == nil {
			return ta.Compare(tb)
		}
	case 9:
		la, lb := a.([]any), b.([]any)
		for i := 0; i < len(la) && i < len(lb); i++ {
			if c := compareValues(la[i], lb[i]); c != 0 {
				return c
			}
		}
		return cmpInt(len(la), len(lb))
	case 8:
		return strings.Compare(canonicalKey(a), canonicalKey(b))
	}
	if sa, ok := a.(string); ok {
		if sb, ok := b.(string); ok {
			return strings.Compare(sa, sb)
		}
	}
	return strings.Compare(canonicalKey(a), canonicalKey(b))
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// valueEqual is deep equality with exact numeric comparison (1 == 1.0) and
// strict strings (an NI never equals the plain string of its id).
func valueEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		if y, ok := b.(string); ok {
			if x == y {
				return true
			}
			if strings.HasPrefix(x, prefixDecimal) && strings.HasPrefix(y, prefixDecimal) {
				return compareValues(x, y) == 0
			}
			return false
		}
		if strings.HasPrefix(x, prefixDecimal) && isNumber(b) {
			return compareValues(a, b) == 0
		}
		return false
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, va := range x {
			vb, ok := y[k]
			if !ok || !valueEqual(va, vb) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if isNumber(a) && isNumber(b) {
		return compareValues(a, b) == 0
	}
	return false
}

// canonicalKey renders a value as canonical JSON (sorted keys, numbers
// normalised so that 1 and 1.0 collide) for hashing, distinct and unions.
func canonicalKey(v any) string {
	var buf bytes.Buffer
	writeCanonical(&buf, v, true)
	return buf.String()
}

// canonicalJSON renders a value as compact JSON with sorted keys and numbers
// exactly as written.
func canonicalJSON(v any) string {
	var buf bytes.Buffer
	writeCanonical(&buf, v, false)
	return buf.String()
}

func writeCanonical(buf *bytes.Buffer, v any, normNumbers bool) {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		b, _ := json.Marshal(x)
		buf.Write(b)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			b, _ := json.Marshal(k)
			buf.Write(b)
			buf.WriteByte(':')
			writeCanonical(buf, x[k], normNumbers)
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeCanonical(buf, e, normNumbers)
		}
		buf.WriteByte(']')
	case json.Number:
		if normNumbers {
			if r, ok := toRat(x); ok {
				buf.WriteString(r.RatString())
				return
			}
		}
		buf.WriteString(string(x))
	default:
		if r, ok := toRat(v); ok {
			if normNumbers {
				buf.WriteString(r.RatString())
			} else {
				buf.WriteString(string(ratNumber(r)))
			}
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			fmt.Fprintf(buf, "%q", fmt.Sprint(v))
			return
		}
		buf.Write(b)
	}
}

// isEmptyValue reports Sesam emptiness: null, "", [] and {}.
func isEmptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// toStringValue converts one value the way the "string" function does.
// Datetimes lose their "~t" prefix; NIs and other transit strings stay as
// written; numbers keep their exact text; dicts and lists become canonical
// JSON.
func toStringValue(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		if strings.HasPrefix(x, prefixDatetime) {
			return x[2:], true
		}
		if strings.HasPrefix(x, prefixDecimal) {
			return x[2:], true
		}
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case json.Number:
		return string(x), true
	case map[string]any, []any:
		return canonicalJSON(x), true
	}
	if r, ok := toRat(v); ok {
		return string(ratNumber(r)), true
	}
	return fmt.Sprint(v), true
}

// toIntegerValue converts one value the way the "integer" function does:
// integer strings are parsed exactly, decimals are truncated toward zero,
// booleans become 1/0 and datetimes nanoseconds since the epoch.
func toIntegerValue(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return json.Number("1"), true
		}
		return json.Number("0"), true
	case string:
		if strings.HasPrefix(x, prefixDatetime) {
			t, err := parseTransitTime(x)
			if err != nil {
				return nil, false
			}
			return json.Number(strconv.FormatInt(t.UnixNano(), 10)), true
		}
		if strings.HasPrefix(x, prefixDecimal) {
			return toIntegerValue(json.Number(x[2:]))
		}
		s := strings.TrimSpace(x)
		s = strings.ReplaceAll(s, "_", "")
		n, ok := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
		if !ok {
			return nil, false
		}
		return json.Number(n.String()), true
	}
	if r, ok := toRat(v); ok {
		q := new(big.Int).Quo(r.Num(), r.Denom())
		return json.Number(q.String()), true
	}
	return nil, false
}

// toDecimalValue converts one value to an exact decimal json.Number.
func toDecimalValue(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		s := strings.TrimSpace(strings.TrimPrefix(x, prefixDecimal))
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return nil, false
		}
		if json.Valid([]byte(s)) {
			return json.Number(s), true // keep the text, e.g. trailing zeros
		}
		return ratNumber(r), true
	case bool:
		return nil, false
	}
	if n, ok := v.(json.Number); ok {
		if _, ok := toRat(n); ok {
			return n, true
		}
	}
	if r, ok := toRat(v); ok {
		return ratNumber(r), true
	}
	return nil, false
}

// toFloatValue converts one value to a float64 rendered like Python's repr.
// This is the only conversion that rounds, because "float" is defined on
// floats.
func toFloatValue(v any) (any, bool) {
	var f float64
	switch x := v.(type) {
	case string:
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(x, prefixDecimal)), 64)
		if err != nil {
			return nil, false
		}
		f = p
	case bool:
		return nil, false
	default:
		r, ok := toRat(v)
		if !ok {
			return nil, false
		}
		f, _ = r.Float64()
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, false
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return json.Number(s), true
}

// toBooleanValue converts one value the way "boolean" does: booleans stay,
// "true"/"false" strings (any case) parse, numbers are true when non-zero.
func toBooleanValue(v any) (any, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		return nil, false
	}
	if r, ok := toRat(v); ok {
		return r.Sign() != 0, true
	}
	return nil, false
}

// distinctValues keeps the first occurrence of each value (numbers equal by
// value).
func distinctValues(m []any) []any {
	seen := make(map[string]struct{}, len(m))
	out := make([]any, 0, len(m))
	for _, v := range m {
		k := canonicalKey(v)
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, v)
	}
	return out
}

func containsValue(m []any, v any) bool {
	for _, e := range m {
		if valueEqual(e, v) {
			return true
		}
	}
	return false
}

// nowUTC is split out so the transit formatter is shared.
func formatTransitTime(t time.Time) string {
	return prefixDatetime + t.UTC().Format("2006-01-02T15:04:05.999999999Z")
}
