package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Record is one stored version of an entity.
type Record struct {
	Offset   uint64 // position in the dataset log; _updated
	TS       int64  // write time, µs since the Unix epoch; _ts
	Previous uint64 // offset of the prior version of the _id, when HasPrev
	HasPrev  bool
	Hash     Hash
	ID       string
	Deleted  bool
	Body     []byte // canonical JSON as written by Prepare
}

// AppendJSON appends the record as the entity JSON users see: the stored
// content plus _updated, _ts, _previous and _hash.
func (r *Record) AppendJSON(dst []byte) []byte {
	body := r.Body
	if len(body) < 2 {
		body = []byte("{}")
	}
	dst = append(dst, body[:len(body)-1]...)
	if len(body) > 2 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"_hash":"`...)
	dst = append(dst, r.Hash.String()...)
	dst = append(dst, `","_previous":`...)
	if r.HasPrev {
		dst = strconv.AppendUint(dst, r.Previous, 10)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"_ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	dst = append(dst, `,"_updated":`...)
	dst = strconv.AppendUint(dst, r.Offset, 10)
	return append(dst, '}')
}

// Entity decodes the record into an entity including _updated, _ts,
// _previous and _hash.
func (r *Record) Entity() (Entity, error) {
	return r.entity(nil)
}

// EntityWith is Entity using a Decoder's key cache and size hints.
func (r *Record) EntityWith(d *Decoder) (Entity, error) {
	return r.entity(d)
}

// recordKeys is how many keys entity adds to the stored body.
const recordKeys = 4

// entity decodes the body with d (nil: without a Decoder), leaving room
// in the map for the keys it adds.
func (r *Record) entity(d *Decoder) (Entity, error) {
	var v any
	var err error
	if d != nil {
		v, err = d.decodeRoom(r.Body, recordKeys)
	} else {
		v, err = DecodeValue(r.Body)
	}
	if err != nil {
		return nil, err
	}
	e, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("stored record is not an object")
	}
	e["_updated"] = json.Number(strconv.FormatUint(r.Offset, 10))
	e["_ts"] = json.Number(strconv.FormatInt(r.TS, 10))
	if r.HasPrev {
		e["_previous"] = json.Number(strconv.FormatUint(r.Previous, 10))
	} else {
		e["_previous"] = nil
	}
	e["_hash"] = r.Hash.String()
	return e, nil
}

// DatasetInfo is a dataset's metadata.
type DatasetInfo struct {
	Name      string `json:"name"`
	Populated bool   `json:"populated"`
	// Versions counts every version in the log; Entities counts distinct
	// _ids; Deleted counts _ids whose latest version is deleted.
	Versions uint64 `json:"versions"`
	Entities uint64 `json:"entities"`
	Deleted  uint64 `json:"deleted"`
	// LastOffset is the offset of the newest version; meaningful when
	// Versions > 0.
	LastOffset uint64 `json:"last_offset"`
	// Created and Updated are omitted from JSON while unknown (zero).
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
}

// PipeState is what the store keeps per pipe between runs.
type PipeState struct {
	// Since is the source's continuation token after the last committed
	// batch ("" = none: the next run is a full run).
	Since     string    `json:"since"`
	LastRun   time.Time `json:"last_run,omitzero"` // omitted before the first run
	LastError string    `json:"last_error,omitempty"`
	// RescanRequested asks the next run to be a full run without clearing
	// Since (rescan), see SPEC c.
	RescanRequested bool `json:"rescan_requested,omitempty"`
}

// RunRecord is the log entry of one pipe run.
type RunRecord struct {
	Seq       uint64    `json:"seq,omitempty"` // assigned by the store
	Pipe      string    `json:"pipe"`
	Start     time.Time `json:"start,omitzero"`
	End       time.Time `json:"end,omitzero"`
	SyncType  string    `json:"sync_type"` // full | incremental
	Read      int64     `json:"read"`
	Written   int64     `json:"written"`
	Unchanged int64     `json:"unchanged"`
	Deleted   int64     `json:"deleted"`
	Error     string    `json:"error,omitempty"`
	// Share is what a share (write-back) run did per entity; omitted for
	// other pipes.
	Share ShareCounts `json:"share,omitzero"`
	// WouldWrite and WouldDelete are what the run would have written and
	// deleted when that differs from what it did (Written, Deleted count
	// committed versions only): a circuit breaker rolled the run back, the
	// deletion guard refused its deletion tracking (WouldDelete counts the
	// refused deletions), or an error rolled back its last transaction.
	// Absent when the run committed everything it produced.
	WouldWrite  int64 `json:"would_write,omitempty"`
	WouldDelete int64 `json:"would_delete,omitempty"`
}

// ScanOptions select versions of a dataset log.
type ScanOptions struct {
	From  uint64 // first offset to examine
	Limit int    // at most this many records passed to fn; <= 0: no limit
	// LatestOnly skips versions that are no longer the latest of their _id.
	LatestOnly bool
	// Cache, when set, keeps the store's working state between the scans
	// of one reader (e.g. which versions a later one supersedes), so that
	// reading a dataset in many small scans costs what one long scan does.
	// Use one per reader; the zero value is ready.
	Cache *ScanCache
}

// ScanCache holds a store's state between scans (see ScanOptions.Cache).
type ScanCache struct{ v any }

// Load returns what the store kept, or nil.
func (c *ScanCache) Load() any { return c.v }

// Keep stores v for the next scan.
func (c *ScanCache) Keep(v any) { c.v = v }

// PutResult says what a write did.
type PutResult int

// Outcomes of WriteTx.Put.
const (
	Unchanged PutResult = iota // same hash as the latest version: nothing written
	Appended                   // a new version was appended
)

// WriteTx is one atomic store transaction. Nothing of it is visible to
// readers before Commit; Rollback (or a failed Commit) leaves the store as
// it was.
type WriteTx interface {
	// Put applies the write rule: append a version iff the _id is new or
	// the hash differs from its latest version. ts is the version's _ts.
	Put(dataset string, p *Prepared, ts int64) (PutResult, Record, error)
	// Latest returns the latest version of id as this transaction sees it.
	Latest(dataset, id string) (Record, bool, error)
	// SameRaw reports whether the latest version of id, as this
	// transaction sees it, was written from JSON text with this
	// RawTextHash (so the text is unchanged). False when the dataset or
	// id is unknown or the version was not written from text.
	SameRaw(dataset, id string, rawHash uint64) (bool, error)
	// ForEachLive calls fn with every _id whose latest version is not
	// deleted, in _id order, as this transaction sees it. fn may Put.
	ForEachLive(dataset string, fn func(id string) error) error
	// Changed reports whether the transaction has written anything.
	Changed() bool
	// SetPopulated marks the dataset populated (creating it if needed).
	SetPopulated(dataset string) error
	// EnsureDataset creates an empty dataset if it does not exist.
	EnsureDataset(dataset string) error
	SetPipeState(pipe string, st PipeState) error
	PipeState(pipe string) (PipeState, error)
	AddRun(r RunRecord) error
	// GetKV, PutKV, DeleteKV and ScanKV read and change the store's
	// key-value namespaces (see Store.GetKV) inside this transaction, so
	// that small state (share intents, merge indexes) commits atomically
	// with the dataset writes and the pipe state. Reads see the
	// transaction's own writes. Values passed and returned are copies.
	GetKV(ns, key string) ([]byte, bool, error)
	PutKV(ns, key string, value []byte) error
	// DeleteKV removes a key; a missing key is not an error.
	DeleteKV(ns, key string) error
	// ScanKV calls fn with every key of ns that starts with prefix, in
	// byte order. fn must not change the namespace; collect the keys and
	// change them after ScanKV returns.
	ScanKV(ns, prefix string, fn func(key string, value []byte) error) error
	Commit() error
	Rollback() error
}

// ViewMark names the state of a dataset a read view saw: Gen tells the
// dataset's incarnations apart (a deleted and recreated dataset gets a new
// one) and Next is the offset its next version would get. The zero
// ViewMark names none.
type ViewMark struct {
	Gen  int64
	Next uint64
}

// RawViewer is a Store that checks lazy entities (Prepared.Lazy) against
// its committed state in a read view, outside the write transaction, so
// the lookups run on the producer's workers beside each other instead of
// one after the other on the committer.
type RawViewer interface {
	// ViewRaw sets SameIn, to the mark of the state it saw, on every
	// lazy entity of batch whose latest version in dataset is live and
	// was written from text with the same RawHash. It reports whether it
	// looked at all (false: the dataset is unknown to the view).
	ViewRaw(ctx context.Context, dataset string, batch []Prepared) (bool, error)
}

// ResidentBounded is a Store that keeps the process's resident memory
// under a bound (the bbolt store with a resident bound releases its
// mapped pages above it). Sinks size their own memory from it: what they
// hold is room the store no longer has for the pages it keeps mapped.
type ResidentBounded interface {
	// ResidentBound returns the bound in bytes; <= 0: none.
	ResidentBound() int64
}

// ViewConfirmer is a WriteTx that confirms what a read view found
// (RawViewer): UnchangedSince reports whether no version of id was
// written to dataset after the state mark names, neither committed since
// nor in this transaction. False when it cannot tell cheaply; the caller
// then asks SameRaw.
type ViewConfirmer interface {
	UnchangedSince(dataset, id string, mark ViewMark) (bool, error)
}

// TxDatasetInfo is a WriteTx that reports a dataset's metadata as the
// transaction sees it, its own writes included. A dataset sink uses the
// live count to prove deletion tracking has nothing to delete without
// walking the index.
type TxDatasetInfo interface {
	DatasetInfo(dataset string) (DatasetInfo, bool, error)
}

// TxLatestMany is a WriteTx that reads the latest versions of many _ids
// faster in an order of its own than one by one. The bbolt store reads
// them in the order of their place in the log, so its pages are read in
// sequence rather than at random: deletion tracking reads every deleted
// entity's last version this way.
type TxLatestMany interface {
	// LatestMany calls fn with the latest version, as this transaction
	// sees it, of each of ids that has one, in an order of its own. The
	// ids must be distinct. fn may Put to the dataset; each version fn is
	// given is the latest from before LatestMany was called, and its
	// Body is valid until fn returns.
	LatestMany(dataset string, ids []string, fn func(id string, rec Record) error) error
}

// Store keeps datasets, pipe states and run logs. bbolt (engine/boltstore)
// is the embedded default; implementations must pass engine/storetest.
type Store interface {
	// Begin starts a write transaction. Only one is open at a time; Begin
	// blocks until the previous one ends or ctx is done.
	Begin(ctx context.Context) (WriteTx, error)
	// Datasets lists every dataset's metadata, sorted by name.
	Datasets(ctx context.Context) ([]DatasetInfo, error)
	// Dataset returns one dataset's metadata; ok is false if it is unknown.
	Dataset(ctx context.Context, name string) (DatasetInfo, bool, error)
	// Scan calls fn for versions in log order as opts say. It reads in
	// short transactions, so fn may take its time; Records are copies fn
	// may keep. It returns the offset after the last version examined
	// (including skipped ones), which is where a continuing scan starts.
	Scan(ctx context.Context, dataset string, opts ScanOptions, fn func(Record) error) (uint64, error)
	// Get returns the latest version of id.
	Get(ctx context.Context, dataset, id string) (Record, bool, error)
	// History returns every version of id, oldest first.
	History(ctx context.Context, dataset, id string) ([]Record, error)
	PipeState(ctx context.Context, pipe string) (PipeState, error)
	// Runs returns the newest runs of a pipe ("" = all pipes), newest first.
	Runs(ctx context.Context, pipe string, limit int) ([]RunRecord, error)
	// DeleteDataset removes a dataset and everything in it.
	DeleteDataset(ctx context.Context, name string) error
	// Small key-value state beside the datasets (connector instances,
	// encrypted secrets), in namespaces. Values are copies.
	GetKV(ctx context.Context, ns, key string) ([]byte, bool, error)
	PutKV(ctx context.Context, ns, key string, value []byte) error
	DeleteKV(ctx context.Context, ns, key string) error
	// ListKV returns the keys of a namespace, sorted.
	ListKV(ctx context.Context, ns string) ([]string, error)
	Close() error
}

// ListOptions select entities for EntityLister.ListEntities.
type ListOptions struct {
	// Prefix keeps only _ids that start with it.
	Prefix string
	// After starts the listing after this _id ("": from the first).
	After string
	// Limit is the most entities passed to fn; <= 0: no limit.
	Limit int
}

// EntityLister is implemented by stores that can list the latest version
// of each entity of a dataset in _id order straight from their _id index,
// so that a page of n entities costs O(n) reads whatever the dataset's
// size (the web browser's entity list and _id prefix search). Deleted
// entities are listed too (Record.Deleted). Stores without it are browsed
// in log order.
type EntityLister interface {
	ListEntities(ctx context.Context, dataset string, opts ListOptions, fn func(Record) error) error
}
