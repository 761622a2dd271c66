package dtl

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

type transformSpec struct {
	min, max int // max < 0: variadic
	compile  func(c *compiler, path string, args []any) (execFn, error)
}

// transformTables holds the transform function table, built on first use
// and never modified afterwards.
var transformTables struct {
	once sync.Once
	m    map[string]transformSpec
}

func transformTable() map[string]transformSpec {
	transformTables.once.Do(func() { transformTables.m = buildTransformTable() })
	return transformTables.m
}

func buildTransformTable() map[string]transformSpec {
	return map[string]transformSpec{
		"add":          {2, 2, compileAdd(addAlways)},
		"add-if":       {2, 2, compileAdd(addIfNotEmpty)},
		"default":      {2, 2, compileAdd(addIfAbsent)},
		"copy":         {1, 2, compileCopy},
		"remove":       {1, 1, compileRemove},
		"rename":       {2, 2, compileRename},
		"merge":        {1, 1, compileMerge(false)},
		"merge-union":  {1, 1, compileMerge(true)},
		"comment":      {0, -1, func(*compiler, string, []any) (execFn, error) { return nil, nil }},
		"if":           {2, 3, compileIfT},
		"case":         {2, -1, compileCaseT(false)},
		"case-eq":      {3, -1, compileCaseT(true)},
		"filter":       {0, 1, compileStop(true)},
		"discard":      {0, 1, compileStop(false)},
		"create":       {1, 1, compileCreate(false)},
		"create-child": {1, 1, compileCreate(true)},
		"make-ni":      {2, 2, compileMakeNI},
		"fail!":        {0, 1, compileFail},
	}
}

type addMode int

const (
	addAlways addMode = iota
	addIfNotEmpty
	addIfAbsent
)

// compileAdd handles add, add-if and default. The property may be a literal
// name (never a path) or an expression whose first string is the name.
// add-if skips null and empty lists (Sesam: "null or empty list"); default
// only sets properties the target does not have yet.
func compileAdd(mode addMode) func(c *compiler, path string, args []any) (execFn, error) {
	return func(c *compiler, path string, args []any) (execFn, error) {
		names, err := c.literalStrings(args[0], argPath(path, 1))
		if err != nil {
			return nil, err
		}
		val, err := c.expr(args[1], argPath(path, 2))
		if err != nil {
			return nil, err
		}
		return func(e *env) error {
			ns, err := names(e)
			if err != nil {
				return at(path, err)
			}
			if len(ns) == 0 {
				return at(path, errors.New("property name did not evaluate to a string"))
			}
			m, err := val(e)
			if err != nil {
				return at(path, err)
			}
			v := store(m)
			switch mode {
			case addIfNotEmpty:
				if v == nil || isEmptyList(v) {
					return nil
				}
			case addIfAbsent:
				if _, exists := e.cur.tgt[ns[0]]; exists {
					return nil
				}
			}
			e.cur.tgt[ns[0]] = v
			return nil
		}, nil
	}
}

func isEmptyList(v any) bool {
	l, ok := v.([]any)
	return ok && len(l) == 0
}

// matchAny reports whether s matches one of the glob patterns.
func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

// compileCopy: ["copy", INCLUDE, EXCLUDE?] copies source properties whose
// names match an include glob and no exclude glob. Values are copied as is
// (lists stay lists).
func compileCopy(c *compiler, path string, args []any) (execFn, error) {
	incl, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	var excl func(e *env) ([]string, error)
	if len(args) > 1 {
		if excl, err = c.literalStrings(args[1], argPath(path, 2)); err != nil {
			return nil, err
		}
	}
	// Fast path: a single literal name without wildcards.
	if s, ok := args[0].(string); ok && excl == nil && !strings.ContainsAny(s, "*?[") {
		return func(e *env) error {
			if src, ok := e.cur.src.(map[string]any); ok {
				if v, ok := src[s]; ok {
					e.cur.tgt[s] = v
				}
			}
			return nil
		}, nil
	}
	return func(e *env) error {
		src, ok := e.cur.src.(map[string]any)
		if !ok {
			return nil
		}
		in, err := incl(e)
		if err != nil {
			return at(path, err)
		}
		var ex []string
		if excl != nil {
			if ex, err = excl(e); err != nil {
				return at(path, err)
			}
		}
		for k, v := range src {
			if matchAny(in, k) && !matchAny(ex, k) {
				e.cur.tgt[k] = v
			}
		}
		return nil
	}, nil
}

// compileRemove: ["remove", PATTERNS] deletes matching target properties.
func compileRemove(c *compiler, path string, args []any) (execFn, error) {
	pats, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	return func(e *env) error {
		ps, err := pats(e)
		if err != nil {
			return at(path, err)
		}
		for k := range e.cur.tgt {
			if matchAny(ps, k) {
				delete(e.cur.tgt, k)
			}
		}
		return nil
	}, nil
}

// compileRename: ["rename", OLD, NEW] renames a target property.
func compileRename(c *compiler, path string, args []any) (execFn, error) {
	oldN, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	newN, err := c.literalStrings(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) error {
		o, err := oldN(e)
		if err != nil {
			return at(path, err)
		}
		n, err := newN(e)
		if err != nil {
			return at(path, err)
		}
		if len(o) == 0 || len(n) == 0 {
			return nil
		}
		if v, ok := e.cur.tgt[o[0]]; ok {
			delete(e.cur.tgt, o[0])
			e.cur.tgt[n[0]] = v
		}
		return nil
	}, nil
}

// compileMerge: ["merge", VALUES] copies every property of every dict in
// VALUES into the target (later wins). merge-union instead combines a
// property already present with the new value into a list of distinct
// values.
func compileMerge(union bool) func(c *compiler, path string, args []any) (execFn, error) {
	return func(c *compiler, path string, args []any) (execFn, error) {
		val, err := c.expr(args[0], argPath(path, 1))
		if err != nil {
			return nil, err
		}
		return func(e *env) error {
			m, err := val(e)
			if err != nil {
				return at(path, err)
			}
			for _, d := range m {
				dict, ok := d.(map[string]any)
				if !ok {
					continue
				}
				for k, v := range dict {
					if old, exists := e.cur.tgt[k]; union && exists {
						merged := distinctValues(append(append([]any{}, spread(old)...), spread(v)...))
						e.cur.tgt[k] = store(merged)
						continue
					}
					e.cur.tgt[k] = v
				}
			}
			return nil
		}, nil
	}
}

// compileIfT: ["if", COND, THEN, ELSE?] in transform position.
func compileIfT(c *compiler, path string, args []any) (execFn, error) {
	cond, err := c.expr(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	then, err := c.branch(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	var els []execFn
	if len(args) > 2 {
		if els, err = c.branch(args[2], argPath(path, 3)); err != nil {
			return nil, err
		}
	}
	return func(e *env) error {
		m, err := cond(e)
		if err != nil {
			return at(path, err)
		}
		if truthy(m) {
			return e.runBody(then)
		}
		return e.runBody(els)
	}, nil
}

// compileCaseT: ["case", (COND, THEN)+, ELSE?] and
// ["case-eq", VALUE, (VALUE_N, THEN)+, ELSE?] in transform position.
func compileCaseT(eq bool) func(c *compiler, path string, args []any) (execFn, error) {
	return func(c *compiler, path string, args []any) (execFn, error) {
		first := 1
		var subject evalFn
		var err error
		if eq {
			if subject, err = c.expr(args[0], argPath(path, 1)); err != nil {
				return nil, err
			}
			args, first = args[1:], 2
		}
		type arm struct {
			when evalFn
			then []execFn
		}
		var arms []arm
		for i := 0; i+1 < len(args); i += 2 {
			w, err := c.expr(args[i], argPath(path, first+i))
			if err != nil {
				return nil, err
			}
			t, err := c.branch(args[i+1], argPath(path, first+i+1))
			if err != nil {
				return nil, err
			}
			arms = append(arms, arm{w, t})
		}
		var els []execFn
		if len(args)%2 == 1 {
			if els, err = c.branch(args[len(args)-1], argPath(path, first+len(args)-1)); err != nil {
				return nil, err
			}
		}
		return func(e *env) error {
			var subj any
			if eq {
				m, err := subject(e)
				if err != nil {
					return at(path, err)
				}
				subj = store(m)
			}
			for _, a := range arms {
				m, err := a.when(e)
				if err != nil {
					return at(path, err)
				}
				if (eq && valueEqual(subj, store(m))) || (!eq && truthy(m)) {
					return e.runBody(a.then)
				}
			}
			return e.runBody(els)
		}, nil
	}
}

// compileStop: ["filter", KEEP?] and ["discard", KEEP?]. Without a
// condition, or when KEEP is not true, the current target is dropped and the
// rule stops: "filter" emits the root target with "_filtered": true,
// "discard" emits nothing. In an applied rule both drop that target from
// apply's result.
func compileStop(filter bool) func(c *compiler, path string, args []any) (execFn, error) {
	return func(c *compiler, path string, args []any) (execFn, error) {
		sig := &stopSignal{filter: filter}
		if len(args) == 0 {
			return func(*env) error { return sig }, nil
		}
		cond, err := c.expr(args[0], argPath(path, 1))
		if err != nil {
			return nil, err
		}
		return func(e *env) error {
			m, err := cond(e)
			if err != nil {
				return at(path, err)
			}
			if truthy(m) {
				return nil
			}
			return sig
		}, nil
	}
}

// compileCreate: ["create", VALUES] emits each dict in VALUES as an extra
// output entity; ["create-child", VALUES] appends them to the current
// target's "$children" list (for an emit_children transform).
func compileCreate(child bool) func(c *compiler, path string, args []any) (execFn, error) {
	return func(c *compiler, path string, args []any) (execFn, error) {
		val, err := c.expr(args[0], argPath(path, 1))
		if err != nil {
			return nil, err
		}
		return func(e *env) error {
			m, err := val(e)
			if err != nil {
				return at(path, err)
			}
			if child {
				kids := append([]any{}, spread(e.cur.tgt["$children"])...)
				for _, d := range m {
					if dict, ok := d.(map[string]any); ok {
						kids = append(kids, dict)
					}
				}
				e.cur.tgt["$children"] = kids
				return nil
			}
			for _, d := range m {
				if dict, ok := d.(map[string]any); ok {
					cp := make(map[string]any, len(dict))
					for k, v := range dict {
						cp[k] = v
					}
					e.created = append(e.created, cp)
				}
			}
			return nil
		}, nil
	}
}

// compileMakeNI: ["make-ni", NS, PROPERTY] adds "<PROPERTY>-ni" to the
// target with NIs "~:NS:<value>" made from the source's PROPERTY values.
func compileMakeNI(c *compiler, path string, args []any) (execFn, error) {
	ns, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	prop, err := c.literalStrings(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) error {
		n, err := ns(e)
		if err != nil {
			return at(path, err)
		}
		p, err := prop(e)
		if err != nil {
			return at(path, err)
		}
		if len(n) == 0 || len(p) == 0 {
			return nil
		}
		var out []any
		for _, v := range traverse(spread(e.cur.src), []string{p[0]}) {
			if ni, ok := toNI(n[0], v); ok {
				out = append(out, ni)
			}
		}
		e.cur.tgt[p[0]+"-ni"] = store(out)
		return nil
	}, nil
}

// compileFail: ["fail!", MESSAGE?] aborts Apply with an error wrapping
// ErrFail.
func compileFail(c *compiler, path string, args []any) (execFn, error) {
	var msg evalFn
	if len(args) > 0 {
		var err error
		if msg, err = c.expr(args[0], argPath(path, 1)); err != nil {
			return nil, err
		}
	}
	return func(e *env) error {
		text := "fail! called"
		if msg != nil {
			m, err := msg(e)
			if err != nil {
				return at(path, err)
			}
			if s, ok := toStringValue(store(m)); ok {
				text = s
			}
		}
		return at(path, fmt.Errorf("%w: %s", ErrFail, text))
	}, nil
}
