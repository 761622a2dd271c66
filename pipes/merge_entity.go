package pipes

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// maxTupleKeys bounds the keys one entity may have in an "and" key space
// (the product of its values per conjunct).
const maxTupleKeys = 1024

// keysOf returns a live member's equality keys, sorted and distinct: per
// key space, the hash of the space and of each value of its expressions
// on the member's alias. Values compare as DTL "eq" does (see
// mergeValueKey); lists count by their elements; null never matches.
func (m *Merge) keysOf(ctx context.Context, me *memberEntity) ([]h128, error) {
	exprs := m.exprs[me.ds]
	var ands []andRule
	for _, a := range m.andRules {
		if _, ok := a.sides[me.ds]; ok {
			ands = append(ands, a)
		}
	}
	if len(exprs) == 0 && len(ands) == 0 {
		return nil, nil
	}
	if me.synth {
		// An entity without $ids reads as having its own NI.
		me.ent["$ids"] = me.ids
		defer delete(me.ent, "$ids")
	}
	fail := func(err error) ([]h128, error) {
		return nil, fmt.Errorf("dataset %q entity %s: equality: %w", m.Datasets[me.ds], engine.QuoteID(me.id), err)
	}
	var keys []h128
	for _, x := range exprs {
		vals, err := x.expr.Eval(ctx, me.ent)
		if err != nil {
			return fail(err)
		}
		for _, v := range flattenValues(vals, nil) {
			if k, ok := mergeValueKey(v); ok {
				keys = append(keys, hashString(x.space+"\x00"+k))
			}
		}
	}
	for _, a := range ands {
		tuples := []string{""}
		for _, x := range a.sides[me.ds] {
			vals, err := x.Eval(ctx, me.ent)
			if err != nil {
				return fail(err)
			}
			var parts []string
			for _, v := range flattenValues(vals, nil) {
				if k, ok := mergeValueKey(v); ok && !slices.Contains(parts, k) {
					parts = append(parts, k)
				}
			}
			if len(parts) == 0 {
				tuples = nil
				break
			}
			if len(tuples)*len(parts) > maxTupleKeys {
				return fail(fmt.Errorf("more than %d value combinations for an \"and\" rule", maxTupleKeys))
			}
			next := make([]string, 0, len(tuples)*len(parts))
			for _, t := range tuples {
				for _, p := range parts {
					next = append(next, t+strconv.Itoa(len(p))+":"+p)
				}
			}
			tuples = next
		}
		for _, t := range tuples {
			keys = append(keys, hashString(a.space+"\x00"+t))
		}
	}
	slices.SortFunc(keys, cmpH128)
	return slices.Compact(keys), nil
}

// mergeValueKey is valueKey with transit decimals ("~f1.5") keyed as the
// numbers they equal in DTL.
func mergeValueKey(v any) (string, bool) {
	if s, ok := v.(string); ok {
		if d, isDec := strings.CutPrefix(s, "~f"); isDec && d != "" {
			return "n" + numberKey(d), true
		}
	}
	return valueKey(v)
}

// mergeEntities builds the output entity of a cluster from its members in
// output order (see docs/merge.md):
//
//   - "default": every property of every member; a property several
//     members have becomes the list of their values in member order, a
//     list value contributing its elements (so nothing is lost, duplicates
//     included); a property one member has keeps its value as it is.
//   - "compact": as default, then duplicates are removed from list
//     values, empty lists dropped and one-element lists unwrapped.
//   - "list": the members' entities as they are, under "$merged".
//
// Root "_" properties of the members are not merged. $ids is the union of
// the members' ids (distinct, in member order) and stays a list in every
// strategy.
func (m *Merge) mergeEntities(id string, deleted bool, members []*memberEntity) engine.Entity {
	out := engine.Entity{}
	var ids []any
	seen := map[string]bool{}
	for _, me := range members {
		for _, v := range me.ids {
			k, ok := mergeValueKey(v)
			if !ok || seen[k] {
				continue
			}
			seen[k] = true
			ids = append(ids, v)
		}
	}
	if m.Strategy == "list" {
		merged := make([]any, len(members))
		for i, me := range members {
			merged[i] = me.ent
		}
		out["$merged"] = merged
	} else {
		props := map[string][]any{}
		for _, me := range members {
			for k, v := range me.ent {
				if strings.HasPrefix(k, "_") || k == "$ids" {
					continue
				}
				props[k] = append(props[k], v)
			}
		}
		for k, vals := range props {
			if len(vals) == 1 {
				out[k] = vals[0]
				continue
			}
			var l []any
			for _, v := range vals {
				if lv, ok := v.([]any); ok {
					l = append(l, lv...)
				} else {
					l = append(l, v)
				}
			}
			if l == nil {
				l = []any{}
			}
			out[k] = l
		}
		if m.Strategy == "compact" {
			for k, v := range out {
				l, ok := v.([]any)
				if !ok {
					continue
				}
				l = distinctMergeValues(l)
				switch len(l) {
				case 0:
					delete(out, k)
				case 1:
					out[k] = l[0]
				default:
					out[k] = l
				}
			}
		}
	}
	if ids == nil {
		ids = []any{}
	}
	out["$ids"] = ids
	out["_id"] = id
	if deleted {
		out["_deleted"] = true
	}
	return out
}

// distinctMergeValues drops later duplicates (as DTL "eq" compares).
func distinctMergeValues(l []any) []any {
	out := make([]any, 0, len(l))
	seen := map[string]bool{}
	for _, v := range l {
		k, ok := mergeValueKey(v)
		if !ok {
			if v == nil {
				k = "null"
			} else {
				out = append(out, v)
				continue
			}
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, v)
	}
	return out
}
