// Package collectbench measures a REST collect end to end: a rest source
// paging through n customers of a local fake API (package fakeapi) over
// HTTP on 127.0.0.1 into a dataset sink, with fsync on. It also measures
// the fake API's own cost (the same pages fetched by a plain client that
// discards them), so that Ferry's side is visible. The Go benchmark
// BenchmarkCollect100k (pipes/rest) and the "collect" scenario of
// `ferry bench` both run it.
package collectbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/internal/cputime"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// PageSize is the number of customers per page.
const PageSize = 1000

// Result is one measured collect.
type Result struct {
	// Entities is how many customers were collected (and written).
	Entities int64
	// Seconds and CPUSeconds are the collect run's wall time and the
	// process's CPU time (user + system) during it, the fake API's
	// included.
	Seconds, CPUSeconds float64
	// APISeconds and APICPUSeconds are the same for a plain HTTP client
	// fetching the same pages and discarding them: the fake API's own cost
	// (plus the client's reading).
	APISeconds, APICPUSeconds float64
	// Pages is the number of list requests.
	Pages int
	// SeparateAPI is true when the fake API ran in its own process
	// (RunAgainst with apiCPU): CPUSeconds is then Ferry's alone, and the
	// API's CPU time is counted into APICPUSeconds only.
	SeparateAPI bool
}

// EntitiesPerS is the collect's throughput.
func (r Result) EntitiesPerS() float64 { return float64(r.Entities) / r.Seconds }

// FerryCPUSeconds is Ferry's CPU time for the collect: CPUSeconds when the
// API ran in its own process, else CPUSeconds less the plain pass's.
func (r Result) FerryCPUSeconds() float64 {
	if r.SeparateAPI {
		return r.CPUSeconds
	}
	return max(r.CPUSeconds-r.APICPUSeconds, 0)
}

// Config is the collect pipe "crm-customer-collect" against a fake API at
// base: customers in pages of PageSize following the body's next link,
// _id from the customer's id.
func Config(base string) string {
	return fmt.Sprintf(`[
 {"_id": "crm", "type": "system:rest", "url_pattern": "%s/api/%%s",
  "operations": {"list": {"url": "customers", "payload_property": "data", "id_expression": "{{ id }}",
   "params": {"limit": %d}, "next_page_link": "{{ body.nextPageUrl }}"}}},
 {"_id": "crm-customer-collect", "type": "pipe", "source": {"type": "rest", "system": "crm", "operation": "list"}}
]`, base, PageSize)
}

// API is a fake API with n customers served on 127.0.0.1.
type API struct {
	URL string
	srv *http.Server
}

// StartAPI seeds a fake API with n customers and serves it on 127.0.0.1
// until Close.
func StartAPI(n int) (*API, error) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": n}, LogLimit: -1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: api.Handler()}
	go srv.Serve(ln)
	return &API{URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// Close stops the server.
func (a *API) Close() error { return a.srv.Close() }

// Run seeds a fake API with n customers, measures the plain client's pass
// over its pages, then collects them into a new store in dir and measures
// that. sync turns fsync on. Seeding and compiling are not timed.
func Run(ctx context.Context, dir string, n int, sync bool) (Result, error) {
	return withAPI(n, func(base string) (Result, error) {
		return RunAgainst(ctx, dir, base, n, boltstore.Options{NoSync: !sync}, nil)
	})
}

// RunAgainst is Run against a fake API seeded with n customers at base,
// into a store opened with opts (fsync, resident memory bound). apiCPU,
// when not nil, returns the CPU time of the API's own process so far: the
// plain pass then counts it, and CPUSeconds is Ferry's alone.
func RunAgainst(ctx context.Context, dir, base string, n int, opts boltstore.Options, apiCPU func() time.Duration) (Result, error) {
	return measure(ctx, dir, base, n, opts, apiCPU, false)
}

// Recollect is RecollectAgainst with a fake API of its own, seeded with n
// customers.
func Recollect(ctx context.Context, dir string, n int, sync bool) (Result, error) {
	return withAPI(n, func(base string) (Result, error) {
		return RecollectAgainst(ctx, dir, base, n, boltstore.Options{NoSync: !sync}, nil)
	})
}

// RecollectAgainst collects n customers from the fake API at base into a
// new store in dir (not timed), then measures a second collect of the
// same, unchanged customers: the scheduled re-collect of a system where
// little changed. Entities is how many it found unchanged (it fails
// unless all n are, with nothing written). opts and apiCPU are as for
// RunAgainst; there is no plain pass.
func RecollectAgainst(ctx context.Context, dir, base string, n int, opts boltstore.Options, apiCPU func() time.Duration) (Result, error) {
	return measure(ctx, dir, base, n, opts, apiCPU, true)
}

// withAPI runs f against a fake API seeded with n customers.
func withAPI(n int, f func(base string) (Result, error)) (Result, error) {
	api, err := StartAPI(n)
	if err != nil {
		return Result{}, err
	}
	defer api.Close()
	return f(api.URL)
}

// measure is RunAgainst, or with recollect RecollectAgainst.
func measure(ctx context.Context, dir, base string, n int, opts boltstore.Options, apiCPU func() time.Duration, recollect bool) (Result, error) {
	res := Result{SeparateAPI: apiCPU != nil, Pages: (n + PageSize - 1) / PageSize}
	if !recollect {
		var api0 time.Duration
		if apiCPU != nil {
			api0 = apiCPU()
		}
		var err error
		if res.APISeconds, res.APICPUSeconds, res.Pages, err = fetchAll(ctx, base, n); err != nil {
			return Result{}, err
		}
		if apiCPU != nil {
			res.APICPUSeconds += (apiCPU() - api0).Seconds()
		}
	}
	storeDir := filepath.Join(dir, "collect-store")
	os.RemoveAll(storeDir)
	defer os.RemoveAll(storeDir)
	store, err := boltstore.Open(storeDir, opts)
	if err != nil {
		return Result{}, err
	}
	defer store.Close()
	eng, err := Engine(store, dir, base)
	if err != nil {
		return Result{}, err
	}
	if recollect {
		if rec, err := eng.Run(ctx, "crm-customer-collect", engine.RunOptions{}); err != nil {
			return Result{}, err
		} else if rec.Written != int64(n) {
			return Result{}, fmt.Errorf("the first collect wrote %d of %d customers", rec.Written, n)
		}
	}
	cpu0, start := cputime.Now(), time.Now()
	rec, err := eng.Run(ctx, "crm-customer-collect", engine.RunOptions{})
	res.Seconds, res.CPUSeconds = time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	switch {
	case err != nil:
		return Result{}, err
	case recollect && (rec.Unchanged != int64(n) || rec.Written != 0):
		return Result{}, fmt.Errorf("the re-collect found %d of %d customers unchanged and wrote %d", rec.Unchanged, n, rec.Written)
	case !recollect && rec.Written != int64(n):
		return Result{}, fmt.Errorf("the collect wrote %d of %d customers", rec.Written, n)
	}
	res.Entities = rec.Written + rec.Unchanged
	return res, nil
}

// Engine compiles Config(base) (written to dir) into an engine on store.
func Engine(store engine.Store, dir, base string) (*engine.Engine, error) {
	path := filepath.Join(dir, "collect.json")
	if err := os.WriteFile(path, []byte(Config(base)), 0o644); err != nil {
		return nil, err
	}
	cfg, err := engine.LoadConfig([]string{path}, engine.EnvFrom(nil))
	if err != nil {
		return nil, err
	}
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	if err != nil {
		return nil, err
	}
	return engine.New(store, plan, nil), nil
}

// fetchAll reads every page of n customers with a plain client, discarding
// the bodies: the fake API's cost plus the least a client must do.
func fetchAll(ctx context.Context, base string, n int) (secs, cpu float64, pages int, err error) {
	client := &http.Client{}
	cpu0, start := cputime.Now(), time.Now()
	for page := 1; (page-1)*PageSize < n; page++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/customers?limit=%d&page=%d", base, PageSize, page), nil)
		if err != nil {
			return 0, 0, 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, 0, 0, fmt.Errorf("fake API page %d: status %d, %v", page, resp.StatusCode, err)
		}
		pages++
	}
	return time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds(), pages, nil
}
