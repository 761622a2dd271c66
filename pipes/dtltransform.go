package pipes

import (
	"context"
	"errors"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/dtl"
)

const dtlSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "dtl transform",
  "type": "object",
  "required": ["rules"],
  "properties": {
    "type": {"const": "dtl"},
    "comment": {},
    "name": {"description": "A name for the transform (diagnostics).", "type": "string"},
    "rules": {"description": "The DTL rules: \"default\" and named rules, each a list of DTL functions (see pipes/dtl/README.md).", "type": "object", "required": ["default"]},
    "id_required": {"description": "Fail the run when an output entity has no _id (default true).", "type": "boolean"}
  }
}`

// DTLTransform runs Sesam DTL rules (package pipes/dtl) on every entity.
// The rules are compiled once when the pipe is built, with Sesam's defaults
// (id_required true unless the config says false). Hops, apply-hops and
// lookup-entity read other datasets through a [Lookups] index shared by
// every transform of the registry; the store is the one the engine runs
// against (taken from the run's context). Each input yields 0..n entities:
// the root target (with "_filtered": true when a filter rejected it) and
// the entities made by "create".
type DTLTransform struct {
	prog *dtl.Program
}

// newDTLTransform returns the constructor of "dtl" transforms, whose hops
// go through lookups.
func newDTLTransform(lookups *Lookups) engine.TransformFunc {
	return func(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
		rules, _ := cfg["rules"].(map[string]any)
		opts := dtl.DefaultOptions()
		if req, ok := cfg["id_required"].(bool); ok {
			opts.IDRequired = req
		}
		opts.Hops = lookups
		prog, err := dtl.Compile(rules, opts)
		if err != nil {
			return nil, dtlFieldError("", err)
		}
		return &DTLTransform{prog: prog}, nil
	}
}

// HoppedDatasets lists the datasets the rules read through hops,
// apply-hops and lookup-entity (engine.HoppedDatasets): the engine runs
// their writers first and signals this pipe when they change.
func (t *DTLTransform) HoppedDatasets() []string { return t.prog.HoppedDatasets() }

// ParallelSafe (engine.ParallelTransform): compiled rules keep no state
// between entities, so batches may be transformed at once; rules that
// hop into other datasets stay on one batch at a time (their lookup
// indexes refresh as those datasets change).
func (t *DTLTransform) ParallelSafe() bool { return len(t.prog.HoppedDatasets()) == 0 }

// Transform applies the rules to each entity of the batch. An error names
// the entity's _id and the failing rule path; nothing of the batch is
// returned then.
func (t *DTLTransform) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	out := make([]engine.Entity, 0, len(in))
	for _, e := range in {
		res, err := t.prog.Apply(ctx, e)
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// dtlFieldError turns a DTL compile error into a field error whose JSON
// pointer (below prefix) points at the bad expression: the DTL path
// "rules.default[3][1]" becomes "/rules/default/3/1".
func dtlFieldError(prefix string, err error) error {
	var de *dtl.Error
	if !errors.As(err, &de) || de.Path == "" {
		return engine.Fieldf(prefix+"/rules", "DTL: %v", err)
	}
	return engine.Fieldf(prefix+dtlPointer(de.Path), "DTL: %v", de.Err)
}

// dtlPointer converts a DTL error path to a JSON pointer.
func dtlPointer(path string) string {
	var b strings.Builder
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		b.WriteString("/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(name))
		for rest != "" {
			idx, tail, ok := strings.Cut(rest, "]")
			if !ok {
				break
			}
			b.WriteString("/" + idx)
			rest = strings.TrimPrefix(tail, "[")
		}
	}
	return b.String()
}
