package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Cluster lets several workers (processes, possibly on several machines)
// share one store: each pipe runs on one worker at a time, the one holding
// its lease. An engine without a Cluster (Engine.Cluster nil, as with the
// embedded bbolt store) runs every pipe itself and takes no leases.
type Cluster interface {
	// Acquire takes pipe's lease for this worker. It returns an error
	// wrapping ErrLeaseHeld when another live worker holds it. The lease
	// is renewed in the background until Release, or until renewing fails
	// for longer than its time to live (then Done closes).
	Acquire(ctx context.Context, pipe string) (Lease, error)
	// Members returns this worker's id and the ids of every live worker
	// (itself included), sorted.
	Members(ctx context.Context) (self string, all []string, err error)
	// Notify asks whichever worker holds pipe's lease to run it soon
	// (signalling across workers). Best effort.
	Notify(ctx context.Context, pipe string) error
	// Notifications delivers the pipes other workers asked to run.
	Notifications() <-chan string
}

// Lease is a worker's exclusive right to run one pipe.
type Lease interface {
	// Done is closed when the lease is lost or released. A store that
	// supports fencing refuses to commit a transaction begun under a
	// lost lease (see WithLease).
	Done() <-chan struct{}
	// Release gives the lease up.
	Release(ctx context.Context) error
}

// ErrLeaseHeld is wrapped by Cluster.Acquire when another worker holds
// the lease.
var ErrLeaseHeld = errors.New("held by another worker")

// ErrLeaseLost is wrapped by runs and commits that stopped because the
// pipe's lease was lost: another worker may run the pipe now, and nothing
// of the open transaction was committed.
var ErrLeaseLost = errors.New("the lease on the pipe was lost (another worker may run it now); nothing of the open transaction was committed")

type leaseKey struct{}

// WithLease returns a context whose store transactions are fenced by l:
// a store that supports fencing (the NATS store) commits a transaction
// begun with this context only while l is still held, so a worker that
// stalled past its lease cannot overwrite the work of the one that took
// the pipe over. Stores without fencing ignore it.
func WithLease(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// LeaseFrom returns the lease WithLease put into ctx, or nil.
func LeaseFrom(ctx context.Context) Lease {
	l, _ := ctx.Value(leaseKey{}).(Lease)
	return l
}

// Prefetcher is implemented by write transactions that can look up many
// _ids in one round trip (a networked store). A sink calls it with the
// ids of a batch before writing them; a store without it needs nothing.
type Prefetcher interface {
	Prefetch(dataset string, ids []string) error
}

// leaseFor returns ctx fenced by pipe's lease and cancelled (with cause
// ErrLeaseLost) when the lease is lost: the lease the scheduler holds for
// the pipe, or one taken for this run only and released by done. Without
// a Cluster it returns ctx unchanged.
func (e *Engine) leaseFor(ctx context.Context, pipe string) (_ context.Context, done func(), err error) {
	if e.Cluster == nil {
		return ctx, func() {}, nil
	}
	e.mu.Lock()
	l := e.leases[pipe]
	e.mu.Unlock()
	temp := l == nil
	if temp {
		if l, err = e.Cluster.Acquire(ctx, pipe); err != nil {
			return ctx, nil, err
		}
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	go func() {
		select {
		case <-l.Done():
			cancel(fmt.Errorf("pipe %q: %w", pipe, ErrLeaseLost))
		case <-stop:
		}
	}()
	return WithLease(runCtx, l), func() {
		close(stop)
		cancel(nil)
		if temp {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := l.Release(rctx); err != nil {
				e.Logger.Warn("releasing a lease", "pipe", pipe, "error", err)
			}
		}
	}, nil
}

// setLease records the lease the scheduler holds for pipe (nil: none), so
// that runs started any other way use it.
func (e *Engine) setLease(pipe string, l Lease) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leases == nil {
		e.leases = map[string]Lease{}
	}
	if l == nil {
		delete(e.leases, pipe)
	} else {
		e.leases[pipe] = l
	}
}
