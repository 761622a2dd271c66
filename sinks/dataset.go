package sinks

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/zeebo/xxh3"

	"github.com/ferrydata/ferry/engine"
)

const datasetSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "dataset sink",
  "type": "object",
  "properties": {
    "type": {"const": "dataset"},
    "comment": {},
    "dataset": {"description": "The dataset written (default: the pipe's _id); names starting with \"system:\" are reserved.", "type": "string", "minLength": 1, "pattern": "^[^/]+$", "not": {"pattern": "^system:"}},
    "deletion_tracking": {"description": "A full run deletes the live entities it did not produce (default true).", "type": "boolean"},
    "mark_deletion_tracked": {"description": "Deleted versions written by deletion tracking get \"$deletion_tracked\": true.", "type": "boolean"},
    "set_initial_offset": {"description": "When the dataset counts as populated. Default if-source-populated (after a complete run whose inputs are populated).", "enum": ["if-source-populated", "never", "always", "initially", "onload"]},
    "circuit_breaker_threshold_count": {"description": "A run on a populated dataset may change at most max(count, factor \u00d7 entities) entities; more fails the run and writes nothing.", "type": "integer", "minimum": 0},
    "circuit_breaker_threshold_factor": {"description": "See circuit_breaker_threshold_count.", "type": "number", "minimum": 0},
    "deletion_threshold_count": {"description": "The deletion guard: a run may delete at most max(count, factor \u00d7 live entities) by deletion tracking unless run with --accept-deletes (default 0).", "type": "integer", "minimum": 0},
    "deletion_threshold_factor": {"description": "See deletion_threshold_count (default 0.5).", "type": "number", "minimum": 0},
    "prevent_multiple_versions": {"description": "Sesam key, accepted; no effect in Ferry."},
    "indexes": {"description": "Sesam key, accepted; Ferry keeps its own indexes."},
    "track_children": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "boolean"},
    "suppress_filtered": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "boolean"},
    "enable_optimistic_locking": {"description": "Sesam key, accepted; use a share pipe for optimistic locking.", "type": "boolean"}
  }
}`

// Dataset is the dataset sink: it writes versions into the store with the
// write rule, tracks deletions after complete full runs and can refuse a
// run that changes too much (circuit breaker).
type Dataset struct {
	Name string
	// DeletionTracking: after a complete full run, every live _id the run
	// did not produce gets a deleted version (default true).
	DeletionTracking    bool
	MarkDeletionTracked bool
	// SetInitialOffset decides when the dataset counts as populated.
	SetInitialOffset string
	// BreakerCount and BreakerFactor arm the circuit breaker when either is
	// set: a run on a populated dataset may change at most
	// max(BreakerCount, BreakerFactor * entities) entities.
	BreakerCount  int64
	BreakerFactor float64
	// DeleteCount and DeleteFactor are the deletion guard: deletion
	// tracking may delete at most max(DeleteCount, DeleteFactor * live
	// entities) in one run; a run that would delete more deletes nothing
	// and fails (see docs/deletions.md). Defaults 0 and 0.5; a factor of 1
	// or more turns the guard off, and so does a configured circuit
	// breaker unless a deletion_threshold_* key is set too.
	DeleteCount  int64
	DeleteFactor float64
}

// Deletion guard defaults: a full run may delete at most half of the live
// entities through deletion tracking unless accepted.
const (
	DefaultDeletionThresholdFactor = 0.5
	DefaultDeletionThresholdCount  = 0
)

var (
	_ engine.TxSink      = (*Dataset)(nil)
	_ engine.LazySinkRun = (*datasetRun)(nil)
)

func newDataset(b *engine.Build, cfg map[string]any) (engine.Sink, error) {
	d := &Dataset{Name: b.Pipe, DeletionTracking: true, SetInitialOffset: "if-source-populated",
		DeleteCount: DefaultDeletionThresholdCount, DeleteFactor: DefaultDeletionThresholdFactor}
	if s, ok := cfg["dataset"].(string); ok {
		d.Name = s
	}
	if v, ok := cfg["deletion_tracking"].(bool); ok {
		d.DeletionTracking = v
	}
	if v, ok := cfg["mark_deletion_tracked"].(bool); ok {
		d.MarkDeletionTracked = v
	}
	if v, ok := cfg["set_initial_offset"].(string); ok {
		d.SetInitialOffset = v
	}
	if n, ok := engine.AsFloat(cfg["circuit_breaker_threshold_count"]); ok {
		d.BreakerCount = int64(n)
	}
	if f, ok := engine.AsFloat(cfg["circuit_breaker_threshold_factor"]); ok {
		d.BreakerFactor = f
	}
	_, hasCount := cfg["deletion_threshold_count"]
	_, hasFactor := cfg["deletion_threshold_factor"]
	if (d.BreakerCount > 0 || d.BreakerFactor > 0) && !hasCount && !hasFactor {
		// A configured circuit breaker is the dataset's limit (Sesam
		// configs carry one); the default guard stays out of its way.
		d.DeleteFactor = 1
	}
	if n, ok := engine.AsFloat(cfg["deletion_threshold_count"]); ok {
		d.DeleteCount = int64(n)
	}
	if f, ok := engine.AsFloat(cfg["deletion_threshold_factor"]); ok {
		d.DeleteFactor = f
	}
	if strings.HasPrefix(d.Name, "system:") || strings.Contains(d.Name, "/") {
		return nil, engine.Fieldf("/dataset", "invalid dataset name %q", d.Name)
	}
	return d, nil
}

// OutputDataset is the dataset written.
func (d *Dataset) OutputDataset() string { return d.Name }

// StartRun prepares one run.
func (d *Dataset) StartRun(ctx context.Context, rc *engine.RunContext) (engine.SinkRun, error) {
	info, _, err := rc.Store.Dataset(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	r := &datasetRun{d: d, rc: rc, limit: -1, deleteLimit: -1, entities: int64(info.Entities)}
	if info.Versions > 0 {
		r.startNext = info.LastOffset + 1
	}
	if (d.BreakerCount > 0 || d.BreakerFactor > 0) && info.Populated && !rc.AcceptDeletes {
		r.limit = max(d.BreakerCount, int64(math.Floor(d.BreakerFactor*float64(info.Entities))))
	}
	if !rc.AcceptDeletes && d.DeleteFactor < 1 {
		r.live = int64(info.Entities - info.Deleted)
		r.deleteLimit = max(d.DeleteCount, int64(math.Floor(d.DeleteFactor*float64(r.live))))
	}
	r.track = rc.Full && d.DeletionTracking
	if info.Versions == 0 {
		// Every _id is new unless this run produced it before: a Bloom
		// filter of the run's ids lets the store skip most index lookups
		// on an initial load.
		r.fresh = newFreshIDs() // fresh.go
		// Deletion tracking has nothing to do either: every live _id at
		// the end was written by this run (the same assumption as the
		// filter's: no other writer fills the dataset meanwhile), so the
		// run keeps no set of seen ids and does not walk the index.
		r.track = false
	}
	return r, nil
}

type idHash [2]uint64

func hashID(id string) idHash {
	h := xxh3.HashString128(id)
	return idHash{h.Hi, h.Lo}
}

func cmpIDHash(a, b idHash) int {
	switch {
	case a[0] < b[0]:
		return -1
	case a[0] > b[0]:
		return 1
	case a[1] < b[1]:
		return -1
	case a[1] > b[1]:
		return 1
	}
	return 0
}

type datasetRun struct {
	d     *Dataset
	rc    *engine.RunContext
	limit int64 // -1: breaker not armed
	// deleteLimit bounds deletion tracking (-1: no guard); live is the
	// dataset's live entities when the run started.
	deleteLimit, live int64
	// entities is how many _ids the dataset held when the run started.
	entities int64
	// changed counts appended versions, for the circuit breaker.
	changed int64
	track   bool
	// seen holds a 128-bit hash of every _id produced by a full run (16
	// bytes per entity rather than the ids themselves, spilled to a
	// temporary file beyond a million), for deletion tracking at the end
	// of the run.
	seen *seenSet
	// unsure is set once the run produced an _id whose latest version may
	// not be live (deleted or filtered). Until then every seen _id is
	// live, so when the dataset holds as many live entities as the run
	// produced distinct _ids, deletion tracking has nothing to delete and
	// Finish skips the walk over the index.
	unsure      bool
	initialDone bool
	// fresh is set when the dataset was empty at the start of the run.
	fresh *freshIDs
	// hashes is Write's scratch for the _id hashes of a batch into a
	// fresh dataset (freshIDs.hashBatch).
	hashes []idHash
	// startNext is the offset the dataset's next version had when the
	// run started: a version at or past it of an _id the run did not
	// produce was written by another writer during the run.
	startNext uint64
	// delText and delScratch are deletedOf's working memory; delBytes
	// counts the bytes of the deleted versions written.
	delText    []byte
	delScratch engine.PrepareScratch
	delBytes   int64
	// checkpoint and ckptBytes: see SetCheckpoint.
	checkpoint func() (engine.WriteTx, error)
	ckptBytes  int
}

// TracksDeletions implements engine.DeletionTrackingSinkRun: a full run
// into a dataset that holds versions ends with deletion tracking.
func (r *datasetRun) TracksDeletions() bool { return r.track }

// SetCheckpoint implements engine.CheckpointingSinkRun: deletion tracking
// commits its deletions in parts of about maxBytes.
func (r *datasetRun) SetCheckpoint(checkpoint func() (engine.WriteTx, error), maxBytes int) {
	r.checkpoint, r.ckptBytes = checkpoint, maxBytes
}

// AcceptsLazy: Write checks lazy values against the stored text hash and
// resolves the ones that changed.
func (r *datasetRun) AcceptsLazy() bool { return true }

// StartLazy (engine.LazyStarter): a dataset that holds entities is most
// likely being synced again, most of it unchanged.
func (r *datasetRun) StartLazy() bool { return r.fresh == nil && r.entities > 0 }

// View checks lazy entities against a read view of the store
// (engine.ViewingSinkRun) when the store has them. Safe for concurrent
// use: it reads only what StartRun set.
func (r *datasetRun) View(ctx context.Context, batch []engine.Prepared) (bool, error) {
	v, ok := r.rc.Store.(engine.RawViewer)
	if !ok || r.fresh != nil {
		return false, nil
	}
	return v.ViewRaw(ctx, r.d.Name, batch)
}

// SingleTransaction: an armed breaker must be able to undo the whole run.
func (r *datasetRun) SingleTransaction() bool { return r.limit >= 0 }

// seenAdd remembers an _id the full run produced.
func (r *datasetRun) seenAdd(h idHash) error {
	if r.seen == nil {
		r.seen = r.newSeen()
	}
	return r.seen.add(h)
}

// newSeen returns the run's seen set, sized for the dataset and within
// the store's resident bound, if it has one.
func (r *datasetRun) newSeen() *seenSet {
	var bound int64
	if b, ok := r.rc.Store.(engine.ResidentBounded); ok {
		bound = b.ResidentBound()
	}
	return newSeenSet(r.entities, bound)
}

func (r *datasetRun) count(res engine.PutResult) error {
	st := r.rc.Stats
	if res == engine.Unchanged {
		st.Unchanged++
		return nil
	}
	r.changed++
	if r.limit >= 0 && r.changed > r.limit {
		return fmt.Errorf("%w: the run would change more than %d entities of dataset %q (circuit_breaker_threshold_count %d, _factor %g); nothing was written. "+
			"If the changes are right, apply them with: ferry run --accept-deletes %s",
			engine.ErrCircuitBreaker, r.limit, r.d.Name, r.d.BreakerCount, r.d.BreakerFactor, r.rc.Pipe)
	}
	return nil
}

func (r *datasetRun) Write(ctx context.Context, tx engine.WriteTx, batch []engine.Prepared, ts int64) error {
	if !r.initialDone && (r.d.SetInitialOffset == "initially" || r.d.SetInitialOffset == "onload") {
		if err := tx.SetPopulated(r.d.Name); err != nil {
			return err
		}
		r.initialDone = true
	}
	if pf, ok := tx.(engine.Prefetcher); ok && r.fresh == nil && len(batch) > 1 {
		// A networked store looks the batch's ids up in one round trip
		// instead of one per Put (on a fresh dataset the Bloom filter
		// already spares the lookups).
		ids := make([]string, len(batch))
		for i := range batch {
			ids[i] = batch[i].ID
		}
		if err := pf.Prefetch(r.d.Name, ids); err != nil {
			return err
		}
	}
	var hashes []idHash
	if r.fresh != nil {
		r.hashes = r.fresh.hashBatch(r.hashes, batch)
		hashes = r.hashes
	}
	vc, _ := tx.(engine.ViewConfirmer)
	for i := range batch {
		p := &batch[i]
		if p.Lazy {
			// A read view found the text unchanged (and the version
			// live): confirm nothing was written to the _id since.
			same, viewed := false, false
			if p.SameIn != (engine.ViewMark{}) && vc != nil {
				var err error
				if same, err = vc.UnchangedSince(r.d.Name, p.ID, p.SameIn); err != nil {
					return fmt.Errorf("entity %s: %w", engine.QuoteID(p.ID), err)
				}
				viewed = same
			}
			if !same {
				var err error
				if same, err = tx.SameRaw(r.d.Name, p.ID, p.RawHash); err != nil {
					return fmt.Errorf("entity %s: %w", engine.QuoteID(p.ID), err)
				}
			}
			if same {
				if r.track {
					if err := r.seenAdd(hashID(p.ID)); err != nil {
						return err
					}
					if !viewed && mayBeDeleted(p.Raw) {
						r.unsure = true
					}
				}
				r.rc.Stats.Unchanged++
				continue
			}
			if err := p.Resolve(); err != nil {
				return fmt.Errorf("entity %s: %w", engine.QuoteID(p.ID), err)
			}
		}
		if r.track || r.fresh != nil {
			var h idHash
			if hashes != nil && !p.Lazy {
				h = hashes[i]
			} else {
				h = hashID(p.ID)
			}
			if r.track {
				if err := r.seenAdd(h); err != nil {
					return err
				}
			}
			if r.fresh != nil && !r.fresh.add(h) {
				p.KnownNew = true
			}
		}
		if r.track && (p.Filtered || p.Deleted) {
			r.unsure = true
		}
		if p.Filtered {
			// A filtered entity deletes the live version, if any.
			if err := r.deleteLive(tx, p.ID, ts); err != nil {
				return err
			}
			continue
		}
		res, _, err := tx.Put(r.d.Name, p, ts)
		if err != nil {
			return fmt.Errorf("entity %s: %w", engine.QuoteID(p.ID), err)
		}
		if res == engine.Appended {
			r.rc.Stats.Written++
		}
		if err := r.count(res); err != nil {
			return err
		}
	}
	return nil
}

// deleteLive writes a deleted version of id, keeping its content, if its
// latest version is live.
func (r *datasetRun) deleteLive(tx engine.WriteTx, id string, ts int64) error {
	rec, ok, err := tx.Latest(r.d.Name, id)
	if err != nil || !ok {
		return err
	}
	return r.deleteVersion(tx, id, rec, ts)
}

// deleteVersion writes a deleted version of rec, id's latest version,
// unless it is deleted already.
func (r *datasetRun) deleteVersion(tx engine.WriteTx, id string, rec engine.Record, ts int64) error {
	if rec.Deleted {
		return nil
	}
	p, err := r.deletedOf(rec.Body)
	if err != nil {
		return fmt.Errorf("entity %s: %w", engine.QuoteID(id), err)
	}
	res, _, err := tx.Put(r.d.Name, &p, ts)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", engine.QuoteID(id), err)
	}
	if res == engine.Appended {
		r.rc.Stats.Deleted++
		r.delBytes += int64(len(p.Body) + len(id))
	}
	return r.count(res)
}

// deletedOf prepares the deleted version of a live version's stored
// body: its content with "_deleted": true (and "$deletion_tracked": true
// where the sink marks them). It appends those members to the body's
// text, where they win over members of the same name as they would
// being set in the map, and canonicalizes that text (engine.PrepareRaw,
// which is byte for byte Prepare of the decoded map: deletedOfMap, which
// it replaced, took ~5.5 µs an entity against ~1).
func (r *datasetRun) deletedOf(body []byte) (engine.Prepared, error) {
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return r.deletedOfMap(body)
	}
	t := append(r.delText[:0], body[:len(body)-1]...)
	if len(body) > 2 {
		t = append(t, ',')
	}
	t = append(t, `"_deleted":true`...)
	if r.d.MarkDeletionTracked {
		t = append(t, `,"$deletion_tracked":true`...)
	}
	t = append(t, '}')
	r.delText = t
	// A fresh arena each: the store keeps the body until commit.
	p, _, err := r.delScratch.PrepareRaw(make([]byte, 0, len(t)), t)
	return p, err
}

// deletedOfMap is deletedOf through the decoded map.
func (r *datasetRun) deletedOfMap(body []byte) (engine.Prepared, error) {
	v, err := engine.DecodeValue(body)
	if err != nil {
		return engine.Prepared{}, err
	}
	ent, ok := v.(map[string]any)
	if !ok {
		return engine.Prepared{}, fmt.Errorf("stored version is %s, not an object", engine.TypeName(v))
	}
	ent["_deleted"] = true
	if r.d.MarkDeletionTracked {
		ent["$deletion_tracked"] = true
	}
	return engine.Prepare(ent)
}

func (r *datasetRun) Finish(ctx context.Context, tx engine.WriteTx, ts int64) error {
	if err := tx.EnsureDataset(r.d.Name); err != nil {
		return err
	}
	if r.track {
		if r.seen == nil {
			r.seen = r.newSeen()
		}
		defer r.seen.close()
		if err := r.seen.seal(); err != nil {
			return err
		}
		missing := int64(-1) // live _ids the run did not produce; -1: unknown
		if !r.unsure {
			if ti, ok := tx.(engine.TxDatasetInfo); ok {
				info, ok, err := ti.DatasetInfo(r.d.Name)
				if err != nil {
					return fmt.Errorf("deletion tracking: %w", err)
				}
				if ok {
					missing = int64(info.Entities-info.Deleted) - r.seen.distinct()
				}
				if ok && missing == 0 {
					// Every live _id was produced by this run: nothing
					// to delete (see datasetRun.unsure).
					return r.finishPopulated(tx)
				}
			}
		}
		// Every _id the run produced is live unless it is unsure.
		gone, err := r.seen.gone(!r.unsure, missing, func(fn func(id string) error) error { return tx.ForEachLive(r.d.Name, fn) })
		if err != nil {
			return fmt.Errorf("deletion tracking: %w", err)
		}
		defer gone.close()
		if r.deleteLimit >= 0 && int64(gone.len()) > r.deleteLimit {
			r.rc.Stats.Refused = int64(gone.len())
			return fmt.Errorf("%w: deletion tracking would delete %d of the %d live entities of dataset %q, more than the limit of %d "+
				"(deletion_threshold_factor %g, deletion_threshold_count %d); nothing was deleted. If the source really lost them, "+
				"accept the deletions with: ferry run --accept-deletes %s",
				engine.ErrDeletesRefused, gone.len(), r.live, r.d.Name, r.deleteLimit, r.d.DeleteFactor, r.d.DeleteCount, r.rc.Pipe)
		}
		if tx, err = r.deleteGone(ctx, tx, gone, ts); err != nil {
			return fmt.Errorf("deletion tracking: %w", err)
		}
	}
	return r.finishPopulated(tx)
}

// deleteGone writes a deleted version of each of the live _ids in gone, in
// the store's order where it has one (engine.TxLatestMany), and returns
// the transaction to go on in. Where the runner allows (SetCheckpoint),
// it commits the deletions in parts of about ckptBytes: the first part
// of deletePartFirst _ids, the next ones sized from the bytes per
// deletion so far. A run deleting 100,000 of 1M entities in its final
// transaction held 43 MB of versions and 42 MB of bbolt's dirty pages
// (111.5 MiB of anonymous memory at its peak); at 10M it would hold ten
// times that.
func (r *datasetRun) deleteGone(ctx context.Context, tx engine.WriteTx, gone *idSpool, ts int64) (engine.WriteTx, error) {
	k := deletePartFirst
	if r.checkpoint == nil {
		k = deletePartMax // parts only to bound the _ids in memory
	}
	var part []string
	for left := gone.len(); left > 0; {
		var err error
		if part, err = gone.next(min(k, left), part); err != nil {
			return tx, err
		}
		if len(part) == 0 {
			return tx, fmt.Errorf("%d of the _ids to delete missing", left)
		}
		left -= len(part)
		before := r.delBytes
		// An _id another writer wrote during the run (between parts, when
		// the writer lock is free) is live by that write: not deleted.
		del := func(id string, rec engine.Record) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if rec.Offset >= r.startNext {
				return nil
			}
			return r.deleteVersion(tx, id, rec, ts)
		}
		if lm, ok := tx.(engine.TxLatestMany); ok {
			if err := lm.LatestMany(r.d.Name, part, del); err != nil {
				return tx, err
			}
		} else {
			for _, id := range part {
				rec, ok, err := tx.Latest(r.d.Name, id)
				if err != nil {
					return tx, err
				}
				if ok {
					if err := del(id, rec); err != nil {
						return tx, err
					}
				}
			}
		}
		if left == 0 || r.checkpoint == nil {
			continue
		}
		if tx, err = r.checkpoint(); err != nil {
			return nil, err
		}
		per := max((r.delBytes-before)/int64(len(part)), 1)
		k = int(min(max(int64(r.ckptBytes)/per, deletePartMin), deletePartMax))
	}
	return tx, nil
}

// The parts deleteGone commits deletions in: the first of
// deletePartFirst _ids, the next of deletePartMin to deletePartMax.
const (
	deletePartFirst = 1024
	deletePartMin   = 64
	deletePartMax   = 1 << 16
)

// finishPopulated marks the dataset populated as set_initial_offset says.
func (r *datasetRun) finishPopulated(tx engine.WriteTx) error {
	switch r.d.SetInitialOffset {
	case "always", "initially", "onload":
		return tx.SetPopulated(r.d.Name)
	case "if-source-populated":
		if r.rc.InputsPopulated {
			return tx.SetPopulated(r.d.Name)
		}
	}
	return nil
}

// mayBeDeleted reports whether JSON text might carry "_deleted": true
// (it names the key, or has an escape that could spell it).
func mayBeDeleted(raw []byte) bool {
	return bytes.Contains(raw, []byte("_deleted")) || bytes.IndexByte(raw, '\\') >= 0
}
