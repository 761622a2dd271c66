package fakeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AuthMode selects how /api requests are authenticated.
type AuthMode string

// Authentication modes.
const (
	// AuthNone accepts every request.
	AuthNone AuthMode = ""
	// AuthBearer requires "Authorization: Bearer <token>" with a token
	// issued by /oauth/token or [API.IssueToken] and not yet expired.
	AuthBearer AuthMode = "bearer"
	// AuthBasic requires HTTP basic credentials Username/Password.
	AuthBasic AuthMode = "basic"
	// AuthAPIKey requires header APIKeyHeader with value APIKey.
	AuthAPIKey AuthMode = "apikey"
)

// Paging selects how the first page's next link continues when the request
// does not pick a style itself.
type Paging string

// Paging styles; see the package doc.
const (
	PagingPage   Paging = "page"
	PagingOffset Paging = "offset"
	PagingCursor Paging = "cursor"
)

// Options configure an API. The zero value serves empty, unauthenticated
// collections.
type Options struct {
	// Seed is the number of generated records per collection. Known
	// collections ("customers", "products", "invoices") get realistic
	// fields; any other name gets generic ones. A 0 count creates an empty
	// collection.
	Seed map[string]int
	// SeedValue makes generation deterministic (default 1).
	SeedValue uint64
	// BaseTime is the lastChanged of record 0; record i has BaseTime + i
	// minutes (default 2024-01-01T00:00:00Z).
	BaseTime time.Time
	// Now is the clock for changes and token expiry (default time.Now).
	Now func() time.Time

	// DefaultLimit is the page size without a limit parameter (default
	// 100); MaxLimit caps it (default 10000).
	DefaultLimit, MaxLimit int
	// Paging is the default paging style (default PagingPage).
	Paging Paging
	// ZeroBasedPages numbers pages from 0 (page=0 is the first page);
	// by default they are numbered from 1 and page=0 also means the first.
	ZeroBasedPages bool
	// AlwaysNext returns a next link even after the last page, so that
	// clients must stop on an empty page (empty-result idiom).
	AlwaysNext bool
	// RepeatForever makes every list response's next link the request's
	// own URL (same body every time), to test termination guards.
	RepeatForever bool
	// BaseURL is used in next links (default: http://<Host header>).
	BaseURL string
	// Required lists, per collection, the fields POST and PUT bodies must
	// have (422 otherwise).
	Required map[string][]string

	// Auth selects the /api authentication.
	Auth AuthMode
	// ClientID and ClientSecret are accepted by /oauth/token (defaults
	// "ferry-client" / "ferry-secret").
	ClientID, ClientSecret string
	// TokenLifetime is the access token lifetime (default 1 h).
	TokenLifetime time.Duration
	// RefreshTokenLifetime is the refresh token lifetime (0: no expiry).
	RefreshTokenLifetime time.Duration
	// RotateRefreshTokens makes every refresh return a new refresh token
	// and revoke the one used.
	RotateRefreshTokens bool
	// Username and Password are the basic credentials.
	Username, Password string
	// APIKeyHeader (default "X-API-Key") and APIKey are the API key.
	APIKeyHeader, APIKey string

	// Faults are the initial fault injection settings.
	Faults Faults
	// LogLimit caps the request log (default 10000; negative disables).
	LogLimit int
	// Logger receives server-side events (default: discard).
	Logger *slog.Logger
}

// API is a fake REST API; create it with [New]. It is safe for concurrent
// use; its Go methods may be called while it serves requests.
type API struct {
	opts Options
	now  func() time.Time
	log  *slog.Logger

	mu    sync.RWMutex
	colls map[string]*collection

	auth tokenStore

	faultMu sync.Mutex
	faults  Faults
	// matched and writes count the requests the Methods filter lets
	// through and the writes, for the Every forms.
	matched, writes int64

	stats  counters
	logMu  sync.Mutex
	reqLog []LoggedRequest
	// inflight counts requests not yet logged: ResetStats waits for them
	// (a write that fails after it is applied closes the connection
	// before its handler logs it, so its client can move on first).
	inflight atomic.Int64
}

// New builds an API and generates its seed data.
func New(opts Options) *API {
	if opts.SeedValue == 0 {
		opts.SeedValue = 1
	}
	if opts.BaseTime.IsZero() {
		opts.BaseTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DefaultLimit <= 0 {
		opts.DefaultLimit = 100
	}
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = 10000
	}
	if opts.Paging == "" {
		opts.Paging = PagingPage
	}
	if opts.ClientID == "" {
		opts.ClientID = "ferry-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "ferry-secret"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.APIKeyHeader == "" {
		opts.APIKeyHeader = "X-API-Key"
	}
	if opts.LogLimit == 0 {
		opts.LogLimit = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{
		opts:   opts,
		now:    opts.Now,
		log:    opts.Logger,
		colls:  make(map[string]*collection),
		faults: opts.Faults,
	}
	a.auth.init()
	names := make([]string, 0, len(opts.Seed))
	for name := range opts.Seed {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := opts.Seed[name]
		c := newCollection()
		g := newGenerator(opts.SeedValue, name, opts.BaseTime, opts.Seed)
		for i := int64(1); i <= int64(n); i++ {
			// Generated records always encode.
			_, _ = c.put(g.record(name, i), a.now(), true, "upsert", "")
		}
		a.colls[name] = c
	}
	return a
}

// Handler returns the HTTP handler serving the endpoints of the package
// doc.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/{$}", a.api(a.handleCollections))
	mux.HandleFunc("GET /api/{collection}", a.api(a.handleList))
	mux.HandleFunc("POST /api/{collection}", a.api(a.handleCreate))
	mux.HandleFunc("GET /api/{collection}/{id}", a.api(a.handleGet))
	mux.HandleFunc("PUT /api/{collection}/{id}", a.api(a.handleReplace))
	mux.HandleFunc("PATCH /api/{collection}/{id}", a.api(a.handlePatch))
	mux.HandleFunc("DELETE /api/{collection}/{id}", a.api(a.handleDelete))
	mux.HandleFunc("POST /oauth/token", a.logged(a.handleToken))
	mux.HandleFunc("GET /_admin/stats", a.handleStats)
	mux.HandleFunc("GET /_admin/faults", a.handleGetFaults)
	mux.HandleFunc("PUT /_admin/faults", a.handlePutFaults)
	token := a.logged(a.handleToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && isTokenPath(r.URL.Path) {
			token(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// isTokenPath reports whether a path is the token endpoint: "/oauth/token"
// in any letter case, also under a prefix ("/api/OAuth/Token"), as
// connectors build token URLs from their base URL.
func isTokenPath(p string) bool {
	const tail = "/oauth/token"
	return len(p) >= len(tail) && strings.EqualFold(p[len(p)-len(tail):], tail)
}

// ListenAndServe serves the API on addr until ctx ends, then shuts down
// gracefully (5 s). It returns nil after a shutdown caused by ctx.
func (a *API) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fake api: listening on %s: %w", addr, err)
	}
	return a.Serve(ctx, ln)
}

// Serve serves the API on ln until ctx ends; see ListenAndServe.
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("fake api listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("fake api: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("fake api: shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("fake api: serving on %s: %w", ln.Addr(), err)
	}
	return nil
}

func (a *API) collection(name string) (*collection, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	c, ok := a.colls[name]
	return c, ok
}

// collectionOrCreate returns the named collection, creating it empty.
func (a *API) collectionOrCreate(name string) *collection {
	if c, ok := a.collection(name); ok {
		return c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.colls[name]; ok {
		return c
	}
	c := newCollection()
	a.colls[name] = c
	return c
}

// Collections returns the collection names, sorted.
func (a *API) Collections() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	names := make([]string, 0, len(a.colls))
	for n := range a.colls {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Put creates or replaces a record (creating the collection if needed) and
// returns the stored copy. The record's "id" (integer or integer string)
// picks the record; without it a new id is generated. A parseable
// lastChanged in the record is kept, otherwise the change gets the next
// timestamp. Values must be JSON values as decoded with UseNumber.
func (a *API) Put(collection string, rec map[string]any) (map[string]any, error) {
	r, err := a.collectionOrCreate(collection).put(rec, a.now(), true, "upsert", "")
	if err != nil {
		return nil, fmt.Errorf("fake api: put %s: %w", collection, err)
	}
	return r.decode(), nil
}

// Patch changes fields of a live record out of band, as a user of the
// system would (JSON merge patch: a nil value removes the field); the
// change gets a new version and lastChanged. It returns the stored copy.
func (a *API) Patch(collection string, id int64, fields map[string]any) (map[string]any, error) {
	c, ok := a.collection(collection)
	if !ok {
		return nil, fmt.Errorf("fake api: patch %s/%d: %w", collection, id, errNotFound)
	}
	r, err := c.patch(id, fields, a.now(), "")
	if err != nil {
		return nil, fmt.Errorf("fake api: patch %s/%d: %w", collection, id, err)
	}
	return r.decode(), nil
}

// Get returns a copy of a live record.
func (a *API) Get(collection string, id int64) (map[string]any, bool) {
	c, ok := a.collection(collection)
	if !ok {
		return nil, false
	}
	r, ok := c.get(id)
	if !ok {
		return nil, false
	}
	return r.decode(), true
}

// Delete deletes a record (leaving a tombstone for include_deleted since
// queries); false if it does not exist.
func (a *API) Delete(collection string, id int64) bool {
	c, ok := a.collection(collection)
	return ok && c.remove(id, a.now(), "") == nil
}

// Touch bumps a record's lastChanged (to after every other change in the
// collection) and version without changing its data; false if it does not
// exist.
func (a *API) Touch(collection string, id int64) bool {
	c, ok := a.collection(collection)
	return ok && c.touch(id, a.now())
}

// Records returns copies of the live records of a collection in id order.
func (a *API) Records(collection string) []map[string]any {
	c, ok := a.collection(collection)
	if !ok {
		return nil
	}
	v := c.view(viewKey{byID: true})
	out := make([]map[string]any, len(v))
	for i, r := range v {
		out[i] = r.decode()
	}
	return out
}

// Faults configure fault injection on /api requests. Request numbers count
// /api requests from 1; the checks run in this order before authentication
// and the handler: Delay, rate limit (429), error (ErrorStatus), non-JSON.
type Faults struct {
	// RateLimitEvery answers every Nth /api request with 429.
	RateLimitEvery int `json:"rate_limit_every,omitempty"`
	// RateLimitNext answers the next K /api requests with 429.
	RateLimitNext int `json:"rate_limit_next,omitempty"`
	// RetryAfter is the Retry-After header value sent with a 429
	// (default "1"; "none" sends no header). An HTTP date works too.
	RetryAfter string `json:"retry_after,omitempty"`
	// ErrorEvery answers every Nth /api request with ErrorStatus.
	ErrorEvery int `json:"error_every,omitempty"`
	// ErrorNext answers the next K /api requests with ErrorStatus.
	ErrorNext int `json:"error_next,omitempty"`
	// ErrorStatus is the injected error status (default 503).
	ErrorStatus int `json:"error_status,omitempty"`
	// Delay delays every /api response (honouring client disconnects).
	Delay time.Duration `json:"delay,omitempty"`
	// NonJSONEvery answers every Nth /api request with a 200 text/html
	// page; NonJSONNext the next K.
	NonJSONEvery int `json:"non_json_every,omitempty"`
	// NonJSONNext answers the next K /api requests with a 200 HTML page.
	NonJSONNext int `json:"non_json_next,omitempty"`
	// Methods limits the faults above to requests with one of these
	// methods (["POST", "PUT", "PATCH", "DELETE"]: writes fail while
	// lookups pass); the Every forms then count only those requests.
	// Empty: every method.
	Methods []string `json:"methods,omitempty"`
	// WriteThenFailNext makes the next K writes (POST, PUT, PATCH, DELETE
	// under /api) take effect and then fail, so that the client cannot
	// tell whether they happened; WriteThenFailEvery every Nth write. The
	// answer is WriteThenFailStatus, or no answer at all (the connection
	// is closed) when it is 0.
	WriteThenFailNext   int `json:"write_then_fail_next,omitempty"`
	WriteThenFailEvery  int `json:"write_then_fail_every,omitempty"`
	WriteThenFailStatus int `json:"write_then_fail_status,omitempty"`
}

// SetFaults replaces the fault injection settings.
func (a *API) SetFaults(f Faults) {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	a.faults = f
}

// Faults returns the current fault settings (K counters count down as
// faults are served).
func (a *API) Faults() Faults {
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	return a.faults
}

// Stats are request counters.
type Stats struct {
	// Requests counts every request, APIRequests those under /api.
	Requests, APIRequests int64
	// RateLimited, InjectedErrors and NonJSON count injected faults.
	RateLimited, InjectedErrors, NonJSON int64
	// Unauthorized counts 401 answers on /api.
	Unauthorized int64
	// TokensIssued counts access tokens issued by /oauth/token and
	// IssueToken; TokenErrors counts refused token requests.
	TokensIssued, TokenErrors int64
	// RecordsServed counts records returned by list requests.
	RecordsServed int64
}

type counters struct {
	requests, apiRequests, rateLimited, injectedErrors, nonJSON atomic.Int64
	unauthorized, tokensIssued, tokenErrors, recordsServed      atomic.Int64
}

// Stats returns the request counters.
func (a *API) Stats() Stats {
	s := &a.stats
	return Stats{
		Requests: s.requests.Load(), APIRequests: s.apiRequests.Load(),
		RateLimited: s.rateLimited.Load(), InjectedErrors: s.injectedErrors.Load(), NonJSON: s.nonJSON.Load(),
		Unauthorized: s.unauthorized.Load(), TokensIssued: s.tokensIssued.Load(), TokenErrors: s.tokenErrors.Load(),
		RecordsServed: s.recordsServed.Load(),
	}
}

// LoggedRequest is one served request.
type LoggedRequest struct {
	// Time is when the request arrived (Options.Now).
	Time time.Time
	// Method, Path and RawQuery of the request.
	Method, Path, RawQuery string
	// Header is a copy of the request headers (credentials included:
	// this is a test fake).
	Header http.Header
	// Body is the request body (at most 64 KiB kept).
	Body []byte
	// Status is the answered status.
	Status int
}

// Requests returns a copy of the request log (oldest first, at most
// Options.LogLimit entries, the newest kept).
func (a *API) Requests() []LoggedRequest {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	return slices.Clone(a.reqLog)
}

// ResetStats zeroes the counters and clears the request log. It first
// waits (up to 5 s) for requests still being served to be logged, so that
// a request answered before the call never shows up after it.
func (a *API) ResetStats() {
	for deadline := time.Now().Add(5 * time.Second); a.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	s := &a.stats
	for _, c := range []*atomic.Int64{&s.requests, &s.apiRequests, &s.rateLimited, &s.injectedErrors, &s.nonJSON,
		&s.unauthorized, &s.tokensIssued, &s.tokenErrors, &s.recordsServed} {
		c.Store(0)
	}
	a.logMu.Lock()
	a.reqLog = nil
	a.logMu.Unlock()
}
