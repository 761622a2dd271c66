package fakeapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// TimeFormat is the layout of lastChanged, updated_at and createdAt: UTC
// with milliseconds, e.g. "2024-01-01T00:00:00.000Z".
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Server-managed record fields.
const (
	fieldID          = "id"
	fieldVersion     = "version"
	fieldLastChanged = "lastChanged"
	fieldUpdatedAt   = "updated_at"
	fieldDeleted     = "deleted"
)

// record is one stored version. Records are immutable once stored: an
// update stores a new *record, so slices of them may be read without the
// lock.
type record struct {
	id      int64
	updated time.Time
	version int64
	deleted bool
	data    []byte // the encoded JSON object, server fields included
}

func (r *record) etag() string {
	return `"` + strconv.FormatInt(r.id, 10) + "." + strconv.FormatInt(r.version, 10) + `"`
}

// viewKey selects one cached ordering of a collection.
type viewKey struct {
	byID           bool
	includeDeleted bool
}

type collection struct {
	mu   sync.RWMutex
	byID map[int64]*record
	// idem maps Idempotency-Key values of creates to the record created;
	// idemMu serialises keyed creates.
	idem       map[string]int64
	idemMu     sync.Mutex
	maxID      int64
	maxUpdated time.Time
	views      map[viewKey][]*record // rebuilt lazily; cleared on change
}

func newCollection() *collection {
	return &collection{byID: make(map[int64]*record), views: make(map[viewKey][]*record)}
}

// view returns the records in the requested order (updated: lastChanged
// then id; byID: id). The slice is never modified afterwards.
func (c *collection) view(k viewKey) []*record {
	c.mu.RLock()
	v, ok := c.views[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.views[k]; ok {
		return v
	}
	v = make([]*record, 0, len(c.byID))
	for _, r := range c.byID {
		if r.deleted && !k.includeDeleted {
			continue
		}
		v = append(v, r)
	}
	if k.byID {
		slices.SortFunc(v, func(a, b *record) int { return cmp.Compare(a.id, b.id) })
	} else {
		slices.SortFunc(v, compareUpdated)
	}
	c.views[k] = v
	return v
}

func compareUpdated(a, b *record) int {
	if c := a.updated.Compare(b.updated); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// storeLocked stores r and invalidates the views. c.mu must be held.
func (c *collection) storeLocked(r *record) {
	c.byID[r.id] = r
	c.maxID = max(c.maxID, r.id)
	if r.updated.After(c.maxUpdated) {
		c.maxUpdated = r.updated
	}
	clear(c.views)
}

// nextUpdatedLocked returns a change timestamp strictly after every stored
// one, so that a change is always seen by a since query for the previous
// maximum: max(now, newest + 1 ms), truncated to milliseconds.
func (c *collection) nextUpdatedLocked(now time.Time) time.Time {
	t := now.UTC().Truncate(time.Millisecond)
	if !t.After(c.maxUpdated) {
		t = c.maxUpdated.Add(time.Millisecond)
	}
	return t
}

// encodeRecord sets the server fields on obj and encodes it.
func encodeRecord(obj map[string]any, id, version int64, updated time.Time, deleted bool) ([]byte, error) {
	obj[fieldID] = json.Number(strconv.FormatInt(id, 10))
	obj[fieldVersion] = json.Number(strconv.FormatInt(version, 10))
	ts := updated.UTC().Format(TimeFormat)
	obj[fieldLastChanged] = ts
	obj[fieldUpdatedAt] = ts
	if deleted {
		obj[fieldDeleted] = true
	} else {
		delete(obj, fieldDeleted)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, fmt.Errorf("encoding record %d: %w", id, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// decode returns a fresh copy of the record's object.
func (r *record) decode() map[string]any {
	dec := json.NewDecoder(bytes.NewReader(r.data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		// Stored data is always an encoded object.
		return map[string]any{fieldID: json.Number(strconv.FormatInt(r.id, 10))}
	}
	return m
}

// errNotFound and friends are mapped to HTTP statuses by the handlers.
var (
	errNotFound   = errors.New("not found")
	errConflict   = errors.New("conflict")
	errBadRequest = errors.New("bad request")
)

// parseID reads a record id from a JSON value or path text.
func parseID(v any) (int64, error) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	case float64:
		if v != float64(int64(v)) {
			return 0, fmt.Errorf("%w: id %v is not an integer", errBadRequest, v)
		}
		return int64(v), nil
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	default:
		return 0, fmt.Errorf("%w: id must be an integer", errBadRequest)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: id %q is not a positive integer", errBadRequest, s)
	}
	return n, nil
}

// put creates or replaces a record. When keepUpdated is true and obj has a
// parseable lastChanged, that timestamp is kept (seeding, tests); otherwise
// the record gets the next change timestamp. The id comes from obj or is
// generated. ifMatch, when not empty, must match the current ETag ("*"
// matches any existing record). mode is "create" (conflict if it exists),
// "replace" (not found if absent) or "upsert".
func (c *collection) put(obj map[string]any, now time.Time, keepUpdated bool, mode, ifMatch string) (*record, error) {
	obj = maps.Clone(obj)
	c.mu.Lock()
	defer c.mu.Unlock()
	var id int64
	if v, ok := obj[fieldID]; ok && v != nil {
		n, err := parseID(v)
		if err != nil {
			return nil, err
		}
		id = n
	} else {
		if mode == "replace" {
			return nil, fmt.Errorf("%w: id is required", errBadRequest)
		}
		id = c.maxID + 1
	}
	old, exists := c.byID[id]
	if exists && old.deleted {
		exists = false
	}
	switch {
	case mode == "create" && exists:
		return nil, fmt.Errorf("%w: record %d exists", errConflict, id)
	case mode == "replace" && !exists:
		return nil, fmt.Errorf("%w: record %d", errNotFound, id)
	}
	if err := checkIfMatch(ifMatch, old, exists); err != nil {
		return nil, err
	}
	version := int64(1)
	if old != nil {
		version = old.version + 1
	}
	updated := time.Time{}
	if keepUpdated {
		if s, ok := obj[fieldLastChanged].(string); ok {
			if t, err := parseTime(s); err == nil {
				updated = t.Truncate(time.Millisecond)
			}
		}
	}
	if updated.IsZero() {
		updated = c.nextUpdatedLocked(now)
	}
	data, err := encodeRecord(obj, id, version, updated, false)
	if err != nil {
		return nil, err
	}
	r := &record{id: id, updated: updated, version: version, data: data}
	c.storeLocked(r)
	return r, nil
}

// errPrecondition is an If-Match mismatch (412).
var errPrecondition = errors.New("precondition failed")

func checkIfMatch(ifMatch string, old *record, exists bool) error {
	if ifMatch == "" {
		return nil
	}
	if ifMatch == "*" {
		if !exists {
			return fmt.Errorf("%w: If-Match * but the record does not exist", errPrecondition)
		}
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: If-Match %s but the record does not exist", errPrecondition, ifMatch)
	}
	for _, tag := range splitETags(ifMatch) {
		if tag == old.etag() {
			return nil
		}
	}
	return fmt.Errorf("%w: If-Match %s, current ETag %s", errPrecondition, ifMatch, old.etag())
}

func splitETags(s string) []string {
	var out []string
	for _, p := range bytes.Split([]byte(s), []byte(",")) {
		t := string(bytes.TrimSpace(p))
		t = string(bytes.TrimPrefix([]byte(t), []byte("W/")))
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// patch applies a JSON merge patch (RFC 7386) to a record.
func (c *collection) patch(id int64, patch map[string]any, now time.Time, ifMatch string) (*record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.byID[id]
	if !ok || old.deleted {
		return nil, fmt.Errorf("%w: record %d", errNotFound, id)
	}
	if err := checkIfMatch(ifMatch, old, true); err != nil {
		return nil, err
	}
	if v, ok := patch[fieldID]; ok && v != nil {
		if n, err := parseID(v); err != nil || n != id {
			return nil, fmt.Errorf("%w: id cannot be changed", errBadRequest)
		}
	}
	obj := mergePatch(old.decode(), patch).(map[string]any)
	updated := c.nextUpdatedLocked(now)
	data, err := encodeRecord(obj, id, old.version+1, updated, false)
	if err != nil {
		return nil, err
	}
	r := &record{id: id, updated: updated, version: old.version + 1, data: data}
	c.storeLocked(r)
	return r, nil
}

func mergePatch(target any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// remove deletes a record, leaving a tombstone that since queries with
// include_deleted=true return.
func (c *collection) remove(id int64, now time.Time, ifMatch string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.byID[id]
	if !ok || old.deleted {
		return fmt.Errorf("%w: record %d", errNotFound, id)
	}
	if err := checkIfMatch(ifMatch, old, true); err != nil {
		return err
	}
	updated := c.nextUpdatedLocked(now)
	data, err := encodeRecord(map[string]any{}, id, old.version+1, updated, true)
	if err != nil {
		return err
	}
	c.storeLocked(&record{id: id, updated: updated, version: old.version + 1, deleted: true, data: data})
	return nil
}

// touch bumps a record's lastChanged and version without changing its data.
func (c *collection) touch(id int64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.byID[id]
	if !ok || old.deleted {
		return false
	}
	updated := c.nextUpdatedLocked(now)
	data, err := encodeRecord(old.decode(), id, old.version+1, updated, false)
	if err != nil {
		return false
	}
	c.storeLocked(&record{id: id, updated: updated, version: old.version + 1, data: data})
	return true
}

func (c *collection) get(id int64) (*record, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.byID[id]
	if !ok || r.deleted {
		return nil, false
	}
	return r, true
}

// parseTime accepts RFC 3339 (with or without fraction), a zone-less
// "2006-01-02T15:04:05" (UTC), a date "2006-01-02" (midnight UTC), or Unix
// seconds.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is not a timestamp (RFC 3339, date or Unix seconds)", errBadRequest, s)
}

// IdempotencyKeyHeader is the request header that makes a create
// idempotent: a second POST with the same key creates nothing and answers
// the record the first one created (with Idempotent-Replayed: true).
const IdempotencyKeyHeader = "Idempotency-Key"

// create stores a new record; with an idempotency key already used it
// returns the record created then (replayed true).
func (c *collection) create(obj map[string]any, now time.Time, key string) (*record, bool, error) {
	if key == "" {
		rec, err := c.put(obj, now, false, "create", "")
		return rec, false, err
	}
	// Keyed creates are serialised, so that two concurrent requests with
	// one key create one record.
	c.idemMu.Lock()
	defer c.idemMu.Unlock()
	c.mu.RLock()
	id, seen := c.idem[key]
	rec := c.byID[id]
	c.mu.RUnlock()
	if seen && rec != nil {
		return rec, true, nil
	}
	rec, err := c.put(obj, now, false, "create", "")
	if err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	if c.idem == nil {
		c.idem = map[string]int64{}
	}
	c.idem[key] = rec.id
	c.mu.Unlock()
	return rec, false, nil
}

// matches reports whether the record's fields equal every filter value
// (compared as text: strings as they are, numbers and booleans as
// written).
func (r *record) matches(filters map[string]string) bool {
	m := r.decode()
	for f, want := range filters {
		v, ok := m[f]
		if !ok || v == nil {
			return false
		}
		var got string
		switch x := v.(type) {
		case string:
			got = x
		case json.Number:
			got = x.String()
		default:
			b, _ := json.Marshal(x)
			got = string(b)
		}
		if got != want {
			return false
		}
	}
	return true
}
