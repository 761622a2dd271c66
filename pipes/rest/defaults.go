package rest

import (
	"context"
	"fmt"
	"maps"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/dtl"
)

// defaultsSchema validates transform-defaults-rest's properties.
const defaultsSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "transform-defaults-rest properties",
  "type": "object",
  "required": ["rest_system", "operation"],
  "properties": {
    "rest_system": {"description": "The system:rest asked for defaults.", "type": "string", "minLength": 1},
    "operation": {"description": "The operation that returns a new record's defaults.", "type": "string", "minLength": 1},
    "operation_properties": {"description": "Properties for the operation.", "type": "object"},
    "primary_key": {"description": "The record's key; entities with one are not inserted and get no defaults.", "type": ["string", "array"], "minLength": 1, "minItems": 1, "items": {"type": "string", "minLength": 1}}
  }
}`

// Defaults is Sesam's transform-defaults-rest (SPEC f): for an entity that
// will be inserted (live, without a primary key; every live entity when
// there is no primary_key) it GETs the operation (the system's defaults
// for a new record, e.g. SuperOffice's Contact/default) and merges the
// response under the entity: the entity's values win, objects merge
// recursively. Other entities pass unchanged. A response other than 200
// with a JSON object fails the batch naming the entity: inserting without
// the defaults the system asks for would fail there anyway. The primary
// key properties of the defaults are dropped (a new record's placeholder
// key, such as SuperOffice's ContactId 0, must not make the entity look
// like an existing record).
type Defaults struct {
	c        *call
	key      []*dtl.Expr
	keyNames []string
}

func newDefaults(b *engine.Build, props map[string]any) (engine.Transform, error) {
	sysID, _ := props["rest_system"].(string)
	raw, err := b.System(sysID)
	if err != nil {
		return nil, engine.Fieldf("/properties/rest_system", "%v", err)
	}
	sys, ok := raw.(*System)
	if !ok {
		return nil, engine.Fieldf("/properties/rest_system", "system %q is not a system:rest", sysID)
	}
	name, _ := props["operation"].(string)
	op, ok := sys.Operations[name]
	if !ok {
		return nil, engine.Fieldf("/properties/operation", "operation %q is not defined by system %q (known: %s)", name, sys.ID, operationNames(nil, sys))
	}
	o := overrides{log: b.Logger}
	o.properties, _ = props["operation_properties"].(map[string]any)
	c, err := newCall(sys, op, o)
	if err != nil {
		return nil, engine.Fieldf("/properties/operation", "%v", err)
	}
	c.where = fmt.Sprintf("pipe %q %s", b.Pipe, c.where)
	d := &Defaults{c: c}
	if v, has := props["primary_key"]; has {
		if d.key, d.keyNames, err = keyExprs(v, "/properties/primary_key"); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// SideEffects is false: the defaults are read with the operation (a GET).
func (d *Defaults) SideEffects() bool { return d.c.op.Method != "GET" && d.c.op.Method != "HEAD" }

// Transform merges the defaults under each entity that will be inserted.
func (d *Defaults) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	out := make([]engine.Entity, len(in))
	for i, e := range in {
		out[i] = e
		if isTrue(e, "_deleted") {
			continue
		}
		if d.key != nil {
			_, hasKey, err := keyOf(ctx, d.key, e)
			if err != nil {
				return nil, &engine.EntityError{ID: engine.ID(e), Err: fmt.Errorf("transform-defaults-rest: primary key: %w", err)}
			}
			if hasKey {
				continue
			}
		}
		base := map[string]any{"entity": map[string]any(e), "source_entity": map[string]any(e), "properties": d.c.properties}
		p := newPager(d.c, base, "")
		p.single, p.entities = true, false
		pg, err := p.next(ctx)
		if err != nil {
			return nil, &engine.EntityError{ID: engine.ID(e), Err: fmt.Errorf("transform-defaults-rest: %w", err)}
		}
		def, ok := first(pg.body).(map[string]any)
		if pg.resp.Status != 200 || !ok {
			return nil, &engine.EntityError{ID: engine.ID(e), Err: fmt.Errorf("transform-defaults-rest: %s answered %d with %s, not a JSON object of defaults", d.c.where, pg.resp.Status, describe(pg.body))}
		}
		// The defaults of a new record carry a placeholder primary key
		// (SuperOffice: ContactId 0); it must not make the entity look
		// like an existing record.
		def = maps.Clone(def)
		for _, k := range d.keyNames {
			delete(def, k)
		}
		out[i] = underlay(def, e)
	}
	return out, nil
}

// underlay returns e with defaults filled in where e has no value: e's
// values win, nested objects merge recursively.
func underlay(defaults, e map[string]any) map[string]any {
	out := maps.Clone(defaults)
	for k, v := range e {
		dm, ok1 := out[k].(map[string]any)
		em, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = underlay(dm, em)
			continue
		}
		out[k] = v
	}
	return out
}
