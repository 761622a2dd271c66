package dtl

import (
	"context"
	"errors"
	"fmt"
)

// Expr is one compiled DTL expression, evaluated on its own rather than as
// part of a rule: a dataset source's subset ("subset": ["eq", EXPR,
// VALUE]) is one. It is immutable and safe for concurrent use.
type Expr struct {
	p  *Program
	fn evalFn
}

// CompileExpr compiles a single DTL expression (decoded with UseNumber).
// path names the expression in error paths: with path "subset[1]" a bad
// nested call is reported at "subset[1][2][1]". There are no named rules,
// so "apply" fails to compile; hops compile and need opts.Hops at
// evaluation time.
func CompileExpr(expr any, path string, opts Options) (*Expr, error) {
	p := &Program{rules: map[string]*rule{}, opts: opts, maxDepth: opts.MaxDepth}
	if p.maxDepth <= 0 {
		p.maxDepth = 256
	}
	c := &compiler{p: p}
	fn, err := c.expr(expr, path)
	if err != nil {
		return nil, err
	}
	return &Expr{p: p, fn: fn}, nil
}

// HoppedDatasets returns the datasets the expression reads through hops
// and lookup-entity.
func (x *Expr) HoppedDatasets() []string { return x.p.HoppedDatasets() }

// Eval evaluates the expression with _S (and _R._S) bound to entity and an
// empty target, and returns its value as a sequence (a path to a missing
// or null value yields none). entity may be nil for a constant
// expression. Errors are *Error values naming the entity's _id and the
// failing expression's path.
func (x *Expr) Eval(ctx context.Context, entity map[string]any) (out []any, err error) {
	id, _ := entity["_id"].(string)
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{ID: id, Err: fmt.Errorf("internal error: %v", r)}
		}
	}()
	var src any
	if entity != nil {
		src = entity
	}
	root := &frame{src: src, tgt: map[string]any{}}
	e := &env{ctx: ctx, p: x.p, root: root, cur: root}
	m, err := x.fn(e)
	if err != nil {
		var de *Error
		if errors.As(err, &de) {
			de.ID = id
			return nil, de
		}
		return nil, &Error{ID: id, Err: err}
	}
	return m, nil
}

// Equal reports whether two values are equal as DTL's "eq" compares them:
// deep equality, numbers by value (1 == 1.0, big integers exactly),
// strings exactly (an NI never equals the plain string of its id).
func Equal(a, b any) bool { return valueEqual(a, b) }

// Stored returns the single value a sequence is stored as ("add" writes
// it so): nothing is null, one element is that element, several are a
// list.
func Stored(m []any) any { return store(m) }
