package engine

import (
	"errors"
	"fmt"
	"strings"
)

// BuildTransform builds a transform nested inside a composite one (for
// example the REST lookup step of a template transform) from cfg, exactly
// as the compiler builds a pipe's own transforms: the type is looked up in
// r, cfg is validated against the type's schema, and the constructor is
// called with b. An unknown type is an error; a type registered as
// unsupported yields an error wrapping [ErrUnsupported]; schema problems
// (warnings excluded) are joined into one error whose lines carry JSON
// pointers relative to cfg.
func (r *Registry) BuildTransform(b *Build, cfg map[string]any) (Transform, error) {
	name, _ := cfg["type"].(string)
	if name == "" {
		return nil, Fieldf("/type", "transform has no type")
	}
	e, ok := r.lookup(KindTransform, name)
	if !ok {
		return nil, Fieldf("/type", "unknown transform type %q", name)
	}
	if e.build == nil {
		return nil, fmt.Errorf("transform:%s: %w", name, ErrUnsupported)
	}
	sch, err := r.schemaFor(KindTransform, name)
	if err != nil {
		return nil, err
	}
	probs, err := sch.validate(cfg)
	if err != nil {
		return nil, fmt.Errorf("validating transform %q: %w", name, err)
	}
	var msgs []string
	for _, p := range probs {
		if !p.warning {
			msgs = append(msgs, strings.TrimPrefix(p.pointer+": "+p.message, ": "))
		}
	}
	if len(msgs) > 0 {
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return e.build.(TransformFunc)(b, cfg)
}
