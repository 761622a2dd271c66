package dtl

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

type exprSpec struct {
	min, max int // max < 0: variadic
	compile  func(c *compiler, path string, args []any) (evalFn, error)
}

// exprTables holds the expression function table, built on first use and
// never modified afterwards (a plain initialised var would form an
// initialisation cycle through "apply").
var exprTables struct {
	once sync.Once
	m    map[string]exprSpec
}

func exprTable() map[string]exprSpec {
	exprTables.once.Do(func() { exprTables.m = buildExprTable() })
	return exprTables.m
}

func buildExprTable() map[string]exprSpec {
	t := map[string]exprSpec{
		"literal": {1, 1, func(_ *compiler, _ string, args []any) (evalFn, error) { return constFn(one(args[0])), nil }},
		"list":    {0, -1, compileList},
		"dict":    {0, -1, compileDict},
		"path":    {2, 2, compilePath},
		"first":   {1, 1, unary(func(m []any) []any { return m[:min(1, len(m))] })},
		"last":    {1, 1, unary(func(m []any) []any { return m[max(0, len(m)-1):] })},
		"nth":     {2, 2, compileNth},
		"count":   {1, 1, unary(func(m []any) []any { return one(json.Number(fmt.Sprint(len(m)))) })},

		"is-null":      {1, 1, unary(func(m []any) []any { return boolM(allNull(m)) })},
		"is-not-null":  {1, 1, unary(func(m []any) []any { return boolM(!allNull(m)) })},
		"is-empty":     {1, 1, unary(func(m []any) []any { return boolM(allEmpty(m)) })},
		"is-not-empty": {1, 1, unary(func(m []any) []any { return boolM(!allEmpty(m)) })},
		"is-dict":      {1, 1, firstIs(func(v any) bool { _, ok := v.(map[string]any); return ok })},
		"is-string":    {1, 1, firstIs(func(v any) bool { s, ok := v.(string); return ok && typeRank(s) == 7 })},
		"is-int":       {1, 1, firstIs(isInteger)},
		"is-integer":   {1, 1, firstIs(isInteger)},
		"is-decimal":   {1, 1, firstIs(func(v any) bool { return isNumber(v) && !isInteger(v) })},
		"is-float":     {1, 1, firstIs(func(v any) bool { return isNumber(v) && !isInteger(v) })},
		"is-boolean":   {1, 1, firstIs(func(v any) bool { _, ok := v.(bool); return ok })},
		"is-datetime":  {1, 1, firstIs(isDatetime)},
		"is-ni":        {1, 1, firstIs(isNI)},
		"is-list":      {1, 1, unary(func(m []any) []any { return boolM(isListMulti(m)) })},

		"eq":  {2, 2, compileCompare(func(a, b any) bool { return valueEqual(a, b) })},
		"neq": {2, 2, compileCompare(func(a, b any) bool { return !valueEqual(a, b) })},
		"gt":  {2, 2, compileCompare(ordered(func(c int) bool { return c > 0 }))},
		"gte": {2, 2, compileCompare(ordered(func(c int) bool { return c >= 0 }))},
		"lt":  {2, 2, compileCompare(ordered(func(c int) bool { return c < 0 }))},
		"lte": {2, 2, compileCompare(ordered(func(c int) bool { return c <= 0 }))},
		"and": {0, -1, compileLogic(true)},
		"or":  {0, -1, compileLogic(false)},
		"not": {1, 1, unary(func(m []any) []any { return boolM(!truthy(m)) })},
		"all": {1, 2, compileQuantifier(true)},
		"any": {1, 2, compileQuantifier(false)},
		"in":  {2, 2, compileIn},

		"if":       {2, 3, compileIfE},
		"case":     {2, -1, compileCaseE(false)},
		"case-eq":  {3, -1, compileCaseE(true)},
		"coalesce": {1, -1, compileCoalesce},
		"if-null":  {2, 2, compileIfNull},

		"filter":            {2, 2, compileFilterE},
		"map":               {2, 2, compileMap},
		"map-dict":          {3, 3, compileMapDict},
		"sorted":            {1, 2, compileSorted(false)},
		"sorted-descending": {1, 2, compileSorted(true)},
		"distinct":          {1, 1, unary(distinctValues)},
		"flatten":           {1, 1, unary(func(m []any) []any { return flatten(m, nil) })},
		"union":             {1, -1, compileSetOp(setUnion)},
		"intersection":      {1, -1, compileSetOp(setIntersection)},
		"difference":        {1, -1, compileSetOp(setDifference)},
		"tuples":            {1, -1, compileTuples},

		"min": {1, -1, compileExtreme(-1)},
		"max": {1, -1, compileExtreme(1)},
		"sum": {1, 1, unary(sumValues)},

		"keys":       {1, 1, unary(dictKeys)},
		"values":     {1, 1, unary(dictValues)},
		"items":      {1, 1, unary(dictItems)},
		"key-values": {1, 1, unary(dictKeyValues)},
		"has-key":    {2, 2, compileHasKey},

		"concat":    {0, -1, compileConcat},
		"join":      {2, 2, compileJoin},
		"split":     {2, 2, compileSplit},
		"lower":     {1, 1, perString(strings.ToLower)},
		"upper":     {1, 1, perString(strings.ToUpper)},
		"strip":     {1, 1, perString(strings.TrimSpace)},
		"replace":   {3, 3, compileReplace},
		"substring": {2, 3, compileSubstring},
		"length":    {1, 1, unary(lengths)},
		"matches":   {2, 2, compileMatches},

		"string":  {1, 1, perValue(toStringAny)},
		"integer": {1, 2, withDefault(toIntegerValue)},
		"decimal": {1, 2, withDefault(toDecimalValue)},
		"float":   {1, 2, withDefault(toFloatValue)},
		"boolean": {1, 1, perValue(toBooleanValue)},

		"datetime":        {1, 2, withDefault(toDatetimeValue)},
		"datetime-parse":  {2, 2, compileDatetimeParse},
		"datetime-format": {2, 2, compileDatetimeFormat},
		"datetime-plus":   {3, 3, compileDatetimePlus},
		"now":             {0, 0, compileNow},

		"ni":    {1, 2, compileNI},
		"ni-id": {1, 1, perValue(func(v any) (any, bool) { _, id, ok := splitNI(v); return id, ok })},
		"ni-ns": {1, 1, perValue(func(v any) (any, bool) {
			ns, _, ok := splitNI(v)
			return ns, ok && ns != ""
		})},
		"uuid":         {0, 1, compileUUID},
		"hash128":      {1, 3, compileHash128},
		"json":         {1, 1, unary(func(m []any) []any { return one(canonicalJSON(untransit(store(m)))) })},
		"json-transit": {1, 1, unary(func(m []any) []any { return one(canonicalJSON(store(m))) })},
		"json-parse":   {1, 1, perValue(jsonParse)},

		"apply":         {2, 2, compileApply},
		"apply-hops":    {2, 2, compileApplyHops},
		"hops":          {1, 1, compileHops},
		"lookup-entity": {2, 2, compileLookupEntity},
	}
	return t
}

// unary compiles a one-argument function over the argument's multi-value.
func unary(f func([]any) []any) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		a, err := c.expr(args[0], argPath(path, 1))
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			m, err := a(e)
			if err != nil {
				return nil, err
			}
			return f(m), nil
		}, nil
	}
}

// perValue maps f over each element; elements f rejects are dropped.
func perValue(f func(any) (any, bool)) func(*compiler, string, []any) (evalFn, error) {
	return unary(func(m []any) []any {
		out := make([]any, 0, len(m))
		for _, v := range m {
			if r, ok := f(v); ok {
				out = append(out, r)
			}
		}
		return out
	})
}

func perString(f func(string) string) func(*compiler, string, []any) (evalFn, error) {
	return perValue(func(v any) (any, bool) {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		return f(s), true
	})
}

// firstIs tests the first element of a non-empty multi-value.
func firstIs(pred func(any) bool) func(*compiler, string, []any) (evalFn, error) {
	return unary(func(m []any) []any { return boolM(len(m) > 0 && pred(m[0])) })
}

func toStringAny(v any) (any, bool) { return toStringValue(v) }

func allNull(m []any) bool {
	for _, v := range m {
		if v != nil {
			return false
		}
	}
	return true
}

func allEmpty(m []any) bool {
	for _, v := range m {
		if !isEmptyValue(v) {
			return false
		}
	}
	return true
}

// isListMulti: more than one value, or a single value that is itself a list.
func isListMulti(m []any) bool {
	if len(m) > 1 {
		return true
	}
	if len(m) == 1 {
		_, ok := m[0].([]any)
		return ok
	}
	return false
}

func compileList(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		out := make([]any, len(fns))
		for i, f := range fns {
			m, err := f(e)
			if err != nil {
				return nil, err
			}
			out[i] = store(m)
		}
		return out, nil
	}, nil
}

// compileDict: ["dict"] -> {}, ["dict", ITEMS] from [key, value] pairs
// (non-pairs ignored, last key wins), ["dict", K1, V1, ...] from pairs.
func compileDict(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	switch {
	case len(fns) == 0:
		return func(*env) ([]any, error) { return one(map[string]any{}), nil }, nil
	case len(fns) == 1:
		return func(e *env) ([]any, error) {
			m, err := fns[0](e)
			if err != nil {
				return nil, err
			}
			d := make(map[string]any, len(m))
			for _, it := range m {
				pair, ok := it.([]any)
				if !ok || len(pair) != 2 {
					continue
				}
				if k, ok := pair[0].(string); ok {
					d[k] = pair[1]
				}
			}
			return one(d), nil
		}, nil
	case len(fns)%2 == 1:
		return nil, cerr(path, "\"dict\" takes no argument, one list of pairs, or key/value pairs; got %d arguments", len(fns))
	}
	return func(e *env) ([]any, error) {
		d := make(map[string]any, len(fns)/2)
		for i := 0; i < len(fns); i += 2 {
			km, err := fns[i](e)
			if err != nil {
				return nil, err
			}
			vm, err := fns[i+1](e)
			if err != nil {
				return nil, err
			}
			if len(km) == 0 {
				continue
			}
			k, ok := toStringValue(km[0])
			if !ok {
				continue
			}
			d[k] = store(vm)
		}
		return one(d), nil
	}, nil
}

// compilePath: ["path", PROPERTY_PATH, VALUES]; the property names are
// literal keys (dots are not split).
func compilePath(c *compiler, path string, args []any) (evalFn, error) {
	steps, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	vals, err := c.expr(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		s, err := steps(e)
		if err != nil {
			return nil, err
		}
		m, err := vals(e)
		if err != nil {
			return nil, err
		}
		if len(s) == 0 {
			return nil, nil
		}
		return traverse(m, s), nil
	}, nil
}

func compileNth(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		im, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		if len(im) == 0 {
			return nil, nil
		}
		i, ok := int64Of(im[0])
		if !ok {
			return nil, nil
		}
		if i < 0 {
			i += int64(len(m))
		}
		if i < 0 || i >= int64(len(m)) {
			return nil, nil
		}
		return m[i : i+1], nil
	}, nil
}

// compileCompare compares the stored forms of both sides, so a one-element
// list equals its element and a missing value equals null.
func compileCompare(pred func(a, b any) bool) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			a, err := fns[0](e)
			if err != nil {
				return nil, err
			}
			b, err := fns[1](e)
			if err != nil {
				return nil, err
			}
			return boolM(pred(store(a), store(b))), nil
		}, nil
	}
}

// ordered builds gt/gte/lt/lte. Decision: comparisons involving null are
// false (Sesam's null-first sort order would make ["lt", null, 1] true,
// which is never what a rule means).
func ordered(ok func(int) bool) func(a, b any) bool {
	return func(a, b any) bool {
		if a == nil || b == nil {
			return false
		}
		return ok(compareValues(a, b))
	}
}

func compileLogic(isAnd bool) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			for _, f := range fns {
				m, err := f(e)
				if err != nil {
					return nil, err
				}
				if truthy(m) != isAnd {
					return boolM(!isAnd), nil
				}
			}
			return boolM(isAnd), nil
		}, nil
	}
}

// compileQuantifier: ["all", FUNC, VALUES] / ["any", FUNC, VALUES] bind "_"
// to each value; the one-argument forms test the values themselves. "all"
// of nothing is true, "any" of nothing is false (Python semantics).
func compileQuantifier(isAll bool) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			m, err := fns[len(fns)-1](e)
			if err != nil {
				return nil, err
			}
			for _, v := range m {
				ok := false
				if len(fns) == 1 {
					ok = v == true
				} else {
					r, err := e.withItem(v, fns[0])
					if err != nil {
						return nil, err
					}
					ok = truthy(r)
				}
				if ok != isAll {
					return boolM(!isAll), nil
				}
			}
			return boolM(isAll), nil
		}, nil
	}
}

// compileIn: ["in", VALUE, VALUES] is true when every value of VALUE (at
// least one) is among VALUES.
func compileIn(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		a, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		b, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		if len(a) == 0 {
			return boolM(false), nil
		}
		for _, v := range a {
			if !containsValue(b, v) {
				return boolM(false), nil
			}
		}
		return boolM(true), nil
	}, nil
}

func compileIfE(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		if truthy(m) {
			return fns[1](e)
		}
		if len(fns) > 2 {
			return fns[2](e)
		}
		return nil, nil
	}, nil
}

// compileCaseE: expression forms of case / case-eq returning the matching
// arm's value.
func compileCaseE(eq bool) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		var subject evalFn
		if eq {
			subject, fns = fns[0], fns[1:]
		}
		return func(e *env) ([]any, error) {
			var subj any
			if eq {
				m, err := subject(e)
				if err != nil {
					return nil, err
				}
				subj = store(m)
			}
			i := 0
			for ; i+1 < len(fns); i += 2 {
				m, err := fns[i](e)
				if err != nil {
					return nil, err
				}
				if (eq && valueEqual(subj, store(m))) || (!eq && truthy(m)) {
					return fns[i+1](e)
				}
			}
			if i < len(fns) {
				return fns[i](e)
			}
			return nil, nil
		}, nil
	}
}

// compileCoalesce returns the first non-null value of its arguments (each
// argument's values in order).
func compileCoalesce(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		for _, f := range fns {
			m, err := f(e)
			if err != nil {
				return nil, err
			}
			for _, v := range m {
				if v != nil {
					return one(v), nil
				}
			}
		}
		return nil, nil
	}, nil
}

func compileIfNull(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		if allNull(m) {
			return fns[1](e)
		}
		return m, nil
	}, nil
}

// compileFilterE: ["filter", FUNC, VALUES] keeps the values for which FUNC
// (with "_" bound to the value) is true.
func compileFilterE(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, len(m))
		for _, v := range m {
			r, err := e.withItem(v, fns[0])
			if err != nil {
				return nil, err
			}
			if truthy(r) {
				out = append(out, v)
			}
		}
		return out, nil
	}, nil
}

// compileMap: ["map", FUNC, VALUES] evaluates FUNC for each value with "_"
// bound to it; each result is stored (null when empty, a list when several),
// so the output has exactly one element per input value.
func compileMap(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(m))
		for i, v := range m {
			r, err := e.withItem(v, fns[0])
			if err != nil {
				return nil, err
			}
			out[i] = store(r)
		}
		return out, nil
	}, nil
}

// compileMapDict: ["map-dict", KEY_FUNC, VALUE_FUNC, DICTS] rebuilds each
// dict with "_" bound to the key for KEY_FUNC and to the value for
// VALUE_FUNC. Entries whose new key is not a string are dropped.
func compileMapDict(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := fns[2](e)
		if err != nil {
			return nil, err
		}
		var out []any
		for _, d := range m {
			dict, ok := d.(map[string]any)
			if !ok {
				continue
			}
			nd := make(map[string]any, len(dict))
			for _, k := range sortedKeys(dict) {
				km, err := e.withItem(k, fns[0])
				if err != nil {
					return nil, err
				}
				vm, err := e.withItem(dict[k], fns[1])
				if err != nil {
					return nil, err
				}
				if len(km) == 0 {
					continue
				}
				if nk, ok := km[0].(string); ok {
					nd[nk] = store(vm)
				}
			}
			out = append(out, nd)
		}
		return out, nil
	}, nil
}

func sortedKeys(d map[string]any) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// compileSorted: ["sorted", VALUES] or ["sorted", KEY_FUNC, VALUES]; stable,
// Sesam's cross-type order.
func compileSorted(desc bool) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			m, err := fns[len(fns)-1](e)
			if err != nil {
				return nil, err
			}
			keys := make([]any, len(m))
			for i, v := range m {
				keys[i] = v
				if len(fns) == 2 {
					r, err := e.withItem(v, fns[0])
					if err != nil {
						return nil, err
					}
					keys[i] = store(r)
				}
			}
			idx := make([]int, len(m))
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool {
				c := compareValues(keys[idx[a]], keys[idx[b]])
				if desc {
					return c > 0
				}
				return c < 0
			})
			out := make([]any, len(m))
			for i, j := range idx {
				out[i] = m[j]
			}
			return out, nil
		}, nil
	}
}

func flatten(m []any, out []any) []any {
	for _, v := range m {
		if l, ok := v.([]any); ok {
			out = flatten(l, out)
			continue
		}
		out = append(out, v)
	}
	return out
}

func setUnion(sets [][]any) []any {
	var all []any
	for _, s := range sets {
		all = append(all, s...)
	}
	return distinctValues(all)
}

func setIntersection(sets [][]any) []any {
	var out []any
	for _, v := range distinctValues(sets[0]) {
		in := true
		for _, s := range sets[1:] {
			if !containsValue(s, v) {
				in = false
				break
			}
		}
		if in {
			out = append(out, v)
		}
	}
	return out
}

func setDifference(sets [][]any) []any {
	var out []any
	for _, v := range distinctValues(sets[0]) {
		in := false
		for _, s := range sets[1:] {
			if containsValue(s, v) {
				in = true
				break
			}
		}
		if !in {
			out = append(out, v)
		}
	}
	return out
}

func compileSetOp(op func([][]any) []any) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			sets := make([][]any, len(fns))
			for i, f := range fns {
				m, err := f(e)
				if err != nil {
					return nil, err
				}
				sets[i] = m
			}
			return op(sets), nil
		}, nil
	}
}

// maxTuples bounds the size of a tuples product.
const maxTuples = 1 << 20

// compileTuples: ["tuples", V1, V2, ...] is the cartesian product of the
// arguments' values as a list of lists.
func compileTuples(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		acc := [][]any{{}}
		for _, f := range fns {
			m, err := f(e)
			if err != nil {
				return nil, err
			}
			if len(acc)*len(m) > maxTuples {
				return nil, fmt.Errorf("tuples: more than %d combinations", maxTuples)
			}
			var next [][]any
			for _, prefix := range acc {
				for _, v := range m {
					t := make([]any, len(prefix), len(prefix)+1)
					copy(t, prefix)
					next = append(next, append(t, v))
				}
			}
			acc = next
		}
		out := make([]any, len(acc))
		for i, t := range acc {
			out[i] = t
		}
		return out, nil
	}, nil
}

// compileExtreme: min/max over all non-null values of all arguments.
func compileExtreme(sign int) func(*compiler, string, []any) (evalFn, error) {
	return func(c *compiler, path string, args []any) (evalFn, error) {
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			var best any
			found := false
			for _, f := range fns {
				m, err := f(e)
				if err != nil {
					return nil, err
				}
				for _, v := range m {
					if v == nil {
						continue
					}
					if !found || compareValues(v, best)*sign > 0 {
						best, found = v, true
					}
				}
			}
			if !found {
				return nil, nil
			}
			return one(best), nil
		}, nil
	}
}

// sumValues adds the numeric values exactly; non-numbers are ignored.
func sumValues(m []any) []any {
	total := new(big.Rat)
	for _, v := range m {
		if r, ok := toRat(v); ok {
			total.Add(total, r)
		}
	}
	return one(ratNumber(total))
}

func dictKeys(m []any) []any {
	var out []any
	for _, d := range m {
		if dict, ok := d.(map[string]any); ok {
			for _, k := range sortedKeys(dict) {
				out = append(out, k)
			}
		}
	}
	return out
}

func dictValues(m []any) []any {
	var out []any
	for _, d := range m {
		if dict, ok := d.(map[string]any); ok {
			for _, k := range sortedKeys(dict) {
				out = append(out, dict[k])
			}
		}
	}
	return out
}

func dictItems(m []any) []any {
	var out []any
	for _, d := range m {
		if dict, ok := d.(map[string]any); ok {
			for _, k := range sortedKeys(dict) {
				out = append(out, []any{k, dict[k]})
			}
		}
	}
	return out
}

func dictKeyValues(m []any) []any {
	var out []any
	for _, d := range m {
		if dict, ok := d.(map[string]any); ok {
			for _, k := range sortedKeys(dict) {
				out = append(out, map[string]any{"key": k, "value": dict[k]})
			}
		}
	}
	return out
}

// compileHasKey: ["has-key", KEY, VALUES] looks at the first value only;
// null when it is not a dict.
func compileHasKey(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		km, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		if len(km) == 0 || len(m) == 0 {
			return nil, nil
		}
		d, ok := m[0].(map[string]any)
		if !ok {
			return nil, nil
		}
		k, _ := km[0].(string)
		_, has := d[k]
		return boolM(has), nil
	}, nil
}

// compileConcat joins the string values of all arguments; non-strings are
// ignored.
func compileConcat(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		var b strings.Builder
		for _, f := range fns {
			m, err := f(e)
			if err != nil {
				return nil, err
			}
			for _, v := range m {
				if s, ok := v.(string); ok {
					b.WriteString(s)
				}
			}
		}
		return one(b.String()), nil
	}, nil
}

func firstString(m []any) (string, bool) {
	for _, v := range m {
		if s, ok := v.(string); ok {
			return s, true
		}
	}
	return "", false
}

func compileJoin(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		sm, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		sep, _ := firstString(sm)
		parts := make([]string, 0, len(m))
		for _, v := range m {
			if s, ok := v.(string); ok {
				parts = append(parts, s)
			}
		}
		return one(strings.Join(parts, sep)), nil
	}, nil
}

func compileSplit(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		sm, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		sep, ok := firstString(sm)
		if !ok || sep == "" {
			return nil, errors.New("split: separator must be a non-empty string")
		}
		var out []any
		for _, v := range m {
			if s, ok := v.(string); ok {
				for _, p := range strings.Split(s, sep) {
					out = append(out, p)
				}
			}
		}
		return out, nil
	}, nil
}

func compileReplace(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		om, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		nm, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[2](e)
		if err != nil {
			return nil, err
		}
		o, ok1 := firstString(om)
		n, ok2 := firstString(nm)
		var out []any
		for _, v := range m {
			if s, ok := v.(string); ok {
				if ok1 && ok2 {
					s = strings.ReplaceAll(s, o, n)
				}
				out = append(out, s)
			}
		}
		return out, nil
	}, nil
}

// compileSubstring: ["substring", START, END, VALUES] or
// ["substring", START, VALUES]; code-point indexes, negative from the end
// (Python slicing).
func compileSubstring(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		sm, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		var endM []any
		hasEnd := len(fns) == 3
		if hasEnd {
			if endM, err = fns[1](e); err != nil {
				return nil, err
			}
		}
		m, err := fns[len(fns)-1](e)
		if err != nil {
			return nil, err
		}
		if len(sm) == 0 {
			return nil, nil
		}
		start, ok := int64Of(sm[0])
		if !ok {
			return nil, errors.New("substring: start must be an integer")
		}
		var out []any
		for _, v := range m {
			s, ok := v.(string)
			if !ok {
				continue
			}
			r := []rune(s)
			n := int64(len(r))
			end := n
			if hasEnd && len(endM) > 0 && endM[0] != nil {
				if end, ok = int64Of(endM[0]); !ok {
					return nil, errors.New("substring: end must be an integer")
				}
			}
			lo, hi := clampIndex(start, n), clampIndex(end, n)
			if hi < lo {
				hi = lo
			}
			out = append(out, string(r[lo:hi]))
		}
		return out, nil
	}, nil
}

func clampIndex(i, n int64) int64 {
	if i < 0 {
		i += n
	}
	return max(0, min(i, n))
}

func lengths(m []any) []any {
	out := make([]any, 0, len(m))
	for _, v := range m {
		switch x := v.(type) {
		case string:
			out = append(out, json.Number(fmt.Sprint(utf8.RuneCountInString(x))))
		case []any:
			out = append(out, json.Number(fmt.Sprint(len(x))))
		case map[string]any:
			out = append(out, json.Number(fmt.Sprint(len(x))))
		}
	}
	return out
}

// compileMatches: ["matches", GLOB, VALUES] is true when there is at least
// one value and every value is a string matching the glob.
func compileMatches(c *compiler, path string, args []any) (evalFn, error) {
	pat, err := c.literalStrings(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	vals, err := c.expr(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		ps, err := pat(e)
		if err != nil {
			return nil, err
		}
		m, err := vals(e)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 || len(m) == 0 {
			return boolM(false), nil
		}
		for _, v := range m {
			s, ok := v.(string)
			if !ok || !globMatch(ps[0], s) {
				return boolM(false), nil
			}
		}
		return boolM(true), nil
	}, nil
}

// compileDatetimeParse: ["datetime-parse", FORMAT, VALUES] with Python
// strptime directives; unparseable values are dropped.
func compileDatetimeParse(c *compiler, path string, args []any) (evalFn, error) {
	return compileFormatFn(c, path, args, func(format string, v any) (any, bool) {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		t, err := strptime(format, s)
		if err != nil {
			return nil, false
		}
		return formatTransitTime(t), true
	})
}

// compileDatetimeFormat: ["datetime-format", FORMAT, VALUES] formats
// datetimes with Python strftime directives.
func compileDatetimeFormat(c *compiler, path string, args []any) (evalFn, error) {
	return compileFormatFn(c, path, args, func(format string, v any) (any, bool) {
		s, ok := v.(string)
		if !ok || !isDatetime(s) {
			return nil, false
		}
		t, err := parseTransitTime(s)
		if err != nil {
			return nil, false
		}
		return strftime(format, t), true
	})
}

func compileFormatFn(c *compiler, path string, args []any, f func(string, any) (any, bool)) (evalFn, error) {
	if s, ok := args[0].(string); ok {
		if err := checkStrftime(s); err != nil {
			return nil, cerr(argPath(path, 1), "%v", err)
		}
	}
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		fm, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		format, ok := firstString(fm)
		if !ok {
			return nil, errors.New("format must be a string")
		}
		if err := checkStrftime(format); err != nil {
			return nil, err
		}
		m, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		var out []any
		for _, v := range m {
			if r, ok := f(format, v); ok {
				out = append(out, r)
			}
		}
		return out, nil
	}, nil
}

// compileDatetimePlus: ["datetime-plus", UNIT, AMOUNT, VALUES].
func compileDatetimePlus(c *compiler, path string, args []any) (evalFn, error) {
	if u, ok := args[0].(string); ok {
		if _, err := datetimePlus(u, 0, time.Time{}); err != nil {
			return nil, cerr(argPath(path, 1), "%v", err)
		}
	}
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		um, err := fns[0](e)
		if err != nil {
			return nil, err
		}
		am, err := fns[1](e)
		if err != nil {
			return nil, err
		}
		m, err := fns[2](e)
		if err != nil {
			return nil, err
		}
		unit, _ := firstString(um)
		if len(am) == 0 {
			return nil, nil
		}
		amount, ok := int64Of(am[0])
		if !ok {
			return nil, errors.New("datetime-plus: amount must be an integer")
		}
		var out []any
		for _, v := range m {
			s, ok := v.(string)
			if !ok || !isDatetime(s) {
				continue
			}
			t, err := parseTransitTime(s)
			if err != nil {
				continue
			}
			t, err = datetimePlus(unit, amount, t)
			if err != nil {
				return nil, err
			}
			out = append(out, formatTransitTime(t))
		}
		return out, nil
	}, nil
}

func compileNow(*compiler, string, []any) (evalFn, error) {
	return func(e *env) ([]any, error) { return one(formatTransitTime(e.now())), nil }, nil
}

// niOf makes "~:ns:id" (or "~:id" without namespace); NIs are kept.
func niOf(ns string, id string) string {
	if strings.HasPrefix(id, prefixNI) {
		return id
	}
	if ns == "" {
		return prefixNI + id
	}
	return prefixNI + ns + ":" + id
}

func toNI(ns string, v any) (string, bool) {
	switch v.(type) {
	case nil, map[string]any, []any, bool:
		return "", false
	}
	s, ok := toStringValue(v)
	if !ok {
		return "", false
	}
	return niOf(ns, s), true
}

// splitNI splits "~:ns:id" at the first colon after the prefix. Decision
// (SPEC open question): the namespace never contains a colon; the id may.
func splitNI(v any) (ns, id string, ok bool) {
	s, isStr := v.(string)
	if !isStr || !strings.HasPrefix(s, prefixNI) {
		return "", "", false
	}
	rest := s[len(prefixNI):]
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		return rest[:i], rest[i+1:], true
	}
	return "", rest, true
}

// compileNI: ["ni", VALUES] or ["ni", NAMESPACE, VALUES].
func compileNI(c *compiler, path string, args []any) (evalFn, error) {
	fns, err := c.exprs(args, path, 1)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		ns := ""
		if len(fns) == 2 {
			nm, err := fns[0](e)
			if err != nil {
				return nil, err
			}
			ns, _ = firstString(nm)
		}
		m, err := fns[len(fns)-1](e)
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, len(m))
		for _, v := range m {
			if ni, ok := toNI(ns, v); ok {
				out = append(out, ni)
			}
		}
		return out, nil
	}, nil
}

// compileUUID: ["uuid"] is a new random v4 UUID; ["uuid", VALUES]
// normalises UUID strings. Decision: plain strings, not "~u" transit values,
// because connectors send them straight to APIs.
func compileUUID(c *compiler, path string, args []any) (evalFn, error) {
	if len(args) == 0 {
		return func(*env) ([]any, error) {
			u, err := newUUID4()
			if err != nil {
				return nil, err
			}
			return one(u), nil
		}, nil
	}
	return perValue(func(v any) (any, bool) {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		s = strings.ToLower(strings.Trim(strings.TrimPrefix(s, prefixUUID), "{}"))
		h := strings.ReplaceAll(s, "-", "")
		if len(h) != 32 {
			return nil, false
		}
		for _, r := range h {
			if !strings.ContainsRune("0123456789abcdef", r) {
				return nil, false
			}
		}
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], true
	})(c, path, args)
}

// compileHash128 is Sesam's ["hash128", "murmur3", [SEED,] VALUES]: the
// MurmurHash3 x64 128-bit hash (mmh3.hash128, unsigned) of every string
// (as UTF-8) and bytes value ("~b" base64) of VALUES; other values are
// ignored. SEED is an integer expression (0 to 2^32-1, default 0); the
// algorithm must be the literal "murmur3". ["hash128", VALUES] is a Ferry
// shorthand for ["hash128", "murmur3", VALUES].
func compileHash128(c *compiler, path string, args []any) (evalFn, error) {
	first := 1
	if len(args) >= 2 {
		if algo, ok := args[0].(string); !ok || algo != "murmur3" {
			return nil, cerr(argPath(path, 1), "hash128: unsupported algorithm %s (only \"murmur3\")", describeArg(args[0]))
		}
		args, first = args[1:], 2
	}
	fns, err := c.exprs(args, path, first)
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		var seed uint32
		if len(fns) == 2 {
			sm, err := fns[0](e)
			if err != nil {
				return nil, err
			}
			if len(sm) > 0 && sm[0] != nil {
				n, ok := int64Of(sm[0])
				if !ok || n < 0 || n > math.MaxUint32 {
					return nil, fmt.Errorf("hash128: seed must be an integer from 0 to %d, got %s", uint32(math.MaxUint32), describeArg(sm[0]))
				}
				seed = uint32(n)
			}
		}
		m, err := fns[len(fns)-1](e)
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, len(m))
		for _, v := range m {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if strings.HasPrefix(s, prefixBytes) {
				b, err := base64.StdEncoding.DecodeString(s[len(prefixBytes):])
				if err != nil {
					continue
				}
				s = string(b)
			} else if isTransit(s) {
				continue // datetimes, NIs, decimals, URIs are not strings
			}
			out = append(out, json.Number(hash128String(s, seed)))
		}
		return out, nil
	}, nil
}

// describeArg renders a DTL argument for error messages.
func describeArg(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return typeName(v)
	}
	return string(b)
}

// withDefault compiles Sesam's type casts, ["integer", [DEFAULT,] VALUES]:
// every non-null value of VALUES that conv accepts is converted; without
// DEFAULT the others are dropped, with it each is replaced by the value of
// the DEFAULT expression (evaluated once per call).
func withDefault(conv func(any) (any, bool)) func(*compiler, string, []any) (evalFn, error) {
	plain := perValue(conv)
	return func(c *compiler, path string, args []any) (evalFn, error) {
		if len(args) == 1 {
			return plain(c, path, args)
		}
		fns, err := c.exprs(args, path, 1)
		if err != nil {
			return nil, err
		}
		return func(e *env) ([]any, error) {
			m, err := fns[1](e)
			if err != nil {
				return nil, err
			}
			out := make([]any, 0, len(m))
			var def []any
			haveDef := false
			for _, v := range m {
				if v == nil {
					continue
				}
				if r, ok := conv(v); ok {
					out = append(out, r)
					continue
				}
				if !haveDef {
					if def, err = fns[0](e); err != nil {
						return nil, err
					}
					haveDef = true
				}
				if len(def) > 0 {
					out = append(out, store(def))
				}
			}
			return out, nil
		}, nil
	}
}

// untransit strips the "~t"/"~f" transit prefixes for plain JSON output.
func untransit(v any) any {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, prefixDatetime) {
			return x[2:]
		}
		if strings.HasPrefix(x, prefixDecimal) {
			return json.Number(x[2:])
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = untransit(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = untransit(e)
		}
		return out
	}
	return v
}

func jsonParse(v any) (any, bool) {
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, false
	}
	if dec.More() {
		return nil, false
	}
	return out, true
}

// compileApply: ["apply", RULE, VALUES] runs RULE on each non-null value in
// VALUES (dicts, but also scalars: hubspot applies a rule to "TYPE-ID"
// strings and splits "_S.") and returns the targets (filtered/discarded ones
// left out).
func compileApply(c *compiler, path string, args []any) (evalFn, error) {
	r, err := c.ruleRef(args[0], argPath(path, 1))
	if err != nil {
		return nil, err
	}
	vals, err := c.expr(args[1], argPath(path, 2))
	if err != nil {
		return nil, err
	}
	return func(e *env) ([]any, error) {
		m, err := vals(e)
		if err != nil {
			return nil, err
		}
		return applyEach(e, r, m)
	}, nil
}

func applyEach(e *env, r *rule, m []any) ([]any, error) {
	out := make([]any, 0, len(m))
	for _, v := range m {
		if v == nil {
			continue
		}
		t, keep, err := e.applyRule(r, v)
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, t)
		}
	}
	return out, nil
}

func (c *compiler) ruleRef(v any, path string) (*rule, error) {
	name, ok := v.(string)
	if !ok {
		return nil, cerr(path, "rule name must be a literal string, got %s", typeName(v))
	}
	r, ok := c.p.rules[name]
	if !ok {
		return nil, cerr(path, "unknown rule %q", name)
	}
	return r, nil
}
