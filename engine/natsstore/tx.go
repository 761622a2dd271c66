package natsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nuid"

	"github.com/ferrydata/ferry/engine"
)

// writeTx is one transaction. Reads go to the server as of the committed
// state; writes stay in memory until Commit (see commit.go).
type writeTx struct {
	s       *Store
	ctx     context.Context
	id      string
	sess    *session
	fence   *lease
	sets    map[string]*txDataset
	pipes   map[string]engine.PipeState
	runs    []engine.RunRecord
	kv      map[kvKey]kvVal
	changed bool
	done    bool
	arena   []byte
}

type kvKey struct{ ns, key string }

type kvVal struct {
	value   []byte
	deleted bool
}

// txDataset is what a transaction knows and changes of one dataset.
type txDataset struct {
	name string
	// base is the committed metadata as read (plus repairs made by this
	// transaction); meta is this transaction's view.
	base, meta dsMeta
	rev        uint64 // sequence of the metadata message (0: none ever)
	exists     bool   // committed and not deleted
	dirty      bool
	pending    []pendingVersion
	latest     map[string]int32 // _id -> index in pending of its newest version
	cache      map[string]*committed
}

type pendingVersion struct {
	v version
	// prevIdx is the index in pending of the previous version, or -1 when
	// it is committed (v.prevSeq) or absent.
	prevIdx int32
}

// committed is a looked-up latest committed version.
type committed struct {
	found bool
	seq   uint64
	v     version
}

// Begin starts a write transaction. Only one is open per Store at a time;
// other processes' transactions run concurrently and conflict at commit
// (see Commit). A lease in ctx (engine.WithLease) fences the transaction.
func (s *Store) Begin(ctx context.Context) (engine.WriteTx, error) {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	sess, err := s.session()
	if err != nil {
		<-s.writer
		return nil, err
	}
	w := &writeTx{s: s, ctx: ctx, id: nuid.Next(), sess: sess, sets: map[string]*txDataset{}}
	if l := engine.LeaseFrom(ctx); l != nil {
		nl, ok := l.(*lease)
		if !ok || nl.s != s {
			<-s.writer
			return nil, fmt.Errorf("nats store: the transaction carries a lease from another store (%T)", l)
		}
		if nl.lost() {
			<-s.writer
			return nil, fmt.Errorf("pipe %q: %w", nl.pipe, ErrLeaseLost)
		}
		w.fence = nl
	}
	return w, nil
}

// ErrLeaseLost is returned by Commit (and Begin) when the transaction's
// lease was lost: another worker may have taken the pipe over.
var ErrLeaseLost = engine.ErrLeaseLost

// ErrConflict is returned by Commit when another worker committed to a
// dataset this transaction wrote, after it was read.
var ErrConflict = errors.New("another worker changed the same dataset during this transaction; nothing of it was committed")

func (w *writeTx) copyBytes(b []byte) []byte {
	if len(b) > 64<<10 {
		return bytes.Clone(b)
	}
	if cap(w.arena)-len(w.arena) < len(b) {
		w.arena = make([]byte, 0, 1<<20)
	}
	start := len(w.arena)
	w.arena = append(w.arena, b...)
	return w.arena[start:len(w.arena):len(w.arena)]
}

// dataset loads a dataset's committed metadata on first use. With create
// an unknown dataset is set up in the transaction; without, nil is
// returned for it.
func (w *writeTx) dataset(name string, create bool) (*txDataset, error) {
	if st, ok := w.sets[name]; ok {
		if !st.exists && !st.dirty && !create {
			return nil, nil
		}
		if create && !st.exists && !st.dirty {
			w.initDataset(st)
		}
		return st, nil
	}
	if name == "" {
		return nil, errors.New("empty dataset name")
	}
	m, rev, ok, err := w.s.readMetaLeader(w.ctx, name)
	if err != nil {
		return nil, fmt.Errorf("dataset %q: %w", name, err)
	}
	st := &txDataset{name: name, base: m, meta: m, rev: rev, exists: ok, latest: map[string]int32{}, cache: map[string]*committed{}}
	w.sets[name] = st
	if !ok {
		if !create {
			return nil, nil
		}
		w.initDataset(st)
	}
	return st, nil
}

// DatasetInfo implements engine.TxDatasetInfo.
func (w *writeTx) DatasetInfo(dataset string) (engine.DatasetInfo, bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return engine.DatasetInfo{}, false, err
	}
	return st.meta.info(dataset), true, nil
}

func (w *writeTx) initDataset(st *txDataset) {
	now := time.Now().UTC()
	st.base = dsMeta{Created: now}
	st.meta = st.base
	st.dirty = true
}

// lookup returns the latest version of id as the transaction sees it:
// pending first, then committed.
func (w *writeTx) lookup(st *txDataset, id string) (version, bool, error) {
	if i, ok := st.latest[id]; ok {
		return st.pending[i].v, true, nil
	}
	c, err := w.committedOf(st, id)
	if err != nil || !c.found {
		return version{}, false, err
	}
	return c.v, true, nil
}

func (w *writeTx) committedOf(st *txDataset, id string) (*committed, error) {
	if c, ok := st.cache[id]; ok {
		return c, nil
	}
	if err := w.fetch(st, []string{id}); err != nil {
		return nil, err
	}
	return st.cache[id], nil
}

// Prefetch looks up the committed latest versions of ids in one round
// trip per thousand, so that the Puts of a batch need none.
func (w *writeTx) Prefetch(dataset string, ids []string) error {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return err
	}
	need := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := st.latest[id]; ok {
			continue
		}
		if _, ok := st.cache[id]; ok {
			continue
		}
		need = append(need, id)
	}
	return w.fetch(st, need)
}

// fetch looks ids up in the dataset's stream and caches the result.
func (w *writeTx) fetch(st *txDataset, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if st.base.LastSeq == 0 {
		for _, id := range ids {
			st.cache[id] = &committed{}
		}
		return nil
	}
	found, err := w.s.latestOf(w.ctx, st.name, &st.base, ids)
	if err != nil {
		return fmt.Errorf("dataset %q: %w", st.name, err)
	}
	for _, id := range ids {
		c := found[id]
		if c == nil {
			c = &committed{}
		}
		st.cache[id] = c
	}
	return nil
}

// Put applies the write rule.
func (w *writeTx) Put(dataset string, p *engine.Prepared, ts int64) (engine.PutResult, engine.Record, error) {
	if w.done {
		return 0, engine.Record{}, errors.New("transaction already finished")
	}
	if len(p.ID) == 0 || len(p.ID) > maxIDLen {
		return 0, engine.Record{}, fmt.Errorf("dataset %q: an _id of %d bytes cannot be stored in NATS (at most %d)", dataset, len(p.ID), maxIDLen)
	}
	st, err := w.dataset(dataset, true)
	if err != nil {
		return 0, engine.Record{}, err
	}
	var cur version
	exists := false
	prevIdx := int32(-1)
	var prevSeq uint64
	if i, ok := st.latest[p.ID]; ok {
		cur, exists, prevIdx = st.pending[i].v, true, i
	} else if !p.KnownNew {
		c, err := w.committedOf(st, p.ID)
		if err != nil {
			return 0, engine.Record{}, err
		}
		if c.found {
			cur, exists, prevSeq = c.v, true, c.seq
		}
	}
	if exists && cur.hash == p.Hash {
		return engine.Unchanged, engine.Record{}, nil
	}
	m := &st.meta
	off := m.nextOffset()
	v := version{ts: ts, offset: off, hash: p.Hash, rawHash: p.RawHash, id: p.ID, body: w.copyBytes(p.Body), prevSeq: prevSeq}
	if p.Deleted {
		v.flags |= flagDeleted
	}
	if exists {
		v.flags |= flagHasPrev
		v.prevOff = cur.offset
	}
	st.latest[p.ID] = int32(len(st.pending))
	st.pending = append(st.pending, pendingVersion{v: v, prevIdx: prevIdx})
	w.changed = true
	st.dirty = true
	m.Versions++
	m.LastOffset = off
	if !exists {
		m.Entities++
	}
	wasDeleted := exists && cur.deleted()
	switch {
	case p.Deleted && (!exists || !wasDeleted):
		m.Deleted++
	case !p.Deleted && wasDeleted:
		m.Deleted--
	}
	return engine.Appended, engine.Record{Offset: off, TS: ts, Previous: v.prevOff, HasPrev: exists, Hash: p.Hash, ID: p.ID, Deleted: p.Deleted, Body: p.Body}, nil
}

// Latest returns the latest version of id as the transaction sees it.
func (w *writeTx) Latest(dataset, id string) (engine.Record, bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return engine.Record{}, false, err
	}
	v, ok, err := w.lookup(st, id)
	if err != nil || !ok {
		return engine.Record{}, false, err
	}
	return v.record(), true, nil
}

// SameRaw reports whether id's latest version was written from text with
// this hash.
func (w *writeTx) SameRaw(dataset, id string, rawHash uint64) (bool, error) {
	if rawHash == 0 {
		return false, nil
	}
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return false, err
	}
	v, ok, err := w.lookup(st, id)
	if err != nil || !ok {
		return false, err
	}
	return v.rawHash == rawHash, nil
}

// ForEachLive calls fn with every live _id in _id order, as the
// transaction sees it. The ids are collected before fn is called, so fn
// may Put.
func (w *writeTx) ForEachLive(dataset string, fn func(id string) error) error {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return err
	}
	var ids []string
	if st.base.LastSeq > 0 && st.base.Entities > 0 {
		err := w.s.liveIDs(w.ctx, st.name, &st.base, func(id string) {
			if _, pending := st.latest[id]; !pending {
				ids = append(ids, id)
			}
		})
		if err != nil {
			return fmt.Errorf("dataset %q: %w", dataset, err)
		}
	}
	for id, i := range st.latest {
		if !st.pending[i].v.deleted() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// Changed reports whether the transaction has written anything.
func (w *writeTx) Changed() bool { return w.changed }

// EnsureDataset creates the dataset if it does not exist.
func (w *writeTx) EnsureDataset(dataset string) error {
	st, err := w.dataset(dataset, true)
	if err == nil && st.dirty {
		w.changed = true
	}
	return err
}

// SetPopulated marks the dataset populated.
func (w *writeTx) SetPopulated(dataset string) error {
	st, err := w.dataset(dataset, true)
	if err != nil {
		return err
	}
	if !st.meta.Populated {
		st.meta.Populated = true
		st.dirty = true
		w.changed = true
	}
	return nil
}

// SetPipeState stores a pipe's state at commit.
func (w *writeTx) SetPipeState(pipe string, ps engine.PipeState) error {
	if w.pipes == nil {
		w.pipes = map[string]engine.PipeState{}
	}
	w.pipes[pipe] = ps
	w.changed = true
	return nil
}

// PipeState returns a pipe's state as the transaction sees it.
func (w *writeTx) PipeState(pipe string) (engine.PipeState, error) {
	if ps, ok := w.pipes[pipe]; ok {
		return ps, nil
	}
	return w.s.PipeState(w.ctx, pipe)
}

// AddRun appends a run record at commit.
func (w *writeTx) AddRun(r engine.RunRecord) error {
	w.runs = append(w.runs, r)
	w.changed = true
	return nil
}

// GetKV reads a key as the transaction sees it.
func (w *writeTx) GetKV(ns, key string) ([]byte, bool, error) {
	if ns == "" {
		return nil, false, errors.New("empty key-value namespace")
	}
	if v, ok := w.kv[kvKey{ns, key}]; ok {
		if v.deleted {
			return nil, false, nil
		}
		return bytes.Clone(v.value), true, nil
	}
	return w.s.GetKV(w.ctx, ns, key)
}

// PutKV writes a key at commit.
func (w *writeTx) PutKV(ns, key string, value []byte) error {
	if ns == "" {
		return errors.New("empty key-value namespace")
	}
	if key == "" {
		return errors.New("empty key")
	}
	if w.kv == nil {
		w.kv = map[kvKey]kvVal{}
	}
	w.kv[kvKey{ns, key}] = kvVal{value: bytes.Clone(value)}
	w.changed = true
	return nil
}

// DeleteKV removes a key at commit; a missing key is not an error.
func (w *writeTx) DeleteKV(ns, key string) error {
	if ns == "" {
		return errors.New("empty key-value namespace")
	}
	if v, ok := w.kv[kvKey{ns, key}]; ok && v.deleted {
		return nil
	}
	if _, ok, err := w.GetKV(ns, key); err != nil || !ok {
		return err
	}
	if w.kv == nil {
		w.kv = map[kvKey]kvVal{}
	}
	w.kv[kvKey{ns, key}] = kvVal{deleted: true}
	w.changed = true
	return nil
}

// ScanKV calls fn with the keys of ns starting with prefix, in byte order,
// as the transaction sees them.
func (w *writeTx) ScanKV(ns, prefix string, fn func(key string, value []byte) error) error {
	if ns == "" {
		return errors.New("empty key-value namespace")
	}
	vals := map[string][]byte{}
	err := w.s.scanKV(w.ctx, ns, func(key string, value []byte) {
		if strings.HasPrefix(key, prefix) {
			vals[key] = value
		}
	})
	if err != nil {
		return err
	}
	for k, v := range w.kv {
		if k.ns != ns || !strings.HasPrefix(k.key, prefix) {
			continue
		}
		if v.deleted {
			delete(vals, k.key)
		} else {
			vals[k.key] = bytes.Clone(v.value)
		}
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, vals[k]); err != nil {
			return err
		}
	}
	return nil
}

// Rollback drops the transaction. Nothing was sent to the server.
func (w *writeTx) Rollback() error {
	if w.done {
		return nil
	}
	w.done = true
	<-w.s.writer
	return nil
}
