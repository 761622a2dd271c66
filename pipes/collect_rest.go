package pipes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// CollectRest is Sesam's built-in transform template
// "transform-collect-rest" implemented in Go (SPEC f, reconstructed). Per
// entity, in this order:
//
//  1. operation_lookup_delete (with rest_system; properties from
//     operation_lookup_delete_properties): a deleted entity is looked up
//     through a nested "rest" transform accepting 200 and 404; on 200 it
//     is emitted with "_deleted": false (the delete was not real), on 404
//     it stays deleted. It wins over operation_lookup for deleted
//     entities.
//  2. operation_lookup (with rest_system; operation_lookup_properties): the
//     entity (every entity when there is no operation_lookup_delete, else
//     the live ones) is looked up and, on 200, replaced by the response
//     object (the first element of a list response), keeping _id,
//     _deleted, $origin and $last-modified; with original_property the
//     entity as collected is kept under that key. Any other status leaves
//     the entity as it was.
//  3. $origin: the latest (highest _updated) live record of share_dataset
//     whose $generated_id equals the entity's primary key gives its
//     non-empty $origin to the entity (add-if: an entity's own $origin is
//     replaced only by a non-empty one).
//
// primary_key is a property name ("id"), a DTL path ("_S.id", as
// powerofficego writes it; lists are spread as DTL does and the first
// value is the key), or a list of those for a composite key, which then
// matches a $generated_id list (tuple) element by element. Equality is
// SPEC a's: numbers by value, strings (NIs included) exactly. An entity
// without a key value (or missing a part of a composite key) gets no
// $origin. The share records are read through the shared [Lookups]
// index; "$last-modified" set by the connector passes through untouched.
//
// Steps 1 and 2 need the REST transform: they are built from the registry
// ("rest" type, replace_entity false) and fail the pipe's compile with
// "not supported yet" while that type is not runnable.
type CollectRest struct {
	shareDataset string
	key          [][]string // one path per key part
	lookups      *Lookups

	lookup, lookupDelete engine.Transform
	originalProperty     string
}

const (
	lookupResponseKey = "_collect_lookup_response"
	lookupStatusKey   = "_collect_lookup_status"
)

func newCollectRest(b *engine.Build, props map[string]any, lookups *Lookups) (engine.Transform, error) {
	t := &CollectRest{lookups: lookups}
	var err error
	if t.shareDataset, err = propString(props, "share_dataset"); err != nil {
		return nil, err
	}
	if t.shareDataset == "" {
		return nil, engine.Fieldf("/properties/share_dataset", "transform-collect-rest needs share_dataset")
	}
	if t.key, err = parsePrimaryKey(props["primary_key"]); err != nil {
		return nil, err
	}
	if t.originalProperty, err = propString(props, "original_property"); err != nil {
		return nil, err
	}
	system, err := propString(props, "rest_system")
	if err != nil {
		return nil, err
	}
	build := func(opKey string, statuses string) (engine.Transform, error) {
		op, err := propString(props, opKey)
		if err != nil || op == "" {
			return nil, err
		}
		if system == "" {
			return nil, engine.Fieldf("/properties/rest_system", "%s needs rest_system", opKey)
		}
		opProps, err := propObject(props, opKey+"_properties")
		if err != nil {
			return nil, err
		}
		cfg := map[string]any{
			"type": "rest", "system": system, "operation": op,
			"replace_entity": false, "response_property": lookupResponseKey,
			"response_status_property": lookupStatusKey, "allowed_status_codes": statuses,
		}
		if opProps != nil {
			cfg["properties"] = opProps
		}
		if b.Registry == nil {
			return nil, engine.Fieldf("/properties/"+opKey, "%v: %s needs the rest transform", engine.ErrUnsupported, opKey)
		}
		tr, err := b.Registry.BuildTransform(b, cfg)
		if err != nil {
			if errors.Is(err, engine.ErrUnsupported) {
				return nil, engine.Fieldf("/properties/"+opKey, "%v: %s needs the rest transform", engine.ErrUnsupported, opKey)
			}
			return nil, engine.Fieldf("/properties/"+opKey, "nested rest transform: %v", err)
		}
		return tr, nil
	}
	if t.lookupDelete, err = build("operation_lookup_delete", "200,404"); err != nil {
		return nil, err
	}
	if t.lookup, err = build("operation_lookup", "200-599"); err != nil {
		return nil, err
	}
	return t, nil
}

// parsePrimaryKey accepts "name", "_S.a.b" or a list of those.
func parsePrimaryKey(v any) ([][]string, error) {
	one := func(s string, ptr string) ([]string, error) {
		if rest, ok := strings.CutPrefix(s, "_S."); ok {
			var path []string
			for _, step := range strings.Split(rest, ".") {
				if step != "" {
					path = append(path, step)
				}
			}
			if len(path) == 0 {
				return nil, engine.Fieldf(ptr, "empty primary key path %q", s)
			}
			return path, nil
		}
		if s == "" {
			return nil, engine.Fieldf(ptr, "empty primary key")
		}
		return []string{s}, nil
	}
	switch x := v.(type) {
	case string:
		p, err := one(x, "/properties/primary_key")
		if err != nil {
			return nil, err
		}
		return [][]string{p}, nil
	case []any:
		var out [][]string
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, engine.Fieldf(fmt.Sprintf("/properties/primary_key/%d", i), "must be a string")
			}
			p, err := one(s, fmt.Sprintf("/properties/primary_key/%d", i))
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		if len(out) > 0 {
			return out, nil
		}
	case nil:
		return nil, engine.Fieldf("/properties/primary_key", "transform-collect-rest needs primary_key")
	}
	return nil, engine.Fieldf("/properties/primary_key", "must be a property name, a \"_S.\" path or a list of them")
}

// HoppedDatasets names the share dataset read for $origin
// (engine.HoppedDatasets).
func (t *CollectRest) HoppedDatasets() []string { return []string{t.shareDataset} }

// ShareDatasets names it as a share dataset (engine.ShareDatasets), so a
// config without the share pipe gets no warning about it.
func (t *CollectRest) ShareDatasets() []string { return []string{t.shareDataset} }

// Transform runs the lookups and stamps $origin on each entity.
func (t *CollectRest) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	out := make([]engine.Entity, 0, len(in))
	for _, e := range in {
		id := engine.ID(e)
		e = maps.Clone(e)
		deleted, _ := e["_deleted"].(bool)
		var err error
		switch {
		case deleted && t.lookupDelete != nil:
			e, err = t.verifyDelete(ctx, e)
		case t.lookup != nil:
			e, err = t.enrich(ctx, e)
		}
		if err != nil {
			return nil, &engine.EntityError{ID: id, Err: fmt.Errorf("transform-collect-rest: %w", err)}
		}
		if err := t.stampOrigin(ctx, e); err != nil {
			return nil, &engine.EntityError{ID: id, Err: fmt.Errorf("transform-collect-rest: %w", err)}
		}
		out = append(out, e)
	}
	return out, nil
}

// callLookup runs a nested REST transform on one entity and returns the
// response status and body; ok is false when the transform dropped it.
func callLookup(ctx context.Context, tr engine.Transform, e engine.Entity) (status string, body any, ok bool, err error) {
	res, err := tr.Transform(ctx, []engine.Entity{e})
	if err != nil {
		return "", nil, false, err
	}
	if len(res) == 0 {
		return "", nil, false, nil
	}
	r := res[0]
	k, _ := valueKey(r[lookupStatusKey])
	return strings.TrimPrefix(k, "n"), r[lookupResponseKey], true, nil
}

func (t *CollectRest) verifyDelete(ctx context.Context, e engine.Entity) (engine.Entity, error) {
	status, _, ok, err := callLookup(ctx, t.lookupDelete, e)
	if err != nil {
		return nil, fmt.Errorf("operation_lookup_delete: %w", err)
	}
	if ok && status == "200" {
		e["_deleted"] = false
	}
	return e, nil
}

func (t *CollectRest) enrich(ctx context.Context, e engine.Entity) (engine.Entity, error) {
	status, body, ok, err := callLookup(ctx, t.lookup, e)
	if err != nil {
		return nil, fmt.Errorf("operation_lookup: %w", err)
	}
	if !ok || status != "200" {
		return e, nil
	}
	if l, isList := body.([]any); isList {
		if len(l) == 0 {
			return e, nil
		}
		body = l[0]
	}
	resp, isMap := body.(map[string]any)
	if !isMap {
		return e, nil
	}
	out := maps.Clone(resp)
	for _, k := range []string{"_id", "_deleted", "$origin", "$last-modified"} {
		if v, has := e[k]; has {
			out[k] = v
		} else {
			delete(out, k)
		}
	}
	if t.originalProperty != "" {
		out[t.originalProperty] = map[string]any(e)
	}
	return out, nil
}

// keyOf returns the entity's key: one value, or a tuple for a composite
// key; ok is false when a part is missing.
func (t *CollectRest) keyOf(e engine.Entity) (any, bool) {
	parts := make([]any, 0, len(t.key))
	for _, path := range t.key {
		vs := valuesAt(map[string]any(e), path)
		if len(vs) == 0 {
			return nil, false
		}
		parts = append(parts, vs[0])
	}
	if len(parts) == 1 {
		return parts[0], true
	}
	return parts, true
}

// sameKey compares a share record's $generated_id with a key.
func sameKey(gid, key any) bool {
	if tuple, ok := key.([]any); ok {
		l, ok := gid.([]any)
		if !ok || len(l) != len(tuple) {
			return false
		}
		for i := range l {
			if !sameKey(l[i], tuple[i]) {
				return false
			}
		}
		return true
	}
	if l, ok := gid.([]any); ok && len(l) == 1 {
		gid = l[0]
	}
	a, ok1 := valueKey(gid)
	b, ok2 := valueKey(key)
	return ok1 && ok2 && a == b
}

func (t *CollectRest) stampOrigin(ctx context.Context, e engine.Entity) error {
	key, ok := t.keyOf(e)
	if !ok {
		return nil
	}
	cands, err := t.lookups.Lookup(ctx, t.shareDataset, []string{"$generated_id"}, []any{key})
	if err != nil {
		return fmt.Errorf("share dataset %q: %w", t.shareDataset, err)
	}
	var best map[string]any
	var bestOff string
	for _, c := range cands {
		if !sameKey(c["$generated_id"], key) {
			continue
		}
		off, _ := valueKey(c["_updated"])
		if best == nil || numberLess(bestOff, off) {
			best, bestOff = c, off
		}
	}
	if best == nil {
		return nil
	}
	if o := best["$origin"]; !emptyValue(o) {
		e["$origin"] = o
	}
	return nil
}

// numberLess compares two numberKey texts of non-negative integers.
func numberLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// emptyValue is what DTL add-if skips: null and the empty list.
func emptyValue(v any) bool {
	l, isList := v.([]any)
	return v == nil || isList && len(l) == 0
}
