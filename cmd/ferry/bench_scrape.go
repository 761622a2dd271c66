package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/httpapi"
)

// scrapeResult is what a scraped load measured of its scrapes.
type scrapeResult struct {
	Scrapes       int     `json:"scrapes"`
	MeanMillis    float64 `json:"scrape_mean_ms"`
	MaxMillis     float64 `json:"scrape_max_ms"`
	ScrapeSeconds float64 `json:"scrape_seconds"`
}

// benchLoad is scenario "load": the initial load of n entities into a
// fresh store (dir/store-load), optionally while a client scrapes the
// HTTP API's /metrics every scrape over loopback, as Prometheus would.
func benchLoad(ctx context.Context, dir string, n int, noSync bool, ckpt int, mapped int64, scrape time.Duration) (*benchResult, error) {
	storeDir := filepath.Join(dir, "store-load")
	if err := os.RemoveAll(storeDir); err != nil {
		return nil, err
	}
	defer os.RemoveAll(storeDir)
	plan, err := benchPlan(dir, "bench-load.json", ckpt)
	if err != nil {
		return nil, err
	}
	store, err := boltstore.Open(storeDir, boltstore.Options{NoSync: noSync, MaxResident: mapped, Pressure: gcPressure()})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	eng := engine.New(store, plan, nil)
	var sr scrapeResult
	stop := func() {}
	if scrape > 0 {
		const token = "bench-token-0123456789"
		api, err := httpapi.New(eng, httpapi.Options{Token: token})
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: api}
		go srv.Serve(ln)
		done := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			client := &http.Client{Timeout: 10 * time.Second}
			t := time.NewTicker(scrape)
			defer t.Stop()
			var total, worst time.Duration
			for {
				select {
				case <-done:
					sr.ScrapeSeconds = total.Seconds()
					sr.MaxMillis = float64(worst.Microseconds()) / 1e3
					if sr.Scrapes > 0 {
						sr.MeanMillis = float64(total.Microseconds()) / 1e3 / float64(sr.Scrapes)
					}
					return
				case <-t.C:
				}
				start := time.Now()
				req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/metrics", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				total += d
				worst = max(worst, d)
				sr.Scrapes++
			}
		}()
		stop = func() {
			close(done)
			<-finished
			srv.Close()
		}
	}
	start := time.Now()
	rec, err := eng.Run(ctx, "bench-load", engine.RunOptions{})
	el := time.Since(start).Seconds()
	stop()
	if err != nil {
		return nil, err
	}
	return &benchResult{Entities: n, Seconds: el, EntitiesPerS: float64(n) / el, Written: rec.Written, Unchanged: rec.Unchanged,
		Deleted: rec.Deleted, TxEntities: engine.DefaultBatchSize * ckpt, FsyncOnCommit: !noSync, Scrape: &sr}, nil
}

// benchScrapeCost runs rounds pairs of fresh initial loads in child
// processes, one plain and one scraped every interval, alternating, and
// reports the median throughput cost of scraping.
func (c *cli) benchScrapeCost(ctx context.Context, self, work string, n, ckpt, mapped int, noSync bool, interval time.Duration, rounds int) (map[string]any, error) {
	var ratios, cpuRatios []float64
	var plain, scraped, plainCPU []float64
	var last scrapeResult
	for round := range rounds {
		for _, every := range []time.Duration{0, interval} {
			args := []string{"bench", "--scenario", "load", "--dir", work, "-n", strconv.Itoa(n), "--checkpoint-interval", strconv.Itoa(ckpt),
				"--max-rss-mib", strconv.Itoa(mapped), "--scrape", every.String()}
			if noSync {
				args = append(args, "--no-sync")
			}
			cmd := exec.CommandContext(ctx, self, args...)
			cmd.Stderr = c.stderr
			out, err := cmd.Output()
			if err != nil {
				return nil, fmt.Errorf("load (scrape %v): %w", every, err)
			}
			var res benchResult
			if err := json.Unmarshal(out, &res); err != nil {
				return nil, fmt.Errorf("load: bad child output: %w", err)
			}
			// CPU seconds of the child (user + system): less sensitive than
			// wall time to what else the machine runs.
			cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
			if every == 0 {
				plain = append(plain, res.EntitiesPerS)
				plainCPU = append(plainCPU, cpu)
			} else {
				scraped = append(scraped, res.EntitiesPerS)
				ratios = append(ratios, res.EntitiesPerS/plain[len(plain)-1])
				cpuRatios = append(cpuRatios, cpu/plainCPU[len(plainCPU)-1])
				if res.Scrape != nil {
					last = *res.Scrape
				}
			}
		}
		fmt.Fprintf(c.stderr, "bench: scrape round %d: plain %.0f/s, scraped every %v %.0f/s\n", round+1, plain[round], interval, scraped[round])
	}
	slices.Sort(ratios)
	slices.Sort(cpuRatios)
	median := ratios[len(ratios)/2]
	cpuMedian := cpuRatios[len(cpuRatios)/2]
	return map[string]any{
		"interval": interval.String(), "rounds": rounds,
		"plain_entities_per_s": plain, "scraped_entities_per_s": scraped,
		"median_ratio": median, "cost_percent": (1 - median) * 100,
		"median_cpu_ratio": cpuMedian, "cpu_cost_percent": (cpuMedian - 1) * 100,
		"last_round": last,
	}, nil
}
