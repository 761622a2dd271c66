package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PushSource marks a source whose entities are pushed to the engine with
// [Engine.Receive] (Sesam's http_endpoint) instead of being read by runs.
// Such a pipe has no pump: the plan sets its pump mode to "off" unless the
// config says otherwise, and a pull run (Engine.Run) reads nothing and
// writes nothing, so it can never deletion-track received entities away.
type PushSource interface {
	Source
	// PushOnly is a marker method.
	PushOnly()
}

type storeKey struct{}

// WithStore returns a copy of ctx that carries store. The engine puts its
// store in the context of every run and receive, so transforms that read
// other datasets (DTL hops, lookups) reach the store they run against
// without holding it from build time.
func WithStore(ctx context.Context, store Store) context.Context {
	return context.WithValue(ctx, storeKey{}, store)
}

// StoreFrom returns the store the engine put in ctx, if any.
func StoreFrom(ctx context.Context) (Store, bool) {
	s, ok := ctx.Value(storeKey{}).(Store)
	return s, ok && s != nil
}

// Receive writes entities pushed to a pipe whose source is a [PushSource]:
// it runs the pipe's transforms over them (in batches of the pipe's
// batch_size) and writes the result to the pipe's sink like one
// incremental batch: for a store sink everything commits in one
// transaction (all or nothing), there is no deletion tracking, and the
// pipe's continuation token is left alone. The call is recorded in the
// pipe's run log like a run and is serialised with the pipe's other runs
// and receives.
func (e *Engine) Receive(ctx context.Context, pipeID string, ents []Entity) (RunRecord, error) {
	p := e.Plan.Pipe(pipeID)
	if p == nil {
		return RunRecord{}, fmt.Errorf("unknown pipe %q", pipeID)
	}
	if _, ok := p.Source.(PushSource); !ok {
		return RunRecord{}, fmt.Errorf("pipe %q: its source does not receive entities", pipeID)
	}
	l := e.lock(pipeID)
	l.Lock()
	defer l.Unlock()
	// With several workers a receive takes the pipe's lease like a run;
	// one held elsewhere (a receive on another worker) is waited for.
	var release func()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		var lctx context.Context
		lctx, release, err = e.leaseFor(ctx, p.ID)
		if err == nil {
			ctx = lctx
			break
		}
		if !errors.Is(err, ErrLeaseHeld) || time.Now().After(deadline) {
			return RunRecord{Pipe: p.ID}, fmt.Errorf("pipe %q: %w", p.ID, err)
		}
		select {
		case <-ctx.Done():
			return RunRecord{Pipe: p.ID}, fmt.Errorf("pipe %q: %w", p.ID, err)
		case <-time.After(wait):
		}
	}
	defer release()

	rec := RunRecord{Pipe: p.ID, Start: time.Now().UTC(), SyncType: "incremental"}
	if e.Observer != nil {
		e.Observer.RunStarted(p)
	}
	stats := &RunStats{}
	err = e.receive(WithStore(ctx, e.Store), p, ents, stats)
	return e.finishRun(ctx, p, &rec, stats, err, "receive")
}

func (e *Engine) receive(ctx context.Context, p *Pipe, in []Entity, stats *RunStats) error {
	stats.Read = int64(len(in))
	size := max(p.BatchSize, 1)
	var out []Entity
	for start := 0; start < len(in); start += size {
		ents := in[start:min(start+size, len(in))]
		for i, t := range p.Transforms {
			if len(ents) == 0 {
				break
			}
			var err error
			ents, err = safeTransform(ctx, t, ents)
			if err != nil {
				return fmt.Errorf("transform %d: %w", i, err)
			}
		}
		out = append(out, ents...)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch sink := p.Sink.(type) {
	case TxSink:
		return e.receiveTx(ctx, p, sink, out, stats)
	case ExternalSink:
		var live []Entity
		for _, ent := range out {
			if _, err := AsEntity(ent); err != nil {
				return fmt.Errorf("invalid entity (%v): %s", err, preview(ent))
			}
			if f, _ := ent["_filtered"].(bool); !f {
				live = append(live, ent)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if err := sink.Write(ctx, live); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		stats.Written += int64(len(live))
		return nil
	}
	return fmt.Errorf("sink of type %T can neither write externally nor transactionally", p.Sink)
}

func (e *Engine) receiveTx(ctx context.Context, p *Pipe, sink TxSink, ents []Entity, stats *RunStats) error {
	prepared := make([]Prepared, 0, len(ents))
	arena := make([]byte, 0, 400*len(ents)+64)
	for _, ent := range ents {
		var pr Prepared
		var err error
		pr, arena, err = PrepareAppend(arena, ent)
		if err != nil {
			id, _ := ent["_id"].(string)
			if id == "" {
				return fmt.Errorf("invalid entity (%v): %s", err, preview(ent))
			}
			return &EntityError{ID: id, Err: err}
		}
		prepared = append(prepared, pr)
	}
	rc := &RunContext{Pipe: p.ID, Full: false, Store: e.Store, InputsPopulated: true, Stats: stats}
	sr, err := sink.StartRun(ctx, rc)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	tx, err := e.Store.Begin(ctx)
	if err != nil {
		return err
	}
	ts := time.Now().UnixMicro()
	if err := sr.Write(ctx, tx, prepared, ts); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if err := sr.Finish(ctx, tx, ts); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if !tx.Changed() {
		return tx.Rollback()
	}
	return tx.Commit()
}
