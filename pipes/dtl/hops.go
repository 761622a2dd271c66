package dtl

import (
	"errors"
	"fmt"
	"strings"
)

// keyMode says how source values become Hopper.Lookup values for a join
// term's alias side.
type keyMode int

const (
	keyDirect   keyMode = iota // alias.path: the values themselves
	keyNI                      // ["ni", alias.path]: NI "~:x" looks up x (and "~:x")
	keyElements                // ["first"|"last"|"list", alias.path]: list elements
)

// hopCond is one where-condition. Join terms (["eq", A, B] with exactly one
// side referring to the alias) match when any value of one side equals any
// value of the other, as Sesam joins do; other conditions must be true.
type hopCond struct {
	src, alias evalFn // join term sides
	generic    evalFn // any other condition
	path       []string
	mode       keyMode
	keyable    bool
}

type hopsSpec struct {
	dataset, alias string
	conds          []hopCond
	key            int // index of the join term that drives Lookup
	ret            evalFn
	at             string
}

// compileHops supports the equality-join shape used by the connectors:
//
//	{"datasets": ["<dataset> <alias>"], "where": [["eq", SOURCE_EXPR, ALIAS_EXPR], ...] | one condition,
//	 "return": EXPR?, "track-dependencies": bool?}
//
// exactly one dataset; at least one eq term whose alias side is alias.path,
// ["ni", alias.path], or ["first"|"last"|"list", alias.path]. Further
// conditions may be any expression and are checked on each candidate.
// track-dependencies is accepted and ignored (Ferry has no dependency
// tracking). Anything else fails with "hops: unsupported ...".
func compileHops(c *compiler, path string, args []any) (evalFn, error) {
	spec, err := c.hopsSpec(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) { return spec.run(e) }, nil
}

// compileApplyHops: ["apply-hops", RULE, HOPS_SPEC] = apply over hops.
func compileApplyHops(c *compiler, path string, args []any) (evalFn, error) {
	r, err := c.ruleRef(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	spec, err := c.hopsSpec(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := spec.run(e)
		if err != nil {
			return nil, err
		}
		return applyEach(e, r, m)
	}, nil
}

// compileLookupEntity: ["lookup-entity", DATASET, IDS] returns the entities
// of DATASET with those _id values.
func compileLookupEntity(c *compiler, path string, args []any) (evalFn, error) {
	ds, ok := args[0].(string)
	if !ok {
		return nil, cerr(argPath(path, 1), "dataset must be a literal string")
	}
	c.p.addHopped(ds)
	ids, err := c.expr(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := ids(e)
		if err != nil {
			return nil, err
		}
		var vals []any
		for _, v := range m {
			if s, ok := v.(string); ok {
				vals = append(vals, s)
			}
		}
		if len(vals) == 0 {
			return nil, nil
		}
		if e.p.opts.Hops == nil {
			return nil, errors.New("lookup-entity: no Hopper configured")
		}
		ents, err := e.p.opts.Hops.Lookup(e.ctx, ds, []string{"_id"}, vals)
		if err != nil {
			return nil, fmt.Errorf("lookup-entity %q: %w", ds, err)
		}
		out := make([]any, 0, len(ents))
		for _, ent := range ents {
			out = append(out, ent)
		}
		return out, nil
	}, nil
}

func (c *compiler) hopsSpec(v any, path string) (*hopsSpec, error) {
	d, ok := v.(map[string]any)
	if !ok {
		return nil, cerr(path, "hops: expected a dict, got %s", typeName(v))
	}
	for k := range d {
		switch k {
		case "datasets", "where", "return", "track-dependencies":
		default:
			return nil, cerr(path+"."+k, "hops: unsupported key %q", k)
		}
	}
	var dsList []any
	switch x := d["datasets"].(type) {
	case string:
		dsList = []any{x}
	case []any:
		dsList = x
	}
	if len(dsList) != 1 {
		return nil, cerr(path+".datasets", "hops: unsupported datasets: exactly one \"dataset alias\" is supported")
	}
	ds, ok := dsList[0].(string)
	if !ok {
		return nil, cerr(path+".datasets[0]", "hops: dataset must be a string")
	}
	fields := strings.Fields(ds)
	spec := &hopsSpec{at: path, key: -1}
	switch len(fields) {
	case 1:
		spec.dataset, spec.alias = fields[0], fields[0]
	case 2:
		spec.dataset, spec.alias = fields[0], fields[1]
	default:
		return nil, cerr(path+".datasets[0]", "hops: expected \"dataset alias\", got %q", ds)
	}
	if strings.HasPrefix(spec.alias, "_") {
		return nil, cerr(path+".datasets[0]", "hops: alias %q clashes with DTL variables", spec.alias)
	}
	c.p.addHopped(spec.dataset)
	inner := &compiler{p: c.p, aliases: append(append([]string{}, c.aliases...), spec.alias)}

	var conds []any
	switch w := d["where"].(type) {
	case []any:
		if len(w) > 0 {
			if _, single := w[0].(string); single {
				conds = []any{w}
			} else {
				conds = w
			}
		}
	case nil:
	default:
		return nil, cerr(path+".where", "hops: unsupported where shape")
	}
	for i, raw := range conds {
		cp := fmt.Sprintf("%s.where[%d]", path, i)
		hc, err := inner.hopCond(raw, spec.alias, cp)
		if err != nil {
			return nil, err
		}
		if hc.keyable && spec.key < 0 {
			spec.key = len(spec.conds)
		}
		spec.conds = append(spec.conds, hc)
	}
	if spec.key < 0 {
		return nil, cerr(path+".where", "hops: unsupported where shape: need an [\"eq\", SOURCE, %s.path] join term", spec.alias)
	}
	if r, ok := d["return"]; ok {
		fn, err := inner.expr(r, path+".return")
		if err != nil {
			return nil, err
		}
		spec.ret = fn
	}
	return spec, nil
}

func (c *compiler) hopCond(raw any, alias, path string) (hopCond, error) {
	l, ok := raw.([]any)
	if ok && len(l) == 3 && l[0] == "eq" {
		a, b := refsAlias(l[1], alias), refsAlias(l[2], alias)
		if a != b {
			srcRaw, aliasRaw, si, ai := l[1], l[2], 1, 2
			if a {
				srcRaw, aliasRaw, si, ai = l[2], l[1], 2, 1
			}
			src, err := c.expr(srcRaw, argPath(path, si))
			if err != nil {
				return hopCond{}, err
			}
			al, err := c.expr(aliasRaw, argPath(path, ai))
			if err != nil {
				return hopCond{}, err
			}
			hc := hopCond{src: src, alias: al}
			hc.path, hc.mode, hc.keyable = aliasKey(aliasRaw, alias)
			return hc, nil
		}
	}
	fn, err := c.expr(raw, path)
	if err != nil {
		return hopCond{}, err
	}
	return hopCond{generic: fn}, nil
}

// aliasKey recognises the alias-side shapes that map onto one Lookup path.
func aliasKey(raw any, alias string) ([]string, keyMode, bool) {
	if s, ok := raw.(string); ok {
		p, ok := aliasPath(s, alias)
		return p, keyDirect, ok
	}
	l, ok := raw.([]any)
	if !ok || len(l) != 2 {
		return nil, 0, false
	}
	s, ok := l[1].(string)
	if !ok {
		return nil, 0, false
	}
	p, ok := aliasPath(s, alias)
	if !ok {
		return nil, 0, false
	}
	switch l[0] {
	case "ni":
		return p, keyNI, true
	case "first", "last", "list":
		return p, keyElements, true
	}
	return nil, 0, false
}

func aliasPath(s, alias string) ([]string, bool) {
	if !strings.HasPrefix(s, alias+".") {
		return nil, false
	}
	var steps []string
	for _, st := range strings.Split(s[len(alias)+1:], ".") {
		if st != "" {
			steps = append(steps, st)
		}
	}
	return steps, len(steps) > 0
}

// refsAlias reports whether a raw expression mentions alias.path anywhere
// (literal arguments excluded).
func refsAlias(v any, alias string) bool {
	switch x := v.(type) {
	case string:
		return strings.HasPrefix(x, alias+".")
	case []any:
		if len(x) > 0 && (x[0] == "literal" || x[0] == "comment") {
			return false
		}
		for _, e := range x {
			if refsAlias(e, alias) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if refsAlias(e, alias) {
				return true
			}
		}
	}
	return false
}

func (s *hopsSpec) run(e *env) ([]any, error) {
	if err := e.ctx.Err(); err != nil {
		return nil, err
	}
	// Source sides do not depend on the alias: evaluate them once.
	srcVals := make([][]any, len(s.conds))
	for i, hc := range s.conds {
		if hc.src == nil {
			continue
		}
		m, err := hc.src(e)
		if err != nil {
			return nil, err
		}
		srcVals[i] = m
	}
	key := s.conds[s.key]
	values := lookupValues(srcVals[s.key], key.mode)
	if len(values) == 0 {
		return nil, nil
	}
	if e.p.opts.Hops == nil {
		return nil, fmt.Errorf("hops on %q: no Hopper configured", s.dataset)
	}
	cands, err := e.p.opts.Hops.Lookup(e.ctx, s.dataset, key.path, values)
	if err != nil {
		return nil, fmt.Errorf("hops on %q: %w", s.dataset, err)
	}
	var out []any
	for _, cand := range cands {
		e.binds = append(e.binds, binding{name: s.alias, val: cand})
		ok, err := s.matches(e, srcVals)
		if err == nil && ok {
			if s.ret == nil {
				out = append(out, cand)
			} else {
				var m []any
				m, err = s.ret(e)
				out = append(out, m...)
			}
		}
		e.binds = e.binds[:len(e.binds)-1]
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *hopsSpec) matches(e *env, srcVals [][]any) (bool, error) {
	for i, hc := range s.conds {
		if hc.generic != nil {
			m, err := hc.generic(e)
			if err != nil || !truthy(m) {
				return false, err
			}
			continue
		}
		am, err := hc.alias(e)
		if err != nil {
			return false, err
		}
		if !overlaps(srcVals[i], am) {
			return false, nil
		}
	}
	return true, nil
}

func overlaps(a, b []any) bool {
	for _, x := range a {
		if x == nil {
			continue
		}
		for _, y := range b {
			if valueEqual(x, y) {
				return true
			}
		}
	}
	return false
}

// lookupValues derives the Hopper.Lookup values from a join term's source
// values; nils never take part in joins.
func lookupValues(m []any, mode keyMode) []any {
	var out []any
	switch mode {
	case keyDirect:
		for _, v := range m {
			if v != nil {
				out = append(out, v)
			}
		}
	case keyNI:
		for _, v := range m {
			if _, id, ok := splitNIFull(v); ok {
				out = append(out, id, v)
			}
		}
	case keyElements:
		for _, v := range flatten(m, nil) {
			if v != nil {
				out = append(out, v)
			}
		}
	}
	return distinctValues(out)
}

// splitNIFull returns the text after "~:" of an NI ("~:ns:id" -> "ns:id"),
// which is what ["ni", x] would have been given to produce it.
func splitNIFull(v any) (string, string, bool) {
	s, ok := v.(string)
	if !ok || !strings.HasPrefix(s, prefixNI) {
		return "", "", false
	}
	return "", s[len(prefixNI):], true
}
