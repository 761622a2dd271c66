package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ferrydata/ferry/engine"
)

// A pipe's lease is the last message on PREFIX.m.lease.<pipe> in the meta
// stream: {"session": worker, "token": random}. It is taken and renewed
// with compare-and-set (expected last subject sequence) and carries a
// per-message TTL, so the server removes it when its holder stops renewing.
// A lease whose holder's session record is gone is free as well, so a
// crashed worker's pipes move as soon as its session expires.
//
// The lease's current sequence is its fencing token: a transaction begun
// under the lease commits only if the lease subject still ends at that
// sequence (checked inside the commit's atomic batch), so a worker that
// stalled past the TTL and wakes up cannot commit.

type leaseValue struct {
	Session string    `json:"session"`
	Token   string    `json:"token"`
	Since   time.Time `json:"since"`
}

type lease struct {
	s     *Store
	pipe  string
	subj  string
	token string

	mu        sync.Mutex
	rev       uint64 // sequence of the lease message
	renewed   time.Time
	isLost    bool
	released  bool
	done      chan struct{}
	closeOnce sync.Once
	stop      chan struct{}
}

var _ engine.Lease = (*lease)(nil)

// Done is closed when the lease is lost or released.
func (l *lease) Done() <-chan struct{} { return l.done }

func (l *lease) lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isLost
}

func (l *lease) markLost() {
	l.mu.Lock()
	l.markLostLocked()
	l.mu.Unlock()
}

// markLostLocked is markLost with l.mu held.
func (l *lease) markLostLocked() {
	l.isLost = true
	l.closeOnce.Do(func() { close(l.done) })
}

// Release gives the lease up: its message is replaced by a removal marker
// (only if it is still this lease's).
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	close(l.stop)
	wasLost := l.isLost
	l.isLost = true
	rev := l.rev
	l.mu.Unlock()
	l.closeOnce.Do(func() { close(l.done) })
	l.s.leasesMu.Lock()
	delete(l.s.leases, l)
	l.s.leasesMu.Unlock()
	if wasLost || l.s.nc.IsClosed() {
		return nil
	}
	ctx, cancel := l.s.reqCtx(ctx)
	defer cancel()
	_, err := l.s.js.PublishMsg(ctx, tombstone(l.subj, rev))
	if err != nil && !isWrongLast(err) {
		return fmt.Errorf("releasing the lease on pipe %q: %w", l.pipe, l.s.connErr(err))
	}
	return nil
}

// renew keeps the lease alive until it is released or lost.
func (l *lease) renew() {
	ttl := l.s.opts.LeaseTTL
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.s.closing:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.isLost {
			l.mu.Unlock()
			return
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		ack, err := l.s.js.PublishMsg(ctx, l.message(l.rev))
		cancel()
		switch {
		case err == nil:
			l.rev, l.renewed = ack.Sequence, sent
			l.mu.Unlock()
			continue
		case isWrongLast(err):
			l.mu.Unlock()
			l.s.opts.Logger.Warn("nats store: lost the lease on a pipe (another worker took it)", "pipe", l.pipe)
			l.markLost()
			return
		}
		// No answer: the lease counts as lost once the server may have
		// let it expire (measured from the last renewal sent).
		expired := time.Since(l.renewed) > ttl-ttl/6
		l.mu.Unlock()
		if expired {
			l.s.opts.Logger.Warn("nats store: could not renew the lease on a pipe in time; giving it up", "pipe", l.pipe, "error", err)
			l.markLost()
			return
		}
	}
}

func (l *lease) message(rev uint64) *nats.Msg {
	m := nats.NewMsg(l.subj)
	m.Data, _ = json.Marshal(leaseValue{Session: l.s.sess.Load().id, Token: l.token, Since: time.Now().UTC()})
	m.Header.Set(jetstream.MsgTTLHeader, l.s.opts.LeaseTTL.String())
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	return m
}

// leaseMoved reports whether l's subject no longer ends at l's revision.
func (s *Store) leaseMoved(ctx context.Context, l *lease) bool {
	m, ok, err := s.getLast(ctx, s.n.metaStream(), l.subj)
	if err != nil {
		return false
	}
	return !ok || m.seq != l.rev
}

// loseLeases marks every lease of this store lost (the session expired).
func (s *Store) loseLeases() {
	s.leasesMu.Lock()
	ls := make([]*lease, 0, len(s.leases))
	for l := range s.leases {
		ls = append(ls, l)
	}
	s.leasesMu.Unlock()
	for _, l := range ls {
		l.markLost()
	}
}

// acquire takes pipe's lease.
func (s *Store) acquire(ctx context.Context, pipe string) (*lease, error) {
	sess, err := s.session()
	if err != nil {
		return nil, err
	}
	// A lease taken under a dead session would be free for others at
	// once: make sure this worker's record still exists.
	if m, ok, err := s.getLast(ctx, s.n.metaStream(), s.n.worker(sess.id)); err != nil {
		return nil, err
	} else if !ok || isTombstone(m.hdr) {
		go s.renewSession() // notices the loss and starts a new session
		return nil, errors.New("this worker's session expired (it stalled or lost the server); it takes no leases until it has a new one")
	}
	subj := s.n.lease(pipe)
	cur, ok, err := s.getLast(ctx, s.n.metaStream(), subj)
	if err != nil {
		return nil, fmt.Errorf("pipe %q: reading its lease: %w", pipe, err)
	}
	var rev uint64
	if ok {
		rev = cur.seq
		if !isTombstone(cur.hdr) {
			var v leaseValue
			if json.Unmarshal(cur.data, &v) == nil && v.Session != "" {
				alive, err := s.sessionAlive(ctx, v.Session)
				if err != nil {
					return nil, err
				}
				if alive {
					return nil, fmt.Errorf("pipe %q: lease %w (session %s)", pipe, engine.ErrLeaseHeld, v.Session)
				}
			}
		}
	}
	l := &lease{s: s, pipe: pipe, subj: subj, token: nuid.Next(), done: make(chan struct{}), stop: make(chan struct{})}
	sent := time.Now()
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	ack, err := s.js.PublishMsg(rctx, l.message(rev))
	if isWrongLast(err) {
		return nil, fmt.Errorf("pipe %q: lease %w", pipe, engine.ErrLeaseHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("pipe %q: taking its lease: %w", pipe, s.connErr(err))
	}
	if sess.lost.Load() {
		l.Release(ctx)
		return nil, errors.New("this worker's session expired while taking a lease")
	}
	l.rev, l.renewed = ack.Sequence, sent
	s.leasesMu.Lock()
	s.leases[l] = struct{}{}
	s.leasesMu.Unlock()
	go l.renew()
	return l, nil
}

// Cluster is the engine.Cluster of a NATS store: leases and worker
// records in the meta stream, notifications on PREFIX.notify.
type Cluster struct {
	s    *Store
	sub  *nats.Subscription
	ch   chan string
	once sync.Once
}

var _ engine.Cluster = (*Cluster)(nil)

// Cluster returns the store's engine.Cluster. Its notifications stop when
// the store closes.
func (s *Store) Cluster() (*Cluster, error) {
	c := &Cluster{s: s, ch: make(chan string, 256)}
	sub, err := s.nc.Subscribe(s.n.notify(), func(m *nats.Msg) {
		select {
		case c.ch <- string(m.Data):
		default: // a run is already asked for; notifications coalesce
		}
	})
	if err != nil {
		return nil, s.connErr(err)
	}
	c.sub = sub
	// The server knows the subscription once a flush returns.
	if err := s.nc.FlushTimeout(s.opts.Timeout); err != nil {
		sub.Unsubscribe()
		return nil, s.connErr(err)
	}
	return c, nil
}

// Acquire takes pipe's lease.
func (c *Cluster) Acquire(ctx context.Context, pipe string) (engine.Lease, error) {
	l, err := c.s.acquire(ctx, pipe)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Members returns this worker's session id and every live one, sorted.
func (c *Cluster) Members(ctx context.Context) (string, []string, error) {
	sess, err := c.s.session()
	if err != nil {
		return "", nil, err
	}
	latest := map[string]rmsg{}
	err = c.s.scanSubject(ctx, c.s.n.metaStream(), c.s.n.workersAll(), 1, 0, func(m *rmsg) error {
		latest[m.subj] = *m
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	var all []string
	for subj, m := range latest {
		if !isTombstone(m.hdr) {
			all = append(all, lastToken(subj))
		}
	}
	if !contains(all, sess.id) {
		all = append(all, sess.id)
	}
	sort.Strings(all)
	return sess.id, all, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Notify asks the holder of pipe's lease to run it.
func (c *Cluster) Notify(ctx context.Context, pipe string) error {
	return c.s.nc.Publish(c.s.n.notify(), []byte(pipe))
}

// Notifications delivers pipes other workers asked to run (this worker's
// own notifications included).
func (c *Cluster) Notifications() <-chan string { return c.ch }

// Close stops the notifications.
func (c *Cluster) Close() error {
	c.once.Do(func() { c.sub.Unsubscribe() })
	return nil
}
