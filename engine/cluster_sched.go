package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/adhocore/gronx"
	"github.com/zeebo/xxh3"
)

// Scheduling with several workers (Engine.Cluster set).
//
// Every worker runs the same plan. Each pipe (pump mode other than "off")
// belongs to the live worker that ranks highest for it by rendezvous
// hashing of (pipe, worker id): every worker computes the same owner from
// the same member list, pipes spread evenly, and when a worker joins or
// leaves only its share moves. A worker takes the leases of the pipes it
// owns and runs their pumps while it holds them; it gives a pipe up
// (between runs) when a new member now ranks higher. A pipe whose owner
// does not take it (e.g. a worker started with another config) is taken
// by a worker that finds it free (it tries every fifth round).
//
// A pump that starts holding a pipe continues its schedule from the pipe's
// last run as recorded in the store, not from the takeover: a schedule
// fires once across the cluster, and a run that was due while the pipe
// moved runs at once. Signals for pipes held elsewhere travel through
// Cluster.Notify.

// ownership is a pipe this worker holds.
type ownership struct {
	lease   Lease
	release chan struct{} // closed to ask the pump to give the lease up
	once    sync.Once
	members string // the member list when it was taken
}

func (o *ownership) giveUp() { o.once.Do(func() { close(o.release) }) }

// holds reports whether this worker holds pipe's lease through the
// scheduler.
func (s *Scheduler) holds(pipe string) bool {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.owned[pipe] != nil
}

// rank returns the member that owns pipe by rendezvous hashing.
func rank(pipe string, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		score := xxh3.HashString(pipe + "\x00" + m)
		if best == "" || score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

func (s *Scheduler) runCluster(ctx context.Context) error {
	c := s.eng.Cluster
	for _, p := range s.eng.Plan.Pipes {
		if p.Pump.Mode == "off" {
			continue
		}
		s.wg.Add(1)
		go s.clusterPump(ctx, p)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case pipe := <-c.Notifications():
				if s.holds(pipe) {
					s.Trigger(pipe)
				}
			}
		}
	}()
	every := s.Rebalance
	if every <= 0 {
		every = time.Second
	}
	rounds := map[string]int{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.assign(ctx, rounds)
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// assign takes the leases this worker should hold and asks pumps to give
// up the ones it should not.
func (s *Scheduler) assign(ctx context.Context, rounds map[string]int) {
	c := s.eng.Cluster
	self, members, err := c.Members(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.eng.Logger.Warn("listing workers", "error", err)
		}
		return
	}
	key := ""
	for _, m := range members {
		key += m + ","
	}
	for _, p := range s.eng.Plan.Pipes {
		if p.Pump.Mode == "off" || ctx.Err() != nil {
			continue
		}
		owner := rank(p.ID, members)
		s.cmu.Lock()
		own := s.owned[p.ID]
		s.cmu.Unlock()
		switch {
		case own != nil:
			if owner != self && own.members != key {
				own.giveUp()
			}
			delete(rounds, p.ID)
			continue
		case len(s.grant[p.ID]) > 0:
			continue // granted, the pump has not picked it up yet
		case owner != self:
			// Another worker should hold it. Every fifth round try to
			// take it anyway: that only succeeds when nobody holds it,
			// so a pipe its owner does not run still runs.
			if rounds[p.ID]++; rounds[p.ID]%5 != 0 {
				continue
			}
		}
		l, err := c.Acquire(ctx, p.ID)
		if err != nil {
			if !errors.Is(err, ErrLeaseHeld) && ctx.Err() == nil {
				s.eng.Logger.Warn("taking a pipe's lease", "pipe", p.ID, "error", err)
			}
			continue
		}
		delete(rounds, p.ID)
		s.cmu.Lock()
		s.owned[p.ID] = &ownership{lease: l, release: make(chan struct{}), members: key}
		s.cmu.Unlock()
		// Runs started meanwhile (the HTTP API) use it at once.
		s.eng.setLease(p.ID, l)
		s.grant[p.ID] <- l
	}
}

// clusterPump runs p's schedule whenever this worker holds its lease.
func (s *Scheduler) clusterPump(ctx context.Context, p *Pipe) {
	defer s.wg.Done()
	for {
		var l Lease
		select {
		case <-ctx.Done():
			return
		case l = <-s.grant[p.ID]:
		}
		s.cmu.Lock()
		own := s.owned[p.ID]
		s.cmu.Unlock()
		s.eng.setLease(p.ID, l)
		s.runOwned(ctx, p, own)
		s.eng.setLease(p.ID, nil)
		s.cmu.Lock()
		delete(s.owned, p.ID)
		s.cmu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := l.Release(rctx); err != nil {
			s.eng.Logger.Warn("releasing a pipe's lease", "pipe", p.ID, "error", err)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// runOwned runs p on its schedule until the lease is lost or to be given
// up, or ctx ends.
func (s *Scheduler) runOwned(ctx context.Context, p *Pipe, own *ownership) {
	st, err := s.eng.Store.PipeState(ctx, p.ID)
	if err != nil {
		s.eng.Logger.Warn("reading a pipe's state", "pipe", p.ID, "error", err)
	}
	next := s.nextAfterLast(p, st.LastRun)
	for {
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-own.lease.Done():
		case <-own.release:
		case <-timer:
		case <-s.triggers[p.ID]:
		}
		if t != nil {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-own.lease.Done():
			return
		case <-own.release:
			return
		default:
		}
		s.eng.Run(ctx, p.ID, RunOptions{})
		next = s.nextRun(p, s.now())
	}
}

// nextAfterLast is when p's schedule fires next, given its last run as the
// store recorded it (zero: never ran).
func (s *Scheduler) nextAfterLast(p *Pipe, last time.Time) time.Time {
	now := s.now()
	if p.Pump.Mode == "manual" {
		return time.Time{}
	}
	if last.IsZero() {
		if p.Pump.RunAtStartup {
			return now
		}
		return s.nextRun(p, now)
	}
	if p.Pump.Cron != "" {
		next, err := gronx.NextTickAfter(p.Pump.Cron, last, false)
		if err != nil {
			return time.Time{}
		}
		return next
	}
	return s.nextRun(p, last)
}
