package templates

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// filterFunc implements a Jinja2 filter: value, positional and keyword
// arguments.
type filterFunc func(v any, args []any, kw map[string]any) (any, error)

// filters are the Jinja2 built-in filters supported at expansion time. The
// corpus uses none; these are the common ones, with Jinja2's semantics.
// Unknown filters are rejected when the template is compiled, as Jinja2
// does.
var filters = map[string]filterFunc{
	"abs": func(v any, _ []any, _ map[string]any) (any, error) {
		i, f, isFloat, ok := asNumber(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("bad operand type for abs(): '%s'", typeName(v))
		case isFloat:
			return math.Abs(f), nil
		case i < 0:
			return unaryOp("-", i)
		}
		return i, nil
	},
	"capitalize": func(v any, _ []any, _ map[string]any) (any, error) {
		return capitalize(pyStr(v)), nil
	},
	"default": filterDefault,
	"d":       filterDefault,
	"first": func(v any, _ []any, _ map[string]any) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return undefined{hint: "No first item, sequence was empty."}, nil
		}
		return items[0], nil
	},
	"last": func(v any, _ []any, _ map[string]any) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return undefined{hint: "No last item, sequence was empty."}, nil
		}
		return items[len(items)-1], nil
	},
	"float": func(v any, args []any, kw map[string]any) (any, error) {
		def := arg(args, kw, 0, "default", 0.0)
		if u, ok := v.(undefined); ok {
			return nil, u.err()
		}
		i, f, isFloat, ok := asNumber(v)
		switch {
		case ok && isFloat:
			return f, nil
		case ok:
			return float64(i), nil
		}
		if s, ok := v.(string); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return f, nil
			}
		}
		return def, nil
	},
	"int": func(v any, args []any, kw map[string]any) (any, error) {
		def := arg(args, kw, 0, "default", int64(0))
		if u, ok := v.(undefined); ok {
			return nil, u.err()
		}
		i, f, isFloat, ok := asNumber(v)
		switch {
		case ok && isFloat:
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return def, nil
			}
			return int64(f), nil
		case ok:
			return i, nil
		}
		if s, ok := v.(string); ok {
			s = strings.ReplaceAll(strings.TrimSpace(s), "_", "")
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
			if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return int64(f), nil
			}
		}
		return def, nil
	},
	"join": func(v any, args []any, kw map[string]any) (any, error) {
		sep := pyStr(arg(args, kw, 0, "d", ""))
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		for i, it := range items {
			parts[i] = pyStr(it)
		}
		return strings.Join(parts, sep), nil
	},
	"length": filterLength,
	"count":  filterLength,
	"list": func(v any, _ []any, _ map[string]any) (any, error) {
		return iterate(v)
	},
	"lower": func(v any, _ []any, _ map[string]any) (any, error) {
		return strings.ToLower(pyStr(v)), nil
	},
	"upper": func(v any, _ []any, _ map[string]any) (any, error) {
		return strings.ToUpper(pyStr(v)), nil
	},
	"replace": func(v any, args []any, kw map[string]any) (any, error) {
		n := -1
		if c, ok := arg(args, kw, 2, "count", nil).(int64); ok {
			n = int(c)
		}
		return strings.Replace(pyStr(v), pyStr(arg(args, kw, 0, "old", "")), pyStr(arg(args, kw, 1, "new", "")), n), nil
	},
	"reverse": func(v any, _ []any, _ map[string]any) (any, error) {
		if s, ok := v.(string); ok {
			r := []rune(s)
			for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
				r[i], r[j] = r[j], r[i]
			}
			return string(r), nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
		return items, nil
	},
	"round": func(v any, args []any, kw map[string]any) (any, error) {
		i, f, isFloat, ok := asNumber(v)
		if !ok {
			return nil, fmt.Errorf("type %s doesn't define __round__ method", typeName(v))
		}
		if !isFloat {
			f = float64(i)
		}
		p, _ := arg(args, kw, 0, "precision", int64(0)).(int64)
		scale := math.Pow(10, float64(p))
		switch arg(args, kw, 1, "method", "common") {
		case "ceil":
			return math.Ceil(f*scale) / scale, nil
		case "floor":
			return math.Floor(f*scale) / scale, nil
		case "common":
			return math.RoundToEven(f*scale) / scale, nil
		}
		return nil, errors.New("method must be common, ceil or floor")
	},
	"safe": func(v any, _ []any, _ map[string]any) (any, error) { return v, nil },
	"sort": func(v any, args []any, kw map[string]any) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		var sortErr error
		key := func(x any) any {
			if s, ok := x.(string); ok && !truthy(arg(args, kw, 1, "case_sensitive", false)) {
				return strings.ToLower(s)
			}
			return x
		}
		sort.SliceStable(items, func(i, j int) bool {
			c, err := pyCompare("<", key(items[i]), key(items[j]))
			if err != nil && sortErr == nil {
				sortErr = err
			}
			return c < 0
		})
		if truthy(arg(args, kw, 0, "reverse", false)) {
			for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
				items[i], items[j] = items[j], items[i]
			}
		}
		return items, sortErr
	},
	"string": func(v any, _ []any, _ map[string]any) (any, error) { return pyStr(v), nil },
	"sum": func(v any, args []any, kw map[string]any) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		total := arg(args, kw, 1, "start", int64(0))
		for _, it := range items {
			if total, err = binaryOp("+", total, it); err != nil {
				return nil, err
			}
		}
		return total, nil
	},
	"max": func(v any, _ []any, _ map[string]any) (any, error) { return minMax(v, 1) },
	"min": func(v any, _ []any, _ map[string]any) (any, error) { return minMax(v, -1) },
	"title": func(v any, _ []any, _ map[string]any) (any, error) {
		return titleCase(pyStr(v)), nil
	},
	"tojson": func(v any, _ []any, _ map[string]any) (any, error) {
		return htmlSafeJSON(v)
	},
	"trim": func(v any, args []any, kw map[string]any) (any, error) {
		if chars, ok := arg(args, kw, 0, "chars", nil).(string); ok {
			return strings.Trim(pyStr(v), chars), nil
		}
		return strings.TrimSpace(pyStr(v)), nil
	},
	"unique": func(v any, _ []any, _ map[string]any) (any, error) {
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		var out []any
		for _, it := range items {
			dup := false
			for _, o := range out {
				a, b := it, o
				if s, ok := a.(string); ok {
					a = strings.ToLower(s)
				}
				if s, ok := b.(string); ok {
					b = strings.ToLower(s)
				}
				if pyEqual(a, b) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, it)
			}
		}
		return out, nil
	},
	"items": func(v any, _ []any, _ map[string]any) (any, error) {
		if _, ok := v.(undefined); ok {
			return []any{}, nil
		}
		return callMethod(v, "items", nil)
	},
}

// capitalize is Python's str.capitalize.
func capitalize(s string) string {
	r := []rune(s)
	if len(r) == 0 {
		return ""
	}
	return string(unicode.ToUpper(r[0])) + strings.ToLower(string(r[1:]))
}

// titleCase is Jinja2's title filter: every word starts upper case, the
// rest is lower case.
func titleCase(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		if start {
			b.WriteRune(unicode.ToUpper(r))
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		start = unicode.IsSpace(r) || strings.ContainsRune("-([{<", r)
	}
	return b.String()
}

func filterDefault(v any, args []any, kw map[string]any) (any, error) {
	def := arg(args, kw, 0, "default_value", "")
	if _, ok := v.(undefined); ok {
		return def, nil
	}
	if truthy(arg(args, kw, 1, "boolean", false)) && !truthy(v) {
		return def, nil
	}
	return v, nil
}

func filterLength(v any, _ []any, _ map[string]any) (any, error) {
	n, err := pyLen(v)
	return int64(n), err
}

func minMax(v any, sign int) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return undefined{hint: "No aggregated item, sequence was empty."}, nil
	}
	best := items[0]
	for _, it := range items[1:] {
		a, b := it, best
		if s, ok := a.(string); ok {
			a = strings.ToLower(s)
		}
		if s, ok := b.(string); ok {
			b = strings.ToLower(s)
		}
		c, err := pyCompare("<", a, b)
		if err != nil {
			return nil, err
		}
		if c*sign > 0 {
			best = it
		}
	}
	return best, nil
}

// arg returns positional argument i, else keyword name, else def.
func arg(args []any, kw map[string]any, i int, name string, def any) any {
	if i < len(args) {
		return args[i]
	}
	if v, ok := kw[name]; ok {
		return v
	}
	return def
}

func applyFilter(name string, v any, args []any, kw map[string]any) (any, error) {
	f, ok := filters[name]
	if !ok {
		return nil, fmt.Errorf("no filter named '%s'", name)
	}
	return f(v, args, kw)
}

// knownTests are the Jinja2 tests supported at expansion time.
var knownTests = map[string]bool{
	"defined": true, "undefined": true, "none": true, "boolean": true, "true": true, "false": true,
	"integer": true, "float": true, "number": true, "string": true, "mapping": true, "sequence": true,
	"iterable": true, "odd": true, "even": true, "divisibleby": true, "eq": true, "equalto": true,
	"==": true, "ne": true, "!=": true, "lt": true, "lessthan": true, "le": true, "gt": true,
	"greaterthan": true, "ge": true, "in": true, "lower": true, "upper": true, "sameas": true,
}

func applyTest(name string, v any, args []any) (any, error) {
	a := func() (any, error) {
		if len(args) == 0 {
			return nil, fmt.Errorf("test '%s' needs an argument", name)
		}
		return args[0], nil
	}
	_, isUndef := v.(undefined)
	switch name {
	case "defined":
		return !isUndef, nil
	case "undefined":
		return isUndef, nil
	case "none":
		return v == nil, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true":
		return v == true, nil
	case "false":
		return v == false, nil
	case "integer":
		switch v.(type) {
		case int64, *big.Int:
			return true, nil
		}
		return false, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "number":
		switch v.(type) {
		case int64, *big.Int, float64, bool:
			return true, nil
		}
		return false, nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "mapping":
		_, ok := v.(map[string]any)
		return ok, nil
	case "sequence", "iterable":
		switch v.(type) {
		case string, []any, tuple, map[string]any:
			return true, nil
		}
		return name == "iterable" && isUndef, nil
	case "odd", "even", "divisibleby":
		i, _, isFloat, ok := asNumber(v)
		if !ok || isFloat {
			return nil, fmt.Errorf("test '%s' needs an integer, got %s", name, typeName(v))
		}
		switch name {
		case "odd":
			return i%2 != 0, nil
		case "even":
			return i%2 == 0, nil
		}
		d, err := a()
		if err != nil {
			return nil, err
		}
		m, err := binaryOp("%", i, d)
		if err != nil {
			return nil, err
		}
		return pyEqual(m, int64(0)), nil
	case "lower":
		s := pyStr(v)
		return s == strings.ToLower(s) && s != strings.ToUpper(s), nil
	case "upper":
		s := pyStr(v)
		return s == strings.ToUpper(s) && s != strings.ToLower(s), nil
	}
	other, err := a()
	if err != nil {
		return nil, err
	}
	switch name {
	case "eq", "equalto", "==", "sameas":
		return compareOp("==", v, other)
	case "ne", "!=":
		return compareOp("!=", v, other)
	case "lt", "lessthan":
		return compareOp("<", v, other)
	case "le":
		return compareOp("<=", v, other)
	case "gt", "greaterthan":
		return compareOp(">", v, other)
	case "ge":
		return compareOp(">=", v, other)
	case "in":
		return compareOp("in", v, other)
	}
	return nil, fmt.Errorf("no test named '%s'", name)
}

// hasMethod reports whether v has a Python method we support.
func hasMethod(v any, name string) bool {
	switch v.(type) {
	case string:
		switch name {
		case "upper", "lower", "strip", "lstrip", "rstrip", "split", "replace", "startswith", "endswith", "join", "title", "capitalize":
			return true
		}
	case map[string]any:
		switch name {
		case "items", "keys", "values", "get":
			return true
		}
	}
	return false
}

func callValue(fn any, args []any, kw map[string]any) (any, error) {
	switch f := fn.(type) {
	case undefined:
		return nil, f.err()
	case *boundMethod:
		if f.recv == nil && f.name == "range" {
			return pyRange(args)
		}
		return callMethod(f.recv, f.name, args)
	}
	return nil, fmt.Errorf("'%s' object is not callable", typeName(fn))
}

func callMethod(recv any, name string, args []any) (any, error) {
	str := func(i int) (string, bool) {
		if i < len(args) {
			s, ok := args[i].(string)
			return s, ok
		}
		return "", false
	}
	switch x := recv.(type) {
	case string:
		switch name {
		case "upper":
			return strings.ToUpper(x), nil
		case "lower":
			return strings.ToLower(x), nil
		case "title":
			return titleCase(x), nil
		case "capitalize":
			return capitalize(x), nil
		case "strip", "lstrip", "rstrip":
			chars, ok := str(0)
			trim := map[string]func(string, string) string{"strip": strings.Trim, "lstrip": strings.TrimLeft, "rstrip": strings.TrimRight}[name]
			if ok {
				return trim(x, chars), nil
			}
			return trim(x, " \t\n\r\v\f"), nil
		case "split":
			var parts []string
			if sep, ok := str(0); ok {
				if sep == "" {
					return nil, errors.New("empty separator")
				}
				parts = strings.Split(x, sep)
			} else {
				parts = strings.Fields(x)
			}
			out := make([]any, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		case "replace":
			o, ok1 := str(0)
			n, ok2 := str(1)
			if !ok1 || !ok2 {
				return nil, errors.New("replace() needs two string arguments")
			}
			return strings.ReplaceAll(x, o, n), nil
		case "startswith", "endswith":
			s, ok := str(0)
			if !ok {
				return nil, fmt.Errorf("%s() needs a string argument", name)
			}
			if name == "startswith" {
				return strings.HasPrefix(x, s), nil
			}
			return strings.HasSuffix(x, s), nil
		case "join":
			if len(args) != 1 {
				return nil, errors.New("join() takes exactly one argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			parts := make([]string, len(items))
			for i, it := range items {
				s, ok := it.(string)
				if !ok {
					return nil, fmt.Errorf("sequence item %d: expected str instance, %s found", i, typeName(it))
				}
				parts[i] = s
			}
			return strings.Join(parts, x), nil
		}
	case map[string]any:
		keys := sortedKeys(x)
		switch name {
		case "keys":
			out := make([]any, len(keys))
			for i, k := range keys {
				out[i] = k
			}
			return out, nil
		case "values":
			out := make([]any, len(keys))
			for i, k := range keys {
				out[i] = fromGo(x[k])
			}
			return out, nil
		case "items":
			out := make([]any, len(keys))
			for i, k := range keys {
				out[i] = tuple{k, fromGo(x[k])}
			}
			return out, nil
		case "get":
			if k, ok := str(0); ok {
				if v, ok := x[k]; ok {
					return fromGo(v), nil
				}
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return nil, nil
		}
	}
	return nil, fmt.Errorf("'%s' object has no method '%s'", typeName(recv), name)
}

// pyRange is Python's range(), the one global function of Jinja2 supported
// at expansion time (bounded to maxResult items).
func pyRange(args []any) (any, error) {
	var n [3]int64
	n[2] = 1
	if len(args) < 1 || len(args) > 3 {
		return nil, fmt.Errorf("range expected 1 to 3 arguments, got %d", len(args))
	}
	for i, a := range args {
		v, _, isFloat, ok := asNumber(a)
		if !ok || isFloat {
			return nil, fmt.Errorf("'%s' object cannot be interpreted as an integer", typeName(a))
		}
		n[i] = v
	}
	start, stop, step := int64(0), n[0], int64(1)
	if len(args) > 1 {
		start, stop, step = n[0], n[1], n[2]
	}
	if step == 0 {
		return nil, errors.New("range() arg 3 must not be zero")
	}
	var out []any
	for i := start; step > 0 && i < stop || step < 0 && i > stop; i += step {
		if len(out) >= maxResult {
			return nil, errTooLarge
		}
		out = append(out, i)
	}
	if out == nil {
		out = []any{}
	}
	return out, nil
}
