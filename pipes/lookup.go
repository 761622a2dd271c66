package pipes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrydata/ferry/engine"
)

// Lookups is the store-backed [dtl.Hopper] behind DTL hops, apply-hops and
// lookup-entity, and behind the $origin stamping of transform-collect-rest.
// Lookup answers "the latest non-deleted entities of dataset whose value at
// path equals any of values" from an in-memory index per (store, dataset,
// path):
//
//   - The index is built on first use by scanning the dataset with
//     LatestOnly, and brought up to date on every Lookup by scanning from
//     the last offset it has seen (deleted entities are removed, a changed
//     entity is re-indexed under its new values). When nothing was written
//     since, the refresh costs one metadata read. A dataset that was
//     deleted and recreated (its creation time changed, or its log is
//     shorter than what was indexed) is re-indexed from scratch.
//   - Values at path follow DTL paths: lists are spread at every step and a
//     list leaf is indexed by each element (recursively), so a composite
//     "$generated_id" [a, b] is found by a or b; null is never indexed or
//     looked up. Equality follows SPEC a: strings (NIs included, "~:x" never
//     equals "x") by exact text, numbers by value (1 == 1.0), booleans,
//     dicts by canonical JSON.
//   - Hits are read back with Store.Get, so results are the latest versions
//     (with _updated, _ts, _previous, _hash) and fresh copies the caller may
//     modify. Lookup may return extra candidates (the DTL interpreter
//     re-checks its where-conditions) but never a deleted entity.
//   - Path ["_id"] needs no index: the ids are read with Store.Get.
//
// Memory: an index holds, per live entity with a non-null value at path,
// its _id and one key string per distinct value (value text plus one type
// byte), in two Go maps: about 170 bytes plus the id and key lengths per
// entity (measured: 189 B per entity for 100,000 share records with
// 17-byte ids and numeric $generated_id; so about 200 MB per million).
// Entities themselves are not kept. Indexes live as long as the Lookups
// value; all transforms built from one registry share one Lookups, so
// several pipes hopping into the same (dataset, path) share one index.
//
// Lookups is safe for concurrent use. The store comes from the context
// ([engine.StoreFrom]); the engine puts it there for every run.
type Lookups struct {
	mu      sync.Mutex
	indexes map[indexKey]*lookupIndex
}

type indexKey struct {
	store   engine.Store
	dataset string
	path    string
}

// NewLookups returns an empty index set.
func NewLookups() *Lookups {
	return &Lookups{indexes: map[indexKey]*lookupIndex{}}
}

// errNoStore is returned when a lookup runs outside an engine run.
var errNoStore = errors.New("no store in the context (lookups run inside an engine run)")

// Lookup implements dtl.Hopper against the store carried by ctx.
func (l *Lookups) Lookup(ctx context.Context, dataset string, path []string, values []any) ([]map[string]any, error) {
	store, ok := engine.StoreFrom(ctx)
	if !ok {
		return nil, errNoStore
	}
	return l.LookupIn(ctx, store, dataset, path, values)
}

// LookupIn is Lookup against an explicit store.
func (l *Lookups) LookupIn(ctx context.Context, store engine.Store, dataset string, path []string, values []any) ([]map[string]any, error) {
	keys := lookupKeys(values)
	if len(keys) == 0 || len(path) == 0 {
		return nil, nil
	}
	var ids []string
	if len(path) == 1 && path[0] == "_id" {
		for _, v := range flattenValues(values, nil) {
			if s, ok := v.(string); ok {
				ids = append(ids, s)
			}
		}
	} else {
		idx, err := l.index(store, dataset, path)
		if err != nil {
			return nil, err
		}
		ids, err = idx.find(ctx, store, keys)
		if err != nil {
			return nil, fmt.Errorf("lookup in dataset %q: %w", dataset, err)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var out []map[string]any
	for _, id := range ids {
		rec, ok, err := store.Get(ctx, dataset, id)
		if err != nil {
			return nil, fmt.Errorf("lookup in dataset %q: %w", dataset, err)
		}
		if !ok || rec.Deleted {
			continue
		}
		ent, err := rec.Entity()
		if err != nil {
			return nil, fmt.Errorf("lookup in dataset %q: entity %s: %w", dataset, engine.QuoteID(id), err)
		}
		out = append(out, ent)
	}
	return out, nil
}

func (l *Lookups) index(store engine.Store, dataset string, path []string) (*lookupIndex, error) {
	if !reflect.TypeOf(store).Comparable() {
		return nil, fmt.Errorf("lookup: store type %T cannot key an index", store)
	}
	k := indexKey{store: store, dataset: dataset, path: strings.Join(path, "\x00")}
	l.mu.Lock()
	defer l.mu.Unlock()
	idx := l.indexes[k]
	if idx == nil {
		idx = &lookupIndex{dataset: dataset, path: slices.Clone(path)}
		l.indexes[k] = idx
	}
	return idx, nil
}

// lookupIndex maps value keys to _ids for one (store, dataset, path).
type lookupIndex struct {
	dataset string
	path    []string

	mu      sync.Mutex
	built   bool
	created time.Time
	next    uint64              // first offset not yet examined
	byKey   map[string][]string // value key -> ids
	keysOf  map[string][]string // id -> its value keys
}

func (x *lookupIndex) reset() {
	x.built, x.next, x.created = false, 0, time.Time{}
	x.byKey, x.keysOf = map[string][]string{}, map[string][]string{}
}

// find refreshes the index and returns the ids indexed under any key.
func (x *lookupIndex) find(ctx context.Context, store engine.Store, keys []string) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.refresh(ctx, store); err != nil {
		return nil, err
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, x.byKey[k]...)
	}
	return ids, nil
}

// refresh scans what was written since the last refresh. Callers hold mu.
func (x *lookupIndex) refresh(ctx context.Context, store engine.Store) error {
	info, ok, err := store.Dataset(ctx, x.dataset)
	if err != nil {
		return err
	}
	if !ok || info.Versions == 0 {
		if x.built && x.next > 0 || x.byKey == nil {
			x.reset()
		}
		return nil
	}
	if x.byKey == nil || x.built && (!info.Created.Equal(x.created) || info.LastOffset+1 < x.next) {
		x.reset()
	}
	if x.built && info.LastOffset+1 <= x.next {
		return nil
	}
	dec := engine.NewDecoder()
	next, err := store.Scan(ctx, x.dataset, engine.ScanOptions{From: x.next, LatestOnly: true}, func(rec engine.Record) error {
		return x.apply(rec, dec)
	})
	if err != nil {
		// Keep what was applied: the records before the failure are in
		// the index, but the offset is not advanced, so they are applied
		// again (idempotently) next time.
		return err
	}
	x.next, x.built, x.created = next, true, info.Created
	return nil
}

// apply re-indexes one record.
func (x *lookupIndex) apply(rec engine.Record, dec *engine.Decoder) error {
	for _, k := range x.keysOf[rec.ID] {
		ids := x.byKey[k]
		if i := slices.Index(ids, rec.ID); i >= 0 {
			ids = slices.Delete(ids, i, i+1)
		}
		if len(ids) == 0 {
			delete(x.byKey, k)
		} else {
			x.byKey[k] = ids
		}
	}
	delete(x.keysOf, rec.ID)
	if rec.Deleted {
		return nil
	}
	ent, err := rec.EntityWith(dec)
	if err != nil {
		return fmt.Errorf("offset %d: %w", rec.Offset, err)
	}
	keys := lookupKeys(valuesAt(ent, x.path))
	if len(keys) == 0 {
		return nil
	}
	x.keysOf[rec.ID] = keys
	for _, k := range keys {
		x.byKey[k] = append(x.byKey[k], rec.ID)
	}
	return nil
}

// valuesAt returns the values at path in v, spreading lists at every step
// as DTL paths do.
func valuesAt(v any, path []string) []any {
	cur := []any{v}
	for _, step := range path {
		var next []any
		for _, c := range cur {
			next = appendStep(next, c, step)
		}
		cur = next
		if len(cur) == 0 {
			return nil
		}
	}
	return cur
}

func appendStep(out []any, v any, step string) []any {
	switch x := v.(type) {
	case map[string]any:
		if e, ok := x[step]; ok && e != nil {
			out = append(out, e)
		}
	case []any:
		for _, e := range x {
			out = appendStep(out, e, step)
		}
	}
	return out
}

// flattenValues appends the non-nil leaves of vs, descending into lists.
func flattenValues(vs []any, out []any) []any {
	for _, v := range vs {
		switch x := v.(type) {
		case nil:
		case []any:
			out = flattenValues(x, out)
		default:
			out = append(out, v)
		}
	}
	return out
}

// lookupKeys returns the distinct keys of the non-nil leaves of values.
func lookupKeys(values []any) []string {
	leaves := flattenValues(values, nil)
	keys := make([]string, 0, len(leaves))
	for _, v := range leaves {
		if k, ok := valueKey(v); ok && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// valueKey renders a scalar or dict as an index key: one type byte and a
// text under which equal values (SPEC a) coincide.
func valueKey(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return "s" + x, true
	case bool:
		if x {
			return "b1", true
		}
		return "b0", true
	case json.Number:
		return "n" + numberKey(string(x)), true
	case int:
		return "n" + strconv.Itoa(x), true
	case int64:
		return "n" + strconv.FormatInt(x, 10), true
	case float64:
		b, err := engine.AppendCanonical(nil, x)
		if err != nil {
			return "", false
		}
		return "n" + numberKey(string(b)), true
	case *big.Int:
		return "n" + x.String(), true
	case *big.Rat:
		return "n" + x.RatString(), true
	case map[string]any:
		b, err := engine.AppendCanonical(nil, x)
		if err != nil {
			return "", false
		}
		return "d" + string(b), true
	}
	b, err := engine.AppendCanonical(nil, v)
	if err != nil {
		return "", false
	}
	return "o" + string(b), true
}

// numberKey normalises a JSON number's text so that numerically equal
// numbers share it: integers lose leading zeros, other numbers become an
// exact rational ("3/2"; "1.0" and "1e0" become "1"). Exponents beyond
// ±4096 keep their text (they are not worth a huge big.Rat).
func numberKey(s string) string {
	if isPlainInt(s) {
		neg := s[0] == '-'
		d := strings.TrimLeft(strings.TrimPrefix(s, "-"), "0")
		if d == "" {
			return "0"
		}
		if neg {
			return "-" + d
		}
		return d
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp > 4096 || exp < -4096 {
			return s
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	return r.RatString()
}

func isPlainInt(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	if s[0] == '-' {
		i = 1
	}
	if i == len(s) {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
