package pipes

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// merge applies one chunk: the changed entities and the members that
// vanished. It updates the members' keys and the equality index, finds
// the connected components around everything that changed, and emits
// the merged entities of the clusters that changed or whose members
// changed, plus a $replaced tombstone for every output _id that no longer
// applies.
func (r *mergeReader) merge(ctx context.Context, changes []mergeChange, vanished []h128) error {
	if err := r.evict(ctx); err != nil {
		return err
	}
	m := r.m
	st := newMergeState(ctx, r.kv, r.full)
	bodies := map[h128]*mergeChange{}
	seeds := h128Set{}
	oldClusters := h128Set{}
	emit := h128Set{}

	seedCluster := func(c h128) error {
		if c.isZero() {
			return nil
		}
		oldClusters.add(c)
		cl, err := st.cluster(c)
		if err != nil || cl == nil {
			return err
		}
		for _, x := range cl.members {
			seeds.add(x)
		}
		return nil
	}
	index := func(keys []h128, mk h128, add bool) error {
		for _, k := range keys {
			e, err := st.indexEntry(k)
			if err != nil {
				return err
			}
			if add {
				e.add(mk)
			} else {
				e.remove(mk)
			}
		}
		return nil
	}

	for i := range changes {
		c := &changes[i]
		bodies[c.mk] = c
		var keys []h128
		if !c.deleted {
			me, err := r.decodeEntity(c.ds, c.id, c.body)
			if err != nil {
				return err
			}
			if keys, err = m.keysOf(ctx, me); err != nil {
				return err
			}
		}
		old, err := st.member(c.mk)
		if err != nil {
			return err
		}
		if old != nil && old.deleted == c.deleted && slices.Equal(old.keys, keys) {
			cl, err := st.cluster(old.cluster)
			if err != nil {
				return err
			}
			ok := cl != nil && slices.Contains(cl.members, c.mk)
			if ok && r.full {
				// A full run also checks the member's index entries, so
				// that it repairs whatever the indexes lost.
				if ok, err = indexed(st, c.mk, keys); err != nil {
					return err
				}
			}
			if ok {
				emit.add(old.cluster) // same cluster, new content
				continue
			}
			// The indexes lost track of the member: merge it anew.
		}
		if old == nil {
			old = st.newMember(c.mk, m.Datasets[c.ds], c.id)
			r.count++
		} else {
			if err := index(old.keys, c.mk, false); err != nil {
				return err
			}
			if err := seedCluster(old.cluster); err != nil {
				return err
			}
		}
		old.keys, old.deleted = keys, c.deleted
		if err := index(keys, c.mk, true); err != nil {
			return err
		}
		seeds.add(c.mk)
	}
	for _, v := range vanished {
		old, err := st.member(v)
		if err != nil || old == nil {
			if err != nil {
				return err
			}
			continue
		}
		if err := index(old.keys, v, false); err != nil {
			return err
		}
		if err := seedCluster(old.cluster); err != nil {
			return err
		}
		old.removed = true
	}
	// A cluster whose members are unchanged is re-merged all the same if
	// its _id no longer follows from them (identity or datasets changed).
	for _, c := range emit.sorted() {
		cl, err := st.cluster(c)
		if err != nil {
			return err
		}
		if cl == nil {
			continue
		}
		members, err := r.ordered(st, cl.members)
		if err != nil {
			return err
		}
		if id, ok := m.identity(members); !ok || id != cl.id {
			if err := seedCluster(c); err != nil {
				return err
			}
		}
	}

	// Connected components around the seeds.
	visited := h128Set{}
	type component struct {
		hash    h128
		id      string
		deleted bool
		members []h128
	}
	var comps []component
	newHashes := map[h128]int{}
	for _, s := range seeds.sorted() {
		if visited.has(s) {
			continue
		}
		comp, err := r.component(st, s, visited, oldClusters)
		if err != nil {
			return err
		}
		if len(comp) == 0 {
			continue
		}
		members, err := r.ordered(st, comp)
		if err != nil {
			return err
		}
		id, ok := m.identity(members)
		if !ok {
			// Only members of datasets no longer configured: no output.
			for _, x := range comp {
				mx, _ := st.member(x)
				mx.cluster = h128{}
			}
			continue
		}
		first, _ := st.member(comp[0])
		c := component{hash: hashString(id), id: id, deleted: len(comp) == 1 && first.deleted, members: comp}
		if i, dup := newHashes[c.hash]; dup {
			return r.collision(st, id, comps[i].members, comp)
		}
		newHashes[c.hash] = len(comps)
		comps = append(comps, c)
	}
	// An output _id may be taken over from a cluster this chunk dissolves,
	// never from one it leaves alone.
	for _, c := range comps {
		cl, err := st.cluster(c.hash)
		if err != nil {
			return err
		}
		if cl == nil || oldClusters.has(c.hash) {
			continue
		}
		if owned, err := owns(st, c.hash, cl); err != nil {
			return err
		} else if !owned {
			cl.removed = true // no member points at it: a leftover
			continue
		}
		return r.collision(st, c.id, cl.members, c.members)
	}

	var items []chunkItem
	// Output _ids that no longer apply.
	for _, c := range oldClusters.sorted() {
		if _, kept := newHashes[c]; kept {
			continue
		}
		cl, err := st.cluster(c)
		if err != nil {
			return err
		}
		if cl == nil {
			continue
		}
		live, err := r.anyLive(st, cl)
		if err != nil {
			return err
		}
		if !cl.deleted && live {
			t, err := r.tombstone(st, cl)
			if err != nil {
				return err
			}
			items = append(items, chunkItem{id: cl.id, tomb: t})
		}
		cl.removed = true
	}
	for _, c := range comps {
		cl, err := st.clusterOrNew(c.hash)
		if err != nil {
			return err
		}
		slices.SortFunc(c.members, cmpH128)
		cl.id, cl.deleted, cl.members = c.id, c.deleted, c.members
		for _, x := range c.members {
			mx, err := st.member(x)
			if err != nil {
				return err
			}
			mx.cluster = c.hash
		}
		emit.add(c.hash)
	}
	for _, c := range emit.sorted() {
		cl, err := st.cluster(c)
		if err != nil {
			return err
		}
		if cl == nil {
			continue
		}
		items = append(items, chunkItem{id: cl.id, cluster: c})
	}
	resolved, err := r.resolvePending(st, &items)
	if err != nil {
		return err
	}
	r.finish(st, bodies, items, resolved)
	return nil
}

// resolvePending settles the outputs a failed run committed from a chunk
// it did not finish: those outputs were computed from indexes that were
// not committed, and from inputs that may have changed since. An _id the
// indexes hold as a cluster is emitted again as they say; one whose
// latest output is live and that is not produced again is replaced; and
// a replacement this chunk computed for an _id whose latest output is
// already deleted is dropped. It returns the journal keys to clear.
func (r *mergeReader) resolvePending(st *mergeState, items *[]chunkItem) ([]string, error) {
	if len(r.pending) == 0 {
		return nil, nil
	}
	// The journal is in key order, which is run order; the last entry of
	// an _id is what the output holds.
	latest := map[string]pendingOut{}
	var keys, order []string
	for _, p := range r.pending {
		if len(keys) == 0 || keys[len(keys)-1] != p.key {
			keys = append(keys, p.key)
		}
		if _, ok := latest[p.id]; !ok {
			order = append(order, p.id)
		}
		latest[p.id] = p
	}
	have := map[string]bool{}
	kept := (*items)[:0]
	for _, it := range *items {
		if p, ok := latest[it.id]; ok && p.deleted && it.tomb != nil {
			have[it.id] = true
			continue // already deleted in the output
		}
		have[it.id] = true
		kept = append(kept, it)
	}
	*items = kept
	for _, id := range order {
		if have[id] {
			continue
		}
		p := latest[id]
		h := hashString(id)
		cl, err := st.cluster(h)
		if err != nil {
			return nil, err
		}
		switch {
		case cl != nil && cl.id == id:
			*items = append(*items, chunkItem{id: id, cluster: h})
		case !p.deleted:
			ids := p.ids
			if ids == nil {
				ids = []any{}
			}
			*items = append(*items, chunkItem{id: id, tomb: engine.Entity{"_id": id, "_deleted": true, "$replaced": true, "$ids": ids}})
		}
	}
	r.pending = nil
	return keys, nil
}

// component returns the members connected to start through shared
// equality keys (start alone if it is deleted), marking them visited and
// adding their previous clusters to oldClusters. Index entries that no
// longer match their member are dropped on the way.
func (r *mergeReader) component(st *mergeState, start h128, visited, oldClusters h128Set) ([]h128, error) {
	visited.add(start)
	first, err := st.member(start)
	if err != nil || first == nil {
		return nil, err
	}
	queue := []h128{start}
	for i := 0; i < len(queue); i++ {
		x := queue[i]
		mx, err := st.member(x)
		if err != nil {
			return nil, err
		}
		if !mx.cluster.isZero() {
			oldClusters.add(mx.cluster)
		}
		if mx.deleted {
			continue
		}
		for _, k := range mx.keys {
			e, err := st.indexEntry(k)
			if err != nil {
				return nil, err
			}
			var stale []h128
			for _, y := range e.members {
				if visited.has(y) {
					continue
				}
				my, err := st.member(y)
				if err != nil {
					return nil, err
				}
				if my == nil || my.deleted || !slices.Contains(my.keys, k) {
					stale = append(stale, y)
					continue
				}
				visited.add(y)
				queue = append(queue, y)
				if len(queue) > r.m.MaxMerged {
					return nil, r.tooMany(st, queue)
				}
			}
			for _, y := range stale {
				e.remove(y)
			}
		}
	}
	return queue, nil
}

// indexed reports whether every key's index entry lists the member.
func indexed(st *mergeState, mk h128, keys []h128) (bool, error) {
	for _, k := range keys {
		e, err := st.indexEntry(k)
		if err != nil {
			return false, err
		}
		if _, found := slices.BinarySearchFunc(e.members, mk, cmpH128); !found {
			return false, nil
		}
	}
	return true, nil
}

// owns reports whether a member of cluster cl (hash h) points at it.
func owns(st *mergeState, h h128, cl *mergeCluster) (bool, error) {
	for _, x := range cl.members {
		mx, err := st.member(x)
		if err != nil {
			return false, err
		}
		if mx != nil && mx.cluster == h {
			return true, nil
		}
	}
	return false, nil
}

func (r *mergeReader) tooMany(st *mergeState, queue []h128) error {
	var names []string
	for _, x := range queue[:min(5, len(queue))] {
		if mx, _ := st.member(x); mx != nil {
			names = append(names, mx.ds+":"+mx.id)
		}
	}
	return fmt.Errorf("more than max_merged (%d) entities would merge into one (%s, ...): an equality value is shared too widely (e.g. an empty string or a placeholder); filter such values out of the equality expressions or raise max_merged",
		r.m.MaxMerged, strings.Join(names, ", "))
}

func (r *mergeReader) collision(st *mergeState, id string, a, b []h128) error {
	name := func(ms []h128) string {
		var out []string
		for _, x := range ms {
			if mx, _ := st.memberRec(x); mx != nil {
				out = append(out, mx.ds+":"+mx.id)
			}
		}
		slices.Sort(out)
		return strings.Join(out, ", ")
	}
	hint := "ids containing \"|\" make composite ids ambiguous"
	if r.m.Identity == "first" {
		hint = `use "identity": "composite", or add an equality rule on _id (e.g. ["eq", "a._id", "b._id"]) if equal ids mean the same entity`
	}
	na, nb := name(a), name(b)
	if na > nb {
		na, nb = nb, na
	}
	return fmt.Errorf("two clusters would get the same _id %s: [%s] and [%s]; %s", engine.QuoteID(id), na, nb, hint)
}

// memberRef is a member in output order.
type memberRef struct {
	h   h128
	ds  int // position in the config's datasets; -1: no longer configured
	rec *mergeMember
}

// ordered returns the members in output order: by the position of their
// dataset in datasets, then by _id.
func (r *mergeReader) ordered(st *mergeState, hs []h128) ([]memberRef, error) {
	out := make([]memberRef, 0, len(hs))
	for _, h := range hs {
		mx, err := st.memberRec(h)
		if err != nil {
			return nil, err
		}
		if mx == nil {
			continue
		}
		out = append(out, memberRef{h: h, ds: slices.Index(r.m.Datasets, mx.ds), rec: mx})
	}
	rank := func(ds int) int {
		if ds < 0 {
			return len(r.m.Datasets)
		}
		return ds
	}
	slices.SortFunc(out, func(a, b memberRef) int {
		if a.ds != b.ds {
			return rank(a.ds) - rank(b.ds)
		}
		return strings.Compare(a.rec.id, b.rec.id)
	})
	return out, nil
}

// identity computes the output _id of ordered members; ok is false when
// none of them is in a configured dataset.
func (m *Merge) identity(members []memberRef) (string, bool) {
	var b strings.Builder
	n := 0
	for _, x := range members {
		if x.ds < 0 {
			continue
		}
		if m.Identity == "first" {
			return x.rec.id, true
		}
		if n > 0 {
			b.WriteByte('|')
		}
		b.WriteString(strconv.Itoa(x.ds))
		b.WriteByte('|')
		b.WriteString(x.rec.id)
		n++
	}
	return b.String(), n > 0
}

// anyLive reports whether a member of the cluster is still there. When
// none is (their dataset was removed from the config), the cluster's _id
// is not replaced but gone: a full run's deletion tracking deletes it.
func (r *mergeReader) anyLive(st *mergeState, cl *mergeCluster) (bool, error) {
	for _, x := range cl.members {
		mx, err := st.member(x)
		if err != nil {
			return false, err
		}
		if mx != nil && slices.Contains(r.m.Datasets, mx.ds) {
			return true, nil
		}
	}
	return false, nil
}

// tombstone is the output for an _id that no longer applies.
func (r *mergeReader) tombstone(st *mergeState, cl *mergeCluster) (engine.Entity, error) {
	members, err := r.ordered(st, cl.members)
	if err != nil {
		return nil, err
	}
	ids := make([]any, 0, len(members))
	for _, x := range members {
		ids = append(ids, niOf(x.rec.ds, x.rec.id))
	}
	return engine.Entity{"_id": cl.id, "_deleted": true, "$replaced": true, "$ids": ids}, nil
}

func niOf(ds, id string) string { return "~:" + ds + ":" + id }

// build computes a cluster's merged entity. Members read in this chunk
// come from bodies; the others are read from their datasets.
func (r *mergeReader) build(ctx context.Context, st *mergeState, cl *mergeCluster, bodies map[h128]*mergeChange) (engine.Entity, error) {
	members, err := r.ordered(st, cl.members)
	if err != nil {
		return nil, err
	}
	list := make([]*memberEntity, 0, len(members))
	for _, x := range members {
		if x.ds < 0 {
			continue
		}
		var body []byte
		if c := bodies[x.h]; c != nil {
			body = c.body
		} else {
			rec, ok, err := r.store.Get(ctx, x.rec.ds, x.rec.id)
			if err != nil {
				return nil, fmt.Errorf("dataset %q: %w", x.rec.ds, err)
			}
			body = []byte(`{}`)
			if ok {
				body = rec.Body
			}
		}
		me, err := r.decodeEntity(x.ds, x.rec.id, body)
		if err != nil {
			return nil, err
		}
		list = append(list, me)
	}
	return r.m.mergeEntities(cl.id, cl.deleted, list), nil
}

// decodeEntity decodes a member's stored content.
func (r *mergeReader) decodeEntity(ds int, id string, body []byte) (*memberEntity, error) {
	v, err := r.dec.DecodeValue(body)
	if err != nil {
		return nil, fmt.Errorf("dataset %q entity %s: %w", r.m.Datasets[ds], engine.QuoteID(id), err)
	}
	ent, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("dataset %q entity %s: not an object", r.m.Datasets[ds], engine.QuoteID(id))
	}
	me := &memberEntity{ds: ds, id: id, ent: ent}
	switch x := ent["$ids"].(type) {
	case nil:
		if _, has := ent["$ids"]; has {
			break
		}
		me.ids, me.synth = []any{niOf(r.m.Datasets[ds], id)}, true
	case []any:
		for _, v := range x {
			if v != nil {
				me.ids = append(me.ids, v)
			}
		}
	default:
		me.ids = []any{x}
	}
	return me, nil
}
