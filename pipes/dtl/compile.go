package dtl

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Compile compiles the "rules" object of a dtl transform (decoded with
// UseNumber). A "default" rule is required. Errors are *Error values naming
// the JSON path of the bad expression, e.g.
// `rules.default[3][1]: unknown function "foo"`.
func Compile(rules map[string]any, opts Options) (*Program, error) {
	p := &Program{rules: make(map[string]*rule, len(rules)), opts: opts, maxDepth: opts.MaxDepth}
	if p.maxDepth <= 0 {
		p.maxDepth = 256
	}
	if rules == nil {
		return nil, &Error{Path: "rules", Err: errors.New("no rules")}
	}
	names := make([]string, 0, len(rules))
	for name := range rules {
		names = append(names, name)
		p.rules[name] = &rule{name: name}
	}
	sort.Strings(names)
	def, ok := p.rules["default"]
	if !ok {
		return nil, &Error{Path: "rules", Err: errors.New(`missing "default" rule`)}
	}
	p.def = def
	c := &compiler{p: p}
	for _, name := range names {
		path := "rules." + name
		body, ok := rules[name].([]any)
		if !ok {
			return nil, &Error{Path: path, Err: fmt.Errorf("rule must be a list of transforms, got %s", typeName(rules[name]))}
		}
		fns, err := c.block(body, path)
		if err != nil {
			return nil, err
		}
		p.rules[name].body = fns
	}
	return p, nil
}

// compiler holds compile-time state: the program being built (for rule
// references) and the hop aliases in scope.
type compiler struct {
	p       *Program
	aliases []string
}

func cerr(path string, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

func argPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64, int, int64:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

// block compiles a list of transforms (a rule body or an if/case branch).
func (c *compiler) block(list []any, path string) ([]execFn, error) {
	out := make([]execFn, 0, len(list))
	for i, t := range list {
		tp := argPath(path, i)
		l, ok := t.([]any)
		if !ok || len(l) == 0 {
			return nil, cerr(tp, "expected a transform function call like [\"add\", ...], got %s", typeName(t))
		}
		if _, nested := l[0].([]any); nested {
			fns, err := c.block(l, tp)
			if err != nil {
				return nil, err
			}
			out = append(out, func(e *env) error { return e.runBody(fns) })
			continue
		}
		fn, err := c.transform(l, tp)
		if err != nil {
			return nil, err
		}
		if fn != nil {
			out = append(out, fn)
		}
	}
	return out, nil
}

// branch compiles an if/case branch: a single transform or a list of them.
func (c *compiler) branch(v any, path string) ([]execFn, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, cerr(path, "expected a transform or a list of transforms, got %s", typeName(v))
	}
	if len(l) == 0 {
		return nil, nil
	}
	if _, isName := l[0].(string); isName {
		fn, err := c.transform(l, path)
		if err != nil || fn == nil {
			return nil, err
		}
		return []execFn{fn}, nil
	}
	return c.block(l, path)
}

// transform compiles one transform call.
func (c *compiler) transform(l []any, path string) (execFn, error) {
	name, ok := l[0].(string)
	if !ok {
		return nil, cerr(path, "expected a function name, got %s", typeName(l[0]))
	}
	spec, ok := transformTable()[name]
	if !ok {
		if _, isExpr := exprTable()[name]; isExpr {
			return nil, cerr(path, "%q is an expression function, not a transform", name)
		}
		return nil, cerr(path, "unknown transform function %q", name)
	}
	args := l[1:]
	if err := checkArity(name, spec.min, spec.max, len(args), path); err != nil {
		return nil, err
	}
	return spec.compile(c, path, args)
}

func checkArity(name string, lo, hi, n int, path string) error {
	if n < lo || (hi >= 0 && n > hi) {
		switch {
		case hi < 0:
			return cerr(path, "%q takes at least %d argument(s), got %d", name, lo, n)
		case lo == hi:
			return cerr(path, "%q takes %d argument(s), got %d", name, lo, n)
		default:
			return cerr(path, "%q takes %d to %d arguments, got %d", name, lo, hi, n)
		}
	}
	return nil
}

// expr compiles a value expression.
func (c *compiler) expr(v any, path string) (evalFn, error) {
	switch x := v.(type) {
	case string:
		if fn, ok := c.path(x); ok {
			return fn, nil
		}
		return constFn(one(x)), nil
	case []any:
		if len(x) == 0 {
			return nil, cerr(path, "empty list is not an expression (use [\"list\"])")
		}
		name, ok := x[0].(string)
		if !ok {
			return nil, cerr(path, "expected a function call like [\"name\", ...], got a list starting with %s", typeName(x[0]))
		}
		spec, ok := exprTable()[name]
		if !ok {
			if _, isT := transformTable()[name]; isT {
				return nil, cerr(path, "%q is a transform function, not an expression", name)
			}
			return nil, cerr(path, "unknown function %q", name)
		}
		args := x[1:]
		if err := checkArity(name, spec.min, spec.max, len(args), path); err != nil {
			return nil, err
		}
		fn, err := spec.compile(c, path, args)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			m, err := fn(e)
			return m, at(path, err)
		}, nil
	case nil, bool, json.Number, map[string]any, float64, int, int64:
		return constFn(one(x)), nil
	}
	return nil, cerr(path, "unsupported value of type %T", v)
}

// exprs compiles each argument.
func (c *compiler) exprs(args []any, path string, first int) ([]evalFn, error) {
	out := make([]evalFn, len(args))
	for i, a := range args {
		fn, err := c.expr(a, argPath(path, first+i))
		if err != nil {
			return nil, err
		}
		out[i] = fn
	}
	return out, nil
}

func constFn(m []any) evalFn {
	return func(*env) ([]any, error) { return m, nil }
}

type varKind int

const (
	varS varKind = iota
	varT
	varR
	varP
	varB
	varItem
	varAlias
)

// isPath reports whether s would compile as a path.
func (c *compiler) isPath(s string) bool {
	_, ok := c.path(s)
	return ok
}

// path compiles a path string such as "_S.a.b", "_." or "alias.x". Strings
// whose head is not a DTL variable (or a hop alias in scope) are literals.
func (c *compiler) path(s string) (evalFn, bool) {
	dot := strings.IndexByte(s, '.')
	if dot < 0 {
		return nil, false
	}
	head := s[:dot]
	var kind varKind
	switch head {
	case "_S":
		kind = varS
	case "_T":
		kind = varT
	case "_R":
		kind = varR
	case "_P":
		kind = varP
	case "_B":
		kind = varB
	case "_":
		kind = varItem
	default:
		found := false
		for _, a := range c.aliases {
			if a == head {
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
		kind = varAlias
	}
	var steps []string
	for _, st := range strings.Split(s[dot+1:], ".") {
		if st != "" {
			steps = append(steps, st)
		}
	}
	return func(e *env) ([]any, error) {
		var base any
		rest := steps
		switch kind {
		case varS:
			base = e.cur.src
		case varT:
			base = e.cur.tgt
		case varItem:
			if !e.hasItem {
				return nil, nil
			}
			base = e.item
		case varAlias:
			for i := len(e.binds) - 1; i >= 0; i-- {
				if e.binds[i].name == head {
					base = e.binds[i].val
					break
				}
			}
		case varR:
			base, rest = resolveFrame(e.root, rest)
		case varP:
			base, rest = resolveFrame(e.cur.parent, rest)
		case varB:
			return nil, nil
		}
		if d, ok := base.(map[string]any); ok && len(rest) > 0 {
			// Fast path: first step straight from the dict, no spread.
			return traverse(walkKey(d, rest[0], nil), rest[1:]), nil
		}
		return traverse(spread(base), rest), nil
	}, true
}

// resolveFrame resolves the leading _S/_T/_P steps of a _R or _P path
// against the frame chain, building a {_S, _T, _P} dict only when the path
// stops at a context.
func resolveFrame(f *frame, steps []string) (any, []string) {
	for f != nil {
		if len(steps) == 0 {
			return frameDict(f), nil
		}
		switch steps[0] {
		case "_S":
			return f.src, steps[1:]
		case "_T":
			return f.tgt, steps[1:]
		case "_P":
			f, steps = f.parent, steps[1:]
		default:
			return nil, nil
		}
	}
	return nil, nil
}

func frameDict(f *frame) map[string]any {
	d := map[string]any{"_S": f.src, "_T": f.tgt}
	if f.parent != nil {
		d["_P"] = frameDict(f.parent)
	}
	return d
}

// traverse follows property steps over a multi-value. Lists are spread at
// every step; missing and null values are dropped.
func traverse(m []any, steps []string) []any {
	for _, key := range steps {
		var next []any
		for _, v := range m {
			next = walkKey(v, key, next)
		}
		m = next
		if len(m) == 0 {
			return nil
		}
	}
	return m
}

func walkKey(v any, key string, out []any) []any {
	switch x := v.(type) {
	case map[string]any:
		val, ok := x[key]
		if !ok && key == "$ids" {
			// SPEC a: an entity without $ids reads as [NI(_id)].
			if id, isStr := x["_id"].(string); isStr {
				return append(out, niOf("", id))
			}
		}
		switch y := val.(type) {
		case nil:
		case []any:
			for _, e := range y {
				if e != nil {
					out = append(out, e)
				}
			}
		default:
			out = append(out, y)
		}
	case []any:
		for _, e := range x {
			out = walkKey(e, key, out)
		}
	}
	return out
}

// literalStrings evaluates a name/pattern argument (property names, globs,
// path steps): a plain string is used as is, a path string ("_.", "_S.k") or
// a function call is evaluated and its string elements (spreading lists) are
// used.
func (c *compiler) literalStrings(v any, path string) (func(e *env) ([]string, error), error) {
	if s, ok := v.(string); ok && !c.isPath(s) {
		lit := []string{s}
		return func(*env) ([]string, error) { return lit, nil }, nil
	}
	fn, err := c.expr(v, path)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]string, error) {
		m, err := fn(e)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, v := range m {
			for _, s := range spread(v) {
				if str, ok := s.(string); ok {
					out = append(out, str)
				}
			}
		}
		return out, nil
	}, nil
}
