package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

// benchEntities is the size of the dataset the page benchmarks browse.
const benchEntities = 1_000_000

var (
	bigStoreOnce sync.Once
	bigStoreDir  string
	bigStoreErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigStoreDir != "" {
		os.RemoveAll(bigStoreDir)
	}
	os.Exit(code)
}

// bigStore writes a dataset "big" of benchEntities entities (random-order
// _ids like UUIDs, ~200 bytes each, some with several versions) once per
// test binary.
func bigStore(b *testing.B) string {
	bigStoreOnce.Do(func() {
		bigStoreDir, bigStoreErr = os.MkdirTemp("", "ferry-httpapi-bench-")
		if bigStoreErr != nil {
			return
		}
		s, err := boltstore.Open(bigStoreDir, boltstore.Options{NoSync: true})
		if err != nil {
			bigStoreErr = err
			return
		}
		defer s.Close()
		ctx := context.Background()
		const perTx = 20_000
		// Every tenth entity gets a second version in a later transaction.
		for start := 0; start < benchEntities+benchEntities/10; start += perTx {
			tx, err := s.Begin(ctx)
			if err != nil {
				bigStoreErr = err
				return
			}
			for j := start; j < start+perTx; j++ {
				i, version := j, 0
				if j >= benchEntities {
					i, version = (j-benchEntities)*10, 1
				}
				h := uint64(i)*0x9E3779B97F4A7C15 ^ 0xD1B54A32D192ED03
				h ^= h >> 29
				text := fmt.Sprintf(`{"_id":"%016x-%04x","name":"Customer %d","email":"c%d@example.com","address":{"city":"Springfield","zip":"%05d"},"tags":["retail","tier-%d"],"balance":%d.%02d}`,
					h, i%0xffff, i, i, i%99999, i%5, i%100000+version, i%100)
				e, err := engine.DecodeEntity([]byte(text))
				if err != nil {
					bigStoreErr = err
					return
				}
				p, err := engine.Prepare(e)
				if err != nil {
					bigStoreErr = err
					return
				}
				if _, _, err := tx.Put("big", &p, int64(j)); err != nil {
					bigStoreErr = err
					return
				}
			}
			if err := tx.Commit(); err != nil {
				bigStoreErr = err
				return
			}
		}
	})
	if bigStoreErr != nil {
		b.Fatal(bigStoreErr)
	}
	return bigStoreDir
}

// BenchmarkBrowserPages measures the web browser's pages over a dataset
// of 1M entities, through the whole handler (Host, token, redaction):
// the entity list's first page, a page deep in the _id order, an _id
// prefix search, an entity's history and the datasets page. Each must
// answer in well under 50 ms: the list reads its page from the _id index
// (engine.EntityLister), never the whole dataset.
func BenchmarkBrowserPages(b *testing.B) {
	dir := bigStore(b)
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	plan := enginetest.Plan(b, all.Registry(), b.TempDir(), `[{"_id":"big","type":"pipe","source":{"type":"embedded","entities":[]}}]`)
	api, err := httpapi.New(engine.New(store, plan, nil), httpapi.Options{Token: testToken, UI: true})
	if err != nil {
		b.Fatal(err)
	}
	var mid string
	store.ListEntities(context.Background(), "big", engine.ListOptions{Prefix: "8", Limit: 1}, func(r engine.Record) error {
		mid = r.ID
		return nil
	})
	for _, c := range []struct{ name, path string }{
		{"EntityListFirstPage", "/ui/datasets/big"},
		{"EntityListDeepPage", "/ui/datasets/big?after=" + mid},
		{"EntityPrefixSearch", "/ui/datasets/big?prefix=" + mid[:5]},
		{"EntityHistory", "/ui/datasets/big/entity?id=" + mid},
		{"Datasets", "/ui/datasets"},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://127.0.0.1:9070"+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			for b.Loop() {
				w := httptest.NewRecorder()
				api.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s = %d %s", c.path, w.Code, w.Body.String())
				}
			}
		})
	}
}

// BenchmarkMetricsScrape measures one /metrics scrape (Go runtime,
// process, run counters, dataset counts and a lag read) over the 1M
// dataset.
func BenchmarkMetricsScrape(b *testing.B) {
	dir := bigStore(b)
	store, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	plan := enginetest.Plan(b, all.Registry(), b.TempDir(), `[{"_id":"reader","type":"pipe","source":{"type":"dataset","dataset":"big"}}]`)
	api, err := httpapi.New(engine.New(store, plan, nil), httpapi.Options{Token: testToken})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://127.0.0.1:9070/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	for b.Loop() {
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
