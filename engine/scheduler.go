package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/adhocore/gronx"
)

// Default schedules (SPEC c): pipes reading datasets every 30 s, others
// every 900 s, unless the pump says otherwise.
const (
	DefaultDatasetInterval  = 30 * time.Second
	DefaultExternalInterval = 900 * time.Second
)

// Scheduler runs pumps: each pipe on its interval or cron, on demand, and
// when an input dataset changes (signalling).
type Scheduler struct {
	eng      *Engine
	triggers map[string]chan struct{}
	wg       sync.WaitGroup
	now      func() time.Time
	// Rebalance is how often a scheduler with a Cluster checks which pipes
	// this worker should hold (default 1 s).
	Rebalance time.Duration
	// cluster mode (cluster.go)
	cmu   sync.Mutex
	owned map[string]*ownership
	grant map[string]chan Lease
}

// NewScheduler returns a scheduler for the engine's plan.
func NewScheduler(e *Engine) *Scheduler {
	s := &Scheduler{eng: e, triggers: map[string]chan struct{}{}, now: time.Now,
		owned: map[string]*ownership{}, grant: map[string]chan Lease{}}
	for _, p := range e.Plan.Pipes {
		s.triggers[p.ID] = make(chan struct{}, 1)
		s.grant[p.ID] = make(chan Lease, 1)
	}
	e.Changed = s.signal
	return s
}

// signal triggers the pipes that read (or hop into) the dataset a run
// changed, unless their pump says otherwise. With a Cluster, pipes held by
// other workers are notified through it.
func (s *Scheduler) signal(p *Pipe, _ RunRecord) {
	for _, r := range s.eng.Plan.Readers(p.Output) {
		if r.Pump.Signalled && r.Pump.Mode != "off" {
			if s.eng.Cluster != nil && !s.holds(r.ID) {
				s.eng.Cluster.Notify(context.Background(), r.ID)
				continue
			}
			s.Trigger(r.ID)
		}
	}
}

// Trigger asks for a run of pipe as soon as it is idle. Several triggers
// while a run is going coalesce into one more run.
func (s *Scheduler) Trigger(pipe string) error {
	ch, ok := s.triggers[pipe]
	if !ok {
		return fmt.Errorf("unknown pipe %q", pipe)
	}
	select {
	case ch <- struct{}{}:
	default:
	}
	return nil
}

// Run starts every pump and blocks until ctx is done and every running
// pipe has stopped. Cancelling ctx abandons the current transaction of a
// running pipe cleanly (nothing half-written; the next run continues after
// the last commit).
func (s *Scheduler) Run(ctx context.Context) error {
	if s.eng.Cluster != nil {
		return s.runCluster(ctx)
	}
	for _, p := range s.eng.Plan.Pipes {
		if p.Pump.Mode == "off" {
			continue
		}
		s.wg.Add(1)
		go s.pump(ctx, p)
	}
	<-ctx.Done()
	s.wg.Wait()
	return nil
}

// nextRun computes when p's schedule fires next after t; zero means never
// (manual mode).
func (s *Scheduler) nextRun(p *Pipe, t time.Time) time.Time {
	if p.Pump.Mode == "manual" {
		return time.Time{}
	}
	if p.Pump.Cron != "" {
		next, err := gronx.NextTickAfter(p.Pump.Cron, t, false)
		if err != nil {
			return time.Time{}
		}
		return next
	}
	iv := p.Pump.Interval
	if iv <= 0 {
		iv = DefaultExternalInterval
		if len(p.Inputs) > 0 {
			iv = DefaultDatasetInterval
		}
	}
	return t.Add(iv)
}

func (s *Scheduler) pump(ctx context.Context, p *Pipe) {
	defer s.wg.Done()
	trigger := s.triggers[p.ID]
	next := s.nextRun(p, s.now())
	if p.Pump.RunAtStartup {
		next = s.now()
	}
	for {
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-timer:
		case <-trigger:
			if t != nil {
				t.Stop()
			}
		}
		_, err := s.eng.Run(ctx, p.ID, RunOptions{})
		if err != nil && errors.Is(err, context.Canceled) {
			return
		}
		next = s.nextRun(p, s.now())
	}
}

// RunUntilStable runs the given pipes (all when ids is empty) in
// dependency order, then again while any pipe still has unread input,
// up to maxPasses passes. It stops at the first failing run.
func (e *Engine) RunUntilStable(ctx context.Context, ids []string, opts RunOptions, maxPasses int) ([]RunRecord, error) {
	order, cycles := e.Plan.Order()
	if len(ids) > 0 {
		want := map[string]bool{}
		for _, id := range ids {
			if e.Plan.Pipe(id) == nil {
				return nil, fmt.Errorf("unknown pipe %q", id)
			}
			want[id] = true
		}
		var sel []*Pipe
		for _, p := range order {
			if want[p.ID] {
				sel = append(sel, p)
			}
		}
		order = sel
	}
	if maxPasses <= 0 {
		maxPasses = 10
	}
	var recs []RunRecord
	pending := order
	for pass := 0; pass < maxPasses && len(pending) > 0; pass++ {
		for _, p := range pending {
			o := RunOptions{}
			if pass == 0 {
				o = opts
			}
			rec, err := e.Run(ctx, p.ID, o)
			recs = append(recs, rec)
			if err != nil {
				return recs, err
			}
		}
		// Only dataset-reading pipes can have more to do.
		var again []*Pipe
		for _, p := range order {
			behind, err := e.behind(ctx, p)
			if err != nil {
				return recs, err
			}
			if behind {
				again = append(again, p)
			}
		}
		pending = again
	}
	if len(pending) > 0 {
		msg := fmt.Sprintf("pipes did not settle after %d passes", maxPasses)
		for _, c := range cycles {
			msg += fmt.Sprintf("; cycle: %v", c)
		}
		return recs, errors.New(msg)
	}
	return recs, nil
}

// BehindReporter is implemented by sources that can tell from a
// continuation token, without reading, whether a run would find input
// past it (dataset, merge_datasets and union_datasets sources). since is
// the pipe's stored token ("" when it has none).
type BehindReporter interface {
	Behind(ctx context.Context, store Store, since string) (bool, error)
}

// behind reports whether a pipe's source has input past its token, so
// that RunUntilStable runs it again. Sources that cannot continue from a
// token are never behind (each run reads everything anyway); sources
// without [BehindReporter] are behind when their one input dataset has
// versions past a numeric token.
func (e *Engine) behind(ctx context.Context, p *Pipe) (bool, error) {
	if !p.Source.SupportsSince() {
		return false, nil
	}
	st, err := e.Store.PipeState(ctx, p.ID)
	if err != nil {
		return false, err
	}
	if br, ok := p.Source.(BehindReporter); ok {
		behind, err := br.Behind(ctx, e.Store, st.Since)
		if err != nil {
			return false, fmt.Errorf("pipe %q: %w", p.ID, err)
		}
		return behind, nil
	}
	if len(p.Inputs) != 1 {
		return false, nil
	}
	info, ok, err := e.Store.Dataset(ctx, p.Inputs[0])
	if err != nil || !ok || info.Versions == 0 {
		return false, err
	}
	var since uint64
	if _, err := fmt.Sscan(st.Since, &since); err != nil {
		return true, nil
	}
	return info.LastOffset > since, nil
}
