package natsstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ferrydata/ferry/engine"
)

// Options configures Open.
type Options struct {
	// URL is the NATS server (or a comma-separated list of a cluster's).
	URL string
	// Prefix names everything the store creates (streams PREFIX_*,
	// subjects PREFIX.*), so several Ferry installations can share one
	// NATS account. Default "ferry".
	Prefix string
	// Replicas of every stream the store creates (1, 3 or 5; default 1).
	Replicas int
	// KeepVersions, when > 0, keeps at most that many versions per _id
	// (the stream's max_msgs_per_subject): older versions are removed by
	// the server. 0 keeps every version.
	KeepVersions int
	// LeaseTTL is how long a worker's session and pipe leases live
	// without renewal (renewed every third of it). Default 15 s.
	LeaseTTL time.Duration
	// Timeout bounds each request to the server. Default 10 s.
	Timeout time.Duration
	// TailWait is how long a transaction waits for another live worker's
	// uncommitted append to a dataset to finish before it gives up.
	// Default 30 s.
	TailWait time.Duration
	// MaxBatch is the server's atomic batch limit (jetstream
	// max_batch_size, default 1000): a transaction's metadata changes
	// (datasets, pipe states, runs, key-value writes) commit in one
	// atomic batch of at most this many messages.
	MaxBatch int
	// Name is the connection name the server shows.
	Name   string
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = "ferry"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.TailWait == 0 {
		o.TailWait = 30 * time.Second
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 1000
	}
	if o.Name == "" {
		o.Name = "ferry"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ParseURL reads a --store value: nats://host:port[,host:port...] with
// optional query parameters prefix, replicas, keep_versions, lease_ttl,
// timeout, tail_wait and max_batch. User and password in the URL are
// passed to the server.
func ParseURL(s string) (Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Options{}, fmt.Errorf("store URL %q: %w", s, err)
	}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return Options{}, fmt.Errorf("store URL %q: want nats://host:port", s)
	}
	q := u.Query()
	o := Options{Prefix: q.Get("prefix")}
	ints := map[string]*int{"replicas": &o.Replicas, "keep_versions": &o.KeepVersions, "max_batch": &o.MaxBatch}
	for k, p := range ints {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Options{}, fmt.Errorf("store URL %q: %s=%q is not a non-negative integer", s, k, v)
			}
			*p = n
		}
	}
	durs := map[string]*time.Duration{"lease_ttl": &o.LeaseTTL, "timeout": &o.Timeout, "tail_wait": &o.TailWait}
	for k, p := range durs {
		if v := q.Get(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Options{}, fmt.Errorf("store URL %q: %s=%q is not a duration such as 10s", s, k, v)
			}
			*p = d
		}
	}
	for k := range q {
		if _, ok := ints[k]; !ok && durs[k] == nil && k != "prefix" {
			return Options{}, fmt.Errorf("store URL %q: unknown parameter %q (known: prefix, replicas, keep_versions, lease_ttl, timeout, tail_wait, max_batch)", s, k)
		}
	}
	u.RawQuery = ""
	o.URL = u.String()
	return o, nil
}

// Store is the NATS JetStream implementation of engine.Store.
type Store struct {
	opts  Options
	n     names
	nc    *nats.Conn
	js    jetstream.JetStream
	owned bool // nc was opened by Open

	// writer serialises this process's write transactions.
	writer chan struct{}
	sess   atomic.Pointer[session]
	// sessMu serialises session renewals and replacement.
	sessMu sync.Mutex
	// streams remembers dataset streams known to exist with the right
	// settings.
	streamsMu sync.Mutex
	streams   map[string]bool

	leasesMu sync.Mutex
	leases   map[*lease]struct{}

	closing chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool

	// afterAppend, set by tests, runs between a commit's appends and its
	// metadata batch; an error ends the commit there (a crash).
	afterAppend func() error
}

var _ engine.Store = (*Store)(nil)

// session is a store instance's liveness record in the meta stream
// (worker.<id>, with a TTL, renewed by a heartbeat). Uncommitted appends
// name their session, so that others can tell a live writer's unfinished
// transaction from one a dead writer left.
type session struct {
	id   string
	rev  uint64
	lost atomic.Bool
}

// Open connects to the server, checks that it supports what the store
// needs and creates the meta stream if it does not exist.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts.defaults()
	if err := validPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if opts.URL == "" {
		return nil, errors.New("no NATS server URL")
	}
	nc, err := nats.Connect(opts.URL, nats.Name(opts.Name), nats.Timeout(opts.Timeout/2),
		nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("cannot reach the NATS server at %s: %w", redact(opts.URL), err)
	}
	s, err := OpenConn(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// OpenConn is Open on an existing connection, which Close leaves open.
func OpenConn(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.defaults()
	if err := validPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	if !versionAtLeast(nc.ConnectedServerVersion(), 2, 12) {
		return nil, fmt.Errorf("NATS server %s at %s is too old: Ferry needs 2.12 or newer (atomic batch publish)", nc.ConnectedServerVersion(), nc.ConnectedUrlRedacted())
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, n: newNames(opts.Prefix), nc: nc, js: js, writer: make(chan struct{}, 1),
		streams: map[string]bool{}, leases: map[*lease]struct{}{}, closing: make(chan struct{})}
	if err := s.ensureMeta(ctx); err != nil {
		return nil, err
	}
	if err := s.newSession(ctx); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.heartbeat()
	return s, nil
}

// versionAtLeast compares a server version "2.12.3" (or "2.12.0-beta")
// with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// redact drops a password from a URL for messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}

// Options returns the options in force.
func (s *Store) Options() Options { return s.opts }

// Conn is the store's server connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Close ends the session (its uncommitted work becomes abandoned at once),
// releases the leases and closes the connection if Open made it.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	s.wg.Wait()
	s.leasesMu.Lock()
	ls := make([]*lease, 0, len(s.leases))
	for l := range s.leases {
		ls = append(ls, l)
	}
	s.leasesMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	for _, l := range ls {
		l.Release(ctx)
	}
	if sess := s.sess.Load(); sess != nil && !s.nc.IsClosed() {
		// Remove the session record and its transaction marker.
		s.js.PublishMsg(ctx, tombstone(s.n.worker(sess.id), sess.rev))
		if st, err := s.js.Stream(ctx, s.n.metaStream()); err == nil {
			st.Purge(ctx, jetstream.WithPurgeSubject(s.n.txMarker(sess.id)))
		}
	}
	if s.owned {
		s.nc.Close()
	}
	return nil
}

// reqCtx bounds a request by the store's timeout unless ctx has an earlier
// deadline.
func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < s.opts.Timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// connErr turns connection failures into errors that say what is wrong.
func (s *Store) connErr(err error) error {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("the NATS connection is closed: %w", err)
	case s.nc.IsReconnecting() || !s.nc.IsConnected():
		return fmt.Errorf("the NATS server at %s is unreachable (reconnecting): %w", redact(s.opts.URL), err)
	}
	return err
}

// Headers the store sets.
const (
	hdrSession = "Ferry-Session" // writer of an uncommitted append
	hdrDeleted = "Ferry-Deleted" // a deleted version, or a removed key
	hdrTx      = "Ferry-Tx"
)

// tombstone is a message that replaces every earlier one of subj with a
// removal marker (expected at rev, when rev > 0).
func tombstone(subj string, rev uint64) *nats.Msg {
	m := nats.NewMsg(subj)
	m.Header.Set(hdrDeleted, "1")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if rev > 0 {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	}
	return m
}

func isTombstone(h nats.Header) bool {
	return h.Get(hdrDeleted) != "" || h.Get("Nats-Marker-Reason") != ""
}

// isWrongLast reports a failed expected-sequence check.
func isWrongLast(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

// ensureMeta creates the meta stream or checks the existing one.
func (s *Store) ensureMeta(ctx context.Context) error {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	want := jetstream.StreamConfig{
		Name:               s.n.metaStream(),
		Description:        "Ferry metadata: datasets, pipe states, runs, key-value state, leases and workers",
		Subjects:           []string{s.n.metaSubjects()},
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Replicas:           s.opts.Replicas,
		Discard:            jetstream.DiscardOld,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxMsgsPerSubject:  -1,
		AllowDirect:        true,
		AllowRollup:        true,
		AllowMsgTTL:        true,
		AllowAtomicPublish: true,
		Metadata:           map[string]string{"ferry": "meta", "ferry_format": "1"},
	}
	return s.ensureStream(ctx, want, "meta")
}

// ensureStream creates a stream with cfg, or checks that an existing one
// has the settings the store relies on.
func (s *Store) ensureStream(ctx context.Context, want jetstream.StreamConfig, kind string) error {
	st, err := s.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = s.js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s.ensureStream(ctx, want, kind)
		}
		if err != nil {
			return s.streamErr(want.Name, "creating", err)
		}
		return s.awaitLeader(ctx, want)
	case err != nil:
		return s.streamErr(want.Name, "looking up", err)
	}
	got := st.CachedInfo().Config
	if got.Replicas != want.Replicas {
		s.opts.Logger.Warn("nats store: stream has another replica count than the store asks for; keeping it", "stream", want.Name, "replicas", got.Replicas, "want", want.Replicas)
	}
	if probs := incompatible(got, want, kind); len(probs) > 0 {
		return fmt.Errorf("stream %s exists with settings Ferry cannot use: %s; delete it (nats stream rm %s) or give the store another prefix (?prefix=...)",
			want.Name, strings.Join(probs, "; "), want.Name)
	}
	if kind == "dataset" && got.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		// keep_versions changed: the stream follows the store's setting.
		got.MaxMsgsPerSubject = want.MaxMsgsPerSubject
		if _, err := s.js.UpdateStream(ctx, got); err != nil {
			return s.streamErr(want.Name, "updating max_msgs_per_subject of", err)
		}
	}
	return nil
}

// awaitLeader waits until a stream just created with replicas has elected
// a leader: until then a publish to it gets no response, and the first
// commit (or the worker registration) would fail for nothing.
func (s *Store) awaitLeader(ctx context.Context, want jetstream.StreamConfig) error {
	if want.Replicas <= 1 {
		return nil
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	for {
		st, err := s.js.Stream(ctx, want.Name)
		if err == nil {
			if c := st.CachedInfo().Cluster; c != nil && c.Leader != "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s has elected no leader within %s: is a quorum of its %d replicas up? %w", want.Name, s.opts.Timeout, want.Replicas, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Store) streamErr(name, what string, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("the NATS server at %s has JetStream disabled (start it with -js): %w", redact(s.opts.URL), err)
	}
	return fmt.Errorf("%s stream %s: %w", what, name, s.connErr(err))
}

// incompatible lists the settings of an existing stream that break the
// store's assumptions.
func incompatible(got, want jetstream.StreamConfig, kind string) []string {
	var p []string
	if got.Metadata["ferry"] != kind {
		p = append(p, fmt.Sprintf("it was not created by Ferry as a %s stream (metadata ferry=%q)", kind, got.Metadata["ferry"]))
	}
	if !slices.Equal(got.Subjects, want.Subjects) {
		p = append(p, fmt.Sprintf("subjects %v, want %v", got.Subjects, want.Subjects))
	}
	if got.Retention != jetstream.LimitsPolicy {
		p = append(p, fmt.Sprintf("retention %s, want limits", got.Retention))
	}
	if got.MaxMsgs > 0 || got.MaxBytes > 0 || got.MaxAge > 0 {
		p = append(p, "max_msgs, max_bytes or max_age set: the server would drop committed data")
	}
	if got.Sealed || got.DenyDelete || got.DenyPurge {
		p = append(p, "sealed, deny_delete or deny_purge set")
	}
	if got.Mirror != nil || len(got.Sources) > 0 || got.SubjectTransform != nil {
		p = append(p, "a mirror, sources or a subject transform")
	}
	if !got.AllowDirect {
		p = append(p, "allow_direct is off")
	}
	if kind == "meta" {
		if !got.AllowAtomicPublish {
			p = append(p, "allow_atomic is off")
		}
		if !got.AllowMsgTTL {
			p = append(p, "allow_msg_ttl is off")
		}
		if !got.AllowRollup {
			p = append(p, "allow_rollup_hdrs is off")
		}
		if got.MaxMsgsPerSubject > 0 {
			p = append(p, "max_msgs_per_subject is set")
		}
	}
	return p
}

// datasetStreamConfig is the config of a dataset's stream.
func (s *Store) datasetStreamConfig(ds string) jetstream.StreamConfig {
	per := int64(-1)
	if s.opts.KeepVersions > 0 {
		per = int64(s.opts.KeepVersions)
	}
	return jetstream.StreamConfig{
		Name:              s.n.dsStream(ds),
		Description:       "Ferry dataset " + strconv.Quote(ds),
		Subjects:          []string{s.n.dsSubjects(ds)},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          s.opts.Replicas,
		Discard:           jetstream.DiscardOld,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: per,
		AllowDirect:       true,
		Metadata:          map[string]string{"ferry": "dataset", "ferry_dataset": ds, "ferry_format": "1"},
	}
}

// ensureDatasetStream creates or checks a dataset's stream once per
// process.
func (s *Store) ensureDatasetStream(ctx context.Context, ds string) error {
	name := s.n.dsStream(ds)
	s.streamsMu.Lock()
	ok := s.streams[name]
	s.streamsMu.Unlock()
	if ok {
		return nil
	}
	if err := s.ensureStream(ctx, s.datasetStreamConfig(ds), "dataset"); err != nil {
		return fmt.Errorf("dataset %q: %w", ds, err)
	}
	s.streamsMu.Lock()
	s.streams[name] = true
	s.streamsMu.Unlock()
	return nil
}

func (s *Store) forgetStream(ds string) {
	s.streamsMu.Lock()
	delete(s.streams, s.n.dsStream(ds))
	s.streamsMu.Unlock()
}

// newSession registers a fresh session.
func (s *Store) newSession(ctx context.Context) error {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	sess := &session{id: nuid.Next()}
	m := nats.NewMsg(s.n.worker(sess.id))
	m.Data = []byte(fmt.Sprintf(`{"started":%q,"name":%q}`, time.Now().UTC().Format(time.RFC3339), s.opts.Name))
	m.Header.Set(jetstream.MsgTTLHeader, s.opts.LeaseTTL.String())
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("registering this worker: %w", s.connErr(err))
	}
	sess.rev = ack.Sequence
	if old := s.sess.Swap(sess); old != nil {
		old.lost.Store(true)
	}
	return nil
}

// session returns the current session, failing when it was lost.
func (s *Store) session() (*session, error) {
	sess := s.sess.Load()
	if sess == nil || sess.lost.Load() {
		return nil, errors.New("this worker's session expired (the process stalled longer than lease_ttl or lost the server); its transaction was abandoned")
	}
	return sess, nil
}

// heartbeat renews the session every third of the TTL. When a renewal
// finds the session gone (expired while the process stalled or was cut
// off) it starts a new one: whatever the old one left uncommitted is
// abandoned, and its leases are lost.
func (s *Store) heartbeat() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		s.renewSession()
	}
}

func (s *Store) renewSession() {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	sess := s.sess.Load()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.LeaseTTL/3)
	defer cancel()
	m := nats.NewMsg(s.n.worker(sess.id))
	m.Data = []byte(fmt.Sprintf(`{"renewed":%q,"name":%q}`, time.Now().UTC().Format(time.RFC3339), s.opts.Name))
	m.Header.Set(jetstream.MsgTTLHeader, s.opts.LeaseTTL.String())
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(sess.rev, 10))
	ack, err := s.js.PublishMsg(ctx, m)
	switch {
	case err == nil:
		sess.rev = ack.Sequence
	case isWrongLast(err):
		s.opts.Logger.Warn("nats store: this worker's session expired; starting a new one (uncommitted work is abandoned)", "session", sess.id)
		sess.lost.Store(true)
		s.loseLeases()
		if err := s.newSession(ctx); err != nil {
			s.opts.Logger.Error("nats store: starting a new session", "error", err)
		}
	default:
		s.opts.Logger.Warn("nats store: renewing the session", "error", err)
	}
}

// sessionAlive reports whether the session id still has its record.
func (s *Store) sessionAlive(ctx context.Context, id string) (bool, error) {
	if cur := s.sess.Load(); cur != nil && cur.id == id {
		return !cur.lost.Load(), nil
	}
	m, ok, err := s.getLast(ctx, s.n.metaStream(), s.n.worker(id))
	if err != nil {
		return false, err
	}
	return ok && !isTombstone(m.hdr), nil
}

// Destroy deletes every stream of the store's prefix: all datasets and the
// metadata. For tests and benchmarks; the store is unusable afterwards.
func (s *Store) Destroy(ctx context.Context) error {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	var names []string
	lister := s.js.StreamNames(ctx, jetstream.WithStreamListSubject(s.n.prefix+".>"))
	for name := range lister.Name() {
		names = append(names, name)
	}
	if err := lister.Err(); err != nil {
		return s.connErr(err)
	}
	var errs []error
	for _, name := range names {
		if !strings.HasPrefix(name, s.n.stream+"_") {
			continue
		}
		if err := s.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, err)
		}
	}
	s.streamsMu.Lock()
	clear(s.streams)
	s.streamsMu.Unlock()
	return errors.Join(errs...)
}
