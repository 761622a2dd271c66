package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Engine runs the pipes of a compiled plan against a store.
type Engine struct {
	Store  Store
	Plan   *Plan
	Logger *slog.Logger
	// Progress, if set, is called from the run's goroutine after each
	// committed group with the pipe id and the running counts.
	Progress func(pipe string, st RunStats)
	// GroupBytes and GroupDuration bound how much a transaction groups
	// besides CheckpointInterval batches (defaults 8 MiB of prepared bodies
	// and 2 s; batches of the usual few-hundred-byte entities stay far
	// below 8 MiB, large documents are grouped by it).
	GroupBytes    int
	GroupDuration time.Duration
	// Changed, if set, is called after every successful run or receive that
	// wrote to its output dataset (the scheduler uses it for signalling, so
	// runs started through the API or webhooks signal too).
	Changed func(p *Pipe, rec RunRecord)
	// Observer, if set, is told when runs and receives start and finish
	// (metrics). Its methods must return quickly.
	Observer RunObserver
	// Cluster, if set, shares the store with other workers: a run takes
	// the pipe's lease first (or uses the one the scheduler holds) and its
	// transactions are fenced by it. Nil for a single worker (bbolt).
	Cluster Cluster

	mu     sync.Mutex
	locks  map[string]*sync.Mutex
	leases map[string]Lease // held by the scheduler, per pipe
}

// New returns an engine for plan on store.
func New(store Store, plan *Plan, logger *slog.Logger) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{Store: store, Plan: plan, Logger: logger}
}

// RunOptions modify one run.
type RunOptions struct {
	// Reset clears the pipe's continuation token first: the run is a full
	// run from the beginning.
	Reset bool
	// Rescan makes this run a full run without clearing the token first.
	Rescan bool
	// AcceptDeletes applies the run's deletions even beyond the sink's
	// deletion guard and circuit breakers, and lets a share run delete more
	// records than its delete circuit breaker allows (ferry run
	// --accept-deletes).
	AcceptDeletes bool
}

// ErrCircuitBreaker is returned when a run would change more entities than
// its sink's circuit breaker allows; the dataset is left untouched.
var ErrCircuitBreaker = errors.New("circuit breaker tripped")

// ErrDeletesRefused is returned when a full run's deletion tracking would
// delete more than its sink's deletion guard allows; nothing was deleted.
var ErrDeletesRefused = errors.New("deletion guard")

// EntityError is a failure on one entity.
type EntityError struct {
	ID  string
	Err error
}

func (e *EntityError) Error() string { return fmt.Sprintf("entity %s: %v", QuoteID(e.ID), e.Err) }
func (e *EntityError) Unwrap() error { return e.Err }

func (e *Engine) lock(pipe string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.locks == nil {
		e.locks = map[string]*sync.Mutex{}
	}
	l := e.locks[pipe]
	if l == nil {
		l = &sync.Mutex{}
		e.locks[pipe] = l
	}
	return l
}

// item is what the producer hands the committer: one source batch after
// transforms.
type item struct {
	prepared []Prepared
	entities []Entity // for external sinks
	since    string
	commit   func(WriteTx) error // Batch.Commit
	read     int
	bytes    int
	err      error
	// part: a chunk of a source batch that more chunks follow. A group
	// ends on one only at the group byte limit, and a failing batch's
	// chunks in the group are not committed: a source batch (a REST
	// page) below that limit is written whole or not at all.
	part bool
}

// Run runs one pipe once and records the run. Runs of one pipe never
// overlap: a second call waits for the first.
func (e *Engine) Run(ctx context.Context, pipeID string, opts RunOptions) (RunRecord, error) {
	p := e.Plan.Pipe(pipeID)
	if p == nil {
		return RunRecord{}, fmt.Errorf("unknown pipe %q", pipeID)
	}
	l := e.lock(pipeID)
	l.Lock()
	defer l.Unlock()
	ctx, release, err := e.leaseFor(ctx, p.ID)
	if err != nil {
		// Not run (another worker holds the pipe, or no lease could be
		// taken): nothing is recorded.
		err = fmt.Errorf("pipe %q: %w", p.ID, err)
		return RunRecord{Pipe: p.ID, Error: err.Error()}, err
	}
	defer release()

	rec := RunRecord{Pipe: p.ID, Start: time.Now().UTC()}
	if e.Observer != nil {
		e.Observer.RunStarted(p)
	}
	stats := &RunStats{}
	err = e.run(WithStore(ctx, e.Store), p, opts, &rec, stats)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		err = cause
	}
	return e.finishRun(ctx, p, &rec, stats, err, "run")
}

// finishRun completes a run record from the stats and the error, stores it
// and logs it. The record goes in its own transaction: it must be kept even
// when the run's own writes were rolled back. On cancellation a fresh
// context is used so the record still lands. The error is redacted with
// the plan's Redactor before it is stored (RunRecord.Error and
// PipeState.LastError), logged or returned: an upstream API may echo a
// credential in an error body, and a secret in an operation URL ends up in
// the request errors.
func (e *Engine) finishRun(ctx context.Context, p *Pipe, rec *RunRecord, stats *RunStats, err error, what string) (RunRecord, error) {
	rec.End = time.Now().UTC()
	rec.Read, rec.Written, rec.Unchanged, rec.Deleted = stats.Read, stats.Written, stats.Unchanged, stats.Deleted
	rec.Share = stats.Share
	if stats.settled && stats.wouldWrite != stats.Written {
		rec.WouldWrite = stats.wouldWrite
	}
	if stats.settled && stats.wouldDelete+stats.Refused != stats.Deleted {
		rec.WouldDelete = stats.wouldDelete + stats.Refused
	}
	if err != nil {
		rec.Error = e.Plan.Redactor.Redact(err.Error())
		err = e.Plan.Redactor.Error(fmt.Errorf("pipe %q: %w", p.ID, err))
	}
	logCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		logCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	// A full run refused by a safety limit is retried as a full run: its
	// deletions are only tracked by one, and the --reset that started it
	// was never committed.
	refused := rec.SyncType == "full" && (errors.Is(err, ErrCircuitBreaker) || errors.Is(err, ErrDeletesRefused))
	if lerr := e.recordRun(logCtx, p.ID, *rec, refused); lerr != nil && err == nil {
		err = fmt.Errorf("pipe %q: recording %s: %w", p.ID, what, lerr)
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelError
	} else if e.Changed != nil && p.Output != "" && rec.Written+rec.Deleted > 0 {
		e.Changed(p, *rec)
	}
	e.Logger.Log(ctx, level, what+" finished", "pipe", p.ID, "sync", rec.SyncType, "read", rec.Read,
		"written", rec.Written, "unchanged", rec.Unchanged, "deleted", rec.Deleted,
		"duration", rec.End.Sub(rec.Start).Round(time.Millisecond), "error", rec.Error)
	if e.Observer != nil {
		e.Observer.RunFinished(p, *rec)
	}
	return *rec, err
}

func (e *Engine) recordRun(ctx context.Context, pipe string, rec RunRecord, rescan bool) error {
	tx, err := e.Store.Begin(ctx)
	if err != nil {
		return err
	}
	st, err := tx.PipeState(pipe)
	if err != nil {
		tx.Rollback()
		return err
	}
	st.LastRun = rec.End
	st.LastError = rec.Error
	if rescan {
		st.RescanRequested = true
	}
	if err := tx.SetPipeState(pipe, st); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.AddRun(rec); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// ResetPipe clears a pipe's continuation token so its next run is a full
// run. Datasets are kept.
func (e *Engine) ResetPipe(ctx context.Context, pipe string) error {
	return e.updateState(ctx, pipe, func(st *PipeState) { st.Since = "" })
}

// RequestRescan makes the pipe's next run a full run without clearing its
// token first. If that run stops before it completes, the following one
// is full again when its sink tracks deletions in a dataset that holds
// entities (DeletionTrackingSinkRun), else it continues incrementally
// from where the pipe was.
func (e *Engine) RequestRescan(ctx context.Context, pipe string) error {
	return e.updateState(ctx, pipe, func(st *PipeState) { st.RescanRequested = true })
}

func (e *Engine) updateState(ctx context.Context, pipe string, change func(*PipeState)) error {
	tx, err := e.Store.Begin(ctx)
	if err != nil {
		return err
	}
	st, err := tx.PipeState(pipe)
	if err != nil {
		tx.Rollback()
		return err
	}
	change(&st)
	if err := tx.SetPipeState(pipe, st); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (e *Engine) inputsPopulated(ctx context.Context, p *Pipe) (bool, error) {
	for _, in := range p.Inputs {
		info, ok, err := e.Store.Dataset(ctx, in)
		if err != nil {
			return false, err
		}
		if !ok || !info.Populated {
			return false, nil
		}
	}
	return true, nil
}

func (e *Engine) run(ctx context.Context, p *Pipe, opts RunOptions, rec *RunRecord, stats *RunStats) error {
	if _, push := p.Source.(PushSource); push {
		// Entities arrive through Receive; a pull run has nothing to read
		// and must not deletion-track what was received.
		rec.SyncType = "incremental"
		return nil
	}
	if p.Sharer != nil {
		return e.runShare(ctx, p, opts, rec, stats)
	}
	state, err := e.Store.PipeState(ctx, p.ID)
	if err != nil {
		return err
	}
	stored := state // what a commit must change, if the run changes nothing else
	req := e.readRequest(p, &state, opts, rec)
	full := req.Full
	populated, err := e.inputsPopulated(ctx, p)
	if err != nil {
		return err
	}
	reader, err := p.Source.Open(ctx, req)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer reader.Close()
	if pr, ok := reader.(PartialReader); ok && full && pr.Partial() {
		// A since-limited first run (see PartialReader): not a full read,
		// so no deletion tracking.
		full = false
		rec.SyncType = "incremental"
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	txSink, isTx := p.Sink.(TxSink)
	// Buffer about a group so the producer keeps working while the
	// committer waits for fsync.
	items := make(chan item, max(4, p.CheckpointInterval))
	gate := newByteGate(queueBytes)
	var sr SinkRun
	if isTx {
		rc := &RunContext{Pipe: p.ID, Full: full, Store: e.Store, InputsPopulated: populated, Stats: stats, AcceptDeletes: opts.AcceptDeletes}
		if sr, err = txSink.StartRun(ctx, rc); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
	}
	// mode.lazy is switched on by the committer while most entities
	// arrive unchanged (see LazySinkRun); the producer then skips
	// canonicalizing.
	mode := new(textMode)
	view, _ := sr.(ViewingSinkRun)
	if view != nil && !view.AcceptsLazy() {
		view = nil
	}
	if ls, ok := sr.(LazySinkRun); ok && ls.AcceptsLazy() {
		if st, ok := sr.(LazyStarter); ok && st.StartLazy() {
			mode.lazy.Store(true)
			mode.deep.Store(true)
		}
	}
	go e.produce(runCtx, p, reader, isTx, mode, view, items, gate)
	// Drain the producer on every exit path so it never blocks.
	defer func() {
		cancel()
		for range items {
		}
	}()

	// if_source_empty "fail" guards deletion tracking, so it only applies
	// to full runs: an incremental run with nothing new is normal.
	failIfEmpty := false
	if src, ok := p.Comp.Raw["source"].(map[string]any); ok && src["if_source_empty"] == "fail" {
		failIfEmpty = full
	}
	// A full run of a source with tokens whose sink tracks deletions in a
	// dataset that holds entities is done again in full if it stops
	// before it completes: the rescan request is stored before it starts
	// and kept by its commits until the final one, so the next run is not
	// incremental from their token, which would skip deletion tracking.
	// A first load (an empty dataset) that stops goes on from its token:
	// it has nothing to delete.
	redo := false
	if dt, ok := sr.(DeletionTrackingSinkRun); ok && full && p.Source.SupportsSince() && dt.TracksDeletions() {
		redo = true
		if !stored.RescanRequested {
			if err := e.updateState(ctx, p.ID, func(st *PipeState) { st.RescanRequested = true }); err != nil {
				return err
			}
			stored.RescanRequested = true
		}
	}
	state.RescanRequested = false
	if isTx {
		return e.commitTx(ctx, p, sr, items, gate, mode, stored, state, stats, full, failIfEmpty, redo)
	}
	ext, ok := p.Sink.(ExternalSink)
	if !ok {
		return fmt.Errorf("sink of type %T can neither write externally nor transactionally", p.Sink)
	}
	return e.commitExternal(ctx, p, ext, items, gate, state, stats, failIfEmpty)
}

// produce reads, transforms and prepares batches on its own goroutine so
// that decoding and hashing overlap the store's commits.
//
// gate, if not nil, bounds the bytes queued in out (byteGate); the
// consumer releases each item's bytes as it takes it.
func (e *Engine) produce(ctx context.Context, p *Pipe, r Reader, prepare bool, mode *textMode, view ViewingSinkRun, out chan<- item, gate *byteGate) {
	defer close(out)
	send := func(it item) bool {
		if !gate.acquire(ctx, it.bytes) {
			return false
		}
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// A pipe whose only transform maps text (RecordTransform) takes the
	// raw path too, without lazy values or views: its output is not the
	// source's text.
	textPrep := recordPreparer(p) != nil && len(p.transforms()) == 1
	if rr, ok := r.(RawReader); ok && prepare && (len(p.transforms()) == 0 || textPrep) && rr.RawOK() {
		rr = &rawChunks{RawReader: rr, size: max(p.BatchSize, 1)}
		if textPrep {
			mode, view = new(textMode), nil
		}
		if workers := runtime.GOMAXPROCS(0); workers > 1 {
			e.produceRawParallel(ctx, p, rr, textPrep, mode, view, workers, send)
			return
		}
		e.produceRaw(ctx, p, rr, textPrep, &mode.lazy, send)
		return
	}
	// Without transforms, workers only pay off where they prepare
	// (canonical form and hash) for a transactional sink.
	if workers := parallelTransforms(p); workers > 1 && (prepare || len(p.transforms()) > 0) {
		e.produceParallel(ctx, p, r, prepare, workers, send)
		return
	}
	// A transform that maps stored records as text gets them undecoded.
	var prep RecordPreparer
	if dd, ok := r.(DecodeDeferrer); ok && prepare {
		if prep = recordPreparer(p); prep != nil {
			dd.DeferDecode()
		}
	}
	for {
		b, err := r.Next(ctx)
		if errors.Is(err, EOF) {
			return
		}
		if err != nil {
			send(item{err: fmt.Errorf("source: %w", err)})
			return
		}
		for _, it := range e.batchItems(ctx, p, b, prepare, nil, prep) {
			if !send(it) || it.err != nil {
				return
			}
		}
	}
}

// batchItems runs p's transforms over a batch and cuts the result into
// the items the committer takes. On an error the last item carries it.
// prep, when not nil, is the record preparer of p's only transform
// (RecordTransform) for this goroutine.
func (e *Engine) batchItems(ctx context.Context, p *Pipe, b Batch, prepare bool, dec *Decoder, prep RecordPreparer) []item {
	if dec == nil && b.Decode != nil {
		dec = NewDecoder()
	}
	if prep != nil && prepare && b.Records != nil {
		return e.recordItems(ctx, p, b, dec, prep)
	}
	ents := b.Entities
	var err error
	if b.Decode != nil {
		if ents, err = b.Decode(dec); err != nil {
			return []item{{err: fmt.Errorf("source: %w", err)}}
		}
	}
	read := len(ents)
	for i, t := range p.transforms() {
		if len(ents) == 0 {
			break
		}
		ents, err = safeTransform(ctx, t, ents)
		if err != nil {
			return []item{{err: fmt.Errorf("transform %d: %w", i, err)}}
		}
	}
	// A batch larger than the pipe's batch size (a REST page of
	// 1,000) goes on in chunks of that size: the channel and the
	// commit groups count batches, so chunks keep a transaction near
	// checkpoint_interval x batch_size entities and what is buffered
	// to about one group. A group ends only after a batch's last chunk
	// (item.part) unless it reached the group byte limit, so a source
	// batch below that limit is committed whole or, when it fails, not
	// at all; only the last chunk carries the batch's token. A batch
	// with a Commit hook is not cut at all.
	size := max(p.BatchSize, 1)
	if b.Commit != nil {
		size = max(len(ents), 1)
	}
	var out []item
	for start := 0; ; start += size {
		end := min(start+size, len(ents))
		chunk := ents[start:end]
		last := end == len(ents)
		it := item{part: !last}
		if last {
			it.since, it.commit, it.read = b.Since, b.Commit, read
		}
		if bad, ok := e.prepareItem(&it, chunk, prepare); !ok {
			return append(out, bad)
		}
		out = append(out, it)
		if last {
			return out
		}
	}
}

// recordItems is batchItems for a batch of stored records and a pipe
// whose only transform maps them as text (RecordTransform): each record
// goes through prep, and one prep declines is decoded and transformed as
// batchItems would, in its place, so the output keeps the records' order.
func (e *Engine) recordItems(ctx context.Context, p *Pipe, b Batch, dec *Decoder, prep RecordPreparer) []item {
	size := max(p.BatchSize, 1)
	var out []item
	it := item{prepared: make([]Prepared, 0, min(len(b.Records), size))}
	arena := make([]byte, 0, 400*cap(it.prepared)+64)
	add := func(pr Prepared) {
		if len(it.prepared) == size {
			it.part = true
			out = append(out, it)
			it = item{prepared: make([]Prepared, 0, size)}
			arena = make([]byte, 0, 400*size+64)
		}
		it.bytes += len(pr.Body)
		it.prepared = append(it.prepared, pr)
	}
	for i := range b.Records {
		rec := &b.Records[i]
		pr, grown, ok := prep.PrepareRecord(rec, arena)
		arena = grown
		if ok {
			add(pr)
			continue
		}
		ent, err := rec.EntityWith(dec)
		if err != nil {
			return append(out, item{err: fmt.Errorf("source: record at offset %d: %w", rec.Offset, err)})
		}
		prs, bad := e.transformDeclined(ctx, p, ent)
		if bad != nil {
			return append(out, *bad)
		}
		for _, pr := range prs {
			add(pr)
		}
	}
	it.since, it.commit, it.read = b.Since, b.Commit, len(b.Records)
	return append(out, it)
}

// transformDeclined runs p's only transform on one entity a RecordPreparer
// declined and prepares what it made; on an error it returns the item
// that carries it.
func (e *Engine) transformDeclined(ctx context.Context, p *Pipe, ent Entity) ([]Prepared, *item) {
	ents, err := safeTransform(ctx, p.transforms()[0], []Entity{ent})
	if err != nil {
		return nil, &item{err: fmt.Errorf("transform 0: %w", err)}
	}
	var one item
	if bad, ok := e.prepareItem(&one, ents, true); !ok {
		return nil, &bad
	}
	return one.prepared, nil
}

// recordPreparer returns the record preparer of p's only transform, for
// one goroutine, or nil.
func recordPreparer(p *Pipe) RecordPreparer {
	ts := p.transforms()
	if len(ts) != 1 {
		return nil
	}
	if rt, ok := ts[0].(RecordTransform); ok {
		return rt.RecordPreparer()
	}
	return nil
}

// ParallelTransform is implemented by transforms that may run on several
// batches at once (no state between calls, safe for concurrent use).
type ParallelTransform interface {
	ParallelSafe() bool
}

// parallelTransforms returns how many batches a pipe's transforms may work
// on at once: one per CPU when every transform is ParallelSafe (or there
// are none: then the workers decode and prepare, e.g. a REST collect's
// pages), else 1.
func parallelTransforms(p *Pipe) int {
	ts := p.transforms()
	for _, t := range ts {
		if pt, ok := t.(ParallelTransform); !ok || !pt.ParallelSafe() {
			return 1
		}
	}
	return runtime.GOMAXPROCS(0)
}

// produceParallel is produce with the transforms and preparing of up to
// workers batches at once: one goroutine reads batches in order, workers
// transform them, and the items go out in the order the batches were read
// (tokens and Commit hooks keep their order). Worth it when transforms,
// not the store, bound a pipe (a jq pipe between datasets).
func (e *Engine) produceParallel(ctx context.Context, p *Pipe, r Reader, prepare bool, workers int, send func(item) bool) {
	if dd, ok := r.(DecodeDeferrer); ok {
		dd.DeferDecode()
	}
	ordered(ctx, workers, 1, nil, r.Next, func() func(context.Context, Batch) []item {
		dec, prep := NewDecoder(), recordPreparer(p)
		return func(ctx context.Context, b Batch) []item { return e.batchItems(ctx, p, b, prepare, dec, prep) }
	}, send)
}

// ordered reads jobs with next on one goroutine, works on up to workers
// of them at once (each worker runs a function newWorker made for it) and
// sends the items in the order next returned the jobs. Up to 2 x depth
// jobs per worker are read ahead of the sender while deep is set (always,
// if deep is nil), 2 per worker otherwise. An error from next other than
// EOF goes out as an item after the items before it.
func ordered[J any](ctx context.Context, workers, depth int, deep *atomic.Bool, next func(context.Context) (J, error), newWorker func() func(context.Context, J) []item, send func(item) bool) {
	type slot struct {
		job J
		out chan []item
	}
	ctx, cancel := context.WithCancel(ctx)
	ahead, shallow := 2*depth*workers, 2*workers
	work := make(chan *slot, depth*workers)
	order := make(chan *slot, ahead)
	// tokens bounds the jobs read ahead: the reader takes one per job and
	// the sender gives it back. When not deep, the reader holds all but
	// shallow of them itself.
	tokens := make(chan struct{}, ahead)
	for range ahead {
		tokens <- struct{}{}
	}
	held := 0
	take := func() bool {
		select {
		case <-tokens:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		do := newWorker()
		go func() {
			defer wg.Done()
			for sl := range work {
				sl.out <- do(ctx, sl.job)
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(work)
		for {
			want := 0
			if deep != nil && !deep.Load() {
				want = ahead - shallow
			}
			for ; held < want; held++ {
				if !take() {
					return
				}
			}
			for ; held > want; held-- {
				tokens <- struct{}{}
			}
			if !take() {
				return
			}
			job, err := next(ctx)
			sl := &slot{job: job, out: make(chan []item, 1)}
			switch {
			case errors.Is(err, EOF):
				return
			case err != nil:
				sl.out <- []item{{err: fmt.Errorf("source: %w", err)}}
			}
			select {
			case order <- sl:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			select {
			case work <- sl:
			case <-ctx.Done():
				return
			}
		}
	}()
	// On an early return, cancelling stops the reader, which closes work;
	// the workers then finish. Once they have, the reader is done with its
	// source (it closes work as it leaves), so the caller may close it.
	defer func() {
		cancel()
		wg.Wait()
	}()
	for sl := range order {
		var items []item
		select {
		case items = <-sl.out:
		case <-ctx.Done():
			return
		}
		tokens <- struct{}{}
		for _, it := range items {
			if !send(it) || it.err != nil {
				return
			}
		}
	}
}

// prepareItem fills it with ents, prepared for a transactional sink or as
// they are for an external one. On an invalid entity it returns an item
// with the error and false.
func (e *Engine) prepareItem(it *item, ents []Entity, prepare bool) (item, bool) {
	if prepare {
		it.prepared = make([]Prepared, 0, len(ents))
		arena := make([]byte, 0, 400*len(ents)+64)
		for _, ent := range ents {
			var (
				pr  Prepared
				err error
			)
			pr, arena, err = PrepareAppend(arena, ent)
			if err != nil {
				id, _ := ent["_id"].(string)
				if id == "" {
					return item{err: fmt.Errorf("invalid entity (%v): %s", err, preview(ent))}, false
				}
				return item{err: &EntityError{ID: id, Err: err}}, false
			}
			it.bytes += len(pr.Body)
			it.prepared = append(it.prepared, pr)
		}
	} else {
		for _, ent := range ents {
			if _, err := AsEntity(ent); err != nil {
				return item{err: fmt.Errorf("invalid entity (%v): %s", err, preview(ent))}, false
			}
		}
		it.entities = ents
	}
	return item{}, true
}

// rawChunks cuts the raw batches of a reader that are larger than size
// (a REST page of 1,000) into chunks of size, as batchItems does: the
// channel and the commit groups count batches, so chunks keep a
// transaction near checkpoint_interval x batch_size entities. Chunks but
// the last are marked part (see item.part), and only the last carries the
// batch's token: a crash in between re-reads the batch.
type rawChunks struct {
	RawReader
	size int
	rest RawBatch // what is left of the current batch
	off  int      // where rest starts in it
}

// NextRaw returns the next chunk.
func (c *rawChunks) NextRaw(ctx context.Context) (RawBatch, error) {
	if len(c.rest.Values) == 0 {
		b, err := c.RawReader.NextRaw(ctx)
		if err != nil || len(b.Values) <= c.size {
			return b, err
		}
		c.rest, c.off = b, 0
	}
	b, off := c.rest, c.off
	chunk := b
	if len(b.Values) > c.size {
		chunk.Values, chunk.Since, chunk.part = b.Values[:c.size:c.size], "", true
		c.rest.Values, c.off = b.Values[c.size:], off+c.size
	} else {
		c.rest = RawBatch{}
	}
	if loc := b.Locate; loc != nil {
		chunk.Locate = func(i int) string { return loc(off + i) }
	} else {
		chunk.Locate = func(i int) string { return fmt.Sprintf("entity %d", off+i+1) }
	}
	return chunk, nil
}

// produceRaw is produce for a pipe without transforms whose reader hands
// over JSON text: entities go from text to their stored form directly.
// While lazy is set, text whose _id is easy to find is handed over lazily
// (Prepared.Lazy) for the sink to check against the stored text hash.
func (e *Engine) produceRaw(ctx context.Context, p *Pipe, r RawReader, textPrep bool, lazy *atomic.Bool, send func(item) bool) {
	w := e.rawWorker(p, textPrep)
	for {
		b, err := r.NextRaw(ctx)
		if errors.Is(err, EOF) {
			return
		}
		if err != nil {
			send(item{err: fmt.Errorf("source: %w", err)})
			return
		}
		it := w.item(ctx, b, lazy.Load())
		if !send(it) || it.err != nil {
			return
		}
	}
}

// textMode is what the committer tells the producer of text as a run
// goes.
type textMode struct {
	// lazy: most of the last group arrived unchanged; hand text over
	// lazily (LazySinkRun).
	lazy atomic.Bool
	// deep: all of the last group arrived unchanged (or the run started
	// lazy, LazyStarter); queue rawQueueDepth batches per worker.
	deep atomic.Bool
}

// rawQueueDepth is how many batches of text per worker wait for one
// (ordered) while a run finds everything unchanged. Such a batch is
// ~100-150 µs of work, about what parking and waking a goroutine costs:
// with one batch per worker the reader, the workers and the committer took
// turns waiting for each other and a 1M unchanged run kept ~1.6 of the 2
// cores busy (an execution trace, ferry bench --trace). With 8 it keeps
// ~1.8 busy and runs 10-13% faster. Where groups write, the queue stays at
// one batch per worker: a load is bound by its committer, where a deeper
// queue only held more memory (+3 MiB anonymous at 1M, no faster), and a
// run that writes has no use for read views taken further ahead of its
// commits. Decoded batches keep a depth of 1: their entities are maps,
// larger and slower to collect.
const rawQueueDepth = 8

// produceRawParallel is produceRaw with the text of up to workers batches
// hashed and prepared at once. Lazy batches are checked against a read
// view of the store on the workers too (ViewingSinkRun), and the text
// found changed is prepared there, so the committer only confirms.
func (e *Engine) produceRawParallel(ctx context.Context, p *Pipe, r RawReader, textPrep bool, mode *textMode, view ViewingSinkRun, workers int, send func(item) bool) {
	type job struct {
		b    RawBatch
		lazy bool
	}
	next := func(ctx context.Context) (job, error) {
		b, err := r.NextRaw(ctx)
		return job{b: b, lazy: mode.lazy.Load()}, err
	}
	ordered(ctx, workers, rawQueueDepth, &mode.deep, next, func() func(context.Context, job) []item {
		w := e.rawWorker(p, textPrep)
		return func(ctx context.Context, j job) []item {
			it := w.item(ctx, j.b, j.lazy)
			if it.err == nil && j.lazy && view != nil {
				viewLazy(ctx, view, it.prepared)
			}
			return []item{it}
		}
	}, send)
}

// viewLazy checks a batch's lazy entities against the store's read view
// and resolves those it did not find unchanged. A failed view or an entity
// that does not resolve is left lazy: the committer checks it the usual
// way and reports what is wrong.
func viewLazy(ctx context.Context, view ViewingSinkRun, batch []Prepared) {
	looked, err := view.View(ctx, batch)
	if err != nil || !looked {
		for i := range batch {
			batch[i].SameIn = ViewMark{}
		}
		return
	}
	for i := range batch {
		p := &batch[i]
		if p.Lazy && p.SameIn == (ViewMark{}) {
			q := *p
			if q.Resolve() == nil {
				*p = q
			}
		}
	}
}

// rawWorker is one goroutine's state on the raw path.
type rawWorker struct {
	e       *Engine
	p       *Pipe
	scratch PrepareScratch
	// prep is the record preparer of the pipe's only transform, when it
	// maps text; dec decodes what prep declines.
	prep RecordPreparer
	dec  *Decoder
	text []byte // an entity's canonical text, reused
}

func (e *Engine) rawWorker(p *Pipe, textPrep bool) *rawWorker {
	w := &rawWorker{e: e, p: p}
	if textPrep {
		w.prep, w.dec = recordPreparer(p), NewDecoder()
	}
	return w
}

// item prepares a raw batch: through the pipe's transform when it maps
// text, else as it is (rawItem).
func (w *rawWorker) item(ctx context.Context, b RawBatch, isLazy bool) item {
	if w.prep == nil {
		return rawItem(b, isLazy, &w.scratch)
	}
	it := item{since: b.Since, read: len(b.Values), prepared: make([]Prepared, 0, len(b.Values)), part: b.part}
	arena := make([]byte, 0, 400*len(b.Values)+64)
	for i, raw := range b.Values {
		var err error
		w.text, err = w.scratch.CanonicalObject(w.text[:0], raw)
		if err == nil {
			// The source's decoded path takes only entities with a
			// non-empty string _id (DecodeEntity); so does this one.
			if _, ok := scanRawID(w.text); !ok {
				_, err = w.dec.DecodeEntity(w.text)
			}
		}
		if err != nil {
			where := fmt.Sprintf("entity %d", i+1)
			if b.Locate != nil {
				where = b.Locate(i)
			}
			return item{err: fmt.Errorf("source: %s: %w", where, err)}
		}
		pr, grown, ok := w.prep.PrepareText(w.text, arena)
		arena = grown
		if ok {
			it.bytes += len(pr.Body)
			it.prepared = append(it.prepared, pr)
			continue
		}
		// Declined: the transform on the decoded entity, in its place.
		ent, err := w.dec.DecodeEntity(w.text)
		if err != nil {
			return item{err: fmt.Errorf("source: entity %d: %w", i+1, err)}
		}
		prs, bad := w.e.transformDeclined(ctx, w.p, ent)
		if bad != nil {
			return *bad
		}
		for _, q := range prs {
			it.bytes += len(q.Body)
			it.prepared = append(it.prepared, q)
		}
	}
	return it
}

// rawItem prepares a batch of JSON text (lazily where isLazy and the _id
// is easy to find). On invalid text the item carries the error.
func rawItem(b RawBatch, isLazy bool, scratch *PrepareScratch) item {
	it := item{since: b.Since, read: len(b.Values), prepared: make([]Prepared, 0, len(b.Values)), part: b.part}
	var arena []byte
	for i, raw := range b.Values {
		rh := RawTextHash(raw)
		if isLazy {
			if id, ok := ScanRawID(raw); ok {
				it.bytes += len(raw)
				it.prepared = append(it.prepared, Prepared{ID: id, Lazy: true, Raw: raw, RawHash: rh})
				continue
			}
		}
		if arena == nil {
			// The bodies are about as long as their text. Sized lower,
			// the arena grows by reallocating, and every body carved
			// before keeps its old array alive: batches of 10 KB
			// documents held about three times their bodies.
			n := 64
			for _, r := range b.Values[i:] {
				n += len(r) + len(r)/16
			}
			arena = make([]byte, 0, n)
		}
		var (
			pr  Prepared
			err error
		)
		pr, arena, err = scratch.PrepareRaw(arena, raw)
		pr.RawHash = rh
		if err != nil {
			where := fmt.Sprintf("entity %d", i+1)
			if b.Locate != nil {
				where = b.Locate(i)
			}
			return item{err: fmt.Errorf("source: %s: %w", where, err)}
		}
		it.bytes += len(pr.Body)
		it.prepared = append(it.prepared, pr)
	}
	return it
}

// preview renders the start of a value for error messages.
func preview(v any) string {
	b, err := AppendCanonical(nil, v)
	if err != nil {
		return fmt.Sprintf("%T", v)
	}
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}

// safeTransform turns an interpreter panic into an error.
func safeTransform(ctx context.Context, t Transform, in []Entity) (out []Entity, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("transform panicked: %v", r)
		}
	}()
	return t.Transform(ctx, in)
}

func (e *Engine) groupLimits() (int, time.Duration) {
	gb, gd := e.GroupBytes, e.GroupDuration
	if gb <= 0 {
		gb = 8 << 20
	}
	if gd <= 0 {
		gd = 2 * time.Second
	}
	return gb, gd
}

// commitTx writes batches into the store in grouped transactions, each
// carrying the pipe's new token.
//
// With redo, every commit but the final one stores the state with
// RescanRequested set, so that a run stopped before it completes is done
// again in full.
func (e *Engine) commitTx(ctx context.Context, p *Pipe, sr SinkRun, items <-chan item, gate *byteGate, mode *textMode, stored, state PipeState, stats *RunStats, full, failIfEmpty, redo bool) (err error) {
	maxBytes, maxDur := e.groupLimits()
	// done holds the counts of what is committed; when the run fails, what
	// the rolled-back transaction wrote is moved to the "would" counts.
	done := *stats
	defer func() {
		stats.settled = true
		stats.wouldWrite, stats.wouldDelete = stats.Written, stats.Deleted
		if err != nil {
			stats.Written, stats.Unchanged, stats.Deleted = done.Written, done.Unchanged, done.Deleted
		}
	}()
	single := sr.SingleTransaction()
	acceptsLazy := false
	if ls, ok := sr.(LazySinkRun); ok {
		acceptsLazy = ls.AcceptsLazy()
	}
	var tx WriteTx
	defer func() {
		if tx != nil {
			tx.Rollback()
		}
	}()
	begin := func() error {
		if tx != nil {
			return nil
		}
		var err error
		tx, err = e.Store.Begin(ctx)
		return err
	}
	committed := stored
	final := false
	commit := func() error {
		state := state
		if redo && !final {
			state.RescanRequested = true
		}
		if !tx.Changed() && state == committed {
			// Nothing to make durable: skip the commit and its fsyncs.
			err := tx.Rollback()
			tx = nil
			if err == nil {
				done = *stats
			}
			return err
		}
		if err := tx.SetPipeState(p.ID, state); err != nil {
			return err
		}
		committed = state
		err := tx.Commit()
		tx = nil
		if err == nil {
			done = *stats
			if e.Progress != nil {
				e.Progress(p.ID, *stats)
			}
		}
		return err
	}
	var group []item
	groupBytes := 0
	groupStart := time.Now()
	// writeGroup writes the collected batches into tx (opened if needed)
	// and advances the token past them.
	writeGroup := func(ts int64) error {
		if err := begin(); err != nil {
			return err
		}
		unchanged, n := stats.Unchanged, 0
		for _, it := range group {
			if err := sr.Write(ctx, tx, it.prepared, ts); err != nil {
				return err
			}
			if it.commit != nil {
				if err := it.commit(tx); err != nil {
					return err
				}
			}
			n += len(it.prepared)
			if it.since != "" {
				state.Since = it.since
			}
		}
		if acceptsLazy && n > 0 {
			// Lazy while at least half of a group is unchanged: then
			// skipping the canonical form for most entities outweighs
			// computing it on this goroutine for the changed ones.
			mode.lazy.Store(2*(stats.Unchanged-unchanged) >= int64(n))
			mode.deep.Store(stats.Unchanged-unchanged == int64(n))
		}
		group, groupBytes = group[:0], 0
		return nil
	}
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		if err := writeGroup(time.Now().UnixMicro()); err != nil {
			return err
		}
		groupStart = time.Now()
		if single {
			return nil
		}
		return commit()
	}
	for it := range items {
		gate.release(it.bytes)
		if it.err != nil {
			if single {
				return it.err
			}
			// Keep what was completed before the failing batch, but
			// nothing of the failing batch itself (its earlier chunks).
			for len(group) > 0 && group[len(group)-1].part {
				group = group[:len(group)-1]
			}
			if err := flush(); err != nil {
				return errors.Join(it.err, err)
			}
			return it.err
		}
		stats.Read += int64(it.read)
		group = append(group, it)
		groupBytes += it.bytes
		// A group ends at checkpoint_interval batches or maxDur, but not
		// inside a source batch; at maxBytes it ends anyway, so that a
		// huge page (an API answering with its whole collection) is not
		// one huge transaction.
		if groupBytes >= maxBytes || !it.part && (len(group) >= p.CheckpointInterval || time.Since(groupStart) >= maxDur) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if stats.Read == 0 && failIfEmpty {
		return errors.New("source returned no entities and if_source_empty is \"fail\"; nothing was deleted")
	}
	// Final transaction: remaining batches, deletion tracking, populated
	// flag and the final token together.
	ts := time.Now().UnixMicro()
	if err := writeGroup(ts); err != nil {
		return err
	}
	if cs, ok := sr.(CheckpointingSinkRun); ok && !single {
		cs.SetCheckpoint(func() (WriteTx, error) {
			// Commit as a group does: the token is past every batch (the
			// last group is in this transaction), and with redo the state
			// keeps the rescan request, which only the final commit
			// clears, so a run stopped between parts is done again.
			if err := commit(); err != nil {
				return nil, err
			}
			if err := begin(); err != nil {
				return nil, err
			}
			return tx, nil
		}, maxBytes)
	}
	if err := sr.Finish(ctx, tx, ts); err != nil {
		return err
	}
	final = true
	return commit()
}

// commitExternal hands batches to an external sink and commits the token
// after each successful write.
func (e *Engine) commitExternal(ctx context.Context, p *Pipe, sink ExternalSink, items <-chan item, gate *byteGate, state PipeState, stats *RunStats, failIfEmpty bool) error {
	var hooks []func(WriteTx) error // Batch.Commit of the batches since the last save
	save := func() error {
		tx, err := e.Store.Begin(ctx)
		if err != nil {
			return err
		}
		for _, h := range hooks {
			if err := h(tx); err != nil {
				tx.Rollback()
				return err
			}
		}
		hooks = hooks[:0]
		if err := tx.SetPipeState(p.ID, state); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	n := 0
	for it := range items {
		gate.release(it.bytes)
		if it.err != nil {
			return it.err
		}
		stats.Read += int64(it.read)
		var live []Entity
		for _, ent := range it.entities {
			if f, _ := ent["_filtered"].(bool); !f {
				live = append(live, ent)
			}
		}
		if len(live) > 0 {
			if err := sink.Write(ctx, live); err != nil {
				return fmt.Errorf("sink: %w", err)
			}
			stats.Written += int64(len(live))
		}
		if it.since != "" {
			state.Since = it.since
		}
		if it.commit != nil {
			hooks = append(hooks, it.commit)
		}
		if n++; n%p.CheckpointInterval == 0 {
			if err := save(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if stats.Read == 0 && failIfEmpty {
		return errors.New("source returned no entities and if_source_empty is \"fail\"")
	}
	return save()
}

// readRequest is what a run reads: from the pipe's offset, or everything
// (a reset, a rescan, a source without offsets or no offset yet), in which
// case rec is marked a full run. opts.Reset clears state.Since.
func (e *Engine) readRequest(p *Pipe, state *PipeState, opts RunOptions, rec *RunRecord) ReadRequest {
	if opts.Reset {
		state.Since = ""
	}
	full := !p.Source.SupportsSince() || state.Since == "" || opts.Rescan || state.RescanRequested
	req := ReadRequest{Full: full, BatchSize: p.BatchSize, Store: e.Store}
	rec.SyncType = "full"
	if !full {
		req.Since = state.Since
		rec.SyncType = "incremental"
	}
	return req
}
