package jinja

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// exactNumber is the engine-side form of a JSON number that is not an
// int64 (a decimal such as 1.10, an exponent form, or an integer beyond
// int64). gonja classifies values by reflect kind, so the engine is handed a
// *exactFloat: a pointer whose element kind is float64 (arithmetic and
// comparisons work as on a Python float) and whose String method returns the
// original text (output, `~`, join and tojson stay exact).
//
// exactFloat must stay the first field: (*exactFloat).String recovers the
// enclosing exactNumber from the field's address. That conversion is the
// only unsafe code in the package; it is valid because every *exactFloat
// handed out points at the start of a heap-allocated exactNumber (see
// newExactNumber), and it passes the -race checkptr instrumentation.
type exactNumber struct {
	f    exactFloat
	text string
}

// exactFloat is the float view of an exactNumber; see exactNumber.
type exactFloat float64

// String returns the number's original JSON text.
func (p *exactFloat) String() string {
	return (*exactNumber)(unsafe.Pointer(p)).text
}

// newExactNumber returns the engine value for a non-int64 number text.
func newExactNumber(text string, f float64) *exactFloat {
	n := &exactNumber{f: exactFloat(f), text: text}
	return &n.f
}

// fromNumber converts a json.Number to the engine representation: an int
// when it is an int64 literal, an exact float otherwise, the plain string
// when the text is not a number at all.
func fromNumber(n json.Number) any {
	s := string(n)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return int(i)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return s
	}
	return newExactNumber(s, f)
}

func isRangeErr(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange)
}

// toEngine converts a Ferry JSON value for the engine. It copies only the
// maps and lists that contain json.Number somewhere below them; everything
// else is shared with the caller (the engine never mutates it: there is no
// `set` or `do` statement).
func toEngine(v any) any {
	out, _ := convertIn(v)
	return out
}

func convertIn(v any) (any, bool) {
	switch x := v.(type) {
	case json.Number:
		return fromNumber(x), true
	case map[string]any:
		var cp map[string]any
		for k, e := range x {
			c, changed := convertIn(e)
			if !changed {
				continue
			}
			if cp == nil {
				cp = make(map[string]any, len(x))
				for k2, e2 := range x {
					cp[k2] = e2
				}
			}
			cp[k] = c
		}
		if cp == nil {
			return x, false
		}
		return cp, true
	case []any:
		var cp []any
		for i, e := range x {
			c, changed := convertIn(e)
			if !changed {
				continue
			}
			if cp == nil {
				cp = make([]any, len(x))
				copy(cp, x)
			}
			cp[i] = c
		}
		if cp == nil {
			return x, false
		}
		return cp, true
	default:
		return v, false
	}
}

// toFerry converts an engine value back to a Ferry JSON value (nil, bool,
// json.Number, string, []any, map[string]any). Numbers become json.Number:
// ints as decimal text, exact numbers with their original text, floats from
// arithmetic in Python repr form. NaN and infinities have no JSON form and
// are errors, as are values with no JSON equivalent (functions).
func toFerry(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case *exec.Value:
		if x == nil || x.IsNil() {
			return nil, nil
		}
		if x.IsError() {
			return nil, fmt.Errorf("cannot convert error value to JSON: %s", x.Error())
		}
		return toFerry(x.Interface())
	case bool, string, json.Number:
		return x, nil
	case *exactFloat:
		return json.Number(x.String()), nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("cannot convert %v to JSON", x)
		}
		return json.Number(pyFloatRepr(x)), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := toFerry(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := toFerry(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case exec.ValuesList:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := toFerry(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case *exec.Dict:
		return dictToFerry(x)
	case exec.Dict:
		return dictToFerry(&x)
	case datetime:
		return x.isoformat(), nil
	}
	return reflectToFerry(v)
}

func dictToFerry(d *exec.Dict) (any, error) {
	out := make(map[string]any, len(d.Pairs))
	for _, p := range d.Pairs {
		c, err := toFerry(p.Value)
		if err != nil {
			return nil, err
		}
		out[p.Key.String()] = c
	}
	return out, nil
}

// reflectToFerry handles the other Go types a caller may put in a Context
// (map[string]string headers, []string, sized ints, float32).
func reflectToFerry(v any) (any, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return json.Number(strconv.FormatInt(rv.Int(), 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return json.Number(strconv.FormatUint(rv.Uint(), 10)), nil
	case reflect.Float32:
		return toFerry(rv.Float())
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			c, err := toFerry(rv.Index(i).Interface())
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			c, err := toFerry(it.Value().Interface())
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = c
		}
		return out, nil
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, nil
		}
		return toFerry(rv.Elem().Interface())
	}
	return nil, fmt.Errorf("cannot convert %T to JSON", v)
}

// pyFloatRepr formats f like Python's repr(float): shortest round-trip
// digits, exponent form below 1e-4 and from 1e16, and always a '.' or an
// exponent ("2.0", "1e+16", "1.5e-05").
func pyFloatRepr(f float64) string {
	if math.IsInf(f, 1) {
		return "Infinity"
	}
	if math.IsInf(f, -1) {
		return "-Infinity"
	}
	if math.IsNaN(f) {
		return "NaN"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	exp := int(math.Floor(math.Log10(math.Abs(f))))
	// Log10 can be off by one near powers of ten; let strconv decide.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mant, e, _ := strings.Cut(s, "e")
	if n, err := strconv.Atoi(e); err == nil {
		exp = n
	}
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign = "-"
			exp = -exp
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, exp)
	}
	s = strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
