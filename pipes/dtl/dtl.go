package dtl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrydata/ferry/engine"
)

// Hopper gives DTL joins ("hops", "apply-hops", "lookup-entity") access to
// other datasets. The integrator implements it on the dataset store.
type Hopper interface {
	// Lookup returns the latest non-deleted entities of dataset whose value at
	// path equals any of values. Comparison follows SPEC a: NIs compare by
	// full string and never equal a plain string; numbers compare by value.
	// When the value at path is a list, an entity matches if any element
	// equals one of values (Sesam indexes list elements), so list-valued keys
	// such as a composite "$generated_id" can be found by one of their
	// elements. Lookup never returns entities for nil values and may return
	// extra candidates: the interpreter re-checks every where-condition.
	Lookup(ctx context.Context, dataset string, path []string, values []any) ([]map[string]any, error)
}

// Options configure [Compile].
type Options struct {
	// IDRequired makes Apply fail on a source or output root entity whose
	// "_id" is missing or not a string. Sesam's id_required defaults to true
	// but a Go bool cannot default to true, so the zero Options has it off:
	// start from [DefaultOptions] and copy the transform's id_required.
	IDRequired bool
	// Hops serves joins. It may be nil: programs using hops still compile,
	// and evaluating a hop then fails at run time.
	Hops Hopper
	// Now returns the current time for "now"; nil means time.Now.
	Now func() time.Time
	// MaxDepth bounds nested "apply" calls (recursive rules); 0 means 256.
	MaxDepth int
}

// DefaultOptions returns the options matching Sesam's defaults
// (id_required true, no hopper).
func DefaultOptions() Options { return Options{IDRequired: true} }

// Program is a compiled DTL transform. It is immutable and safe for
// concurrent use by multiple goroutines.
type Program struct {
	rules    map[string]*rule
	def      *rule
	opts     Options
	maxDepth int
	// hopped lists the datasets read by hops, apply-hops and
	// lookup-entity, in the order they first appear.
	hopped []string
}

// HoppedDatasets returns the datasets the program reads through hops,
// apply-hops and lookup-entity (each once, in the order they first appear
// in the rules, rules sorted by name). The engine uses them to order pipes
// and to signal a pipe when a dataset it hops into changes.
func (p *Program) HoppedDatasets() []string {
	return append([]string(nil), p.hopped...)
}

// addHopped records a dataset read by a join.
func (p *Program) addHopped(ds string) {
	for _, d := range p.hopped {
		if d == ds {
			return
		}
	}
	p.hopped = append(p.hopped, ds)
}

type rule struct {
	name string
	body []execFn
}

// Error is a DTL compile or runtime error. Path is the JSON path of the
// offending expression (e.g. "rules.default[3][1]"); ID is the source
// entity's _id for runtime errors.
type Error struct {
	Path string
	ID   string
	Err  error
}

// Error formats the error as "dtl: entity <id>: <path>: <cause>" for runtime
// errors and "<path>: <cause>" for compile errors.
func (e *Error) Error() string {
	switch {
	case e.ID != "" && e.Path != "":
		return fmt.Sprintf("dtl: entity %s: %s: %v", engine.QuoteID(e.ID), e.Path, e.Err)
	case e.ID != "":
		return fmt.Sprintf("dtl: entity %s: %v", engine.QuoteID(e.ID), e.Err)
	case e.Path != "":
		return fmt.Sprintf("%s: %v", e.Path, e.Err)
	}
	return "dtl: " + e.Err.Error()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrFail is wrapped by the error returned when a rule runs "fail!".
var ErrFail = errors.New("fail!")

// evalFn evaluates an expression to a multi-value.
type evalFn func(e *env) ([]any, error)

// execFn runs a transform function against the current target.
type execFn func(e *env) error

// frame is one transform context: a source, the target being built, and the
// parent context of an "apply".
type frame struct {
	src    any
	tgt    map[string]any
	parent *frame
}

type binding struct {
	name string
	val  any
}

// env is the per-Apply interpreter state. It is never shared between
// goroutines.
type env struct {
	ctx     context.Context
	p       *Program
	root    *frame
	cur     *frame
	item    any
	hasItem bool
	binds   []binding
	created []map[string]any
	depth   int
}

// stopSignal unwinds a rule after "filter" or "discard".
type stopSignal struct{ filter bool }

func (s *stopSignal) Error() string {
	if s.filter {
		return "filtered"
	}
	return "discarded"
}

// at attaches the JSON path of the failing function to a runtime error,
// keeping the innermost path.
func at(path string, err error) error {
	if err == nil {
		return nil
	}
	var de *Error
	var st *stopSignal
	if errors.As(err, &de) || errors.As(err, &st) {
		return err
	}
	return &Error{Path: path, Err: err}
}

// Apply runs the program's "default" rule on source and returns the output
// entities: the root target (unless discarded; with "_filtered": true when
// filtered) followed by the entities made by "create". Outputs may share
// nested values with source; treat both as read-only. Errors name the rule
// path and the source _id.
func (p *Program) Apply(ctx context.Context, source map[string]any) (out []map[string]any, err error) {
	id, _ := source["_id"].(string)
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{ID: id, Err: fmt.Errorf("internal error: %v", r)}
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, &Error{ID: id, Err: err}
	}
	if p.opts.IDRequired {
		if _, ok := source["_id"].(string); !ok {
			return nil, &Error{ID: id, Err: errors.New("source entity has no string _id (id_required)")}
		}
	}
	tgt := make(map[string]any, max(8, len(source)))
	if v, ok := source["_id"]; ok {
		tgt["_id"] = v
	}
	if v, ok := source["_deleted"]; ok {
		tgt["_deleted"] = v
	}
	root := &frame{src: source, tgt: tgt}
	e := &env{ctx: ctx, p: p, root: root, cur: root}
	keep, filtered := true, false
	if err := e.runBody(p.def.body); err != nil {
		var st *stopSignal
		if !errors.As(err, &st) {
			var de *Error
			if errors.As(err, &de) {
				de.ID = id
				return nil, de
			}
			return nil, &Error{ID: id, Path: "rules.default", Err: err}
		}
		keep, filtered = st.filter, st.filter
	}
	if keep {
		if filtered {
			tgt["_filtered"] = true
		}
		out = append(out, tgt)
	}
	out = append(out, e.created...)
	if p.opts.IDRequired {
		for _, o := range out {
			if _, ok := o["_id"].(string); !ok {
				return nil, &Error{ID: id, Path: "rules.default", Err: fmt.Errorf("output entity has no string _id (id_required): _id = %s", canonicalJSON(o["_id"]))}
			}
		}
	}
	return out, nil
}

func (e *env) runBody(body []execFn) error {
	for _, f := range body {
		if err := f(e); err != nil {
			return err
		}
	}
	return nil
}

// applyRule runs r with src as _S and a fresh empty target, as a child
// context of the current one. It reports false when the rule filtered or
// discarded its target.
func (e *env) applyRule(r *rule, src any) (map[string]any, bool, error) {
	if err := e.ctx.Err(); err != nil {
		return nil, false, err
	}
	if e.depth >= e.p.maxDepth {
		return nil, false, fmt.Errorf("apply %q: nesting deeper than %d", r.name, e.p.maxDepth)
	}
	saved, savedItem, savedHas := e.cur, e.item, e.hasItem
	f := &frame{src: src, tgt: make(map[string]any, 8), parent: saved}
	e.cur, e.hasItem, e.item = f, false, nil
	e.depth++
	err := e.runBody(r.body)
	e.depth--
	e.cur, e.item, e.hasItem = saved, savedItem, savedHas
	if err != nil {
		var st *stopSignal
		if errors.As(err, &st) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f.tgt, true, nil
}

// withItem evaluates fn with "_" bound to v.
func (e *env) withItem(v any, fn evalFn) ([]any, error) {
	savedItem, savedHas := e.item, e.hasItem
	e.item, e.hasItem = v, true
	m, err := fn(e)
	e.item, e.hasItem = savedItem, savedHas
	return m, err
}

func (e *env) now() time.Time {
	if e.p.opts.Now != nil {
		return e.p.opts.Now()
	}
	return time.Now()
}
