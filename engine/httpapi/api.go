// Package httpapi serves Ferry's HTTP API over an engine: pipes with their
// state and run logs, datasets and their entities, and pipe actions (run,
// reset). It only reads and triggers; it never writes entities itself.
//
// Endpoints (all JSON unless noted):
//
//	GET  /api/pipes                          pipes with state and last run
//	GET  /api/pipes/{id}                     one pipe
//	GET  /api/pipes/{id}/runs?limit=N        run log, newest first
//	POST /api/pipes/{id}/run                 run now and wait; returns the run record
//	POST /api/pipes/{id}/reset               clear the pipe's offset
//	POST /api/pipes/{id}/rescan              make the next run a full run (offset kept until it completes)
//	GET  /api/datasets                       datasets with counts
//	GET  /api/datasets/{name}                one dataset
//	GET  /api/datasets/{name}/entities?since=N&limit=N[&history=true][&format=ndjson]
//	GET  /api/datasets/{name}/entities/{id}[?history=true]
package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// API is the HTTP handler.
type API struct {
	eng *engine.Engine
	mux *http.ServeMux
	// Extra lets the caller add routes (e.g. http_endpoint receivers).
	Extra *http.ServeMux
}

// New returns the API for an engine.
func New(eng *engine.Engine) *API {
	a := &API{eng: eng, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /api/pipes", a.pipes)
	a.mux.HandleFunc("GET /api/pipes/{id}", a.pipe)
	a.mux.HandleFunc("GET /api/pipes/{id}/runs", a.runs)
	a.mux.HandleFunc("POST /api/pipes/{id}/run", a.runPipe)
	a.mux.HandleFunc("POST /api/pipes/{id}/reset", a.resetPipe)
	a.mux.HandleFunc("POST /api/pipes/{id}/rescan", a.rescanPipe)
	a.mux.HandleFunc("GET /api/datasets", a.datasets)
	a.mux.HandleFunc("GET /api/datasets/{name}", a.dataset)
	a.mux.HandleFunc("GET /api/datasets/{name}/entities", a.entities)
	a.mux.HandleFunc("GET /api/datasets/{name}/entities/{id}", a.entity)
	return a
}

// Handle adds a route to the API's mux.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
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
	opts := engine.RunOptions{Reset: r.URL.Query().Get("reset") == "true", Rescan: r.URL.Query().Get("rescan") == "true"}
	rec, err := a.eng.Run(r.Context(), p.ID, opts)
	status := http.StatusOK
	if errors.Is(err, engine.ErrLeaseHeld) {
		status = http.StatusConflict // running on another worker
	} else if err != nil {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, rec)
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
