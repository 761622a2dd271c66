package rest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/sinks"
)

// env is a fake API on an httptest server plus an engine over a real bbolt
// store in a temp dir.
type env struct {
	t     testing.TB
	api   *fakeapi.API
	srv   *httptest.Server
	eng   *engine.Engine
	store *boltstore.Store

	mu     sync.Mutex
	sleeps []time.Duration
}

type envOptions struct {
	tls     bool
	extra   map[string]string // more $ENV values; "{base}" is the server's URL
	httpOpt []httpclient.Option
	sync    bool // fsync commits
	// wrap, when set, wraps the fake API's handler (shape adapters).
	wrap func(http.Handler) http.Handler
}

// newEnv starts fakeapi with apiOpts and compiles config, in which
// $ENV(base) is the server's URL.
func newEnv(t testing.TB, apiOpts fakeapi.Options, config string, eo envOptions) *env {
	t.Helper()
	e := &env{t: t, api: fakeapi.New(apiOpts)}
	h := e.api.Handler()
	if eo.wrap != nil {
		h = eo.wrap(h)
	}
	if eo.tls {
		e.srv = httptest.NewTLSServer(h)
	} else {
		e.srv = httptest.NewServer(h)
	}
	t.Cleanup(e.srv.Close)
	e.compile(config, eo)
	return e
}

func (e *env) sleep(ctx context.Context, d time.Duration) error {
	e.mu.Lock()
	e.sleeps = append(e.sleeps, d)
	e.mu.Unlock()
	return ctx.Err()
}

func (e *env) compile(config string, eo envOptions) {
	t := e.t
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{"base": e.srv.URL}
	for k, v := range eo.extra {
		vals[k] = strings.ReplaceAll(v, "{base}", e.srv.URL)
	}
	cfg, err := engine.LoadConfig([]string{filepath.Join(dir, "config.json")}, engine.EnvFrom(vals))
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	sinks.Register(reg)
	opts := append([]httpclient.Option{httpclient.WithSleep(e.sleep)}, eo.httpOpt...)
	rest.RegisterWith(reg, rest.Options{HTTPOptions: opts})
	plan, err := engine.Compile(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(filepath.Join(dir, "data"), boltstore.Options{NoSync: !eo.sync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	e.eng = engine.New(s, plan, nil)
}

func (e *env) run(pipe string, opts engine.RunOptions) (engine.RunRecord, error) {
	return e.eng.Run(context.Background(), pipe, opts)
}

func (e *env) mustRun(pipe string) engine.RunRecord {
	e.t.Helper()
	rec, err := e.run(pipe, engine.RunOptions{})
	if err != nil {
		e.t.Fatalf("run %s: %v", pipe, err)
	}
	return rec
}

// entities returns a dataset's latest live versions by _id.
func (e *env) entities(ds string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	_, err := e.store.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		if r.Deleted {
			return nil
		}
		v, err := engine.DecodeEntity(r.Body)
		if err != nil {
			return err
		}
		out[r.ID] = v
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "no dataset") {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) info(ds string) engine.DatasetInfo {
	e.t.Helper()
	info, _, err := e.store.Dataset(context.Background(), ds)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

func (e *env) since(pipe string) string {
	st, err := e.store.PipeState(context.Background(), pipe)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Since
}

// listRequests returns the logged list requests of a collection.
func (e *env) listRequests(collection string) []fakeapi.LoggedRequest {
	var out []fakeapi.LoggedRequest
	for _, r := range e.api.Requests() {
		if r.Method == "GET" && r.Path == "/api/"+collection {
			out = append(out, r)
		}
	}
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// compileErr compiles config with the REST components and returns the
// error, failing the test when it compiles.
func compileErr(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{dir}, engine.EnvFrom(nil))
	if err != nil {
		return err.Error()
	}
	reg := engine.NewRegistry()
	sinks.Register(reg)
	rest.Register(reg)
	if _, err = engine.Compile(cfg, reg, nil); err == nil {
		t.Fatalf("config compiled: %s", config)
	}
	return err.Error()
}
