package pipes

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/bloom"
)

// mergeChange is the latest version of one input entity read by a run.
type mergeChange struct {
	mk      h128
	ds      int
	id      string
	body    []byte
	deleted bool
}

// memberEntity is a member's stored content, decoded, with the ids it
// contributes to $ids.
type memberEntity struct {
	ds  int
	id  string
	ent map[string]any
	ids []any
	// synth: the entity has no $ids of its own; ids is its NI.
	synth bool
}

// mergeReader is one run of a merge source. It reads up to m.chunk
// changed input entities (latest versions, each dataset from its offset),
// re-merges their clusters together, and hands the output over in
// batches; the last batch of a chunk carries the new token and the
// chunk's index changes (Batch.Commit). If a run stops inside a chunk,
// the batches already committed hold output that the next run computes
// again identically from the unchanged indexes and token.
type mergeReader struct {
	m      *Merge
	store  engine.Store
	full   bool
	size   int
	next   map[string]uint64
	cur    int
	caches map[string]*engine.ScanCache
	dec    *engine.Decoder
	kv     *kvView
	nonce  string
	seq    int

	chunk *mergeChunk // output being handed over
	done  bool

	// count is the number of member records (committed plus this run's);
	// countKnown is false when the store had none and was not empty.
	count      int64
	countKnown bool
	// seen holds every member a full run read, for the final check that
	// no member vanished (e.g. a dataset removed from the config).
	seen []h128
	// pending are the outputs an earlier run committed from a chunk it
	// did not finish (see journal); the first chunk resolves them.
	pending []pendingOut
}

// pendingOut is an output _id journaled by a chunk's earlier batches.
type pendingOut struct {
	key     string
	id      string
	ids     any
	deleted bool
}

// Open starts a run: nothing is loaded up front; index records are read
// from the store as the run needs them (see kvView).
func (m *Merge) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	if req.Store == nil {
		return nil, fmt.Errorf("merge source: no store")
	}
	next, err := parseMultiToken(req.Since, m.Datasets)
	if err != nil {
		return nil, fmt.Errorf("merge source: %w", err)
	}
	r := &mergeReader{
		m: m, store: req.Store, full: req.Full, size: max(req.BatchSize, 1), next: next,
		caches: map[string]*engine.ScanCache{}, dec: engine.NewDecoder(),
		kv:    &kvView{store: req.Store, ns: m.Namespace()},
		nonce: strconv.FormatInt(time.Now().UnixNano(), 36),
	}
	v, ok, err := req.Store.GetKV(ctx, r.kv.ns, "count")
	if err != nil {
		return nil, fmt.Errorf("merge source: %w", err)
	}
	if ok {
		r.count, err = strconv.ParseInt(string(v), 10, 64)
		r.countKnown = err == nil
	} else {
		keys, err := req.Store.ListKV(ctx, r.kv.ns)
		if err != nil {
			return nil, fmt.Errorf("merge source: %w", err)
		}
		r.countKnown = len(keys) == 0
	}
	if r.countKnown && r.count == 0 {
		r.kv.written = bloom.New(1 << 23) // 1 MiB: ~1% false positives at 800,000 keys
	}
	if r.pending, err = m.loadPending(ctx, req.Store); err != nil {
		return nil, fmt.Errorf("merge source: %w", err)
	}
	return r, nil
}

// pendingNamespace journals the outputs of a chunk's batches before the
// one that commits the chunk (see mergeChunk).
func (m *Merge) pendingNamespace() string { return "merge-pending:" + m.pipe }

func (m *Merge) loadPending(ctx context.Context, store engine.Store) ([]pendingOut, error) {
	ns := m.pendingNamespace()
	keys, err := store.ListKV(ctx, ns)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	var out []pendingOut
	for _, k := range keys {
		v, ok, err := store.GetKV(ctx, ns, k)
		if err != nil || !ok {
			return nil, err
		}
		d, err := engine.DecodeValue(v)
		list, isList := d.([]any)
		if err != nil || !isList {
			return nil, fmt.Errorf("journal %s: %w", k, errCorrupt)
		}
		for _, e := range list {
			rec, _ := e.(map[string]any)
			id, isStr := rec["id"].(string)
			if !isStr {
				return nil, fmt.Errorf("journal %s: %w", k, errCorrupt)
			}
			del, _ := rec["deleted"].(bool)
			out = append(out, pendingOut{key: k, id: id, ids: rec["ids"], deleted: del})
		}
	}
	return out, nil
}

func (r *mergeReader) Close() error { return nil }

func (r *mergeReader) Next(ctx context.Context) (engine.Batch, error) {
	for {
		if r.chunk != nil {
			b, err := r.nextBatch(ctx)
			if err != nil {
				return engine.Batch{}, fmt.Errorf("merge source: %w", err)
			}
			return b, nil
		}
		if r.done {
			return engine.Batch{}, engine.EOF
		}
		changes, err := r.readChunk(ctx)
		if err != nil {
			return engine.Batch{}, fmt.Errorf("merge source: %w", err)
		}
		if len(changes) == 0 {
			r.done = true
			var err error
			switch {
			case r.full:
				err = r.vanish(ctx)
			case len(r.pending) > 0:
				err = r.merge(ctx, nil, nil)
			}
			if err != nil {
				return engine.Batch{}, fmt.Errorf("merge source: %w", err)
			}
			continue
		}
		if err := r.merge(ctx, changes, nil); err != nil {
			return engine.Batch{}, fmt.Errorf("merge source: %w", err)
		}
	}
}

// readChunk reads the next changed input entities, up to m.chunk, the
// datasets in turn, keeping the latest read version per entity.
func (r *mergeReader) readChunk(ctx context.Context) ([]mergeChange, error) {
	var out []mergeChange
	pos := map[h128]int{}
	for r.cur < len(r.m.Datasets) && len(out) < r.m.chunk {
		ds := r.m.Datasets[r.cur]
		dsIdx := r.cur
		if r.caches[ds] == nil {
			r.caches[ds] = &engine.ScanCache{}
		}
		limit := r.m.chunk - len(out)
		passed := 0
		end, err := r.store.Scan(ctx, ds, engine.ScanOptions{From: r.next[ds], Limit: limit, LatestOnly: true, Cache: r.caches[ds]}, func(rec engine.Record) error {
			passed++
			c := mergeChange{mk: memberHash(ds, rec.ID), ds: dsIdx, id: rec.ID, body: rec.Body, deleted: rec.Deleted}
			if i, ok := pos[c.mk]; ok {
				out[i] = c
			} else {
				pos[c.mk] = len(out)
				out = append(out, c)
			}
			if r.full {
				r.seen = append(r.seen, c.mk)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("dataset %q: %w", ds, err)
		}
		if passed < limit {
			r.cur++
		}
		r.next[ds] = end
	}
	return out, nil
}

// vanish ends a full run: members the run did not read (their dataset was
// removed from the config, or deleted and recreated without them) are
// dropped and their clusters re-merged.
func (r *mergeReader) vanish(ctx context.Context) error {
	slices.SortFunc(r.seen, cmpH128)
	r.seen = slices.Compact(r.seen)
	if r.countKnown && r.count == int64(len(r.seen)) {
		if len(r.pending) > 0 {
			return r.merge(ctx, nil, nil)
		}
		return nil
	}
	keys, err := r.store.ListKV(ctx, r.kv.ns)
	if err != nil {
		return err
	}
	var gone []h128
	for _, k := range keys {
		hx, ok := strings.CutPrefix(k, "m/")
		if !ok {
			continue
		}
		var h h128
		if b, err := hex.DecodeString(hx); err != nil || len(b) != 16 {
			return fmt.Errorf("key %q: %w", k, errCorrupt)
		} else {
			copy(h[:], b)
		}
		if _, found := slices.BinarySearchFunc(r.seen, h, cmpH128); !found {
			gone = append(gone, h)
		}
	}
	// Every member read exists and every other one goes.
	r.count = int64(len(r.seen))
	return r.merge(ctx, nil, gone)
}

// evict drops the layers the store shows committed.
func (r *mergeReader) evict(ctx context.Context) error {
	if len(r.kv.layers) == 0 {
		return nil
	}
	v, ok, err := r.store.GetKV(ctx, r.kv.ns, "progress")
	if err != nil || !ok {
		return err
	}
	nonce, seq, _ := strings.Cut(string(v), "/")
	if nonce != r.nonce {
		return nil
	}
	n, err := strconv.Atoi(seq)
	if err != nil {
		return nil
	}
	i := 0
	for i < len(r.kv.layers) && r.kv.layers[i].seq <= n {
		i++
	}
	r.kv.layers = slices.Delete(r.kv.layers, 0, i)
	return nil
}

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
// indexes hold as a cluster is emitted again as they say; any other that
// was emitted live is replaced. It returns the journal keys to clear.
func (r *mergeReader) resolvePending(st *mergeState, items *[]chunkItem) ([]string, error) {
	if len(r.pending) == 0 {
		return nil, nil
	}
	have := map[string]bool{}
	for _, it := range *items {
		have[it.id] = true
	}
	var keys []string
	for _, p := range r.pending {
		if len(keys) == 0 || keys[len(keys)-1] != p.key {
			keys = append(keys, p.key)
		}
		if have[p.id] {
			continue
		}
		have[p.id] = true
		h := hashString(p.id)
		cl, err := st.cluster(h)
		if err != nil {
			return nil, err
		}
		switch {
		case cl != nil && cl.id == p.id:
			*items = append(*items, chunkItem{id: p.id, cluster: h})
		case !p.deleted:
			ids := p.ids
			if ids == nil {
				ids = []any{}
			}
			*items = append(*items, chunkItem{id: p.id, tomb: engine.Entity{"_id": p.id, "_deleted": true, "$replaced": true, "$ids": ids}})
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
	return fmt.Errorf("two clusters would get the same _id %q: [%s] and [%s]; %s", id, na, nb, hint)
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
		return nil, fmt.Errorf("dataset %q entity %q: %w", r.m.Datasets[ds], id, err)
	}
	ent, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("dataset %q entity %q: not an object", r.m.Datasets[ds], id)
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

// chunkItem is one output of a chunk: a tombstone, or a cluster whose
// merged entity is built when its batch is handed over.
type chunkItem struct {
	id      string
	tomb    engine.Entity
	cluster h128
}

// mergeChunk is a merged chunk whose output is being handed over. Only
// its last batch commits its index changes and token; each batch before
// it journals its output _ids (namespace merge-pending:<pipe>), so that
// if the run stops in between, the next run can settle outputs that its
// own computation (on possibly changed inputs) does not produce again.
// The last batch clears the journal.
type mergeChunk struct {
	st     *mergeState
	bodies map[h128]*mergeChange
	items  []chunkItem // sorted by _id
	since  string
	hook   func(engine.WriteTx) error
	clear  []string // journal keys the last batch removes
}

// finish queues a chunk's output. Merged entities are built a batch at a
// time (so a chunk holds records and stored bodies, not decoded output);
// the last batch carries the token after the chunk and a hook that
// writes the chunk's index changes in the transaction that commits it.
func (r *mergeReader) finish(st *mergeState, bodies map[h128]*mergeChange, items []chunkItem, resolved []string) {
	delta := st.delta()
	delta["count"] = []byte(strconv.FormatInt(r.count, 10))
	r.seq++
	r.kv.layers = append(r.kv.layers, kvLayer{seq: r.seq, m: delta})
	keys := make([]string, 0, len(delta))
	for k := range delta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r.kv.addWritten(keys)
	ns, progress := r.kv.ns, []byte(r.nonce+"/"+strconv.Itoa(r.seq))
	hook := func(tx engine.WriteTx) error {
		for _, k := range keys {
			var err error
			if v := delta[k]; v == nil {
				err = tx.DeleteKV(ns, k)
			} else {
				err = tx.PutKV(ns, k, v)
			}
			if err != nil {
				return fmt.Errorf("merge index: %w", err)
			}
		}
		return tx.PutKV(ns, "progress", progress)
	}
	slices.SortFunc(items, func(a, b chunkItem) int { return strings.Compare(a.id, b.id) })
	r.chunk = &mergeChunk{st: st, bodies: bodies, items: items, since: formatMultiToken(r.m.Datasets, r.next), hook: hook, clear: resolved}
}

// nextBatch hands over the next batch of the current chunk.
func (r *mergeReader) nextBatch(ctx context.Context) (engine.Batch, error) {
	c := r.chunk
	n := min(r.size, len(c.items))
	b := engine.Batch{Entities: make([]engine.Entity, 0, n)}
	for _, it := range c.items[:n] {
		if it.tomb != nil {
			b.Entities = append(b.Entities, it.tomb)
			continue
		}
		cl, err := c.st.cluster(it.cluster)
		if err != nil {
			return engine.Batch{}, err
		}
		if cl == nil {
			return engine.Batch{}, fmt.Errorf("cluster of %q vanished (internal error)", it.id)
		}
		e, err := r.build(ctx, c.st, cl, c.bodies)
		if err != nil {
			return engine.Batch{}, err
		}
		b.Entities = append(b.Entities, e)
	}
	c.items = c.items[n:]
	ns := r.m.pendingNamespace()
	if len(c.items) > 0 {
		// One journal record per batch: [{"id", "ids", "deleted"}, ...].
		list := make([]any, 0, len(b.Entities))
		for _, e := range b.Entities {
			del, _ := e["_deleted"].(bool)
			list = append(list, map[string]any{"id": e["_id"], "ids": e["$ids"], "deleted": del})
		}
		v, err := engine.AppendCanonical(nil, list)
		if err != nil {
			return engine.Batch{}, err
		}
		k := fmt.Sprintf("%s-%d-%d", r.nonce, r.seq, len(c.clear))
		c.clear = append(c.clear, k)
		b.Commit = func(tx engine.WriteTx) error {
			if err := tx.PutKV(ns, k, v); err != nil {
				return fmt.Errorf("merge journal: %w", err)
			}
			return nil
		}
		return b, nil
	}
	b.Since = c.since
	hook, clear := c.hook, slices.Clone(c.clear)
	b.Commit = func(tx engine.WriteTx) error {
		if err := hook(tx); err != nil {
			return err
		}
		for _, k := range clear {
			if err := tx.DeleteKV(ns, k); err != nil {
				return fmt.Errorf("merge journal: %w", err)
			}
		}
		return nil
	}
	r.chunk = nil
	return b, nil
}
