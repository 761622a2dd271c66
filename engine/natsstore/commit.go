package natsstore

import (
	"bytes"
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

// Commit makes the transaction visible in two steps:
//
//  1. Each dataset's new versions are appended to its stream after the
//     committed watermark (dsMeta.LastSeq), every message expecting its
//     predecessor's sequence, so nothing interleaves. Readers never look
//     past the watermark, so these versions are invisible for now.
//  2. One atomic batch on the meta stream moves every watermark and writes
//     the datasets' counts, the pipe states, the key-value changes and the
//     run records. Its first message checks the transaction's lease (if
//     any) and each dataset's metadata is written only if it is still the
//     one the transaction read (expected last subject sequence): a fenced
//     worker or a concurrent writer to the same dataset fails here as a
//     whole.
//
// A crash between the steps leaves an uncommitted tail in a dataset stream.
// The next writer of that dataset finds it (its append expects the
// watermark), checks that the tail's session is dead (its worker record
// expired) and repairs: it records the range as a hole in the dataset's
// metadata (with the same expected-sequence check, so the dead writer can
// never commit it afterwards) and deletes the messages. Offsets skip holes.
func (w *writeTx) Commit() error {
	if w.done {
		return errors.New("transaction already finished")
	}
	w.done = true
	defer func() { <-w.s.writer }()
	var dirty []*txDataset
	for _, st := range w.sets {
		if st.dirty {
			dirty = append(dirty, st)
		}
	}
	if !w.changed && len(dirty) == 0 {
		return nil
	}
	sort.Slice(dirty, func(i, j int) bool { return dirty[i].name < dirty[j].name })
	if n := 1 + len(dirty) + len(w.pipes) + len(w.kv) + len(w.runs); n > w.s.opts.MaxBatch {
		return fmt.Errorf("the transaction changes %d metadata records (%d key-value writes, %d pipe states, %d runs, %d datasets), more than one atomic batch holds (max_batch %d); raise jetstream max_batch_size on the server and max_batch in the store URL, or lower the pipe's checkpoint_interval",
			n, len(w.kv), len(w.pipes), len(w.runs), len(dirty), w.s.opts.MaxBatch)
	}
	if w.fence != nil && w.fence.lost() {
		return fmt.Errorf("pipe %q: %w", w.fence.pipe, ErrLeaseLost)
	}
	if w.sess.lost.Load() {
		return errors.New("this worker's session expired during the transaction; nothing of it was committed")
	}
	// Appends run under the run's context (cancelling abandons them: an
	// uncommitted tail is repaired later); the metadata batch must not be
	// cut off half-way through waiting for its answer.
	ctx := w.ctx
	for _, st := range dirty {
		if len(st.pending) > 0 {
			if err := w.append(ctx, st); err != nil {
				return err
			}
		}
	}
	if w.s.afterAppend != nil {
		if err := w.s.afterAppend(); err != nil {
			return err
		}
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.s.opts.Timeout)
	defer cancel()
	return w.commitMeta(mctx, dirty)
}

// append writes a dataset's pending versions after its watermark,
// repairing an abandoned tail first if there is one.
func (w *writeTx) append(ctx context.Context, st *txDataset) error {
	for attempt := 0; ; attempt++ {
		if err := w.s.ensureDatasetStream(ctx, st.name); err != nil {
			return err
		}
		ok, err := w.publishVersions(ctx, st)
		if err != nil {
			return fmt.Errorf("dataset %q: appending versions: %w", st.name, w.s.connErr(err))
		}
		if ok {
			st.meta.LastSeq = st.base.LastSeq + uint64(len(st.pending))
			st.meta.LastID = st.pending[len(st.pending)-1].v.id
			st.meta.Holes = st.base.Holes
			return nil
		}
		if attempt == 3 {
			return fmt.Errorf("dataset %q: %w", st.name, ErrConflict)
		}
		if err := w.resolveTail(ctx, st); err != nil {
			return err
		}
	}
}

// publishVersions appends the pending versions expecting the stream to end
// at the watermark. ok is false when it does not (a tail or another
// writer's commit is in the way).
func (w *writeTx) publishVersions(ctx context.Context, st *txDataset) (ok bool, err error) {
	base := st.base.LastSeq
	size := 0
	for i := range st.pending {
		size += versionHeader + 10 + len(st.pending[i].v.id) + len(st.pending[i].v.body)
	}
	buf := make([]byte, 0, size)
	msg := func(i int) *nats.Msg {
		pv := &st.pending[i]
		v := pv.v
		if pv.prevIdx >= 0 {
			v.prevSeq = base + 1 + uint64(pv.prevIdx)
		}
		start := len(buf)
		buf = appendVersion(buf, &v)
		// Headers only where needed: the server keeps them with the
		// message and every read of a message with headers costs more.
		m := &nats.Msg{Subject: w.s.n.entity(st.name, v.id), Data: buf[start:len(buf):len(buf)]}
		if i == 0 {
			m.Header = nats.Header{jetstream.ExpectedLastSeqHeader: {strconv.FormatUint(base, 10)},
				hdrSession: {w.sess.id}, hdrTx: {w.id}}
		}
		if v.deleted() {
			if m.Header == nil {
				m.Header = nats.Header{}
			}
			m.Header[hdrDeleted] = []string{"1"}
		}
		return m
	}
	return w.s.pipeline(ctx, len(st.pending), base, msg)
}

// pipeline publishes n messages (msg(i) builds the i-th) in order, with
// up to a window of them awaiting their acknowledgement, all answered on
// one inbox. The first, which expects the stream to end at base, goes
// alone: when the stream does not end there, nothing else is sent. Only
// the first carries the expectation; every acknowledgement must then
// name the sequence base+1+i, so a message of another writer landing in
// between (one that stalled mid-append past its session and woke up) is
// detected. ok is false when the expectation or a sequence did not hold:
// what was written is an uncommitted tail.
func (s *Store) pipeline(ctx context.Context, n int, base uint64, msg func(i int) *nats.Msg) (ok bool, err error) {
	const window = 4096
	inbox := s.nc.NewInbox()
	acks := make(chan *nats.Msg, window)
	sub, err := s.nc.ChanSubscribe(inbox, acks)
	if err != nil {
		return false, err
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1)
	sent, acked := 0, 0
	timer := time.NewTimer(s.opts.Timeout)
	defer timer.Stop()
	for acked < n {
		limit := window
		if acked == 0 {
			limit = 1
		}
		for sent < n && sent-acked < limit {
			m := msg(sent)
			m.Reply = inbox
			if err := s.nc.PublishMsg(m); err != nil {
				return false, err
			}
			sent++
		}
		select {
		case r := <-acks:
			acked++
			if bytes.Contains(r.Data, []byte(`"error"`)) || r.Header.Get("Status") != "" {
				var resp struct {
					Error *jetstream.APIError `json:"error"`
				}
				if r.Header.Get("Status") == "503" {
					return false, errNoStream
				}
				if err := json.Unmarshal(r.Data, &resp); err != nil || resp.Error == nil {
					return false, fmt.Errorf("bad acknowledgement %q", r.Data)
				}
				if isWrongLast(resp.Error) {
					return false, nil
				}
				return false, resp.Error
			}
			if seq, found := ackSeq(r.Data); !found || seq != base+uint64(acked) {
				return false, nil
			}
			if !timer.Stop() {
				<-timer.C
			}
			timer.Reset(s.opts.Timeout)
		case <-timer.C:
			return false, fmt.Errorf("no acknowledgement from the server within %s (%d of %d messages acknowledged)", s.opts.Timeout, acked, n)
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return true, nil
}

// resolveTail handles a dataset stream that does not end at the
// watermark: another worker's append is in progress (wait for it), it was
// committed meanwhile (conflict) or it was abandoned (repair).
func (w *writeTx) resolveTail(ctx context.Context, st *txDataset) error {
	deadline := time.Now().Add(w.s.opts.TailWait)
	pause := 10 * time.Millisecond
	for {
		_, rev, _, err := w.s.readMetaLeader(ctx, st.name)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", st.name, err)
		}
		if rev != st.rev {
			return fmt.Errorf("dataset %q: %w", st.name, ErrConflict)
		}
		last, err := w.s.streamLastSeq(ctx, st.name)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", st.name, err)
		}
		if last <= st.base.LastSeq {
			return nil // the stream ends at the watermark again: retry
		}
		owner := ""
		var first rmsg
		err = w.s.direct(ctx, w.s.n.dsStream(st.name), &directReq{Seq: st.base.LastSeq + 1, Batch: 1}, func(m *rmsg) error {
			first = *m
			return nil
		})
		if err != nil && !errors.Is(err, errNoStream) {
			return fmt.Errorf("dataset %q: %w", st.name, err)
		}
		if first.seq > 0 {
			owner = first.hdr.Get(hdrSession)
		}
		alive := false
		if owner != "" && owner != w.sess.id {
			if alive, err = w.s.sessionAlive(ctx, owner); err != nil {
				return err
			}
		}
		if !alive {
			return w.repair(ctx, st, last)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dataset %q: another worker (session %s) has been appending for more than %s without committing; try again later", st.name, owner, w.s.opts.TailWait)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// repair turns an abandoned tail (watermark+1 .. last) into a hole: first
// the dataset's metadata records it, expecting the revision the
// transaction read, so that the writer that left the tail can never commit
// it; then its messages are deleted.
func (w *writeTx) repair(ctx context.Context, st *txDataset, last uint64) error {
	s := w.s
	nb := st.base
	wipe := nb.LastSeq == 0 && len(nb.Holes) == 0
	if !wipe {
		nb.Holes = append(append([]hole(nil), nb.Holes...), hole{From: nb.LastSeq + 1, To: last})
		nb.LastSeq = last
	}
	nb.Updated = time.Now().UTC()
	nb.Stream = s.n.dsStream(st.name)
	rev, err := s.putMeta(ctx, st.name, &nb, st.rev)
	if isWrongLast(err) {
		return fmt.Errorf("dataset %q: %w", st.name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("dataset %q: recording an abandoned append: %w", st.name, err)
	}
	s.opts.Logger.Warn("nats store: removed an append a dead worker left uncommitted", "dataset", st.name, "from", st.base.LastSeq+1, "to", last)
	st.rev = rev
	st.exists = true
	if wipe {
		// Nothing committed lives in the stream: drop it whole.
		if err := s.js.DeleteStream(ctx, s.n.dsStream(st.name)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("dataset %q: %w", st.name, err)
		}
		s.forgetStream(st.name)
	} else {
		s.deleteRange(ctx, s.n.dsStream(st.name), st.base.LastSeq+1, last)
	}
	st.base.LastSeq, st.base.Holes = nb.LastSeq, nb.Holes
	st.meta.LastSeq, st.meta.Holes = nb.LastSeq, nb.Holes
	return nil
}

// deleteRange deletes messages from..to, best effort (they are in a hole,
// so readers skip them anyway).
func (s *Store) deleteRange(ctx context.Context, stream string, from, to uint64) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return
	}
	seqs := make(chan uint64)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range seqs {
				st.DeleteMsg(ctx, seq)
			}
		}()
	}
	for seq := from; seq <= to && ctx.Err() == nil; seq++ {
		seqs <- seq
	}
	close(seqs)
	wg.Wait()
}

// streamLastSeq returns a dataset stream's last sequence (0 when it does
// not exist).
func (s *Store) streamLastSeq(ctx context.Context, ds string) (uint64, error) {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.n.dsStream(ds))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, s.connErr(err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// putMeta writes a dataset's metadata expecting revision rev, outside a
// transaction (repairs).
func (s *Store) putMeta(ctx context.Context, ds string, m *dsMeta, rev uint64) (uint64, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	msg := nats.NewMsg(s.n.dsMeta(ds))
	msg.Data = data
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// batchAck is the answer to an atomic batch's commit.
type batchAck struct {
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Batch  string              `json:"batch"`
	Count  int                 `json:"count"`
	Error  *jetstream.APIError `json:"error"`
}

// commitMeta publishes the transaction's metadata as one atomic batch.
func (w *writeTx) commitMeta(ctx context.Context, dirty []*txDataset) error {
	s := w.s
	var msgs []*nats.Msg
	marker := nats.NewMsg(s.n.txMarker(w.sess.id))
	marker.Data = []byte(w.id)
	marker.Header.Set(hdrTx, w.id)
	marker.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	msgs = append(msgs, marker)
	now := time.Now().UTC()
	for _, st := range dirty {
		m := st.meta
		m.Updated = now
		m.Stream = s.n.dsStream(st.name)
		data, err := json.Marshal(&m)
		if err != nil {
			return err
		}
		msg := nats.NewMsg(s.n.dsMeta(st.name))
		msg.Data = data
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(st.rev, 10))
		msgs = append(msgs, msg)
	}
	for _, pipe := range sortedKeys(w.pipes) {
		data, err := json.Marshal(w.pipes[pipe])
		if err != nil {
			return err
		}
		msg := nats.NewMsg(s.n.pipeState(pipe))
		msg.Data = data
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		msgs = append(msgs, msg)
	}
	keys := make([]kvKey, 0, len(w.kv))
	for k := range w.kv {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].ns != keys[j].ns {
			return keys[i].ns < keys[j].ns
		}
		return keys[i].key < keys[j].key
	})
	for _, k := range keys {
		v := w.kv[k]
		if v.deleted {
			msgs = append(msgs, tombstone(s.n.kv(k.ns, k.key), 0))
			continue
		}
		msg := nats.NewMsg(s.n.kv(k.ns, k.key))
		msg.Data = v.value
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		msgs = append(msgs, msg)
	}
	trim := map[string]bool{}
	for _, r := range w.runs {
		r.Seq = 0
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		msg := nats.NewMsg(s.n.runs(r.Pipe))
		msg.Data = data
		msgs = append(msgs, msg)
		trim[r.Pipe] = true
	}
	if w.fence != nil {
		// Hold the lease still while the batch checks it.
		w.fence.mu.Lock()
		defer w.fence.mu.Unlock()
		if w.fence.isLost {
			return fmt.Errorf("pipe %q: %w", w.fence.pipe, ErrLeaseLost)
		}
		marker.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.fence.rev, 10))
		marker.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, w.fence.subj)
	}
	_, err := s.publishBatch(ctx, msgs)
	if err != nil {
		var api *jetstream.APIError
		if errors.As(err, &api) {
			if isWrongLast(err) {
				if w.fence != nil && s.leaseMoved(ctx, w.fence) {
					w.fence.markLostLocked()
					return fmt.Errorf("pipe %q: %w", w.fence.pipe, ErrLeaseLost)
				}
				return ErrConflict
			}
			return fmt.Errorf("committing: %w", err)
		}
		// No answer: find out from the marker whether the batch landed.
		if m, ok, rerr := s.getLast(ctx, s.n.metaStream(), marker.Subject); rerr != nil || !ok || m.hdr.Get(hdrTx) != w.id {
			return fmt.Errorf("committing: %w (the outcome is unknown; the next run continues from whatever was committed)", s.connErr(err))
		}
	}
	if len(trim) > 0 {
		if st, err := s.js.Stream(ctx, s.n.metaStream()); err == nil {
			for pipe := range trim {
				st.Purge(ctx, jetstream.WithPurgeSubject(s.n.runs(pipe)), jetstream.WithPurgeKeep(maxRunsPerPipe))
			}
		}
	}
	return nil
}

// maxRunsPerPipe bounds each pipe's run log, as in the bbolt store.
const maxRunsPerPipe = 1000

// publishBatch sends msgs as one atomic batch on the meta stream.
func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg) (*batchAck, error) {
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return nil, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, err
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return nil, fmt.Errorf("bad answer to a batch commit: %w", err)
		}
		if ack.Error != nil {
			return nil, ack.Error
		}
		return &ack, nil
	}
	return nil, errors.New("empty batch")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var _ engine.Prefetcher = (*writeTx)(nil)

// ackSeq reads "seq" from a publish acknowledgement without a JSON
// decoder: {"stream":"NAME","seq":123} (field order as the server writes
// it, but any position is found).
func ackSeq(b []byte) (uint64, bool) {
	i := bytes.Index(b, []byte(`"seq":`))
	if i < 0 {
		return 0, false
	}
	var n uint64
	j := i + 6
	for ; j < len(b) && b[j] == ' '; j++ {
	}
	start := j
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + uint64(b[j]-'0')
	}
	return n, j > start
}
