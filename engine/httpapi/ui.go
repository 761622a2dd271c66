package httpapi

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/connectors"
)

// The web dataset browser: server-rendered pages (html/template, embedded
// in the binary) plus one small script for the run/rescan/reset buttons.
//
// Authentication: the login page takes the API token and sets a session
// cookie (see newSession: HttpOnly, SameSite=Strict, 12 hours, an HMAC of
// the token, not the token). Pages are plain GETs carrying the cookie; the
// buttons POST to the JSON API with fetch, a JSON content type and the
// cookie. CSRF is stopped three times over: another site's page cannot
// send the SameSite=Strict cookie, the server refuses cross-origin
// state-changing requests (Sec-Fetch-Site / Origin), and it refuses
// state-changing requests that are not JSON, which a form cannot send.
// Pages may not be framed (clickjacking) and load only their own script.

//go:embed ui/*.html ui/static/*
var uiFiles embed.FS

// entityPageSize is how many entities a page of the entity list shows.
const entityPageSize = 50

// maxVersionsShown bounds the versions the entity page shows.
const maxVersionsShown = 100

type ui struct {
	a     *API
	pages map[string]*template.Template
}

func (a *API) mountUI() error {
	u := &ui{a: a, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"pathesc": url.PathEscape,
		"trunc":   truncate,
		"join":    strings.Join,
		"add":     func(a, b int) int { return a + b },
		"fmttime": fmtTime,
		"fmtts":   func(ts int64) string { return fmtTime(time.UnixMicro(ts)) },
		"ago":     func(t time.Time) string { return ago(t, a.now()) },
		"dur":     runDuration,
		"live":    func(d engine.DatasetInfo) uint64 { return d.Entities - d.Deleted },
	}
	for _, name := range []string{"pipes", "pipe", "datasets", "dataset", "entity", "connectors", "connector", "login", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(uiFiles, "ui/layout.html", "ui/"+name+".html")
		if err != nil {
			return fmt.Errorf("web UI template %s: %w", name, err)
		}
		u.pages[name] = t
	}
	static, err := fs.Sub(uiFiles, "ui/static")
	if err != nil {
		return err
	}
	page := route{page: true}
	a.handle("GET /{$}", page, u.pipesPage)
	a.handle("GET /ui/pipes/{id}", page, u.pipePage)
	a.handle("GET /ui/datasets", page, u.datasetsPage)
	a.handle("GET /ui/datasets/{name}", page, u.datasetPage)
	a.handle("GET /ui/datasets/{name}/entity", page, u.entityPage)
	a.handle("GET /ui/connectors", page, u.connectorsPage)
	a.handle("GET /ui/connectors/{id}", page, u.connectorPage)
	a.handle("GET /login", route{public: true, page: true}, u.loginPage)
	a.handle("POST /login", route{public: true, anyBody: true, page: true}, u.login)
	a.handle("POST /logout", route{public: true, anyBody: true, page: true}, u.logout)
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	a.handle("GET /static/{file}", route{public: true, data: true}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
	return nil
}

// base is what every page's layout needs.
type base struct {
	Title    string
	Nav      string
	LoggedIn bool
}

func (u *ui) base(r *http.Request, title, nav string) base {
	b := base{Title: title, Nav: nav}
	if c, err := r.Cookie(sessionCookie); err == nil && validSession(u.a.opts.Token, c.Value, u.a.now()) {
		b.LoggedIn = true
	}
	return b
}

func (u *ui) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		u.a.log.Error("rendering page", "page", name, "error", err)
		writeError(w, http.StatusInternalServerError, "rendering page "+name+": "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail answers an error as an HTML page to browsers (Accept: text/html)
// and as JSON to everyone else.
func (u *ui) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		writeError(w, status, msg)
		return
	}
	u.render(w, status, "error", struct {
		base
		Status  string
		Message string
	}{u.base(r, http.StatusText(status), "pipes"), fmt.Sprintf("%d %s", status, http.StatusText(status)), msg})
}

// pipeRow is a pipe in the pipe tables.
type pipeRow struct {
	PipeView
	Status string // ok | failed | running | never run
	Error  string
}

func (u *ui) pipeRow(r *http.Request, p *engine.Pipe) (pipeRow, error) {
	v, err := u.a.view(r, p)
	if err != nil {
		return pipeRow{}, err
	}
	row := pipeRow{PipeView: v, Status: "ok", Error: v.State.LastError}
	switch {
	case u.runningNow(p.ID):
		row.Status = "running"
	case v.LastRun == nil && v.State.LastRun.IsZero():
		row.Status = "never run"
	case v.State.LastError != "":
		row.Status = "failed"
	}
	return row, nil
}

func (u *ui) runningNow(pipe string) bool {
	_, ok := u.a.metrics.runningSince(pipe)
	return ok
}

func (u *ui) pipeRows(r *http.Request, keep func(p *engine.Pipe) bool) ([]pipeRow, error) {
	rows := []pipeRow{}
	for _, p := range u.a.eng.Plan.Pipes {
		if keep != nil && !keep(p) {
			continue
		}
		row, err := u.pipeRow(r, p)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (u *ui) pipesPage(w http.ResponseWriter, r *http.Request) {
	rows, err := u.pipeRows(r, nil)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	u.render(w, http.StatusOK, "pipes", struct {
		base
		Pipes []pipeRow
	}{u.base(r, "Pipes", "pipes"), rows})
}

// runRow is a run in the pipe page's run log; Cells follow the page's
// Counters.
type runRow struct {
	engine.RunRecord
	Cells []int64
}

func (u *ui) pipePage(w http.ResponseWriter, r *http.Request) {
	p := u.a.eng.Plan.Pipe(r.PathValue("id"))
	if p == nil {
		u.fail(w, r, http.StatusNotFound, "no pipe "+strconv.Quote(r.PathValue("id")))
		return
	}
	row, err := u.pipeRow(r, p)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	runs, err := u.a.eng.Store.Runs(r.Context(), p.ID, 50)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	cols, rows := runTable(runs)
	var cfg bytes.Buffer
	enc := json.NewEncoder(&cfg)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(p.Comp.Raw)
	u.render(w, http.StatusOK, "pipe", struct {
		base
		Pipe     pipeRow
		Counters []string
		Runs     []runRow
		Config   string
	}{u.base(r, p.ID, "pipes"), row, cols, rows, cfg.String()})
}

// runTable lays out runs with one column per counter of the run record
// (engine.RunRecord.Counts, so new counters appear by themselves), leaving
// out counters that are zero in every run except read and written.
func runTable(runs []engine.RunRecord) ([]string, []runRow) {
	type col struct{ name, key string }
	var cols []col
	index := map[col]int{}
	nonzero := map[col]bool{}
	add := func(name, key string, n int64) {
		c := col{name, key}
		if _, ok := index[c]; !ok {
			index[c] = len(cols)
			cols = append(cols, c)
		}
		if n != 0 || name == "read" || name == "written" {
			nonzero[c] = true
		}
	}
	var zero engine.RunRecord
	zero.Counts(add)
	for i := range runs {
		runs[i].Counts(add)
	}
	var keep []col
	var names []string
	for _, c := range cols {
		if nonzero[c] {
			keep = append(keep, c)
			if c.key != "" {
				names = append(names, c.name+" ("+c.key+")")
			} else {
				names = append(names, c.name)
			}
		}
	}
	rows := make([]runRow, len(runs))
	for i := range runs {
		vals := map[col]int64{}
		runs[i].Counts(func(name, key string, n int64) { vals[col{name, key}] = n })
		cells := make([]int64, len(keep))
		for j, c := range keep {
			cells[j] = vals[c]
		}
		rows[i] = runRow{RunRecord: runs[i], Cells: cells}
	}
	return names, rows
}

// datasetRow is a dataset in the datasets table.
type datasetRow struct {
	engine.DatasetInfo
	Writers []string
}

func (u *ui) writers(dataset string) []string {
	var out []string
	for _, p := range u.a.eng.Plan.Pipes {
		if p.Output == dataset {
			out = append(out, p.ID)
		}
	}
	return out
}

func (u *ui) datasetsPage(w http.ResponseWriter, r *http.Request) {
	infos, err := u.a.eng.Store.Datasets(r.Context())
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	rows := make([]datasetRow, len(infos))
	for i, d := range infos {
		rows[i] = datasetRow{DatasetInfo: d, Writers: u.writers(d.Name)}
	}
	u.render(w, http.StatusOK, "datasets", struct {
		base
		Datasets []datasetRow
	}{u.base(r, "Datasets", "datasets"), rows})
}

// entityRow is an entity in the entity list.
type entityRow struct {
	ID      string
	Offset  uint64
	TS      int64
	Deleted bool
	Preview string
}

func toEntityRow(rec engine.Record) entityRow {
	return entityRow{ID: rec.ID, Offset: rec.Offset, TS: rec.TS, Deleted: rec.Deleted, Preview: truncate(string(rec.Body), 160)}
}

// datasetPage lists a dataset's entities a page at a time. With a store
// that implements engine.EntityLister (boltstore) the list is in _id
// order from the index: ?prefix= keeps the _ids that start with it and
// ?after= continues after an _id, so a page costs O(page size) whatever
// the dataset's size. Other stores list in log order (?since=offset) and
// the search finds an exact _id.
func (u *ui) datasetPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, ok, err := u.a.eng.Store.Dataset(r.Context(), name)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	if !ok {
		u.fail(w, r, http.StatusNotFound, "no dataset "+strconv.Quote(name))
		return
	}
	q := r.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	self := "/ui/datasets/" + url.PathEscape(name)
	var rows []entityRow
	var next, first string
	lister, indexed := u.a.eng.Store.(engine.EntityLister)
	if indexed {
		err = lister.ListEntities(r.Context(), name, engine.ListOptions{Prefix: prefix, After: after, Limit: entityPageSize + 1}, func(rec engine.Record) error {
			rows = append(rows, toEntityRow(rec))
			return nil
		})
		if len(rows) > entityPageSize {
			rows = rows[:entityPageSize]
			v := url.Values{"after": {rows[len(rows)-1].ID}}
			if prefix != "" {
				v.Set("prefix", prefix)
			}
			next = self + "?" + v.Encode()
		}
		if after != "" {
			first = self
			if prefix != "" {
				first += "?" + url.Values{"prefix": {prefix}}.Encode()
			}
		}
	} else if prefix != "" {
		var rec engine.Record
		var found bool
		if rec, found, err = u.a.eng.Store.Get(r.Context(), name, prefix); found {
			rows = append(rows, toEntityRow(rec))
		}
	} else {
		since, _ := strconv.ParseUint(q.Get("since"), 10, 64)
		_, err = u.a.eng.Store.Scan(r.Context(), name, engine.ScanOptions{From: since, Limit: entityPageSize + 1, LatestOnly: true}, func(rec engine.Record) error {
			rows = append(rows, toEntityRow(rec))
			return nil
		})
		if len(rows) > entityPageSize {
			rows = rows[:entityPageSize]
			next = self + "?since=" + strconv.FormatUint(rows[len(rows)-1].Offset+1, 10)
		}
		if since > 0 {
			first = self
		}
	}
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	var readers []string
	for _, p := range u.a.eng.Plan.Readers(name) {
		readers = append(readers, p.ID)
	}
	u.render(w, http.StatusOK, "dataset", struct {
		base
		Info             engine.DatasetInfo
		Writers, Readers []string
		Prefix           string
		Indexed          bool
		Entities         []entityRow
		Next, First      string
	}{u.base(r, name, "datasets"), info, u.writers(name), readers, prefix, indexed, rows, next, first})
}

// versionView is one version on the entity page.
type versionView struct {
	engine.Record
	Hash    string
	JSON    string
	First   bool
	Open    bool
	Changes []change
}

func (u *ui) entityPage(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("name"), r.URL.Query().Get("id")
	hist, err := u.a.eng.Store.History(r.Context(), name, id)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	if len(hist) == 0 {
		u.fail(w, r, http.StatusNotFound, "no entity "+strconv.Quote(id)+" in dataset "+strconv.Quote(name))
		return
	}
	total := len(hist)
	start := max(0, total-maxVersionsShown)
	var views []versionView
	for i := total - 1; i >= start; i-- {
		rec := hist[i]
		v := versionView{Record: rec, Hash: rec.Hash.String(), First: i == 0, Open: i == total-1}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, rec.AppendJSON(nil), "", "  "); err == nil {
			v.JSON = pretty.String()
		} else {
			v.JSON = string(rec.AppendJSON(nil))
		}
		if i > 0 {
			v.Changes = diffJSON(hist[i-1].Body, rec.Body)
		}
		views = append(views, v)
	}
	u.render(w, http.StatusOK, "entity", struct {
		base
		Dataset, ID string
		Versions    []versionView
		Total       int
		Truncated   bool
	}{u.base(r, id+" · "+name, "datasets"), name, id, views, total, start > 0})
}

// instanceRow is a connector instance in the connectors table.
type instanceRow struct {
	*connectors.Instance
	Pipes int
}

func (u *ui) instancePipes(id string) func(p *engine.Pipe) bool {
	return func(p *engine.Pipe) bool { return strings.HasPrefix(p.ID, id+"-") }
}

func (u *ui) connectorsPage(w http.ResponseWriter, r *http.Request) {
	list, err := connectors.List(r.Context(), u.a.eng.Store)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	rows := make([]instanceRow, len(list))
	for i, in := range list {
		n := 0
		keep := u.instancePipes(in.ID)
		for _, p := range u.a.eng.Plan.Pipes {
			if keep(p) {
				n++
			}
		}
		rows[i] = instanceRow{Instance: in, Pipes: n}
	}
	u.render(w, http.StatusOK, "connectors", struct {
		base
		Instances []instanceRow
	}{u.base(r, "Connectors", "connectors"), rows})
}

func (u *ui) connectorPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	in, ok, err := connectors.Get(r.Context(), u.a.eng.Store, id)
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	if !ok {
		u.fail(w, r, http.StatusNotFound, "no connector instance "+strconv.Quote(id))
		return
	}
	rows, err := u.pipeRows(r, u.instancePipes(id))
	if err != nil {
		u.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	u.render(w, http.StatusOK, "connector", struct {
		base
		Instance *connectors.Instance
		Pipes    []pipeRow
	}{u.base(r, id, "connectors"), in, rows})
}

// overTLS reports whether the browser reached the server over HTTPS:
// directly, or through a proxy that says so in X-Forwarded-Proto. Trusting
// the header can only make the cookie stricter (Secure), never weaker.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// safeNext keeps a login redirect on this server: a path, not "//host".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if u.a.opts.NoAuth || u.base(r, "", "").LoggedIn {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	u.render(w, http.StatusOK, "login", struct {
		base
		Next   string
		Failed bool
	}{base{Title: "Log in"}, next, false})
}

// login checks the token from the form and sets the session cookie.
func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		u.fail(w, r, http.StatusBadRequest, "bad login form: "+err.Error())
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	if !tokenEqual(strings.TrimSpace(r.PostForm.Get("token")), u.a.opts.Token) {
		if !u.a.authLim.Allow() {
			u.fail(w, r, http.StatusTooManyRequests, "too many failed logins; wait a moment")
			return
		}
		u.a.log.Warn("web login failed", "remote", r.RemoteAddr)
		u.render(w, http.StatusUnauthorized, "login", struct {
			base
			Next   string
			Failed bool
		}{base{Title: "Log in"}, next, true})
		return
	}
	value, exp := newSession(u.a.opts.Token, u.a.now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Expires: exp, MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func runDuration(v any) string {
	var rec engine.RunRecord
	switch x := v.(type) {
	case engine.RunRecord:
		rec = x
	case *engine.RunRecord:
		if x == nil {
			return ""
		}
		rec = *x
	default:
		return ""
	}
	if rec.Start.IsZero() || rec.End.IsZero() {
		return ""
	}
	d := rec.End.Sub(rec.Start)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
