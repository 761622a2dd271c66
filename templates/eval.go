package templates

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// scope resolves variable names during evaluation.
type scope interface {
	lookup(name string) (any, bool)
}

// localScope adds bindings (the loop target inside "for ... if cond") on
// top of another scope.
type localScope struct {
	vars   map[string]any
	parent scope
}

func (s *localScope) lookup(name string) (any, bool) {
	if v, ok := s.vars[name]; ok {
		return v, true
	}
	return s.parent.lookup(name)
}

// evalError is an evaluation error at a byte offset of the template source.
type evalError struct {
	off int
	err error
}

func (e *evalError) Error() string { return e.err.Error() }
func (e *evalError) Unwrap() error { return e.err }

func failAt(off int, err error) error {
	var ee *evalError
	if errors.As(err, &ee) {
		return err
	}
	return &evalError{off: off, err: err}
}

func eval(e expr, sc scope) (any, error) {
	switch x := e.(type) {
	case *constExpr:
		return x.v, nil
	case *nameExpr:
		if v, ok := sc.lookup(x.name); ok {
			return fromGo(v), nil
		}
		if x.name == "range" {
			return &boundMethod{name: "range"}, nil
		}
		return undefined{name: x.name}, nil
	case *listExpr:
		out := make([]any, len(x.items))
		for i, it := range x.items {
			v, err := eval(it, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		if x.tuple {
			return tuple(out), nil
		}
		return out, nil
	case *dictExpr:
		out := make(map[string]any, len(x.keys))
		for i := range x.keys {
			k, err := eval(x.keys[i], sc)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, failAt(x.keys[i].pos(), fmt.Errorf("dict keys must be strings at expansion time, got %s", typeName(k)))
			}
			v, err := eval(x.vals[i], sc)
			if err != nil {
				return nil, err
			}
			out[ks] = v
		}
		return out, nil
	case *attrExpr:
		v, err := eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		r, err := getAttr(v, x.name)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return r, nil
	case *itemExpr:
		v, err := eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		k, err := eval(x.key, sc)
		if err != nil {
			return nil, err
		}
		r, err := getItem(v, k)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return r, nil
	case *callExpr:
		fn, err := eval(x.fn, sc)
		if err != nil {
			return nil, err
		}
		args, kwargs, err := evalArgs(x.args, x.kwargs, sc)
		if err != nil {
			return nil, err
		}
		r, err := callValue(fn, args, kwargs)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return r, nil
	case *filterExpr:
		v, err := eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		args, kwargs, err := evalArgs(x.args, x.kwargs, sc)
		if err != nil {
			return nil, err
		}
		r, err := applyFilter(x.name, v, args, kwargs)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return r, nil
	case *testExpr:
		v, err := eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		args, _, err := evalArgs(x.args, nil, sc)
		if err != nil {
			return nil, err
		}
		if v, err = applyTest(x.name, v, args); err != nil {
			return nil, failAt(x.off, err)
		}
		if x.neg {
			return !v.(bool), nil
		}
		return v, nil
	case *unaryExpr:
		v, err := eval(x.x, sc)
		if err != nil {
			return nil, err
		}
		if x.op == "not" {
			return !truthy(v), nil
		}
		r, err := unaryOp(x.op, v)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return r, nil
	case *binExpr:
		l, err := eval(x.l, sc)
		if err != nil {
			return nil, err
		}
		switch x.op {
		case "and":
			if !truthy(l) {
				return l, nil
			}
			return eval(x.r, sc)
		case "or":
			if truthy(l) {
				return l, nil
			}
			return eval(x.r, sc)
		}
		r, err := eval(x.r, sc)
		if err != nil {
			return nil, err
		}
		v, err := binaryOp(x.op, l, r)
		if err != nil {
			return nil, failAt(x.off, err)
		}
		return v, nil
	case *cmpExpr:
		l, err := eval(x.first, sc)
		if err != nil {
			return nil, err
		}
		for i, op := range x.ops {
			r, err := eval(x.rest[i], sc)
			if err != nil {
				return nil, err
			}
			ok, err := compareOp(op, l, r)
			if err != nil {
				return nil, failAt(x.off, err)
			}
			if !ok {
				return false, nil
			}
			l = r
		}
		return true, nil
	case *condExpr:
		t, err := eval(x.test, sc)
		if err != nil {
			return nil, err
		}
		if truthy(t) {
			return eval(x.then, sc)
		}
		if x.els == nil {
			return undefined{hint: "the inline if-expression evaluated to false and no else section was defined"}, nil
		}
		return eval(x.els, sc)
	}
	return nil, fmt.Errorf("internal error: unknown expression %T", e)
}

func evalArgs(argExprs []expr, kwExprs []kwarg, sc scope) ([]any, map[string]any, error) {
	args := make([]any, len(argExprs))
	for i, a := range argExprs {
		v, err := eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		args[i] = v
	}
	var kwargs map[string]any
	if len(kwExprs) > 0 {
		kwargs = make(map[string]any, len(kwExprs))
		for _, k := range kwExprs {
			v, err := eval(k.val, sc)
			if err != nil {
				return nil, nil, err
			}
			kwargs[k.name] = v
		}
	}
	return args, kwargs, nil
}

// getAttr is Jinja's environment.getattr: an attribute (a known method),
// else an item; missing gives an undefined carrying the reason.
func getAttr(v any, name string) (any, error) {
	switch x := v.(type) {
	case undefined:
		return nil, x.err()
	case *loopContext:
		switch name {
		case "index":
			return int64(x.index + 1), nil
		case "index0":
			return int64(x.index), nil
		case "revindex":
			return int64(x.length - x.index), nil
		case "revindex0":
			return int64(x.length - x.index - 1), nil
		case "first":
			return x.index == 0, nil
		case "last":
			return x.index == x.length-1, nil
		case "length":
			return int64(x.length), nil
		case "depth":
			return int64(x.depth), nil
		case "depth0":
			return int64(x.depth - 1), nil
		}
	}
	if hasMethod(v, name) {
		return &boundMethod{recv: v, name: name}, nil
	}
	if m, ok := v.(map[string]any); ok {
		if e, ok := m[name]; ok {
			return fromGo(e), nil
		}
	}
	return undefined{hint: fmt.Sprintf("'%s' has no attribute '%s'", objectName(v), name)}, nil
}

// getItem is Jinja's environment.getitem: an item, else an attribute.
func getItem(v, key any) (any, error) {
	if u, ok := v.(undefined); ok {
		return nil, u.err()
	}
	switch x := v.(type) {
	case map[string]any:
		if ks, ok := key.(string); ok {
			if e, ok := x[ks]; ok {
				return fromGo(e), nil
			}
		}
	case []any, tuple, string:
		if i, _, isFloat, ok := asNumber(key); ok && !isFloat {
			var n int
			var get func(int) any
			switch s := x.(type) {
			case []any:
				n, get = len(s), func(j int) any { return fromGo(s[j]) }
			case tuple:
				n, get = len(s), func(j int) any { return fromGo(s[j]) }
			case string:
				rs := []rune(s)
				n, get = len(rs), func(j int) any { return string(rs[j]) }
			}
			if i < 0 {
				i += int64(n)
			}
			if i >= 0 && i < int64(n) {
				return get(int(i)), nil
			}
		}
	}
	if ks, ok := key.(string); ok {
		return getAttr(v, ks)
	}
	return undefined{hint: fmt.Sprintf("%s has no element %s", objectName(v), pyRepr(key))}, nil
}

func objectName(v any) string {
	return typeName(v) + " object"
}

func unaryOp(op string, v any) (any, error) {
	if u, ok := v.(undefined); ok {
		return nil, u.err()
	}
	i, f, isFloat, ok := asNumber(v)
	if !ok {
		return nil, fmt.Errorf("bad operand type for unary %s: '%s'", op, typeName(v))
	}
	if op == "+" {
		if isFloat {
			return f, nil
		}
		return i, nil
	}
	if isFloat {
		return -f, nil
	}
	if i == math.MinInt64 {
		return nil, errors.New("integer overflow")
	}
	return -i, nil
}

func binaryOp(op string, l, r any) (any, error) {
	if op == "~" {
		return pyStr(l) + pyStr(r), nil
	}
	if u, ok := l.(undefined); ok {
		return nil, u.err()
	}
	if u, ok := r.(undefined); ok {
		return nil, u.err()
	}
	li, lf, lFloat, lNum := asNumber(l)
	ri, rf, rFloat, rNum := asNumber(r)
	if lNum && rNum {
		if !lFloat && !rFloat {
			return intOp(op, li, ri)
		}
		if !lFloat {
			lf = float64(li)
		}
		if !rFloat {
			rf = float64(ri)
		}
		return floatOp(op, lf, rf)
	}
	switch op {
	case "+":
		switch x := l.(type) {
		case string:
			if y, ok := r.(string); ok {
				return x + y, nil
			}
		case []any:
			if y, ok := r.([]any); ok {
				return append(append([]any{}, x...), y...), nil
			}
		case tuple:
			if y, ok := r.(tuple); ok {
				return append(append(tuple{}, x...), y...), nil
			}
		}
	case "*":
		if _, ok := r.(string); ok && lNum && !lFloat {
			l, ri, rNum, rFloat = r, li, true, false
		}
		if s, ok := l.(string); ok && rNum && !rFloat {
			n := max(ri, 0)
			if n > 0 && int64(len(s)) > maxResult/n {
				return nil, errTooLarge
			}
			return strings.Repeat(s, int(n)), nil
		}
		if s, ok := l.([]any); ok && rNum && !rFloat {
			n := max(ri, 0)
			if n > 0 && int64(len(s)) > maxResult/n {
				return nil, errTooLarge
			}
			out := make([]any, 0, int64(len(s))*n)
			for range n {
				out = append(out, s...)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("unsupported operand type(s) for %s: '%s' and '%s'", op, typeName(l), typeName(r))
}

// maxResult bounds strings and lists built by repetition and range(), so a
// template cannot exhaust memory (Python would try; Ferry refuses).
const maxResult = 1 << 24

var errTooLarge = errors.New("result too large (more than 16M items or bytes) at expansion time")

func intOp(op string, a, b int64) (any, error) {
	overflow := errors.New("integer overflow (integers beyond 64 bits are not supported at expansion time)")
	switch op {
	case "+":
		c := a + b
		if (c > a) != (b > 0) {
			return nil, overflow
		}
		return c, nil
	case "-":
		c := a - b
		if (c < a) != (b > 0) {
			return nil, overflow
		}
		return c, nil
	case "*":
		if a != 0 && b != 0 {
			c := a * b
			if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
				return nil, overflow
			}
			return c, nil
		}
		return int64(0), nil
	case "/":
		if b == 0 {
			return nil, errors.New("division by zero")
		}
		return float64(a) / float64(b), nil
	case "//", "%":
		if b == 0 {
			return nil, errors.New("integer division or modulo by zero")
		}
		q, m := a/b, a%b
		if m != 0 && (m < 0) != (b < 0) {
			q--
			m += b
		}
		if op == "//" {
			return q, nil
		}
		return m, nil
	case "**":
		if b < 0 {
			return math.Pow(float64(a), float64(b)), nil
		}
		if b > 64 && (a > 1 || a < -1) {
			return nil, overflow
		}
		r := new(big.Int).Exp(big.NewInt(a), big.NewInt(b), nil)
		if !r.IsInt64() {
			return nil, overflow
		}
		return r.Int64(), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

func floatOp(op string, a, b float64) (any, error) {
	switch op {
	case "+":
		return a + b, nil
	case "-":
		return a - b, nil
	case "*":
		return a * b, nil
	case "/":
		if b == 0 {
			return nil, errors.New("float division by zero")
		}
		return a / b, nil
	case "//", "%":
		if b == 0 {
			return nil, errors.New("float modulo")
		}
		m := math.Mod(a, b)
		if m != 0 && (m < 0) != (b < 0) {
			m += b
		}
		if op == "//" {
			return math.Floor((a - m) / b), nil
		}
		return m, nil
	case "**":
		return math.Pow(a, b), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

func compareOp(op string, l, r any) (bool, error) {
	switch op {
	case "==":
		return pyEqual(l, r), nil
	case "!=":
		return !pyEqual(l, r), nil
	case "in", "notin":
		in, err := contains2(r, l)
		return in == (op == "in"), err
	}
	c, err := pyCompare(op, l, r)
	if err != nil {
		return false, err
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	}
	return c >= 0, nil
}

// contains2 is Python's "needle in container".
func contains2(container, needle any) (bool, error) {
	switch x := container.(type) {
	case string:
		s, ok := needle.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(needle))
		}
		return strings.Contains(x, s), nil
	case map[string]any:
		s, ok := needle.(string)
		if !ok {
			return false, nil
		}
		_, in := x[s]
		return in, nil
	case undefined:
		return false, nil
	}
	items, err := iterate(container)
	if err != nil {
		return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
	}
	for _, it := range items {
		if pyEqual(it, needle) {
			return true, nil
		}
	}
	return false, nil
}
