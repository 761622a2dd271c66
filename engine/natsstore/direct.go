package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Reads go through JetStream's direct get API ($JS.API.DIRECT.GET.<stream>)
// rather than consumers: a request names a sequence, a subject's last
// message, a run of messages from a sequence (batch) or the last messages
// of many subjects as of a sequence (multi_last + up_to_seq), and the
// answer streams back to an inbox, ended by an EOB status. Every stream the
// store creates allows direct gets.

// directReq is JSApiMsgGetRequest.
type directReq struct {
	Seq          uint64   `json:"seq,omitempty"`
	LastFor      string   `json:"last_by_subj,omitempty"`
	NextFor      string   `json:"next_by_subj,omitempty"`
	Batch        int      `json:"batch,omitempty"`
	MaxBytes     int      `json:"max_bytes,omitempty"`
	MultiLastFor []string `json:"multi_last,omitempty"`
	UpToSeq      uint64   `json:"up_to_seq,omitempty"`
	// NoHeaders leaves out the stored and the server's headers: the
	// answer's messages then have no sequence or subject.
	NoHeaders bool `json:"no_hdr,omitempty"`
}

// rmsg is one message read back.
type rmsg struct {
	subj string
	seq  uint64
	hdr  nats.Header
	data []byte
	ts   time.Time
}

var (
	// errNoStream: the stream does not exist (nobody answers its API).
	errNoStream = errors.New("no such stream")
	// errNotFound: no message matched.
	errNotFound = errors.New("no message")
)

// maxMultiLast is the server's limit of subjects answered by one
// multi_last request.
const maxMultiLast = 1000

// direct sends req to stream's direct get API and calls fn with every
// message of the answer. A single get answers errNotFound when nothing
// matches; batch and multi gets then call fn zero times.
func (s *Store) direct(ctx context.Context, stream string, req *directReq, fn func(*rmsg) error) error {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return s.connErr(err)
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1)
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return s.connErr(err)
	}
	multi := req.Batch > 0 || len(req.MultiLastFor) > 0
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("reading stream %s: no answer within %s: %w", stream, s.opts.Timeout, err)
			}
			return s.connErr(err)
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204": // EOB
				return nil
			case "404":
				if multi {
					return nil
				}
				return errNotFound
			case "503":
				return errNoStream
			default:
				return fmt.Errorf("reading stream %s: %s %s", stream, status, m.Header.Get("Description"))
			}
		}
		r := rmsg{subj: m.Header.Get("Nats-Subject"), hdr: m.Header, data: m.Data}
		if !req.NoHeaders {
			r.seq, err = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if err != nil {
				return fmt.Errorf("reading stream %s: answer without a sequence", stream)
			}
		}
		if ts := m.Header.Get("Nats-Time-Stamp"); ts != "" {
			r.ts, _ = time.Parse(time.RFC3339Nano, ts)
		}
		if err := fn(&r); err != nil {
			return err
		}
		if !multi {
			return nil
		}
	}
}

// getLast returns the last message on subject; ok is false when there is
// none (or the stream does not exist).
func (s *Store) getLast(ctx context.Context, stream, subj string) (rmsg, bool, error) {
	var out rmsg
	err := s.direct(ctx, stream, &directReq{LastFor: subj}, func(m *rmsg) error { out = *m; return nil })
	if errors.Is(err, errNotFound) || errors.Is(err, errNoStream) {
		return out, false, nil
	}
	return out, err == nil, err
}

// getLastLeader is getLast answered by the stream's leader (the
// STREAM.MSG.GET API) instead of any replica: a follower a moment behind
// would give a writer a stale revision, and its compare-and-set would fail
// as a conflict for nothing. Writers read what they will compare against
// with it; readers keep the direct gets.
func (s *Store) getLastLeader(ctx context.Context, stream, subj string) (rmsg, bool, error) {
	if s.opts.Replicas <= 1 {
		return s.getLast(ctx, stream, subj)
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	body, err := json.Marshal(map[string]string{"last_by_subj": subj})
	if err != nil {
		return rmsg{}, false, err
	}
	m, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return rmsg{}, false, nil
	}
	if err != nil {
		return rmsg{}, false, fmt.Errorf("reading stream %s: %w", stream, s.connErr(err))
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Hdrs    []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return rmsg{}, false, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	switch {
	case resp.Error != nil && (resp.Error.ErrCode == 10037 || resp.Error.ErrCode == 10059): // no message, no stream
		return rmsg{}, false, nil
	case resp.Error != nil:
		return rmsg{}, false, fmt.Errorf("reading stream %s: %d %s", stream, resp.Error.Code, resp.Error.Description)
	case resp.Message == nil:
		return rmsg{}, false, fmt.Errorf("reading stream %s: an answer without a message", stream)
	}
	r := rmsg{subj: resp.Message.Subject, seq: resp.Message.Seq, data: resp.Message.Data, ts: resp.Message.Time}
	if len(resp.Message.Hdrs) > 0 {
		if r.hdr, err = nats.DecodeHeadersMsg(resp.Message.Hdrs); err != nil {
			return rmsg{}, false, fmt.Errorf("reading stream %s: %w", stream, err)
		}
	}
	return r, true, nil
}

// getSeq returns the message at seq.
func (s *Store) getSeq(ctx context.Context, stream string, seq uint64) (rmsg, bool, error) {
	var out rmsg
	err := s.direct(ctx, stream, &directReq{Seq: seq}, func(m *rmsg) error { out = *m; return nil })
	if errors.Is(err, errNotFound) || errors.Is(err, errNoStream) {
		return out, false, nil
	}
	return out, err == nil, err
}

// scanSubject calls fn with every message on subj (wildcards allowed)
// from sequence from up to and including upTo (0: the end), in order.
func (s *Store) scanSubject(ctx context.Context, stream, subj string, from, upTo uint64, fn func(*rmsg) error) error {
	const chunk = 1000
	seq := max(from, 1)
	for {
		n, last := 0, uint64(0)
		past := false
		err := s.direct(ctx, stream, &directReq{Seq: seq, NextFor: subj, Batch: chunk}, func(m *rmsg) error {
			n++
			last = m.seq
			if upTo > 0 && m.seq > upTo {
				past = true
				return nil
			}
			if past {
				return nil
			}
			return fn(m)
		})
		if errors.Is(err, errNoStream) {
			return nil
		}
		if err != nil || n < chunk || past {
			return err
		}
		seq = last + 1
	}
}
