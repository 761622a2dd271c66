package pipes

import (
	"context"
	"fmt"
	"maps"

	"github.com/ferrydata/ferry/engine"
)

const emitChildrenSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "emit_children transform",
  "type": "object",
  "properties": {
    "type": {"const": "emit_children"},
    "comment": {}
  }
}`

// EmitChildren replaces each entity by the dicts in its "$children" list
// (what DTL create-child builds) and drops the parent, as Sesam's
// emit_children does. Every child must be an object with a non-empty
// string _id; anything else fails the batch naming the parent. A parent
// without "$children" (or with null) yields nothing. Children of a deleted
// parent are emitted deleted ("_deleted": true), so a parent's deletion
// reaches its children's dataset; each child is a shallow copy, the
// parent is not modified.
type EmitChildren struct{}

func newEmitChildren(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
	return EmitChildren{}, nil
}

// Transform emits the children of every entity of the batch.
func (EmitChildren) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	var out []engine.Entity
	for _, parent := range in {
		pid := engine.ID(parent)
		raw, ok := parent["$children"]
		if !ok || raw == nil {
			continue
		}
		list, ok := raw.([]any)
		if !ok {
			if m, isMap := raw.(map[string]any); isMap {
				list = []any{m} // one child stored as a single value
			} else {
				return nil, &engine.EntityError{ID: pid, Err: fmt.Errorf("emit_children: $children is %s, not a list of objects", engine.TypeName(raw))}
			}
		}
		deleted, _ := parent["_deleted"].(bool)
		for i, c := range list {
			child, ok := c.(map[string]any)
			if !ok {
				return nil, &engine.EntityError{ID: pid, Err: fmt.Errorf("emit_children: $children[%d] is %s, not an object", i, engine.TypeName(c))}
			}
			if id, _ := child["_id"].(string); id == "" {
				return nil, &engine.EntityError{ID: pid, Err: fmt.Errorf("emit_children: $children[%d] has no string _id", i)}
			}
			child = maps.Clone(child)
			if deleted {
				child["_deleted"] = true
			}
			out = append(out, child)
		}
	}
	return out, nil
}
