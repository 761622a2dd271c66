package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/natsstore"
)

// benchStoreURL returns the --store URL the bench scenarios use: "" for
// bbolt, else the NATS URL with a prefix of this bench run's own, and a
// function that deletes everything the run created there.
func (c *cli) benchStoreURL(ctx context.Context) (string, func(), error) {
	if !c.isNATS() {
		return "", func() {}, nil
	}
	u, err := url.Parse(c.g.store)
	if err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("prefix", fmt.Sprintf("ferrybench%d", os.Getpid()))
	u.RawQuery = q.Encode()
	s := u.String()
	return s, func() { destroyNATS(ctx, s) }, nil
}

func destroyNATS(ctx context.Context, storeURL string) error {
	return withNATSStore(ctx, storeURL, (*natsstore.Store).Destroy)
}

// withNATSStore opens the store at storeURL, calls fn and closes it.
func withNATSStore(ctx context.Context, storeURL string, fn func(*natsstore.Store, context.Context) error) error {
	opts, err := natsstore.ParseURL(storeURL)
	if err != nil {
		return err
	}
	st, err := natsstore.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st, ctx)
}

// openBenchStore opens the bench's store: bbolt in dir, or NATS.
func openBenchStore(ctx context.Context, dir, storeURL string, noSync bool, mapped int64) (engine.Store, func() (int64, int64, time.Duration), error) {
	if storeURL == "" {
		st, err := boltstore.Open(dir, boltstore.Options{NoSync: noSync, MaxResident: mapped, Pressure: gcPressure()})
		if err != nil {
			return nil, nil, err
		}
		return st, st.ReleaseStats, nil
	}
	opts, err := natsstore.ParseURL(storeURL)
	if err != nil {
		return nil, nil, err
	}
	st, err := natsstore.Open(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return st, func() (int64, int64, time.Duration) { return 0, 0, 0 }, nil
}

// checkNATSBench checks what the scenarios left in the NATS store.
func checkNATSBench(ctx context.Context, storeURL string) error {
	return withNATSStore(ctx, storeURL, (*natsstore.Store).Check)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.RawQuery = ""
	return u.Redacted()
}

// benchPipes is how many independent pipes the worker benchmark spreads
// over the workers.
const benchPipes = 8

// workerResult is one worker process's figures.
type workerResult struct {
	Entities int64   `json:"entities"`
	Seconds  float64 `json:"seconds"`
}

// benchWorkers measures throughput with 1, 2, 4... worker processes
// sharing a NATS store, on benchPipes independent pipes (each loads its own
// file into its own dataset). Each worker runs its share of the pipes
// through the engine, with leases, as `ferry serve` workers do.
func (c *cli) benchWorkers(ctx context.Context, n int, dir, workers, scenario string, ckpt int) int {
	if scenario == "worker" {
		return c.benchWorker(ctx, dir, workers, ckpt)
	}
	if !c.isNATS() {
		c.errorf("bench --workers needs --store nats://host:port")
		return exitUsage
	}
	var counts []int
	for _, w := range strings.Split(workers, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || k <= 0 || k > benchPipes {
			c.errorf("bench --workers: %q is not a number of workers from 1 to %d", w, benchPipes)
			return exitUsage
		}
		counts = append(counts, k)
	}
	work, cleanup, err := benchWorkDir(dir)
	if err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	defer cleanup()
	if err := genWorkerFiles(work, n); err != nil {
		c.errorf("bench: generating entities: %v", err)
		return exitFailed
	}
	self, err := os.Executable()
	if err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	type row struct {
		Workers      int     `json:"workers"`
		Entities     int64   `json:"entities"`
		Seconds      float64 `json:"seconds"`
		EntitiesPerS float64 `json:"entities_per_s"`
	}
	var rows []row
	for _, w := range counts {
		storeURL, cleanup, err := c.benchStoreURL(ctx)
		if err != nil {
			c.errorf("bench: %v", err)
			return exitFailed
		}
		if !c.g.json {
			fmt.Fprintf(c.stderr, "bench: %d workers...\n", w)
		}
		start := time.Now()
		cmds := make([]*exec.Cmd, w)
		outs := make([]*strings.Builder, w)
		for i := range w {
			cmds[i] = exec.CommandContext(ctx, self, "bench", "--scenario", "worker", "--workers", fmt.Sprintf("%d/%d", i, w),
				"--dir", work, "--store", storeURL, "--checkpoint-interval", strconv.Itoa(ckpt))
			outs[i] = &strings.Builder{}
			cmds[i].Stdout, cmds[i].Stderr = outs[i], c.stderr
			if err := cmds[i].Start(); err != nil {
				c.errorf("bench: %v", err)
				return exitFailed
			}
		}
		var total int64
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				c.errorf("bench worker %d: %v", i, err)
				cleanup()
				return exitFailed
			}
			var res workerResult
			if err := json.Unmarshal([]byte(outs[i].String()), &res); err != nil {
				c.errorf("bench worker %d: bad output: %v", i, err)
				cleanup()
				return exitFailed
			}
			total += res.Entities
		}
		el := time.Since(start).Seconds()
		if err := checkNATSBench(ctx, storeURL); err != nil {
			c.errorf("bench: store check failed: %v", err)
			cleanup()
			return exitFailed
		}
		cleanup()
		rows = append(rows, row{Workers: w, Entities: total, Seconds: el, EntitiesPerS: float64(total) / el})
	}
	if c.g.json {
		c.printJSON(rows)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "WORKERS\tENTITIES/S\tSPEED-UP\tENTITIES\tSECONDS\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%d\t%.2f\n", r.Workers, r.EntitiesPerS, r.EntitiesPerS/rows[0].EntitiesPerS, r.Entities, r.Seconds)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d entities in %d independent pipes (initial load, one dataset each), worker processes on this machine, store %s.\n", n, benchPipes, redactURL(c.g.store))
	return exitOK
}

func genWorkerFiles(dir string, n int) error {
	for k := range benchPipes {
		fh, err := os.Create(filepath.Join(dir, fmt.Sprintf("part%d.ndjson", k)))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(fh, 1<<20)
		buf, id := make([]byte, 0, 512), make([]byte, 0, 32)
		for i := k * n / benchPipes; i < (k+1)*n/benchPipes; i++ {
			id = benchID(id[:0], "hash", i, n)
			buf = benchEntity(buf[:0], id, i, 0)
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// benchWorker is one worker process of benchWorkers: share "i/w" runs
// pipes i, i+w, ...
func (c *cli) benchWorker(ctx context.Context, dir, share string, ckpt int) int {
	var idx, w int
	if _, err := fmt.Sscanf(share, "%d/%d", &idx, &w); err != nil || w <= 0 {
		c.errorf("bench worker: bad share %q", share)
		return exitUsage
	}
	var parts []string
	for k := range benchPipes {
		parts = append(parts, fmt.Sprintf(`{"_id":"load%d","type":"pipe","checkpoint_interval":%d,"source":{"type":"json","url":%q},"sink":{"type":"dataset","dataset":"bw%d"}}`,
			k, ckpt, filepath.Join(dir, fmt.Sprintf("part%d.ndjson", k)), k))
	}
	plan, err := compileBenchConfig(filepath.Join(dir, fmt.Sprintf("workers-%d.json", idx)), "["+strings.Join(parts, ",")+"]")
	if err != nil {
		c.errorf("bench worker: %v", err)
		return exitFailed
	}
	store, err := c.openStore(false, false)
	if err != nil {
		c.errorf("bench worker: %v", err)
		return exitFailed
	}
	defer store.Close()
	eng := engine.New(store, plan, nil)
	if eng.Cluster, err = clusterOf(store); err != nil {
		c.errorf("bench worker: %v", err)
		return exitFailed
	}
	start := time.Now()
	var res workerResult
	for k := idx; k < benchPipes; k += w {
		rec, err := eng.Run(ctx, fmt.Sprintf("load%d", k), engine.RunOptions{})
		if err != nil {
			c.errorf("bench worker: %v", err)
			return exitFailed
		}
		res.Entities += rec.Read
	}
	res.Seconds = time.Since(start).Seconds()
	json.NewEncoder(c.stdout).Encode(res)
	return exitOK
}
