package httpapi_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

// metricValue returns the value of the sample whose name and labels
// start with series (e.g. `ferry_pipe_runs_total{pipe="a",result="ok"}`).
func metricValue(t *testing.T, text, series string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(series):]), 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			return v, true
		}
	}
	return 0, false
}

// TestMetrics: /metrics serves run counters from the run records, the
// duration histogram, last success, running, dataset counts, the store
// file size, a pipe's lag to its source dataset, and the Go runtime, in
// the Prometheus text format, from a registry of the server's own.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, _, eng := newAPI(t, httpapi.Options{Registry: reg})
	ctx := context.Background()
	scrape := func() string {
		code, body, h := send(t, "GET", srv.URL+"/metrics", "", "Authorization", "Bearer "+testToken)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
			t.Fatalf("metrics = %d %s", code, h.Get("Content-Type"))
		}
		return body
	}
	before := scrape()
	for series, want := range map[string]float64{
		`ferry_pipe_runs_total{pipe="a",result="ok"}`:                     0,
		`ferry_pipe_runs_total{pipe="b",result="failed"}`:                 0,
		`ferry_pipe_entities_total{counter="written",pipe="a",reason=""}`: 0,
		`ferry_pipe_running{pipe="a"}`:                                    0,
	} {
		if v, ok := metricValue(t, before, series); !ok || v != want {
			t.Errorf("before runs: %s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if strings.Contains(before, "ferry_pipe_last_success_timestamp_seconds{") {
		t.Error("a last success time before any run")
	}

	if _, err := eng.Run(ctx, "a", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	// b reads one of a's three versions, then fails on a bad offset.
	tx, _ := eng.Store.Begin(ctx)
	tx.SetPipeState("b", engine.PipeState{Since: "0"})
	tx.Commit()
	body := scrape()
	for series, want := range map[string]float64{
		`ferry_pipe_runs_total{pipe="a",result="ok"}`:                     1,
		`ferry_pipe_entities_total{counter="read",pipe="a",reason=""}`:    3,
		`ferry_pipe_entities_total{counter="written",pipe="a",reason=""}`: 3,
		`ferry_pipe_entities_total{counter="deleted",pipe="a",reason=""}`: 0,
		`ferry_pipe_run_duration_seconds_count{pipe="a"}`:                 1,
		`ferry_pipe_last_run_failed{pipe="a"}`:                            0,
		`ferry_dataset_entities{dataset="a"}`:                             3,
		`ferry_dataset_versions{dataset="a"}`:                             3,
		`ferry_dataset_deleted_entities{dataset="a"}`:                     0,
		`ferry_pipe_lag_versions{dataset="a",pipe="b"}`:                   2,
	} {
		if v, ok := metricValue(t, body, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	if v, ok := metricValue(t, body, `ferry_pipe_lag_seconds{dataset="a",pipe="b"}`); !ok || v < 0 || v > 60 {
		t.Errorf("lag seconds = %v %v", v, ok)
	}
	if v, ok := metricValue(t, body, `ferry_pipe_last_success_timestamp_seconds{pipe="a"}`); !ok || v < 1.7e9 {
		t.Errorf("last success = %v %v", v, ok)
	}
	if v, ok := metricValue(t, body, "ferry_store_file_size_bytes"); !ok || v < 4096 {
		t.Errorf("store size = %v %v", v, ok)
	}
	for _, want := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "ferry_http_request_body_bytes_in_flight"} {
		if !regexp.MustCompile(`(?m)^` + want + ` `).MatchString(body) {
			t.Errorf("no %s", want)
		}
	}

	tx, _ = eng.Store.Begin(ctx)
	tx.SetPipeState("b", engine.PipeState{Since: "garbage"})
	tx.Commit()
	eng.Run(ctx, "b", engine.RunOptions{})
	body = scrape()
	if v, _ := metricValue(t, body, `ferry_pipe_runs_total{pipe="b",result="failed"}`); v != 1 {
		t.Errorf("failed runs of b = %v", v)
	}
	if v, _ := metricValue(t, body, `ferry_pipe_last_run_failed{pipe="b"}`); v != 1 {
		t.Errorf("last run failed of b = %v", v)
	}
	if _, ok := metricValue(t, body, `ferry_pipe_lag_versions{dataset="a",pipe="b"}`); ok {
		t.Error("a lag from an unreadable token")
	}

	// The registry is the server's own: the metrics are in it, not in the
	// global default registry.
	if mfs, _ := reg.Gather(); len(mfs) < 10 {
		t.Errorf("the given registry holds %d families", len(mfs))
	}
	if mfs, _ := prometheus.DefaultGatherer.Gather(); hasFamily(mfs, "ferry_pipe_runs_total") {
		t.Error("ferry metrics registered in the global registry")
	}
	// A second server on the same registry is refused, not panicking.
	eng2, _ := enginetest.Engine(t, all.Registry(), t.TempDir(), `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]}}]`)
	if _, err := httpapi.New(eng2, httpapi.Options{Token: testToken, Registry: reg}); err == nil {
		t.Error("two APIs registered in one registry")
	}
}

func hasFamily[T interface{ GetName() string }](mfs []T, name string) bool {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// TestMetricsLastSuccessFromTheStore: a new server reads each pipe's last
// run from the store, so the gauge survives restarts.
func TestMetricsLastSuccessFromTheStore(t *testing.T) {
	dir := t.TempDir()
	cfg := `[{"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]}}]`
	plan := enginetest.Plan(t, all.Registry(), dir, cfg)
	store := enginetest.Store(t, dir+"/data")
	eng := engine.New(store, plan, nil)
	if _, err := eng.Run(context.Background(), "a", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(engine.New(store, plan, nil), httpapi.Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, api)
	_, body, _ := send(t, "GET", srv+"/metrics", "", "Authorization", "Bearer "+testToken)
	if v, ok := metricValue(t, body, `ferry_pipe_last_success_timestamp_seconds{pipe="a"}`); !ok || v < 1.7e9 {
		t.Errorf("last success after restart = %v %v", v, ok)
	}
}
