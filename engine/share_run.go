package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// shareGroup is how many entities a share run plans, journals and
// records together: each group costs two commits (intents, then records),
// so small source batches (share pipes have batch_size 1) are grouped.
const shareGroup = 256

// shareRun is one run of a share pipe (see Sharer for the protocol).
type shareRun struct {
	e       *Engine
	p       *Pipe
	sh      Sharer
	sr      SinkRun
	stats   *RunStats
	workers int
	// state is the pipe state committed with each group.
	state   PipeState
	records ShareRecords
	// plan is set by PlanShare: decide and report, write nothing.
	plan func(*ShareAction)
	// held are the _ids whose insert is in doubt (dead-lettered until
	// `ferry retry`): nothing is planned for them.
	held map[string]bool
	mu   sync.Mutex // guards held
	// statsMu guards stats.Read and the copies Progress gets: the source
	// loop counts reads while the previous group commits.
	statsMu sync.Mutex
}

// storeRecords reads share records from the committed store.
type storeRecords struct {
	store   Store
	dataset string
}

func (r storeRecords) Record(ctx context.Context, id string) (Entity, bool, error) {
	rec, ok, err := r.store.Get(ctx, r.dataset, id)
	if err != nil || !ok {
		return nil, false, err
	}
	ent, err := rec.Entity()
	return ent, err == nil, err
}

// Workers is implemented by components that send requests concurrently
// (a REST system's worker_threads); a share run plans and applies that
// many entities at once.
type Workers interface {
	Workers() int
}

func (e *Engine) newShareRun(ctx context.Context, p *Pipe, stats *RunStats, state PipeState) (*shareRun, error) {
	s := &shareRun{e: e, p: p, sh: p.Sharer, stats: stats, state: state, workers: 4,
		records: storeRecords{store: e.Store, dataset: p.Sharer.ShareDataset()}}
	if w, ok := p.Sharer.(Workers); ok && w.Workers() > 0 {
		s.workers = w.Workers()
	}
	if s.records.(storeRecords).dataset == "" {
		s.records = storeRecords{store: e.Store, dataset: p.Output}
	}
	held, err := e.Store.ListKV(ctx, ShareHeldNamespace(p.ID))
	if err != nil {
		return nil, err
	}
	s.held = make(map[string]bool, len(held))
	for _, id := range held {
		s.held[id] = true
	}
	return s, nil
}

// runShare runs a share pipe under the write-back protocol.
func (e *Engine) runShare(ctx context.Context, p *Pipe, opts RunOptions, rec *RunRecord, stats *RunStats) error {
	state, err := e.Store.PipeState(ctx, p.ID)
	if err != nil {
		return err
	}
	req := e.readRequest(p, &state, opts, rec)
	state.RescanRequested = false
	populated, err := e.inputsPopulated(ctx, p)
	if err != nil {
		return err
	}
	// A share dataset is never deletion-tracked: its records hold the
	// $generated_id that links inserted records to their origin, and must
	// stay joinable after the desired state is gone.
	sr, err := p.Sink.(TxSink).StartRun(ctx, &RunContext{Pipe: p.ID, Full: false, Store: e.Store, InputsPopulated: populated, Stats: stats})
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	s, err := e.newShareRun(ctx, p, stats, state)
	if err != nil {
		return err
	}
	s.sr = sr
	if err := s.settle(ctx); err != nil {
		return err
	}
	if err := s.retry(ctx); err != nil {
		return err
	}
	if !opts.AcceptDeletes {
		if err := s.checkDeletes(ctx, req); err != nil {
			return err
		}
	}
	if err := s.source(ctx, req); err != nil {
		return err
	}
	if c := stats.Share; c.Failed > 0 {
		total := c.Inserted + c.Updated + c.Deleted + c.SkippedUnchanged + c.SkippedModified + c.SkippedReplaced + c.SkippedOther + c.Failed
		return fmt.Errorf("%d of %d %w (retried by later runs up to max_retries_per_entity %d times, then dead-lettered to %q; see $error in the share dataset %q)",
			c.Failed, total, ErrShareFailures, p.Share.MaxRetries, p.Share.DeadLetterDataset, p.Output)
	}
	return nil
}

// source reads the pipe's source through its transforms and writes each
// group of entities back.
func (s *shareRun) source(ctx context.Context, req ReadRequest) error {
	reader, err := s.p.Source.Open(ctx, req)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer reader.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan item, shareGroup)
	go s.e.produce(runCtx, s.p, reader, false, nil, nil, items, nil)
	defer func() {
		cancel()
		for range items {
		}
	}()
	var group []Entity
	since := ""
	// The records of one group commit (and fsync) while the next group is
	// planned and sent; a group that shares an identity with the one in
	// flight waits for its commit, so an entity's writes stay in order.
	var inflight chan error
	var inflightIDs map[string]bool
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight, inflightIDs = nil, nil
		return err
	}
	defer wait()
	flush := func() error {
		if len(group) == 0 && since == "" {
			return nil
		}
		ents, sinceNow := group, since
		group, since = nil, ""
		if overlaps(ents, inflightIDs) {
			if err := wait(); err != nil {
				return err
			}
		}
		st, err := s.prepare(ctx, ents, sinceNow, nil)
		if err != nil {
			return errors.Join(err, wait())
		}
		if err := wait(); err != nil {
			return err
		}
		if st == nil {
			return nil
		}
		if len(st.batches) > 1 {
			return s.finish(ctx, st)
		}
		done := make(chan error, 1)
		inflight, inflightIDs = done, identitiesOf(ents)
		go func() { done <- s.finish(ctx, st) }()
		return nil
	}
	for it := range items {
		if it.err != nil {
			if err := flush(); err != nil {
				return errors.Join(it.err, err)
			}
			return errors.Join(it.err, wait())
		}
		s.statsMu.Lock()
		s.stats.Read += int64(it.read)
		s.statsMu.Unlock()
		group = append(group, it.entities...)
		if it.since != "" {
			since = it.since
		}
		// Group what is already waiting; never wait for more.
		if len(group) >= shareGroup || len(items) == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if err := wait(); err != nil {
		return err
	}
	if s.plan != nil {
		return nil
	}
	// The final commit: populated flag (Finish) and the pipe state.
	return s.commit(ctx, nil, func(tx WriteTx) error { return s.sr.Finish(ctx, tx, time.Now().UnixMicro()) })
}

// staged is a planned group: its batches (see batches), the token its
// last commit stores, and whether its single batch was sent already.
type staged struct {
	batches [][]*ShareAction
	since   string
	sent    bool
	retried map[string]retryEntry
}

// group plans, journals, applies and records a group of entities, then
// commits the records with the pipe's token (since, when not ""). retried
// holds the retry queue entries of the entities, when they come from it.
func (s *shareRun) group(ctx context.Context, ents []Entity, since string, retried map[string]retryEntry) error {
	st, err := s.prepare(ctx, ents, since, retried)
	if err != nil || st == nil {
		return err
	}
	return s.finish(ctx, st)
}

// prepare plans a group and, when it is one batch, journals and sends it.
// In plan mode it reports the actions and returns nil.
func (s *shareRun) prepare(ctx context.Context, ents []Entity, since string, retried map[string]retryEntry) (*staged, error) {
	ents = lastPerID(ents)
	actions := make([]*ShareAction, len(ents))
	if err := s.parallel(ctx, len(ents), func(i int) error {
		if id := ID(ents[i]); s.isHeld(id) {
			actions[i] = &ShareAction{ID: id, Op: ShareSkipInDoubt, Entity: ents[i],
				Reason: "an earlier insert of this entity is in doubt (see the dead-letter dataset); nothing is sent until `ferry retry`"}
			return nil
		}
		a, err := s.sh.Plan(ctx, ents[i], s.records)
		if err == nil && a == nil {
			err = fmt.Errorf("entity %s: share transform planned nothing", QuoteID(ID(ents[i])))
		}
		actions[i] = a
		return err
	}); err != nil {
		return nil, err
	}
	if s.plan != nil {
		for _, a := range actions {
			s.stats.Share.count(a)
			s.plan(a)
		}
		return nil, nil
	}
	st := &staged{batches: s.batches(actions), since: since, retried: retried}
	if len(st.batches) == 1 {
		if err := s.send(ctx, st.batches[0], retried); err != nil {
			return nil, err
		}
		st.sent = true
	}
	return st, nil
}

// finish sends (unless sent) and records each batch of a group; the last
// commit moves the offset: after a crash the group is read again, and
// what was recorded is skipped.
func (s *shareRun) finish(ctx context.Context, st *staged) error {
	for i, batch := range st.batches {
		if !st.sent {
			if err := s.send(ctx, batch, st.retried); err != nil {
				return err
			}
		}
		if i == len(st.batches)-1 && st.since != "" {
			s.state.Since = st.since
		}
		if err := s.commit(ctx, batch, nil); err != nil {
			return err
		}
	}
	return nil
}

// send journals the side-effecting actions of a batch, then sends them.
func (s *shareRun) send(ctx context.Context, batch []*ShareAction, retried map[string]retryEntry) error {
	var pending []*ShareAction
	for _, a := range batch {
		if !a.Failed() && a.Op.SideEffect() {
			pending = append(pending, a)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	attempts, err := s.attempts(ctx, pending, retried)
	if err != nil {
		return err
	}
	if err := s.journal(ctx, pending, attempts); err != nil {
		return err
	}
	return s.parallel(ctx, len(pending), func(i int) error { return s.sh.Apply(ctx, pending[i]) })
}

// identitiesOf returns the _ids and $ids of entities.
func identitiesOf(ents []Entity) map[string]bool {
	out := make(map[string]bool, len(ents))
	for _, e := range ents {
		for _, id := range Identities(e) {
			out[id] = true
		}
	}
	return out
}

// overlaps reports whether an entity has an identity in set.
func overlaps(ents []Entity, set map[string]bool) bool {
	if len(set) == 0 {
		return false
	}
	for _, e := range ents {
		for _, id := range Identities(e) {
			if set[id] {
				return true
			}
		}
	}
	return false
}

// Identities lists the _ids an entity is known by: its $ids (NIs without
// their "~:" prefix) and its _id.
func Identities(e Entity) []string {
	var out []string
	add := func(v any) {
		if s, ok := v.(string); ok && s != "" {
			s = strings.TrimPrefix(s, "~:")
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	switch x := e["$ids"].(type) {
	case []any:
		for _, v := range x {
			add(v)
		}
	case string:
		add(x)
	}
	add(e["_id"])
	return out
}

// batches splits a group's actions into the batches that are journaled,
// sent and recorded together. Inserts into a system that cannot settle a
// lost insert (no idempotency keys, no lookup of inserted records) go at
// most workers at a time, each batch recorded before the next is
// journaled: a crash then leaves at most that many inserts in doubt.
// Everything else goes in the first batch.
func (s *shareRun) batches(actions []*ShareAction) [][]*ShareAction {
	if s.canResolveInsert() {
		return [][]*ShareAction{actions}
	}
	var first, inserts []*ShareAction
	for _, a := range actions {
		if a.Op == ShareInsert && !a.Failed() {
			inserts = append(inserts, a)
		} else {
			first = append(first, a)
		}
	}
	n := max(s.workers, 1)
	if len(inserts) <= n {
		return [][]*ShareAction{actions}
	}
	out := [][]*ShareAction{append(first, inserts[:n]...)}
	for i := n; i < len(inserts); i += n {
		out = append(out, inserts[i:min(i+n, len(inserts))])
	}
	return out
}

// attempts returns each pending action's attempt number: one more than the
// retry queue has for its _id.
func (s *shareRun) attempts(ctx context.Context, pending []*ShareAction, retried map[string]retryEntry) ([]int, error) {
	out := make([]int, len(pending))
	ns := ShareRetryNamespace(s.p.ID)
	for i, a := range pending {
		ent, ok := retried[a.ID]
		if !ok {
			v, found, err := s.e.Store.GetKV(ctx, ns, a.ID)
			if err != nil {
				return nil, err
			}
			if found {
				ent = decodeRetry(v)
			}
		}
		out[i] = ent.Attempts + 1
	}
	return out, nil
}

// journal commits the intents of the pending actions.
func (s *shareRun) journal(ctx context.Context, pending []*ShareAction, attempts []int) error {
	tx, err := s.e.Store.Begin(ctx)
	if err != nil {
		return err
	}
	ns := ShareIntentNamespace(s.p.ID)
	for i, a := range pending {
		a.Attempt = attempts[i]
		v, err := json.Marshal(a)
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("entity %s: journaling the %s: %w", QuoteID(a.ID), a.Op, err)
		}
		if err := tx.PutKV(ns, a.ID, v); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journaling %d writes: %w", len(pending), err)
	}
	return nil
}

// commit records settled actions in one transaction: share records, retry
// queue and dead letters, cleared intents and the pipe state; extra runs in
// the same transaction.
func (s *shareRun) commit(ctx context.Context, actions []*ShareAction, extra func(WriteTx) error) error {
	tx, err := s.e.Store.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ts := time.Now().UnixMicro()
	batch := make([]Prepared, 0, len(actions))
	var arena []byte
	for _, a := range actions {
		if err := s.settleOne(ctx, tx, a, ts); err != nil {
			return err
		}
		prev, err := latestEntity(tx, s.p.Output, a.ID)
		if err != nil {
			return err
		}
		var pr Prepared
		if pr, arena, err = PrepareAppend(arena, s.sh.Record(a, prev)); err != nil {
			return &EntityError{ID: a.ID, Err: fmt.Errorf("share record: %w", err)}
		}
		batch = append(batch, pr)
		s.stats.Share.count(a)
	}
	if len(batch) > 0 {
		if err := s.sr.Write(ctx, tx, batch, ts); err != nil {
			return err
		}
	}
	if extra != nil {
		if err := extra(tx); err != nil {
			return err
		}
	}
	if err := tx.SetPipeState(s.p.ID, s.state); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if s.e.Progress != nil {
		s.statsMu.Lock()
		st := *s.stats
		s.statsMu.Unlock()
		s.e.Progress(s.p.ID, st)
	}
	return nil
}

// settleOne updates the journal, the retry queue and the dead-letter
// dataset for one action, in tx.
func (s *shareRun) settleOne(ctx context.Context, tx WriteTx, a *ShareAction, ts int64) error {
	intents, retries := ShareIntentNamespace(s.p.ID), ShareRetryNamespace(s.p.ID)
	v, queued, err := tx.GetKV(retries, a.ID)
	if err != nil {
		return err
	}
	var ent retryEntry
	if queued {
		ent = decodeRetry(v)
	}
	if !a.Failed() {
		if queued {
			if err := tx.DeleteKV(retries, a.ID); err != nil {
				return err
			}
		}
		if a.Op.SideEffect() {
			return tx.DeleteKV(intents, a.ID)
		}
		return nil
	}
	if a.Failure == FailInDoubt && a.Op != ShareInsert || a.Failure == FailInDoubt && a.Op == ShareInsert && s.canResolveInsert() {
		// Keep the intent: the next run settles it by lookup before
		// anything else is sent for this entity.
		return nil
	}
	if a.Op.SideEffect() {
		if err := tx.DeleteKV(intents, a.ID); err != nil {
			return err
		}
	}
	now := time.UnixMicro(ts).UTC()
	if ent.First.IsZero() {
		ent.First = now
	}
	ent.Attempts = max(ent.Attempts, a.Attempt-1) + 1
	ent.Error, ent.Failure, ent.Last = a.Error, string(a.Failure), now
	if _, bySource := s.p.Source.(EntitySource); !bySource {
		ent.Entity = a.Entity
	}
	if a.Failure == FailInvalid || a.Failure == FailInDoubt || ent.Attempts > s.p.Share.MaxRetries {
		if queued {
			if err := tx.DeleteKV(retries, a.ID); err != nil {
				return err
			}
		}
		if a.Failure == FailInDoubt && a.Op == ShareInsert {
			if err := tx.PutKV(ShareHeldNamespace(s.p.ID), a.ID, []byte(a.Error)); err != nil {
				return err
			}
			s.mu.Lock()
			s.held[a.ID] = true
			s.mu.Unlock()
		}
		return s.deadLetter(tx, a, ent, ts)
	}
	b, err := json.Marshal(ent)
	if err != nil {
		return err
	}
	return tx.PutKV(retries, a.ID, b)
}

func (s *shareRun) isHeld(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[id]
}

// canResolveInsert reports whether the sharer can settle an in-doubt
// insert (idempotency keys or a lookup of inserted records).
func (s *shareRun) canResolveInsert() bool {
	r, ok := s.sh.(interface{ ResolvesInserts() bool })
	return ok && r.ResolvesInserts()
}

// deadLetter writes a failed entity to the dead-letter dataset.
func (s *shareRun) deadLetter(tx WriteTx, a *ShareAction, ent retryEntry, ts int64) error {
	dl := Entity{
		"_id":           a.ID,
		"$pipe":         s.p.ID,
		"$entity":       map[string]any(a.Entity),
		"$operation":    string(a.Op),
		"$error":        a.Error,
		"$failure":      string(a.Failure),
		"$attempts":     json.Number(fmt.Sprint(ent.Attempts)),
		"$first_failed": ent.First.Format(time.RFC3339Nano),
		"$last_failed":  ent.Last.Format(time.RFC3339Nano),
	}
	if a.Failed() && a.Op == ShareFailed {
		dl["$operation"] = nil
	}
	p, err := Prepare(dl)
	if err != nil {
		return &EntityError{ID: a.ID, Err: fmt.Errorf("dead letter: %w", err)}
	}
	if _, _, err := tx.Put(s.p.Share.DeadLetterDataset, &p, ts); err != nil {
		return err
	}
	s.stats.Share.DeadLettered++
	return nil
}

// latestEntity reads the latest version of id in dataset as tx sees it.
func latestEntity(tx WriteTx, dataset, id string) (Entity, error) {
	rec, ok, err := tx.Latest(dataset, id)
	if err != nil || !ok {
		return nil, err
	}
	return rec.Entity()
}

// settle resolves the intents that earlier runs left: crashes between a
// request and its bookkeeping, and in-doubt failures.
func (s *shareRun) settle(ctx context.Context) error {
	ns := ShareIntentNamespace(s.p.ID)
	keys, err := s.e.Store.ListKV(ctx, ns)
	if err != nil || len(keys) == 0 {
		return err
	}
	var actions []*ShareAction
	for _, k := range keys {
		v, ok, err := s.e.Store.GetKV(ctx, ns, k)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		var a ShareAction
		if err := unmarshalAction(v, &a); err != nil {
			return fmt.Errorf("share intent %q: %w", k, err)
		}
		actions = append(actions, &a)
	}
	if s.plan != nil {
		for _, a := range actions {
			a.Reason = "pending: a write journaled by an earlier run whose outcome was not recorded; the next run settles it by lookup"
			s.plan(a)
		}
		return nil
	}
	// Settle in chunks, each committed, so that repeated crashes still
	// make progress.
	chunk := max(4*s.workers, 32)
	for start := 0; start < len(actions); start += chunk {
		if err := s.settleChunk(ctx, actions[start:min(start+chunk, len(actions))]); err != nil {
			return err
		}
	}
	return nil
}

// settleChunk resolves journaled actions and commits what it found:
// applied or superseded writes are recorded, in-doubt inserts are
// dead-lettered and held, writes that did not happen go back to the retry
// queue (their intents removed).
func (s *shareRun) settleChunk(ctx context.Context, actions []*ShareAction) error {
	results := make([]Resolution, len(actions))
	if err := s.parallel(ctx, len(actions), func(i int) error {
		r, err := s.sh.Resolve(ctx, actions[i])
		if err != nil {
			return fmt.Errorf("settling the %s of entity %s journaled by an earlier run: %w", actions[i].Op, QuoteID(actions[i].ID), err)
		}
		results[i] = r
		return nil
	}); err != nil {
		return err
	}
	var settled, requeue []*ShareAction
	for i, a := range actions {
		switch results[i] {
		case Applied:
			a.Recovered = true
			a.Error, a.Failure = "", ""
			settled = append(settled, a)
		case Superseded:
			a.Recovered = true
			a.Error, a.Failure = "", ""
			a.Op = ShareSkipModified
			a.Reason = "the record changed in the system after the write was journaled; not written again"
			settled = append(settled, a)
		case InDoubt:
			a.Fail(FailInDoubt, fmt.Errorf("the %s may have been sent before the run ended and the system offers no way to find out (configure an idempotency key header or operation_lookup_insert); not sent again: check the system, then `ferry retry %s`", a.Op, s.p.ID))
			settled = append(settled, a)
		default:
			requeue = append(requeue, a)
		}
	}
	return s.commit(ctx, settled, func(tx WriteTx) error {
		intents, retries := ShareIntentNamespace(s.p.ID), ShareRetryNamespace(s.p.ID)
		for _, a := range requeue {
			if err := tx.DeleteKV(intents, a.ID); err != nil {
				return err
			}
			var ent retryEntry
			if v, ok, err := tx.GetKV(retries, a.ID); err != nil {
				return err
			} else if ok {
				ent = decodeRetry(v)
			}
			if _, bySource := s.p.Source.(EntitySource); !bySource {
				ent.Entity = a.Entity
			}
			// The attempt counts when its failure was recorded (an
			// in-doubt answer), not when a crash cut it short.
			done := a.Attempt - 1
			if prev, err := latestEntity(tx, s.p.Output, a.ID); err != nil {
				return err
			} else if prev["$success"] == false && fmt.Sprint(prev["$attempt"]) == fmt.Sprint(a.Attempt) {
				done = a.Attempt
			}
			ent.Attempts = max(ent.Attempts, done)
			b, err := json.Marshal(ent)
			if err != nil {
				return err
			}
			if err := tx.PutKV(retries, a.ID, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// retry plans and writes the entities in the retry queue again, with
// their latest desired state.
func (s *shareRun) retry(ctx context.Context) error {
	ns := ShareRetryNamespace(s.p.ID)
	keys, err := s.e.Store.ListKV(ctx, ns)
	if err != nil || len(keys) == 0 {
		return err
	}
	src, bySource := s.p.Source.(EntitySource)
	for start := 0; start < len(keys); start += shareGroup {
		var ents []Entity
		entries := map[string]retryEntry{}
		var gone []string
		for _, id := range keys[start:min(start+shareGroup, len(keys))] {
			v, ok, err := s.e.Store.GetKV(ctx, ns, id)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			ent := decodeRetry(v)
			entries[id] = ent
			var e Entity
			if bySource {
				var found bool
				if e, found, err = src.Entity(ctx, s.e.Store, id); err != nil {
					return fmt.Errorf("retrying %q: source: %w", id, err)
				}
				if !found {
					gone = append(gone, id)
					continue
				}
			} else if e = ent.Entity; e == nil {
				gone = append(gone, id)
				continue
			}
			out, err := s.e.transformOne(ctx, s.p, e)
			if err != nil {
				return fmt.Errorf("retrying %q: %w", id, err)
			}
			ents = append(ents, out...)
		}
		if s.plan == nil && len(gone) > 0 {
			if err := s.commit(ctx, nil, func(tx WriteTx) error {
				for _, id := range gone {
					if err := tx.DeleteKV(ns, id); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if err := s.group(ctx, ents, "", entries); err != nil {
			return err
		}
	}
	return nil
}

// transformOne runs the producer's transforms on one entity.
func (e *Engine) transformOne(ctx context.Context, p *Pipe, ent Entity) ([]Entity, error) {
	ents := []Entity{ent}
	var err error
	for i, t := range p.transforms() {
		if len(ents) == 0 {
			break
		}
		if ents, err = safeTransform(ctx, t, ents); err != nil {
			return nil, fmt.Errorf("transform %d: %w", i, err)
		}
	}
	return ents, nil
}

// checkDeletes counts the deletes the run would send (a pass over the
// source's deleted entities, without requests) and fails the run before
// anything is sent when they exceed the delete circuit breaker.
func (s *shareRun) checkDeletes(ctx context.Context, req ReadRequest) error {
	o := s.p.Share
	if o.DeleteLimitCount < 0 {
		return nil
	}
	var total uint64
	for _, in := range s.p.Inputs {
		info, _, err := s.e.Store.Dataset(ctx, in)
		if err != nil {
			return err
		}
		total += info.Entities
	}
	limit := max(o.DeleteLimitCount, int64(math.Floor(o.DeleteLimitFactor*float64(total))))
	reader, err := s.p.Source.Open(ctx, req)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer reader.Close()
	var n int64
	for {
		b, err := reader.Next(ctx)
		if errors.Is(err, EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		for _, ent := range b.Entities {
			if del, _ := ent["_deleted"].(bool); !del {
				continue
			}
			out, err := s.e.transformOne(ctx, s.p, ent)
			if err != nil {
				return err
			}
			for _, o := range out {
				if s.sh.WouldDelete(o) {
					n++
				}
			}
		}
	}
	if n > limit {
		return fmt.Errorf("%w: the run would delete %d records (limit max(delete_circuit_breaker_count %d, delete_circuit_breaker_factor %g × %d entities) = %d); nothing was sent. Check the deletes with `ferry share plan %s`, then run with --accept-deletes",
			ErrDeleteBreaker, n, o.DeleteLimitCount, o.DeleteLimitFactor, total, limit, s.p.ID)
	}
	return nil
}

// parallel runs fn for 0..n-1 on up to s.workers goroutines and returns
// the first error (in index order).
func (s *shareRun) parallel(ctx context.Context, n int, fn func(i int) error) error {
	if n == 0 {
		return nil
	}
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(s.workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = safeCall(func() error { return fn(i) })
			}
		}()
	}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// safeCall turns a panic into an error.
func safeCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("share transform panicked: %v", r)
		}
	}()
	return fn()
}

// lastPerID keeps the last entity of each _id, in the order of those last
// occurrences: only the newest desired state of an entity is written.
func lastPerID(ents []Entity) []Entity {
	last := make(map[string]int, len(ents))
	for i, e := range ents {
		last[ID(e)] = i
	}
	if len(last) == len(ents) {
		return ents
	}
	idx := make([]int, 0, len(last))
	for _, i := range last {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := make([]Entity, len(idx))
	for j, i := range idx {
		out[j] = ents[i]
	}
	return out
}

// decodeRetry decodes a retry queue entry; the entity keeps exact
// numbers. A corrupt entry decodes as an empty one (the entity is retried
// from its source).
func decodeRetry(b []byte) retryEntry {
	var ent retryEntry
	_ = json.Unmarshal(b, &ent)
	if v, err := DecodeValue(b); err == nil {
		if m, ok := v.(map[string]any); ok {
			ent.Entity, _ = m["entity"].(map[string]any)
		}
	}
	return ent
}

// unmarshalAction decodes a journaled action with exact numbers.
func unmarshalAction(b []byte, a *ShareAction) error {
	v, err := DecodeValue(b)
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("not an object")
	}
	// Round-trip through encoding/json for the struct fields, then put
	// back the values that must keep json.Number.
	if err := json.Unmarshal(b, a); err != nil {
		return err
	}
	if e, ok := m["entity"].(map[string]any); ok {
		a.Entity = e
	}
	a.Key, a.Payload, a.Expect, a.BasedOn, a.GeneratedID = m["key"], m["payload"], m["expect"], m["based_on"], m["generated_id"]
	return nil
}

// SharePlan is what PlanShare found: per-operation counts and the delete
// circuit breaker's verdict.
type SharePlan struct {
	Counts ShareCounts `json:"counts"`
	// Deletes the run would send, the breaker's limit, and whether the
	// run would stop before sending anything (BreakerError).
	BreakerError string `json:"breaker_error,omitempty"`
}

// PlanShare reports what the next run of share pipe pipeID would do with
// each entity, calling fn per entity, without changing anything: it sends
// only lookups (side-effect-free requests), journals nothing and commits
// nothing. Pending intents are reported as they are (settling them could
// mean sending). Pipes whose other transforms have side effects are
// refused.
func (e *Engine) PlanShare(ctx context.Context, pipeID string, opts RunOptions, fn func(*ShareAction)) (SharePlan, error) {
	p := e.Plan.Pipe(pipeID)
	if p == nil {
		return SharePlan{}, fmt.Errorf("unknown pipe %q", pipeID)
	}
	if p.Sharer == nil {
		return SharePlan{}, fmt.Errorf("pipe %q is not a share pipe (its last transform does not write to a system)", pipeID)
	}
	for i, t := range p.transforms() {
		if se, ok := t.(SideEffecter); ok && se.SideEffects() {
			return SharePlan{}, fmt.Errorf("pipe %q: transform %d has side effects; a plan would have to send its requests", pipeID, i)
		}
	}
	l := e.lock(pipeID)
	l.Lock()
	defer l.Unlock()
	ctx = WithStore(ctx, e.Store)
	state, err := e.Store.PipeState(ctx, p.ID)
	if err != nil {
		return SharePlan{}, err
	}
	req := e.readRequest(p, &state, opts, &RunRecord{})
	stats := &RunStats{}
	s, err := e.newShareRun(ctx, p, stats, state)
	if err != nil {
		return SharePlan{}, err
	}
	s.plan = fn
	var out SharePlan
	if err := s.settle(ctx); err != nil {
		return out, err
	}
	if err := s.retry(ctx); err != nil {
		return out, err
	}
	if err := s.checkDeletes(ctx, req); err != nil {
		if !errors.Is(err, ErrDeleteBreaker) {
			return out, err
		}
		out.BreakerError = err.Error()
	}
	if err := s.source(ctx, req); err != nil {
		return out, err
	}
	out.Counts = stats.Share
	return out, nil
}

// Requeue puts a share pipe's dead-lettered entities (all of them, or
// those in ids) back into its retry queue: the next run plans and writes
// them again with their latest desired state, attempts counted from zero.
// Their dead letters get deleted versions. An in-doubt insert requeued
// this way is sent again: requeue it only after checking the system.
func (e *Engine) Requeue(ctx context.Context, pipeID string, ids []string) (int, error) {
	p := e.Plan.Pipe(pipeID)
	if p == nil {
		return 0, fmt.Errorf("unknown pipe %q", pipeID)
	}
	if p.Sharer == nil {
		return 0, fmt.Errorf("pipe %q is not a share pipe", pipeID)
	}
	l := e.lock(pipeID)
	l.Lock()
	defer l.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	dl := p.Share.DeadLetterDataset
	var letters []Record
	_, err := e.Store.Scan(ctx, dl, ScanOptions{LatestOnly: true}, func(r Record) error {
		if !r.Deleted && (len(want) == 0 || want[r.ID]) {
			letters = append(letters, r)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(ids) > 0 && len(letters) != len(want) {
		found := map[string]bool{}
		for _, r := range letters {
			found[r.ID] = true
		}
		var missing []string
		for _, id := range ids {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		return 0, fmt.Errorf("pipe %q: no dead letter for %v in %q", pipeID, missing, dl)
	}
	if len(letters) == 0 {
		return 0, nil
	}
	tx, err := e.Store.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	ts := time.Now().UnixMicro()
	for _, r := range letters {
		ent, err := r.Entity()
		if err != nil {
			return 0, fmt.Errorf("dead letter %q: %w", r.ID, err)
		}
		entry := retryEntry{Requeued: true}
		if _, bySource := p.Source.(EntitySource); !bySource {
			entry.Entity, _ = ent["$entity"].(map[string]any)
		}
		b, err := json.Marshal(entry)
		if err != nil {
			return 0, err
		}
		if err := tx.PutKV(ShareRetryNamespace(p.ID), r.ID, b); err != nil {
			return 0, err
		}
		if err := tx.DeleteKV(ShareHeldNamespace(p.ID), r.ID); err != nil {
			return 0, err
		}
		for k := range ent {
			if len(k) > 0 && k[0] == '_' && k != "_id" {
				delete(ent, k)
			}
		}
		ent["_deleted"] = true
		ent["$requeued"] = true
		pr, err := Prepare(ent)
		if err != nil {
			return 0, err
		}
		if _, _, err := tx.Put(dl, &pr, ts); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return len(letters), nil
}
