package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"context"
	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/internal/cputime"
)

// The floor of each scenario that is not a plain load. "floor" bounds a
// load: decode and bare bbolt writes. An unchanged re-run, a 10%-changed
// run and a jq pipe do other work, so each has a bare floor of its own,
// written with the fastest parts at hand and none of Ferry's bookkeeping:
//
//   - floor-unchanged and floor-changed10 (benchFloorLookup): one goroutine
//     splits the file into lines, one worker per CPU finds each line's _id,
//     hashes the line (xxh3-64) and looks the _id up in a bbolt B+tree of
//     _id -> offset and hash (built before the clock from the loaded file,
//     pages filled to 100%), in a read transaction per batch of 100. Lines
//     whose hash differs are appended to a log bucket and their index entry
//     replaced, in write transactions of the pipes' size (fsync on). No
//     deletion tracking, no order kept, no metadata.
//   - floor-jq (benchFloorJQ): the jq scenario's own work and nothing of
//     the store's: the same split, then on the workers the pipe's own jq
//     transform. Its program is in the text path's subset (pipes/jqtext.go),
//     so each line is canonicalized, as the dataset holds it, and mapped
//     as text, the result hashed (xxh3-64); a program outside the subset
//     is run as the decoded path runs it (Ferry's decoder, gojq, the
//     canonical text). It reads the NDJSON file instead of a dataset and
//     writes nothing: a bare write is the "floor" row. So a jq pipe needs
//     at least floor-jq's CPU time plus a load's write (initial's) per
//     entity, and two cores allow at most 2 s of CPU per second (printed
//     under the table).
//   - floor-deleted10 (benchFloorDeleted): floor-unchanged's lookups of
//     the lines deleted10 reads, then bare deletion tracking: the index
//     walked for the _ids not seen, whose last lines get "_deleted": true
//     appended and are written back in log order.
//
// A scenario's ratio to its own floor says how close Ferry gets to what
// this machine allows for that work; where a target is above the floor
// itself, the target is out of reach here.
var benchOwnFloor = map[string]string{"unchanged": "floor-unchanged", "changed10": "floor-changed10", "jq": "floor-jq", "deleted10": "floor-deleted10"}

// floorPut is one entity a floor worker wants written.
type floorPut struct {
	id   string
	text []byte
	hash uint64
}

// floorBatch is a worker's answer for one batch of lines.
type floorBatch struct {
	lines int
	puts  []floorPut
	same  int
	err   error
}

// floorRun splits path into lines, hands batches of engine.DefaultBatchSize
// to one worker per CPU and writes what they return to the "log" and
// "index" buckets of db, in transactions of txSize input lines; with a nil
// db it only counts them. Log offsets start at off. It returns the
// entities written (or counted) and found the same.
func floorRun(db *bolt.DB, path string, txSize int, off uint64, work func(lines [][]byte) floorBatch) (written, same int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	in := make(chan [][]byte, 16)
	out := make(chan floorBatch, 16)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lines := range in {
				out <- work(lines)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(in)
		r := bufio.NewReaderSize(f, 256<<10)
		batch := make([][]byte, 0, engine.DefaultBatchSize)
		for {
			line, err := r.ReadSlice('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				batch = append(batch, bytes.Clone(bytes.TrimSuffix(line, []byte("\n"))))
				if len(batch) == cap(batch) {
					in <- batch
					batch = make([][]byte, 0, engine.DefaultBatchSize)
				}
			}
			if err != nil {
				if len(batch) > 0 {
					in <- batch
				}
				if errors.Is(err, bufio.ErrBufferFull) {
					err = fmt.Errorf("%s: a line longer than %d bytes", path, r.Size())
				} else if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()
	go func() { wg.Wait(); close(out) }()
	var pending []floorPut
	seen := 0
	commit := func() error {
		if len(pending) == 0 {
			return nil
		}
		if db == nil {
			written += int64(len(pending))
			pending, seen = pending[:0], 0
			return nil
		}
		err := db.Update(func(tx *bolt.Tx) error {
			lb, ib, err := floorBuckets(tx)
			if err != nil {
				return err
			}
			for _, p := range pending {
				k := binary.BigEndian.AppendUint64(nil, off)
				if err := lb.Put(k, p.text); err != nil {
					return err
				}
				if err := ib.Put([]byte(p.id), binary.BigEndian.AppendUint64(k, p.hash)); err != nil {
					return err
				}
				off++
			}
			return nil
		})
		written += int64(len(pending))
		pending, seen = pending[:0], 0
		return err
	}
	for b := range out {
		if b.err != nil && err == nil {
			err = b.err
		}
		pending = append(pending, b.puts...)
		same += int64(b.same)
		if seen += b.lines; seen >= txSize && err == nil {
			err = commit()
		}
	}
	if err == nil {
		err = commit()
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return written, same, err
}

// floorBuckets returns the floors' "log" bucket (filled to 100%, as
// appends allow) and "index" bucket in tx, creating them if needed.
func floorBuckets(tx *bolt.Tx) (lb, ib *bolt.Bucket, err error) {
	if lb, err = tx.CreateBucketIfNotExists([]byte("log")); err != nil {
		return nil, nil, err
	}
	if ib, err = tx.CreateBucketIfNotExists([]byte("index")); err != nil {
		return nil, nil, err
	}
	lb.FillPercent = 1.0
	return lb, ib, nil
}

// openFloorDB opens a fresh bbolt file with the options the floor uses.
func openFloorDB(path string, noSync bool) (*bolt.DB, error) {
	os.Remove(path)
	return bolt.Open(path, 0o600, &bolt.Options{NoSync: noSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: 1 << 30})
}

// benchFloorLookup is the floor of an unchanged re-run (file
// entities.ndjson) and of a 10%-changed one (entities-changed10.ndjson):
// see benchOwnFloor.
func benchFloorLookup(dir string, n int, noSync bool, ckpt int, file string) (*benchResult, error) {
	defer asPlainGo()()
	// Before the clock: the index as the load left it.
	db, done, err := builtFloorDB(dir, "floor-lookup.db", "entities.ndjson", false, noSync)
	if err != nil {
		return nil, err
	}
	defer done()
	txSize := engine.DefaultBatchSize * ckpt
	start, cpu0 := time.Now(), cputime.Now()
	written, same, err := floorRun(db, filepath.Join(dir, file), txSize, uint64(n), floorLookup(db, nil))
	if err != nil {
		return nil, err
	}
	el, cpu := time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	return &benchResult{Entities: n, Seconds: el, EntitiesPerS: float64(n) / el, CPUSeconds: cpu, Written: written, Unchanged: same, TxEntities: txSize, FsyncOnCommit: !noSync}, nil
}

// floorLookup is the lookup floors' work on a batch of lines: find each
// line's _id, hash the line and look the _id up in db's index, in a read
// transaction per batch. A line whose hash differs is to be written. With
// seen, the xxh3-64 hashes of the batch's _ids are passed to it (from the
// workers at once: it must be safe for that).
func floorLookup(db *bolt.DB, seen func(ids []uint64)) func(lines [][]byte) floorBatch {
	return func(lines [][]byte) floorBatch {
		fb := floorBatch{lines: len(lines)}
		tx, err := db.Begin(false)
		if err != nil {
			fb.err = err
			return fb
		}
		defer tx.Rollback()
		c := tx.Bucket([]byte("index")).Cursor()
		var ids []uint64
		if seen != nil {
			ids = make([]uint64, 0, len(lines))
		}
		for _, line := range lines {
			id, ok := engine.ScanRawID(line)
			if !ok {
				fb.err = fmt.Errorf("a line without a string _id: %.60s", line)
				return fb
			}
			if seen != nil {
				ids = append(ids, xxh3.HashString(id))
			}
			h := xxh3.Hash(line)
			k, v := c.Seek([]byte(id))
			if string(k) == id && len(v) == 16 && binary.BigEndian.Uint64(v[8:]) == h {
				fb.same++
				continue
			}
			fb.puts = append(fb.puts, floorPut{id: id, text: line, hash: h})
		}
		if seen != nil {
			seen(ids)
		}
		return fb
	}
}

// benchFloorDeleted is the floor of the deleted10 scenario: a full run of
// the file without a tenth of the lines (entities-deleted10.ndjson) that
// deletes the missing tenth. The lookups are floor-unchanged's, which also
// hand over a 64-bit hash of every _id; then the index is walked for the
// _ids not among them, which are sorted by their offset in the log (as
// Ferry reads them) and get a new version: their last line with
// "_deleted": true appended, written to the log and the index in
// transactions of the pipes' size. Before the clock, the log and index
// hold the changed10 file, as the dataset does when deleted10 runs.
func benchFloorDeleted(dir string, n int, noSync bool, ckpt int) (*benchResult, error) {
	defer asPlainGo()()
	db, done, err := builtFloorDB(dir, "floor-deleted.db", "entities-changed10.ndjson", true, noSync)
	if err != nil {
		return nil, err
	}
	defer done()
	txSize := engine.DefaultBatchSize * ckpt
	start, cpu0 := time.Now(), cputime.Now()
	var mu sync.Mutex
	seen := make([]uint64, 0, n)
	written, same, err := floorRun(db, filepath.Join(dir, "entities-deleted10.ndjson"), txSize, uint64(n), floorLookup(db, func(ids []uint64) {
		mu.Lock()
		seen = append(seen, ids...)
		mu.Unlock()
	}))
	if err != nil {
		return nil, err
	}
	slices.Sort(seen)
	type gone struct {
		id  []byte
		off uint64
	}
	var del []gone
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("index")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if _, ok := slices.BinarySearch(seen, xxh3.Hash(k)); !ok {
				del = append(del, gone{bytes.Clone(k), binary.BigEndian.Uint64(v[:8])})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(del, func(a, b gone) int { return cmp.Compare(a.off, b.off) })
	off := uint64(n) + uint64(written)
	for len(del) > 0 {
		chunk := del[:min(len(del), txSize)]
		del = del[len(chunk):]
		err := db.Update(func(tx *bolt.Tx) error {
			lb, ib, err := floorBuckets(tx)
			if err != nil {
				return err
			}
			for _, g := range chunk {
				v := lb.Get(binary.BigEndian.AppendUint64(nil, g.off))
				if len(v) < 2 {
					return fmt.Errorf("the floor's log has no line at %d", g.off)
				}
				text := append(append(make([]byte, 0, len(v)+16), v[:len(v)-1]...), `,"_deleted":true}`...)
				k := binary.BigEndian.AppendUint64(nil, off)
				if err := lb.Put(k, text); err != nil {
					return err
				}
				if err := ib.Put(g.id, binary.BigEndian.AppendUint64(k, xxh3.Hash(text))); err != nil {
					return err
				}
				off++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	deleted := int64(off) - int64(n) - written
	el, cpu := time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	return &benchResult{Entities: n, Seconds: el, EntitiesPerS: float64(n) / el, CPUSeconds: cpu, Written: written, Unchanged: same, Deleted: deleted, TxEntities: txSize, FsyncOnCommit: !noSync}, nil
}

// builtFloorDB opens a fresh floor file dir/name holding the index (and,
// with log, the log) of dir/from (buildFloorIndex), built before the
// clock, and collects the garbage of building it. done closes and
// removes the file.
func builtFloorDB(dir, name, from string, log, noSync bool) (db *bolt.DB, done func(), err error) {
	path := filepath.Join(dir, name)
	if db, err = openFloorDB(path, noSync); err != nil {
		return nil, nil, err
	}
	done = func() {
		db.Close()
		os.Remove(path)
	}
	if err := buildFloorIndex(db, filepath.Join(dir, from), log); err != nil {
		done()
		return nil, nil, fmt.Errorf("building the floor's store from %s: %w", from, err)
	}
	runtime.GC()
	return db, done, nil
}

// buildFloorIndex puts _id -> offset and xxh3-64 of the line for every
// line of path into the "index" bucket, in key order with full pages; the
// offset is the line's number. With log it also writes each line at its
// offset in the "log" bucket.
func buildFloorIndex(db *bolt.DB, path string, log bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	type entry struct {
		id   string
		off  uint64
		hash uint64
	}
	var entries []entry
	var lines [][]byte // the log's next lines, from offset len(entries)-len(lines)
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		err := db.Update(func(tx *bolt.Tx) error {
			lb, _, err := floorBuckets(tx)
			if err != nil {
				return err
			}
			off := uint64(len(entries) - len(lines))
			for i, line := range lines {
				if err := lb.Put(binary.BigEndian.AppendUint64(nil, off+uint64(i)), line); err != nil {
					return err
				}
			}
			return nil
		})
		lines = lines[:0]
		return err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	for {
		line, err := r.ReadSlice('\n')
		if line = bytes.TrimSuffix(line, []byte("\n")); len(bytes.TrimSpace(line)) > 0 {
			id, ok := engine.ScanRawID(line)
			if !ok {
				return fmt.Errorf("%s: a line without a string _id: %.60s", path, line)
			}
			entries = append(entries, entry{id, uint64(len(entries)), xxh3.Hash(line)})
			if log {
				if lines = append(lines, bytes.Clone(line)); len(lines) == 100_000 {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	return db.Update(func(tx *bolt.Tx) error {
		_, ib, err := floorBuckets(tx)
		if err != nil {
			return err
		}
		ib.FillPercent = 1.0
		for _, e := range entries {
			v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, e.off), e.hash)
			if err := ib.Put([]byte(e.id), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// benchFloorJQ is the floor of the jq scenario: see benchOwnFloor.
func benchFloorJQ(dir string, n int, ckpt int) (*benchResult, error) {
	defer asPlainGo()()
	plan, err := benchPlan(dir, "bench.json", ckpt)
	if err != nil {
		return nil, err
	}
	t := plan.Pipe("bench-jq").Transforms[0]
	rt, _ := t.(engine.RecordTransform)
	type worker struct {
		dec  *engine.Decoder
		prep engine.RecordPreparer
	}
	workers := sync.Pool{New: func() any {
		w := &worker{dec: engine.NewDecoder()}
		if rt != nil {
			w.prep = rt.RecordPreparer()
		}
		return w
	}}
	txSize := engine.DefaultBatchSize * ckpt
	start, cpu0 := time.Now(), cputime.Now()
	written, _, err := floorRun(nil, filepath.Join(dir, "entities.ndjson"), txSize, 0, func(lines [][]byte) floorBatch {
		fb := floorBatch{lines: len(lines), puts: make([]floorPut, 0, len(lines))}
		w := workers.Get().(*worker)
		defer workers.Put(w)
		var text, stored []byte
		for i, line := range lines {
			if w.prep != nil {
				// A record as the dataset holds it: the line's canonical
				// text (standing in for reading the record back).
				p, grown, err := engine.PrepareRaw(stored[:0], line)
				if err != nil {
					fb.err = err
					return fb
				}
				stored = grown
				rec := engine.Record{Offset: uint64(i), ID: p.ID, Hash: p.Hash, Body: p.Body}
				start := len(text)
				out, grownText, ok := w.prep.PrepareRecord(&rec, text)
				text = grownText
				if ok {
					fb.puts = append(fb.puts, floorPut{id: out.ID, text: text[start:len(text):len(text)], hash: xxh3.Hash(out.Body)})
					continue
				}
			}
			e, err := w.dec.DecodeEntity(line)
			if err != nil {
				fb.err = err
				return fb
			}
			ents, err := t.Transform(context.Background(), []engine.Entity{e})
			if err != nil || len(ents) != 1 {
				fb.err = fmt.Errorf("jq gave %d entities: %v", len(ents), err)
				return fb
			}
			id, _ := ents[0]["_id"].(string)
			start := len(text)
			if text, err = engine.AppendCanonical(text, ents[0]); err != nil {
				fb.err = err
				return fb
			}
			body := text[start:len(text):len(text)]
			fb.puts = append(fb.puts, floorPut{id: id, text: body, hash: xxh3.Hash(body)})
		}
		return fb
	})
	if err != nil {
		return nil, err
	}
	el, cpu := time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	return &benchResult{Entities: n, Seconds: el, EntitiesPerS: float64(n) / el, CPUSeconds: cpu, Written: written, TxEntities: txSize}, nil
}

// printOwnFloors says, under the table, how close each scenario came to
// its own floor, and what floor-jq's CPU time allows a jq pipe.
func printOwnFloors(w io.Writer, run []string, results map[string]*benchResult) {
	what := map[string]string{
		"floor-unchanged": "bare bbolt lookups of each line's _id and hash",
		"floor-changed10": "the same lookups, and bare bbolt writes of the changed lines",
		"floor-deleted10": "the same lookups of the lines left, then the index walked for the _ids not seen and their last lines written back with \"_deleted\": true",
	}
	for _, sc := range run {
		if r := results[sc]; r != nil && r.OwnFloor != "" && what[r.OwnFloor] != "" {
			fmt.Fprintf(w, "%s runs at %.2f of %s (%s, %.0f/s).\n", sc, r.RatioToOwnFloor, r.OwnFloor, what[r.OwnFloor], results[r.OwnFloor].EntitiesPerS)
		}
	}
	if f := results["floor-jq"]; f != nil && f.CPUSeconds > 0 {
		cores := runtime.GOMAXPROCS(0)
		fmt.Fprintf(w, "floor-jq: the jq transform alone, as the pipe runs it (its text path on each line's canonical text; nothing read from or written to a store) costs %.2f CPU µs per entity, so %d cores allow a jq pipe at most %.0f/s before it reads or writes anything",
			f.cpuMicrosPerEntity(), cores, float64(cores)/f.cpuMicrosPerEntity()*1e6)
		if r := results["jq"]; r != nil {
			fmt.Fprintf(w, "; jq ran at %.2f of that", r.RatioToOwnFloor)
		}
		fmt.Fprintln(w, ".")
	}
}
