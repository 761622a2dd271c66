package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// The "large" scenario loads documents of ~10 KB (a record with its
// notes, the text of an attachment) instead of the 310-byte entities:
// n/benchLargeShare of them, about two thirds of the entities file's
// bytes. Memory is bounded in bytes where documents this size pass
// (the producer's queue, a transaction's group, a batch's arena): this
// row guards those bounds, which at 10 KB once let a load of 500 MB peak
// at 823 MB (docs/performance.md, "Fixed: large documents").
const (
	benchLargeShare = 50
	benchLargeBytes = 10 << 10
)

// benchLargeCount is how many documents the "large" scenario loads for
// n entities.
func benchLargeCount(n int) int { return max(1, n/benchLargeShare) }

// genLargeFile writes the "large" scenario's documents
// (entities-large.ndjson): ids in random order, a body of words.
func genLargeFile(dir string, n int) error {
	count := benchLargeCount(n)
	f, err := os.Create(filepath.Join(dir, "entities-large.ndjson"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	words := []string{"invoice", "customer", "delivery", "order", "the", "was", "sent", "to", "on", "and", "paid", "terms", "net", "30", "days", "address", "changed"}
	buf := make([]byte, 0, benchLargeBytes+256)
	for i := range count {
		k := uint64(i)*0x9e3779b97f4a7c15 ^ 0x5bd1e995
		buf = fmt.Appendf(buf[:0], `{"_id":"doc-%016x","n":%d,"title":"Document %d","tags":["archive","year-%d"],"body":"`, k, i, i, 2000+i%27)
		for j := 0; len(buf) < benchLargeBytes; j++ {
			buf = append(buf, words[(i+j*7)%len(words)]...)
			buf = append(buf, ' ')
		}
		buf = append(buf, "\"}\n"...)
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchLarge runs the "large" scenario: the documents into dataset
// "bench-large" through a json source, a first load each time (the
// dataset and the pipe's offset dropped before the clock).
func benchLarge(ctx context.Context, dir string, n int, noSync bool, ckpt int, mapped int64, storeURL string) (*benchResult, error) {
	cfg := fmt.Sprintf(`[{"_id": "bench-large", "type": "pipe", "checkpoint_interval": %d, "source": {"type": "json", "format": "ndjson", "url": %q}, "sink": {"type": "dataset", "dataset": "bench-large"}}]`,
		ckpt, filepath.Join(dir, "entities-large.ndjson"))
	eng, store, releases, err := benchEngine(ctx, dir, "bench-large.json", cfg, storeURL, noSync, mapped) // bench.go
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if err := benchFirstRun(ctx, eng, store, "bench-large"); err != nil {
		return nil, err
	}
	return benchTimedRun(ctx, eng, store, releases, "bench-large", benchLargeCount(n), ckpt, noSync) // bench.go
}
