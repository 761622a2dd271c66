package fakeapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const maxBody = 8 << 20

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the underlying writer (hijacking).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Write records an implicit 200.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logged counts a request and appends it to the request log.
func (a *API) logged(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		a.stats.requests.Add(1)
		if a.opts.LogLimit < 0 {
			h(w, r)
			return
		}
		entry := LoggedRequest{Time: a.now(), Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone()}
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "reading request body: "+err.Error())
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			entry.Body = body[:min(len(body), 64<<10)]
		}
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		entry.Status = sw.status
		a.logMu.Lock()
		if len(a.reqLog) >= a.opts.LogLimit {
			a.reqLog = slices.Delete(a.reqLog, 0, len(a.reqLog)-a.opts.LogLimit+1)
		}
		a.reqLog = append(a.reqLog, entry)
		a.logMu.Unlock()
	}
}

// api wraps an /api handler with fault injection and authentication.
func (a *API) api(h http.HandlerFunc) http.HandlerFunc {
	return a.logged(func(w http.ResponseWriter, r *http.Request) {
		n := a.stats.apiRequests.Add(1)
		fault, f := a.nextFault(n, r.Method)
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch fault {
		case faultRateLimit:
			a.stats.rateLimited.Add(1)
			switch f.RetryAfter {
			case "none":
			case "":
				w.Header().Set("Retry-After", "1")
			default:
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests")
			return
		case faultError:
			a.stats.injectedErrors.Add(1)
			status := f.ErrorStatus
			if status == 0 {
				status = http.StatusServiceUnavailable
			}
			writeError(w, status, "injected_error", "injected failure")
			return
		case faultNonJSON:
			a.stats.nonJSON.Add(1)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "<!DOCTYPE html><html><head><title>Maintenance</title></head>"+
				"<body><h1>We'll be back soon</h1></body></html>\n")
			return
		}
		if !a.authorized(w, r) {
			a.stats.unauthorized.Add(1)
			return
		}
		if isWrite(r.Method) && a.writeThenFail() {
			// Apply the write, then lose the answer.
			h(&discardWriter{header: http.Header{}}, r)
			a.stats.injectedErrors.Add(1)
			if f.WriteThenFailStatus == 0 {
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					conn.Close()
					return
				}
				panic(http.ErrAbortHandler)
			}
			writeError(w, f.WriteThenFailStatus, "injected_error", "injected failure after the write was applied")
			return
		}
		h(w, r)
	})
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// writeThenFail decides whether the current write fails after it is
// applied.
func (a *API) writeThenFail() bool {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	f := &a.faults
	a.writes++
	switch {
	case f.WriteThenFailNext > 0:
		f.WriteThenFailNext--
		return true
	case f.WriteThenFailEvery > 0 && a.writes%int64(f.WriteThenFailEvery) == 0:
		return true
	}
	return false
}

// discardWriter swallows a handler's answer.
type discardWriter struct{ header http.Header }

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

type fault int

const (
	faultNone fault = iota
	faultRateLimit
	faultError
	faultNonJSON
)

// nextFault decides the fault for /api request number n (method) and
// returns a copy of the settings it used.
func (a *API) nextFault(n int64, method string) (fault, Faults) {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	f := &a.faults
	if len(f.Methods) > 0 {
		if !slices.ContainsFunc(f.Methods, func(m string) bool { return strings.EqualFold(m, method) }) {
			return faultNone, *f
		}
		a.matched++
		n = a.matched
	}
	every := func(k int) bool { return k > 0 && n%int64(k) == 0 }
	out := faultNone
	switch {
	case f.RateLimitNext > 0:
		f.RateLimitNext--
		out = faultRateLimit
	case every(f.RateLimitEvery):
		out = faultRateLimit
	case f.ErrorNext > 0:
		f.ErrorNext--
		out = faultError
	case every(f.ErrorEvery):
		out = faultError
	case f.NonJSONNext > 0:
		f.NonJSONNext--
		out = faultNonJSON
	case every(f.NonJSONEvery):
		out = faultNonJSON
	}
	return out, *f
}

func equalSecret(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authorized checks the /api credentials and answers 401 when they fail.
func (a *API) authorized(w http.ResponseWriter, r *http.Request) bool {
	switch a.opts.Auth {
	case AuthBearer:
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") && a.auth.validAccess(strings.TrimSpace(tok), a.now()) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "missing, unknown or expired access token")
		return false
	case AuthBasic:
		u, p, ok := r.BasicAuth()
		if ok && equalSecret(u, a.opts.Username) && equalSecret(p, a.opts.Password) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="fakeapi"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "bad or missing basic credentials")
		return false
	case AuthAPIKey:
		if k := r.Header.Get(a.opts.APIKeyHeader); k != "" && equalSecret(k, a.opts.APIKey) {
			return true
		}
		writeError(w, http.StatusUnauthorized, "unauthorized", "bad or missing API key")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// writeError answers {"error": code, "message": msg, "status": status}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": code, "message": msg, "status": status})
}

// writeStoreError maps store errors to statuses.
func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, errConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, errPrecondition):
		writeError(w, http.StatusPreconditionFailed, "precondition_failed", err.Error())
	case errors.Is(err, errBadRequest):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func writeRecord(w http.ResponseWriter, status int, rec *record, location string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", rec.etag())
	h.Set("Last-Modified", rec.updated.UTC().Format(http.TimeFormat))
	if location != "" {
		h.Set("Location", location)
	}
	w.WriteHeader(status)
	_, _ = w.Write(rec.data)
}

func (a *API) handleCollections(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"collections": a.Collections()})
}

func (a *API) mustCollection(w http.ResponseWriter, r *http.Request) (*collection, bool) {
	name := r.PathValue("collection")
	c, ok := a.collection(name)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no collection %q", name))
	}
	return c, ok
}

func (a *API) pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		writeStoreError(w, err)
		return 0, false
	}
	return id, true
}

func (a *API) handleGet(w http.ResponseWriter, r *http.Request) {
	c, ok := a.mustCollection(w, r)
	if !ok {
		return
	}
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	rec, ok := c.get(id)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("record %d", id))
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && slices.Contains(splitETags(inm), rec.etag()) {
		w.Header().Set("ETag", rec.etag())
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeRecord(w, http.StatusOK, rec, "")
}

// readObject decodes a JSON object body with UseNumber.
func readObject(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		msg := "body must be a JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		writeError(w, http.StatusBadRequest, "bad_request", msg)
		return nil, false
	}
	return obj, true
}

func (a *API) checkRequired(w http.ResponseWriter, collection string, obj map[string]any) bool {
	var missing []string
	for _, f := range a.opts.Required[collection] {
		if v, ok := obj[f]; !ok || v == nil || v == "" {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return true
	}
	writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "validation_failed",
		"message": "missing required fields", "fields": missing, "status": http.StatusUnprocessableEntity})
	return false
}

func (a *API) handleCreate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("collection")
	obj, ok := readObject(w, r)
	if !ok || !a.checkRequired(w, name, obj) {
		return
	}
	for _, k := range []string{fieldVersion, fieldLastChanged, fieldUpdatedAt, fieldDeleted} {
		delete(obj, k)
	}
	c := a.collectionOrCreate(name)
	rec, replayed, err := c.create(obj, a.now(), r.Header.Get(IdempotencyKeyHeader))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeRecord(w, http.StatusCreated, rec, "/api/"+url.PathEscape(name)+"/"+strconv.FormatInt(rec.id, 10))
}

func (a *API) handleReplace(w http.ResponseWriter, r *http.Request) {
	c, ok := a.mustCollection(w, r)
	if !ok {
		return
	}
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	obj, ok := readObject(w, r)
	if !ok || !a.checkRequired(w, r.PathValue("collection"), obj) {
		return
	}
	if v, ok := obj[fieldID]; ok && v != nil {
		if n, err := parseID(v); err != nil || n != id {
			writeError(w, http.StatusBadRequest, "bad_request", "body id does not match the URL")
			return
		}
	}
	for _, k := range []string{fieldVersion, fieldLastChanged, fieldUpdatedAt, fieldDeleted} {
		delete(obj, k)
	}
	obj[fieldID] = json.Number(strconv.FormatInt(id, 10))
	rec, err := c.put(obj, a.now(), false, "replace", r.Header.Get("If-Match"))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeRecord(w, http.StatusOK, rec, "")
}

func (a *API) handlePatch(w http.ResponseWriter, r *http.Request) {
	c, ok := a.mustCollection(w, r)
	if !ok {
		return
	}
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	obj, ok := readObject(w, r)
	if !ok {
		return
	}
	for _, k := range []string{fieldVersion, fieldLastChanged, fieldUpdatedAt, fieldDeleted} {
		delete(obj, k)
	}
	rec, err := c.patch(id, obj, a.now(), r.Header.Get("If-Match"))
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeRecord(w, http.StatusOK, rec, "")
}

func (a *API) handleDelete(w http.ResponseWriter, r *http.Request) {
	c, ok := a.mustCollection(w, r)
	if !ok {
		return
	}
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	if err := c.remove(id, a.now(), r.Header.Get("If-Match")); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listQuery is a parsed list request.
type listQuery struct {
	mode           Paging
	offsetParam    string // offset mode: the parameter name used
	page, offset   int
	limit          int
	after          *cursor
	since          time.Time
	hasSince       bool
	byID           bool
	includeDeleted bool
	envelope       string
	repeat         bool
	alwaysNext     bool
	// filters are filter[field]=value parameters: field -> value.
	filters map[string]string
}

type cursor struct {
	updated time.Time
	id      int64
}

func (c cursor) encode(byID bool) string {
	var s string
	if byID {
		s = "i" + strconv.FormatInt(c.id, 10)
	} else {
		s = "u" + strconv.FormatInt(c.updated.UnixMilli(), 10) + "_" + strconv.FormatInt(c.id, 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodeCursor(s string, byID bool) (*cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	bad := fmt.Errorf("%w: invalid cursor %q", errBadRequest, s)
	if err != nil || len(raw) < 2 {
		return nil, bad
	}
	body := string(raw[1:])
	switch {
	case raw[0] == 'i' && byID:
		id, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, bad
		}
		return &cursor{id: id}, nil
	case raw[0] == 'u' && !byID:
		ms, id, ok := strings.Cut(body, "_")
		m, err1 := strconv.ParseInt(ms, 10, 64)
		n, err2 := strconv.ParseInt(id, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, bad
		}
		return &cursor{updated: time.UnixMilli(m).UTC(), id: n}, nil
	}
	return nil, bad
}

func firstParam(q url.Values, names ...string) (name, value string, ok bool) {
	for _, n := range names {
		if q.Has(n) {
			return n, q.Get(n), true
		}
	}
	return "", "", false
}

func nonNegInt(name, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q is not a non-negative integer", errBadRequest, name, v)
	}
	return n, nil
}

func boolParam(q url.Values, name string, def bool) bool {
	if !q.Has(name) {
		return def
	}
	b, err := strconv.ParseBool(q.Get(name))
	return err == nil && b || q.Get(name) == ""
}

func (a *API) parseList(r *http.Request) (listQuery, error) {
	q := r.URL.Query()
	lq := listQuery{mode: a.opts.Paging, limit: a.opts.DefaultLimit, offsetParam: "offset"}
	if name, v, ok := firstParam(q, "limit", "top", "$top", "per_page", "page_size", "pageSize"); ok {
		n, err := nonNegInt(name, v)
		if err != nil {
			return lq, err
		}
		if n == 0 {
			return lq, fmt.Errorf("%w: %s must be at least 1", errBadRequest, name)
		}
		lq.limit = min(n, a.opts.MaxLimit)
	}
	switch order := q.Get("order"); order {
	case "", "updated", "lastChanged", "updated_at":
	case "id":
		lq.byID = true
	default:
		return lq, fmt.Errorf("%w: order=%q (want updated or id)", errBadRequest, order)
	}
	lq.includeDeleted = boolParam(q, "include_deleted", false)
	for k, vs := range q {
		if f, ok := strings.CutPrefix(k, "filter["); ok && strings.HasSuffix(f, "]") && len(f) > 1 {
			if lq.filters == nil {
				lq.filters = map[string]string{}
			}
			lq.filters[strings.TrimSuffix(f, "]")] = vs[0]
		}
	}
	lq.repeat = boolParam(q, "repeat", a.opts.RepeatForever)
	lq.alwaysNext = boolParam(q, "always_next", a.opts.AlwaysNext)
	lq.envelope = q.Get("envelope")
	switch lq.envelope {
	case "", "data", "array", "odata":
	default:
		return lq, fmt.Errorf("%w: envelope=%q (want data, array or odata)", errBadRequest, lq.envelope)
	}
	since := q.Get("since")
	if since == "" {
		since = r.Header.Get("Since")
	}
	if since != "" {
		t, err := parseTime(since)
		if err != nil {
			return lq, err
		}
		lq.since, lq.hasSince = t, true
	}
	if f := q.Get("$filter"); f != "" {
		t, err := parseODataFilter(f)
		if err != nil {
			return lq, err
		}
		// Both are lower bounds: the later one wins.
		if !lq.hasSince || t.After(lq.since) {
			lq.since, lq.hasSince = t, true
		}
	}
	if p := q.Get("paging"); p != "" {
		switch Paging(p) {
		case PagingPage, PagingOffset, PagingCursor:
			lq.mode = Paging(p)
		default:
			return lq, fmt.Errorf("%w: paging=%q (want page, offset or cursor)", errBadRequest, p)
		}
	}
	if name, v, ok := firstParam(q, "after", "cursor"); ok {
		lq.mode = PagingCursor
		if v != "" {
			c, err := decodeCursor(v, lq.byID)
			if err != nil {
				return lq, fmt.Errorf("%s: %w", name, err)
			}
			lq.after = c
		}
		return lq, nil
	}
	if name, v, ok := firstParam(q, "offset", "skip", "$skip"); ok {
		n, err := nonNegInt(name, v)
		if err != nil {
			return lq, err
		}
		lq.mode, lq.offsetParam, lq.offset = PagingOffset, name, n
		return lq, nil
	}
	pageText, hasPage := q.Get("page"), q.Has("page")
	if !hasPage {
		for _, h := range []string{"X-Sesam-Page", "X-Page"} {
			if v := r.Header.Get(h); v != "" {
				pageText, hasPage = v, true
				break
			}
		}
	}
	if hasPage {
		n, err := nonNegInt("page", pageText)
		if err != nil {
			return lq, err
		}
		lq.mode, lq.page = PagingPage, n
		if !a.opts.ZeroBasedPages {
			lq.page = max(n, 1)
		}
	} else if !a.opts.ZeroBasedPages {
		lq.page = 1
	}
	return lq, nil
}

// pageIndex is the 0-based page number of lq.page.
func (a *API) pageIndex(page int) int {
	if a.opts.ZeroBasedPages {
		return page
	}
	return max(page-1, 0)
}

func (a *API) baseURL(r *http.Request) string {
	if a.opts.BaseURL != "" {
		return strings.TrimRight(a.opts.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *API) handleList(w http.ResponseWriter, r *http.Request) {
	c, ok := a.mustCollection(w, r)
	if !ok {
		return
	}
	lq, err := a.parseList(r)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	items := c.view(viewKey{byID: lq.byID, includeDeleted: lq.includeDeleted})
	if lq.hasSince {
		if lq.byID {
			filtered := make([]*record, 0, len(items)/2)
			for _, rec := range items {
				if !rec.updated.Before(lq.since) {
					filtered = append(filtered, rec)
				}
			}
			items = filtered
		} else {
			i := sort.Search(len(items), func(i int) bool { return !items[i].updated.Before(lq.since) })
			items = items[i:]
		}
	}
	if len(lq.filters) > 0 {
		filtered := make([]*record, 0, 4)
		for _, rec := range items {
			if rec.matches(lq.filters) {
				filtered = append(filtered, rec)
			}
		}
		items = filtered
	}
	total := len(items)
	var start int
	switch lq.mode {
	case PagingCursor:
		if lq.after != nil {
			cur := *lq.after
			start = sort.Search(len(items), func(i int) bool {
				if lq.byID {
					return items[i].id > cur.id
				}
				return compareUpdated(items[i], &record{updated: cur.updated, id: cur.id}) > 0
			})
		}
	case PagingOffset:
		start = lq.offset
	default:
		// Compare before multiplying: a huge page number must not overflow.
		if idx := a.pageIndex(lq.page); idx > total/lq.limit {
			start = total
		} else {
			start = idx * lq.limit
		}
	}
	start = min(start, total)
	end := min(start+lq.limit, total)
	page := items[start:end]

	self := a.baseURL(r) + r.URL.RequestURI()
	next := ""
	switch {
	case lq.repeat:
		next = self
	case end < total || lq.alwaysNext:
		nq := r.URL.Query()
		switch lq.mode {
		case PagingCursor:
			nq.Del("cursor")
			switch {
			case len(page) > 0:
				last := page[len(page)-1]
				nq.Set("after", cursor{updated: last.updated, id: last.id}.encode(lq.byID))
			case lq.after != nil:
				nq.Set("after", lq.after.encode(lq.byID))
			default:
				nq.Set("after", "")
			}
		case PagingOffset:
			nq.Set(lq.offsetParam, strconv.Itoa(start+len(page)))
			if !nq.Has("limit") && !nq.Has("top") && !nq.Has("$top") {
				nq.Set("limit", strconv.Itoa(lq.limit))
			}
		default:
			nq.Set("page", strconv.Itoa(lq.page+1))
		}
		next = a.baseURL(r) + r.URL.Path + "?" + nq.Encode()
	}
	a.stats.recordsServed.Add(int64(len(page)))

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Total-Count", strconv.Itoa(total))
	if next != "" {
		h.Set("Link", "<"+next+`>; rel="next"`)
	}
	size := 128 + len(next)
	for _, rec := range page {
		size += len(rec.data) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	writeItems := func() {
		buf.WriteByte('[')
		for i, rec := range page {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(rec.data)
		}
		buf.WriteByte(']')
	}
	nextJSON := []byte("null")
	if next != "" {
		nextJSON, _ = json.Marshal(next)
	}
	switch lq.envelope {
	case "array":
		writeItems()
	case "odata":
		buf.WriteString(`{"@odata.count":`)
		buf.WriteString(strconv.Itoa(total))
		if next != "" {
			buf.WriteString(`,"@odata.nextLink":`)
			buf.Write(nextJSON)
		}
		buf.WriteString(`,"value":`)
		writeItems()
		buf.WriteByte('}')
	default:
		buf.WriteString(`{"data":`)
		writeItems()
		buf.WriteString(`,"total":`)
		buf.WriteString(strconv.Itoa(total))
		buf.WriteString(`,"limit":`)
		buf.WriteString(strconv.Itoa(lq.limit))
		switch lq.mode {
		case PagingCursor:
			buf.WriteString(`,"paging":`)
			if next != "" && !lq.repeat {
				after, _ := json.Marshal(mustQuery(next).Get("after"))
				buf.WriteString(`{"next":{"after":`)
				buf.Write(after)
				buf.WriteString(`,"link":`)
				buf.Write(nextJSON)
				buf.WriteString(`}}`)
			} else {
				buf.WriteString(`{}`)
			}
		case PagingOffset:
			buf.WriteString(`,"offset":`)
			buf.WriteString(strconv.Itoa(start))
		default:
			buf.WriteString(`,"page":`)
			buf.WriteString(strconv.Itoa(lq.page))
		}
		buf.WriteString(`,"nextPageUrl":`)
		buf.Write(nextJSON)
		buf.WriteByte('}')
	}
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func mustQuery(u string) url.Values {
	p, err := url.Parse(u)
	if err != nil {
		return url.Values{}
	}
	return p.Query()
}

func (a *API) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Stats())
}

func (a *API) handleGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, faultsJSON(a.Faults()))
}

// faultsJSON renders Delay as a Go duration string for the admin endpoint.
func faultsJSON(f Faults) map[string]any {
	data, _ := json.Marshal(f)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	if f.Delay > 0 {
		m["delay"] = f.Delay.String()
	}
	return m
}

func (a *API) handlePutFaults(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Faults
		Delay string `json:"delay"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "faults: "+err.Error())
		return
	}
	f := in.Faults
	if in.Delay != "" {
		d, err := time.ParseDuration(in.Delay)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "faults: delay: "+err.Error())
			return
		}
		f.Delay = d
	}
	a.SetFaults(f)
	writeJSON(w, http.StatusOK, faultsJSON(f))
}

// odataFilter is the one OData $filter shape fakeapi understands: a lower
// bound on the change time, as PowerOffice Go style connectors send it.
var odataFilter = regexp.MustCompile(`(?i)^(lastChanged|updated_at)\s+(ge|gt)\s+(?:datetimeoffset|datetime)?'([^']*)'$`)

// parseODataFilter turns "(LastChanged ge datetimeoffset'T')" (outer
// parentheses optional, field and keywords in any case, gt for a strict
// bound) into the earliest lastChanged it admits.
func parseODataFilter(f string) (time.Time, error) {
	expr := strings.TrimSpace(f)
	for strings.HasPrefix(expr, "(") && strings.HasSuffix(expr, ")") {
		expr = strings.TrimSpace(expr[1 : len(expr)-1])
	}
	m := odataFilter.FindStringSubmatch(expr)
	if m == nil {
		return time.Time{}, fmt.Errorf("%w: unsupported $filter %q (want \"LastChanged ge datetimeoffset'<time>'\")", errBadRequest, f)
	}
	t, err := parseTime(m[3])
	if err != nil {
		return time.Time{}, fmt.Errorf("$filter: %w", err)
	}
	if strings.EqualFold(m[2], "gt") {
		// Timestamps have millisecond precision; a nanosecond later
		// excludes exactly T.
		t = t.Add(time.Nanosecond)
	}
	return t, nil
}
