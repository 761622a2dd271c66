package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
)

// Defaults of Options.MaxRequestBytes and Options.BodyBudget.
const (
	DefaultMaxRequestBytes = 64 << 20
	DefaultBodyBudget      = 128 << 20
)

// bodyBudget bounds the bytes of request bodies held at once by all
// requests together. A request reserves its Content-Length before its
// handler runs (or, without one, each chunk as it is buffered) and gives
// it back when the handler returns; a request that does not fit is
// answered 429 at once, so concurrent large webhook posts cannot add up
// to an unbounded heap.
type bodyBudget struct {
	mu    sync.Mutex
	used  int64
	limit int64
	// peak is the highest use seen (tests).
	peak int64
	// onChange, if set, is called with the use after every change
	// (the in-flight gauge).
	onChange func(int64)
}

func (b *bodyBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	if b.onChange != nil {
		b.onChange(b.used)
	}
	return true
}

func (b *bodyBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.onChange != nil {
		b.onChange(b.used)
	}
}

var (
	errBudget   = errors.New("body budget exhausted")
	errTooLarge = errors.New("body too large")
)

// admit reserves the budget for r's body and replaces r.Body with one
// that cannot exceed it: with a Content-Length the reservation is made
// once; a body of unknown length (chunked) is buffered here, reserving as
// it grows, so that the handler runs only with a body the budget holds.
// It returns the number of bytes reserved, to release when the handler
// is done, or errTooLarge / errBudget / a read error.
func (b *bodyBudget) admit(r *http.Request, maxBytes int64) (int64, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return 0, nil
	}
	if r.ContentLength > maxBytes {
		return 0, errTooLarge
	}
	if r.ContentLength > 0 {
		if !b.tryAcquire(r.ContentLength) {
			return 0, errBudget
		}
		// net/http already stops reading at Content-Length.
		return r.ContentLength, nil
	}
	var buf bytes.Buffer
	var reserved int64
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(chunk)
		if n > 0 {
			if reserved+int64(n) > maxBytes {
				b.release(reserved)
				return 0, errTooLarge
			}
			if !b.tryAcquire(int64(n)) {
				b.release(reserved)
				return 0, errBudget
			}
			reserved += int64(n)
			buf.Write(chunk[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			b.release(reserved)
			return 0, err
		}
	}
	r.Body.Close()
	r.Body = io.NopCloser(&buf)
	r.ContentLength = int64(buf.Len())
	return reserved, nil
}
