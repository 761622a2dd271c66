// Package sharebench measures Ferry's write-back: a share pipe that
// updates n changed customers of a local fake API (package fakeapi), each
// with its lookup, under the write-back protocol with fsync on. The Go
// benchmark BenchmarkShare10k (pipes/rest) and the "share" scenario of
// `ferry bench` both run it.
package sharebench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// Result is one measured share run.
type Result struct {
	// Entities is how many changed customers were shared; Updated how many
	// updates the run sent; Requests its HTTP requests (lookups included).
	Entities, Updated, Requests int64
	// Seconds is the share run's wall time.
	Seconds float64
	// Workers is the system's worker_threads (requests in flight).
	Workers int
	// CPUSeconds is the process's CPU time (user + system) during the
	// share run, the fake API's included: a figure that holds when other
	// work shares the machine.
	CPUSeconds float64
}

// UpdatesPerS is the share run's throughput.
func (r Result) UpdatesPerS() float64 { return float64(r.Updated) / r.Seconds }

const workers = 8

func config(base string, desired []map[string]any) string {
	d, _ := json.Marshal(desired)
	if desired == nil {
		d = []byte("[]")
	}
	return fmt.Sprintf(`[
 {"_id": "crm", "type": "system:rest", "url_pattern": "%s/api/%%s", "worker_threads": %d,
  "operations": {
   "list": {"url": "customers", "payload_property": "data", "params": {"limit": "1000"}, "next_page_link": "{{ body.nextPageUrl }}"},
   "lookup": {"url": "customers/{{ entity.id }}"},
   "insert": {"method": "POST", "url": "customers"},
   "update": {"method": "PUT", "url": "customers/{{ entity.id }}"},
   "delete": {"method": "DELETE", "url": "customers/{{ entity.id }}"}}},
 {"_id": "crm-customer-collect", "type": "pipe",
  "source": {"type": "rest", "system": "crm", "operation": "list", "id_expression": "{{ id }}"},
  "transform": {"type": "template", "template": "transform-collect-rest", "properties": {"primary_key": "id", "share_dataset": "crm-customer-share"}}},
 {"_id": "crm-customer-transform", "type": "pipe", "source": {"type": "embedded", "entities": %s}},
 {"_id": "crm-customer-share", "type": "pipe", "batch_size": 1,
  "source": {"type": "dataset", "dataset": "crm-customer-transform"},
  "transform": {"type": "template", "template": "transform-share-rest",
   "properties": {"rest_system": "crm", "primary_key": "id", "share_dataset": "crm-customer-share"}},
  "sink": {"deletion_tracking": false, "set_initial_offset": "onload"}}
]`, base, workers, d)
}

// Run seeds a fake API with n customers on 127.0.0.1, collects them into a
// store in dir, sets a desired state in which every customer's name
// changed (with $based_on as collected), and measures the share run that
// writes it back. Only the share run is timed. sync turns fsync on.
func Run(ctx context.Context, dir string, n int, sync bool) (Result, error) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": n}, LogLimit: -1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	srv := &http.Server{Handler: api.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	store, err := boltstore.Open(filepath.Join(dir, "share-store"), boltstore.Options{NoSync: !sync})
	if err != nil {
		return Result{}, err
	}
	defer func() {
		store.Close()
		os.RemoveAll(filepath.Join(dir, "share-store"))
	}()
	compile := func(desired []map[string]any) (*engine.Engine, error) {
		path := filepath.Join(dir, "share.json")
		if err := os.WriteFile(path, []byte(config(base, desired)), 0o644); err != nil {
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
	eng, err := compile(nil)
	if err != nil {
		return Result{}, err
	}
	if _, err := eng.Run(ctx, "crm-customer-collect", engine.RunOptions{}); err != nil {
		return Result{}, err
	}
	var desired []map[string]any
	if _, err := store.Scan(ctx, "crm-customer-collect", engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		c, err := r.Entity()
		if err != nil {
			return err
		}
		desired = append(desired, map[string]any{"_id": r.ID, "id": c["id"], "name": fmt.Sprint(c["name"], " (changed)"), "email": c["email"],
			"$based_on": map[string]any{"id": c["id"], "name": c["name"], "email": c["email"]}})
		return nil
	}); err != nil {
		return Result{}, err
	}
	sort.Slice(desired, func(i, j int) bool { return desired[i]["_id"].(string) < desired[j]["_id"].(string) })
	if eng, err = compile(desired); err != nil {
		return Result{}, err
	}
	if _, err := eng.Run(ctx, "crm-customer-transform", engine.RunOptions{}); err != nil {
		return Result{}, err
	}
	cpu0 := cpuTime()
	start := time.Now()
	rec, err := eng.Run(ctx, "crm-customer-share", engine.RunOptions{})
	el := time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	if err != nil {
		return Result{}, err
	}
	if rec.Share.Updated != int64(n) {
		return Result{}, fmt.Errorf("the share run updated %v of %d customers", rec.Share, n)
	}
	return Result{Entities: int64(n), Updated: rec.Share.Updated, Requests: rec.Share.Requests, Seconds: el, Workers: workers, CPUSeconds: cpu}, nil
}
