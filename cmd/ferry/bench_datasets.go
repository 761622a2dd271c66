package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/internal/cputime"
)

// benchDatasetPipes is how many pipes, each into a dataset of its own, the
// "datasets" scenarios spread the entities over: a hub of many systems and
// datatypes, where per-pipe and per-dataset costs (a run's set-up, its
// commit, what a release of the mapping walks) count, not per-entity ones.
const benchDatasetPipes = 1000

// benchDatasetParts is the number of parts (pipes) for n entities.
func benchDatasetParts(n int) int { return max(1, min(benchDatasetPipes, n)) }

// genDatasetFiles splits entities.ndjson in dir into the parts the
// "datasets" scenarios read, under dir/datasets.
func genDatasetFiles(dir string, n int) error {
	parts := benchDatasetParts(n)
	if err := os.MkdirAll(filepath.Join(dir, "datasets"), 0o755); err != nil {
		return err
	}
	in, err := os.Open(filepath.Join(dir, "entities.ndjson"))
	if err != nil {
		return err
	}
	defer in.Close()
	r := bufio.NewReaderSize(in, 1<<20)
	for k := range parts {
		f, err := os.Create(benchDatasetFile(dir, k))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 256<<10)
		for range (k+1)*n/parts - k*n/parts {
			line, err := r.ReadSlice('\n')
			if err != nil {
				f.Close()
				return fmt.Errorf("entities.ndjson: %w", err)
			}
			w.Write(line)
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func benchDatasetFile(dir string, k int) string {
	return filepath.Join(dir, "datasets", fmt.Sprintf("part%04d.ndjson", k))
}

// benchDatasets runs the "datasets" scenario (again false: each pipe's
// first run into its empty dataset, datasets and offsets dropped first,
// before the clock) or "datasets-unchanged" (again true: the same pipes
// run again, nothing to write).
func benchDatasets(ctx context.Context, dir string, n int, noSync bool, ckpt int, mapped int64, storeURL string, again bool) (*benchResult, error) {
	parts := benchDatasetParts(n)
	var cfg strings.Builder
	cfg.WriteString("[")
	pipes := make([]string, parts)
	for k := range parts {
		pipes[k] = fmt.Sprintf("bench-part-%04d", k)
		if k > 0 {
			cfg.WriteString(",\n")
		}
		fmt.Fprintf(&cfg, `{"_id": %q, "type": "pipe", "checkpoint_interval": %d, "source": {"type": "json", "format": "ndjson", "url": %q}, "sink": {"type": "dataset", "dataset": %q}}`,
			pipes[k], ckpt, benchDatasetFile(dir, k), fmt.Sprintf("bench-part-%04d", k))
	}
	cfg.WriteString("]\n")
	eng, store, releases, err := benchEngine(ctx, dir, "bench-datasets.json", cfg.String(), storeURL, noSync, mapped) // bench.go
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if !again {
		if err := benchFirstRun(ctx, eng, store, pipes...); err != nil {
			return nil, err
		}
	}
	res := &benchResult{Entities: n, TxEntities: engine.DefaultBatchSize * ckpt, FsyncOnCommit: !noSync}
	start, cpu0 := time.Now(), cputime.Now()
	for _, p := range pipes {
		rec, err := eng.Run(ctx, p, engine.RunOptions{})
		if err != nil {
			return nil, fmt.Errorf("pipe %s: %w", p, err)
		}
		res.Written += rec.Written
		res.Unchanged += rec.Unchanged
		res.Deleted += rec.Deleted
	}
	if err := store.Close(); err != nil {
		return nil, err
	}
	res.Seconds, res.CPUSeconds = time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	res.EntitiesPerS = float64(n) / res.Seconds
	kept, full, spent := releases()
	res.ReleasesKeeping, res.ReleasesFull, res.ReleaseSeconds = kept, full, spent.Seconds()
	return res, nil
}
