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
// re-merges their clusters together (merge_cluster.go), and hands the
// output over in batches; the last batch of a chunk carries the new token
// and the chunk's index changes (Batch.Commit). If a run stops inside a
// chunk, the next run reads the chunk's input again from the unchanged
// token and indexes, and settles through the journal what the committed
// batches of the unfinished chunk wrote (see mergeChunk).
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
		kv: &kvView{store: req.Store, ns: m.Namespace()},
		// Zero-padded so that journal keys sort in run order.
		nonce: fmt.Sprintf("%013s", strconv.FormatInt(time.Now().UnixNano(), 36)),
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
			return engine.Batch{}, fmt.Errorf("cluster of %s vanished (internal error)", engine.QuoteID(it.id))
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
