package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ferrydata/ferry/engine"
)

// Options configure the API. The zero value is secure and refuses every
// protected route (no token): set Token, or NoAuth for a loopback-only
// development server.
type Options struct {
	// Token is the bearer token every route needs except the public ones
	// (/healthz, /ready, the login page, webhook receivers, which
	// authenticate on their own). See ResolveToken.
	Token string
	// NoAuth serves protected routes without a token. CheckListen refuses
	// it on non-loopback addresses.
	NoAuth bool
	// AllowedHosts are the host names, besides localhost, *.localhost and
	// IP literals, that the Host header may name (".example.com" allows
	// its subdomains, "*" any name). Other Hosts get 403, which defeats DNS
	// rebinding.
	AllowedHosts []string
	// MaxRequestBytes caps one request body (default 64 MiB; 413 beyond).
	MaxRequestBytes int64
	// BodyBudget caps the bytes of request bodies held by all requests at
	// once (default 128 MiB); a request that does not fit gets 429.
	BodyBudget int64
	// Registry is where the API registers its metrics and what /metrics
	// serves; nil: a registry of its own (never the global default one).
	Registry *prometheus.Registry
	// UI serves the web dataset browser at /.
	UI bool
	// Ready adds named readiness checks to /ready (serve adds the
	// scheduler's); a check returns nil when ready.
	Ready map[string]func() error
	// Logger receives refused requests (Warn) and server errors (Error).
	Logger *slog.Logger
}

// route says how the middleware treats a pattern.
type route struct {
	public  bool // no token needed
	anyBody bool // state-changing without a JSON content type (forms, webhooks)
	data    bool // responses are data, not redacted (entities, metrics)
	page    bool // a browser page: unauthenticated GETs go to the login page
}

// API is the HTTP handler: routes behind the security middleware (see
// ServeHTTP).
type API struct {
	eng     *engine.Engine
	opts    Options
	mux     *http.ServeMux
	routes  map[string]route
	cop     *http.CrossOriginProtection
	budget  *bodyBudget
	metrics *metrics
	authLim *rate.Limiter
	log     *slog.Logger
	now     func() time.Time
	ui      *ui
}

// New returns the API for an engine: the JSON API under /api, /healthz,
// /ready, /metrics and, with opts.UI, the web browser at /. It registers
// its metrics in opts.Registry (or a new registry) and observes the
// engine's runs for them (engine.Engine.Observer).
func New(eng *engine.Engine, opts Options) (*API, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.BodyBudget <= 0 {
		opts.BodyBudget = DefaultBodyBudget
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{
		eng: eng, opts: opts, mux: http.NewServeMux(), routes: map[string]route{},
		cop:     http.NewCrossOriginProtection(),
		budget:  &bodyBudget{limit: opts.BodyBudget},
		authLim: rate.NewLimiter(10, 20),
		log:     opts.Logger,
		now:     time.Now,
	}
	m, err := newMetrics(eng, opts.Registry, a.budget)
	if err != nil {
		return nil, err
	}
	a.metrics = m
	prev := eng.Observer
	eng.Observer = observers{prev, m}

	a.handle("GET /api/pipes", route{}, a.pipes)
	a.handle("GET /api/pipes/{id}", route{}, a.pipe)
	a.handle("GET /api/pipes/{id}/runs", route{}, a.runs)
	a.handle("POST /api/pipes/{id}/run", route{}, a.runPipe)
	a.handle("POST /api/pipes/{id}/reset", route{}, a.resetPipe)
	a.handle("POST /api/pipes/{id}/rescan", route{}, a.rescanPipe)
	a.handle("GET /api/pipes/{id}/share-plan", route{}, a.sharePlan)
	a.handle("POST /api/pipes/{id}/retry", route{}, a.retryShare)
	a.handle("GET /api/datasets", route{}, a.datasets)
	a.handle("GET /api/datasets/{name}", route{}, a.dataset)
	a.handle("GET /api/datasets/{name}/entities", route{data: true}, a.entities)
	a.handle("GET /api/datasets/{name}/entities/{id}", route{data: true}, a.entity)
	a.handle("GET /healthz", route{public: true}, a.healthz)
	a.handle("GET /ready", route{public: true}, a.ready)
	a.routes["GET /metrics"] = route{data: true}
	a.mux.Handle("GET /metrics", m.handler(opts.Registry))
	if opts.UI {
		if err := a.mountUI(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *API) handle(pattern string, rt route, h http.HandlerFunc) {
	a.routes[pattern] = rt
	a.mux.HandleFunc(pattern, h)
}

// Handle adds a route that needs the API token, like the built-in ones.
func (a *API) Handle(pattern string, h http.Handler) {
	a.routes[pattern] = route{}
	a.mux.Handle(pattern, h)
}

// HandlePublic adds a route that authenticates on its own (webhook
// receivers: HMAC signature, their own token check, or explicitly
// anonymous): no API token is needed and its POSTs need no JSON content
// type, but the Host check, the cross-origin check, the body limits and
// the redaction of responses apply.
func (a *API) HandlePublic(pattern string, h http.Handler) {
	a.routes[pattern] = route{public: true, anyBody: true}
	a.mux.Handle(pattern, h)
}

// ServeHTTP applies, in order: the Host check (403), the cross-origin
// check for state-changing methods (403 for a cross-site Sec-Fetch-Site
// or a mismatching Origin; an absent Origin passes), the JSON content
// type for state-changing methods (403; forms and webhooks excepted), the
// token (bearer, or the browser's session cookie; 401, or a redirect to
// the login page for browser pages), the body limits (413 for one body
// over MaxRequestBytes, 429 when the shared BodyBudget is full), then the
// route. Errors are JSON on every path, and responses other than entity
// data are redacted with the plan's Redactor.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ew := &errorWriter{ResponseWriter: w}
	defer ew.finish()
	a.serve(ew, r)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if !hostAllowed(r.Host, a.opts.AllowedHosts) {
		a.refuse(w, r, http.StatusForbidden, fmt.Sprintf("host %q is not allowed: ferry serve answers to localhost and IP addresses; add other names with --allow-host", r.Host))
		return
	}
	_, pattern := a.mux.Handler(r)
	rt := a.routes[pattern]
	if unsafeMethod(r.Method) {
		if err := a.cop.Check(r); err != nil {
			a.refuse(w, r, http.StatusForbidden, "cross-origin request refused: "+err.Error())
			return
		}
		if !rt.anyBody && !isJSONType(r.Header.Get("Content-Type")) {
			a.refuse(w, r, http.StatusForbidden, fmt.Sprintf("%s needs Content-Type: application/json (got %q); forms from other sites are refused", r.Method, r.Header.Get("Content-Type")))
			return
		}
	}
	if !rt.public && !a.opts.NoAuth {
		if status, msg := a.authenticate(r); status != 0 {
			if rt.page && (r.Method == http.MethodGet || r.Method == http.MethodHead) && status == http.StatusUnauthorized {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
			}
			a.refuse(w, r, status, msg)
			return
		}
	}
	reserved, err := a.budget.admit(r, a.opts.MaxRequestBytes)
	switch {
	case errors.Is(err, errTooLarge):
		a.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", a.opts.MaxRequestBytes))
		return
	case errors.Is(err, errBudget):
		a.metrics.budgetRejected.Inc()
		w.Header().Set("Retry-After", "1")
		a.refuse(w, r, http.StatusTooManyRequests, fmt.Sprintf("too many request bodies in flight (budget %d bytes); retry later", a.opts.BodyBudget))
		return
	case err != nil:
		a.refuse(w, r, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	defer a.budget.release(reserved)
	if !rt.data && !a.eng.Plan.Redactor.Empty() {
		w = &redactWriter{ResponseWriter: w, red: a.eng.Plan.Redactor}
	}
	a.mux.ServeHTTP(w, r)
}

// authenticate checks the bearer token or the session cookie; it returns
// 0 when the request may pass, else the status and message to answer.
// Wrong credentials are rate limited (429 beyond 10 a second).
func (a *API) authenticate(r *http.Request) (int, string) {
	if a.opts.Token == "" {
		return http.StatusUnauthorized, "no API token is configured; set " + TokenEnv + " (or let ferry serve generate one)"
	}
	tok, hasBearer := bearer(r)
	if hasBearer && tokenEqual(tok, a.opts.Token) {
		return 0, ""
	}
	c, cerr := r.Cookie(sessionCookie)
	if cerr == nil && validSession(a.opts.Token, c.Value, a.now()) {
		return 0, ""
	}
	if (hasBearer || cerr == nil) && !a.authLim.Allow() {
		return http.StatusTooManyRequests, "too many failed authentications; slow down"
	}
	if hasBearer {
		return http.StatusUnauthorized, "wrong API token"
	}
	return http.StatusUnauthorized, "this route needs the API token: Authorization: Bearer <token> (" + TokenEnv + ", or the token ferry serve generated into its data directory)"
}

func (a *API) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	a.log.Warn("http request refused", "method", r.Method, "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr, "status", status, "error", msg)
	writeError(w, status, msg)
}

// observers fans engine run events out to several observers.
type observers []engine.RunObserver

func (o observers) RunStarted(p *engine.Pipe) {
	for _, x := range o {
		if x != nil {
			x.RunStarted(p)
		}
	}
}

func (o observers) RunFinished(p *engine.Pipe, rec engine.RunRecord) {
	for _, x := range o {
		if x != nil {
			x.RunFinished(p, rec)
		}
	}
}

// errorWriter turns plain-text error responses (http.Error, the mux's 404
// and 405) into JSON {"error": "..."}, so errors are JSON on every path.
type errorWriter struct {
	http.ResponseWriter
	wrote   bool
	status  int
	rewrite bool
	msg     []byte
}

func (w *errorWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.status = code
	ct := w.Header().Get("Content-Type")
	if code >= 400 && (ct == "" || strings.HasPrefix(ct, "text/plain")) {
		w.rewrite = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.rewrite {
		if len(w.msg) < 1024 {
			w.msg = append(w.msg, p...)
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *errorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *errorWriter) finish() {
	if !w.rewrite {
		return
	}
	msg := strings.TrimSpace(string(w.msg))
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	w.ResponseWriter.WriteHeader(w.status)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(map[string]string{"error": msg})
	w.ResponseWriter.Write(buf.Bytes())
}

// redactWriter redacts what a handler writes (each Write is one JSON
// value or one rendered page).
type redactWriter struct {
	http.ResponseWriter
	red *engine.Redactor
}

func (w *redactWriter) Write(p []byte) (int, error) {
	if _, err := w.ResponseWriter.Write(w.red.RedactBytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *redactWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		enc.Encode(map[string]string{"error": err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ready answers 200 when the store answers a read, the plan is loaded and
// every Options.Ready check passes, else 503; the body names each check.
func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{}
	ok := true
	set := func(name string, err error) {
		if err != nil {
			checks[name] = err.Error()
			ok = false
			return
		}
		checks[name] = "ok"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	_, _, err := a.eng.Store.Dataset(ctx, "")
	set("store", err)
	if a.eng.Plan == nil {
		set("plan", errors.New("no plan loaded"))
	} else {
		set("plan", nil)
	}
	for name, check := range a.opts.Ready {
		set(name, check())
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
}

// PipeView is a pipe as the API shows it.
type PipeView struct {
	ID       string            `json:"_id"`
	Source   string            `json:"source"`
	Inputs   []string          `json:"inputs,omitempty"`
	Output   string            `json:"output,omitempty"`
	Schedule string            `json:"schedule,omitempty"`
	State    engine.PipeState  `json:"state"`
	LastRun  *engine.RunRecord `json:"last_run,omitempty"`
}

func (a *API) view(r *http.Request, p *engine.Pipe) (PipeView, error) {
	v := PipeView{ID: p.ID, Inputs: p.Inputs, Output: p.Output}
	if src, ok := p.Comp.Raw["source"].(map[string]any); ok {
		v.Source, _ = src["type"].(string)
	}
	switch {
	case p.Pump.Mode == "manual" || p.Pump.Mode == "off":
		v.Schedule = p.Pump.Mode
	case p.Pump.Cron != "":
		v.Schedule = "cron " + p.Pump.Cron
	case p.Pump.Interval > 0:
		v.Schedule = "every " + p.Pump.Interval.String()
	case len(p.Inputs) > 0:
		v.Schedule = "every " + engine.DefaultDatasetInterval.String() + " (default)"
	default:
		v.Schedule = "every " + engine.DefaultExternalInterval.String() + " (default)"
	}
	st, err := a.eng.Store.PipeState(r.Context(), p.ID)
	if err != nil {
		return v, err
	}
	v.State = st
	runs, err := a.eng.Store.Runs(r.Context(), p.ID, 1)
	if err != nil {
		return v, err
	}
	if len(runs) == 1 {
		v.LastRun = &runs[0]
	}
	return v, nil
}

func (a *API) pipes(w http.ResponseWriter, r *http.Request) {
	out := []PipeView{}
	for _, p := range a.eng.Plan.Pipes {
		v, err := a.view(r, p)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) pipeOr404(w http.ResponseWriter, r *http.Request) *engine.Pipe {
	p := a.eng.Plan.Pipe(r.PathValue("id"))
	if p == nil {
		writeError(w, http.StatusNotFound, "no pipe "+strconv.Quote(r.PathValue("id")))
	}
	return p
}

func (a *API) pipe(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	v, err := a.view(r, p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func intParam(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("query parameter " + name + " must be a non-negative integer")
	}
	return n, nil
}

func (a *API) runs(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	limit, err := intParam(r, "limit", 50)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	runs, err := a.eng.Store.Runs(r.Context(), p.ID, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if runs == nil {
		runs = []engine.RunRecord{}
	}
	writeJSON(w, http.StatusOK, runs)
}

func (a *API) runPipe(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	q := r.URL.Query()
	opts := engine.RunOptions{Reset: q.Get("reset") == "true", Rescan: q.Get("rescan") == "true", AcceptDeletes: q.Get("accept_deletes") == "true"}
	rec, err := a.eng.Run(r.Context(), p.ID, opts)
	status := http.StatusOK
	if errors.Is(err, engine.ErrLeaseHeld) {
		status = http.StatusConflict // running on another worker
	} else if err != nil {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, rec)
}

// sharePlan answers what the next run of a share pipe would do per entity
// (engine.Engine.PlanShare: lookups only, nothing written).
func (a *API) sharePlan(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	if p.Sharer == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("pipe %q is not a share pipe", p.ID))
		return
	}
	type row struct {
		ID     string `json:"_id"`
		Op     string `json:"decision"`
		Reason string `json:"reason,omitempty"`
		Error  string `json:"error,omitempty"`
	}
	rows := []row{}
	q := r.URL.Query()
	plan, err := a.eng.PlanShare(r.Context(), p.ID, engine.RunOptions{Reset: q.Get("reset") == "true", Rescan: q.Get("rescan") == "true"}, func(act *engine.ShareAction) {
		rows = append(rows, row{ID: act.ID, Op: string(act.Op), Reason: act.Reason, Error: a.eng.Plan.Redactor.Redact(act.Error)})
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipe": p.ID, "entities": rows, "counts": plan.Counts, "breaker_error": plan.BreakerError})
}

// retryShare puts a share pipe's dead letters (all, or the ids given as
// repeated "id" query parameters) back into its retry queue.
func (a *API) retryShare(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	if p.Sharer == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("pipe %q is not a share pipe", p.ID))
		return
	}
	n, err := a.eng.Requeue(r.Context(), p.ID, r.URL.Query()["id"])
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipe": p.ID, "requeued": n})
}

func (a *API) resetPipe(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	if err := a.eng.ResetPipe(r.Context(), p.ID); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"reset": p.ID})
}

func (a *API) rescanPipe(w http.ResponseWriter, r *http.Request) {
	p := a.pipeOr404(w, r)
	if p == nil {
		return
	}
	if err := a.eng.RequestRescan(r.Context(), p.ID); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"rescan": p.ID})
}

func (a *API) datasets(w http.ResponseWriter, r *http.Request) {
	list, err := a.eng.Store.Datasets(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []engine.DatasetInfo{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) datasetOr404(w http.ResponseWriter, r *http.Request) (engine.DatasetInfo, bool) {
	name := r.PathValue("name")
	info, ok, err := a.eng.Store.Dataset(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return info, false
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no dataset "+strconv.Quote(name))
	}
	return info, ok
}

func (a *API) dataset(w http.ResponseWriter, r *http.Request) {
	if info, ok := a.datasetOr404(w, r); ok {
		writeJSON(w, http.StatusOK, info)
	}
}

// entities streams a dataset's versions from ?since= (an offset) as a JSON
// array, or NDJSON with ?format=ndjson or Accept: application/x-ndjson.
// By default only versions that are still the latest of their _id are
// listed; history=true lists every version.
func (a *API) entities(w http.ResponseWriter, r *http.Request) {
	info, ok := a.datasetOr404(w, r)
	if !ok {
		return
	}
	limit, err := intParam(r, "limit", 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		if since, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "query parameter since must be an offset")
			return
		}
	}
	ndjson := r.URL.Query().Get("format") == "ndjson" || strings.Contains(r.Header.Get("Accept"), "application/x-ndjson")
	if ndjson {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	buf := make([]byte, 0, 64<<10)
	if !ndjson {
		buf = append(buf, '[')
	}
	n := 0
	_, err = a.eng.Store.Scan(r.Context(), info.Name, engine.ScanOptions{From: since, Limit: limit, LatestOnly: r.URL.Query().Get("history") != "true"}, func(rec engine.Record) error {
		if !ndjson && n > 0 {
			buf = append(buf, ',')
		}
		buf = rec.AppendJSON(buf)
		if ndjson {
			buf = append(buf, '\n')
		}
		n++
		if len(buf) > 32<<10 {
			_, err := w.Write(buf)
			buf = buf[:0]
			return err
		}
		return nil
	})
	if err != nil {
		// Headers are gone; end the body so the client sees a broken document.
		w.Write(buf)
		return
	}
	if !ndjson {
		buf = append(buf, ']', '\n')
	}
	w.Write(buf)
}

func (a *API) entity(w http.ResponseWriter, r *http.Request) {
	info, ok := a.datasetOr404(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	var recs []engine.Record
	var err error
	if r.URL.Query().Get("history") == "true" {
		recs, err = a.eng.Store.History(r.Context(), info.Name, id)
	} else {
		var rec engine.Record
		var found bool
		rec, found, err = a.eng.Store.Get(r.Context(), info.Name, id)
		if found {
			recs = []engine.Record{rec}
		}
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(recs) == 0 {
		writeError(w, http.StatusNotFound, "no entity "+strconv.Quote(id)+" in dataset "+strconv.Quote(info.Name))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var buf []byte
	if r.URL.Query().Get("history") == "true" {
		buf = append(buf, '[')
		for i := range recs {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = recs[i].AppendJSON(buf)
		}
		buf = append(buf, ']')
	} else {
		buf = recs[0].AppendJSON(buf)
	}
	w.Write(append(buf, '\n'))
}
