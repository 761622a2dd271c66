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

// BuildTemplate builds the built-in transform template name with its
// properties (see RegisterTemplate): props are validated against the
// template's schema (errors point below /properties; unknown keys are
// warnings) and passed to its constructor. An unknown template is an error
// listing the known ones; one registered as unsupported wraps
// [ErrUnsupported].
func (r *Registry) BuildTemplate(b *Build, name string, props map[string]any) (Transform, error) {
	e, ok := r.lookup(KindTemplate, name)
	if !ok {
		return nil, Fieldf("/template", "unknown transform template %q (known: %s)", name, strings.Join(r.Names(KindTemplate), ", "))
	}
	if e.build == nil {
		return nil, Fieldf("/template", "%v: template %q", ErrUnsupported, name)
	}
	if props == nil {
		props = map[string]any{}
	}
	sch, err := r.schemaFor(KindTemplate, name)
	if err != nil {
		return nil, err
	}
	probs, err := sch.validate(props)
	if err != nil {
		return nil, fmt.Errorf("validating template %q: %w", name, err)
	}
	for _, p := range probs {
		if p.warning {
			b.Warnf("/properties"+p.pointer, "%s", p.message)
			continue
		}
		return nil, Fieldf("/properties"+p.pointer, "%s", p.message)
	}
	return e.build.(TransformFunc)(b, props)
}
