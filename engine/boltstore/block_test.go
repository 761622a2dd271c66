package boltstore

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// format3ID is the _id of entity i of testdata/format3.db.gz, written by
// Ferry at store format 3 (wide run blocks; commit c6e23c4, with putModel
// and the settings below, from a test of the package): 600 entities in 8
// transactions of 75 (entity i holds "v": i/75), deleted when i%97 == 0,
// in dataset "people", with runs of a few hundred entries in several
// levels (recentMin 64, l0Runs 3, l1Entries 400, runEntries 150).
func format3ID(i int) string {
	return fmt.Sprintf("%016x-%d", uint64(i+1)*0x9e3779b97f4a7c15, i%75%7)
}

// forEachRunsKey calls fn with every key and value of dataset ds's
// "ixruns" bucket.
func forEachRunsKey(t *testing.T, s *Store, ds string, fn func(k, v []byte) error) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDatasets).Bucket([]byte(ds)).Bucket(bucketIxRuns).ForEach(fn)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runFilters counts the runs of dataset ds by the size of their Bloom
// filter: a power of two of bits (formats 3 and 4) or another.
func runFilters(t *testing.T, s *Store, ds string) (pow2, exact int) {
	t.Helper()
	forEachRunsKey(t, s, ds, func(k, v []byte) error {
		if len(k) != 9 || k[0] != 'm' {
			return nil
		}
		f, err := decodeRunMeta(binary.BigEndian.Uint64(k[1:]), v)
		if err != nil {
			return err
		}
		if n := len(f.bloom.Words()); n&(n-1) == 0 {
			pow2++
		} else {
			exact++
		}
		return nil
	})
	return pow2, exact
}

// blockLayouts counts the run blocks of dataset ds by layout.
func blockLayouts(t *testing.T, s *Store, ds string) (wide, compact int) {
	t.Helper()
	forEachRunsKey(t, s, ds, func(k, v []byte) error {
		if len(k) > 9 && k[0] == 'b' {
			if isCompact(v) {
				compact++
			} else {
				wide++
			}
		}
		return nil
	})
	return wide, compact
}

// TestFormat3StoreReadAndCompacted: a store written at format 3 opens
// with every entity, version and live _id where it was and is marked
// storeFormat; the merges that writes cause rewrite its wide blocks as
// compact ones, with every lookup path agreeing throughout. Its runs'
// Bloom filters are powers of two (as format 4's were), and they are what
// lookups of its runs go through until merges replace them with filters
// sized for their entries (format 5).
func TestFormat3StoreReadAndCompacted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gz, err := os.Open(filepath.Join("testdata", "format3.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}

	// The fixture is what format 3 wrote (Open marks a file it opens
	// for writing with the current format).
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketStore).Get(keyFormat); len(v) != 8 || binary.BigEndian.Uint64(v) != 3 {
			return fmt.Errorf("fixture's format marker %x, want 3", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = 64
	s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = 3, 400, 150, 1<<20
	s.background = false

	model := map[string]*modelEntity{}
	for i := range 600 {
		model[format3ID(i)] = &modelEntity{versions: 1, latest: i / 75, deleted: i%97 == 0}
	}
	wideBefore, compact := blockLayouts(t, s, "people")
	if wideBefore == 0 || compact != 0 {
		t.Fatalf("the format-3 file has %d wide and %d compact blocks", wideBefore, compact)
	}
	if pow2, exact := runFilters(t, s, "people"); pow2 == 0 || exact != 0 {
		t.Fatalf("the format-3 file has %d runs with filters of a power of two and %d others", pow2, exact)
	}
	checkModel(t, s, "people", model)
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check of the format-3 file: %v", err)
	}

	// Rewrite a third of the entities, a transaction of 50 at a time:
	// each commit makes a run, and every third one merges level 0 down.
	for txn := range 4 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 50 {
			i := (txn*50 + j) * 3
			putModel(t, tx, "people", format3ID(i), 100+txn, false)
			m := model[format3ID(i)]
			m.versions, m.latest, m.deleted = m.versions+1, 100+txn, false
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		checkModel(t, s, "people", model)
	}
	// The merges rewrote wide blocks (13 in the fixture), not only
	// added compact ones.
	wide, compact := blockLayouts(t, s, "people")
	if compact == 0 || wide >= wideBefore {
		t.Fatalf("after merges: %d wide blocks (%d before) and %d compact ones", wide, wideBefore, compact)
	}
	t.Logf("after the writes: %d wide and %d compact blocks", wide, compact)
	if _, exact := runFilters(t, s, "people"); exact == 0 {
		t.Fatal("after merges: no run has a filter sized for its entries")
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check after the writes: %v", err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketStore).Get(keyFormat); len(v) != 8 || binary.BigEndian.Uint64(v) != storeFormat {
			return fmt.Errorf("format marker %x, want %d", v, storeFormat)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// wideBlocks lays out sorted keys, key i with value val(i), as wide
// blocks of about runBlockSize bytes (the layout store formats up to 3
// wrote).
func wideBlocks(keys [][]byte, val func(int) []byte) (blocks [][]byte, firsts [][]byte) {
	for at := 0; at < len(keys); {
		n, size := 0, 4
		for at+n < len(keys) && (n == 0 || size+12+2+len(keys[at+n])+len(val(at+n)) <= runBlockSize) {
			size += 12 + 2 + len(keys[at+n]) + len(val(at+n))
			n++
		}
		var ents []byte
		offs := make([]uint32, n)
		for i, k := range keys[at : at+n] {
			v := val(at + i)
			offs[i] = uint32(len(ents))
			ents = binary.AppendUvarint(ents, uint64(len(k)))
			ents = append(ents, k...)
			ents = append(ents, byte(len(v)))
			ents = append(ents, v...)
		}
		head := 4 + 12*n
		b := binary.BigEndian.AppendUint32(nil, uint32(n))
		for _, k := range keys[at : at+n] {
			b = binary.BigEndian.AppendUint64(b, keyPrefix(k))
		}
		for _, o := range offs {
			b = binary.BigEndian.AppendUint32(b, o+uint32(head))
		}
		blocks, firsts = append(blocks, append(b, ents...)), append(firsts, keys[at])
		at += n
	}
	return blocks, firsts
}

// compactBlocks lays out sorted keys, key i with value val(i), as
// runWriter does.
func compactBlocks(keys [][]byte, val func(int) []byte) (blocks [][]byte, firsts [][]byte) {
	var bb blockBuilder
	var first []byte
	flush := func() {
		b := make([]byte, bb.size())
		bb.encode(b)
		blocks, firsts = append(blocks, b), append(firsts, first)
	}
	for i, k := range keys {
		v := val(i)
		if !bb.fits(k, v) {
			flush()
		}
		if len(bb.offs) == 0 {
			first = k
		}
		if err := bb.add(k, v); err != nil {
			panic(err)
		}
	}
	flush()
	return blocks, firsts
}

// BenchmarkBlockGet looks random _ids of a 1M index up in its blocks, in
// each layout: the search within a block that a lookup does once it has
// the block (the blocks, 61-77 MB, are far larger than the CPU's caches,
// as a run's are).
func BenchmarkBlockGet(b *testing.B) {
	const n = 1 << 20
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%016x-%04d", uint64(i+1)*0x9E3779B97F4A7C15, i%10000)
	}
	slices.SortFunc(keys, bytes.Compare)
	v := make([]byte, indexValRaw)
	binary.BigEndian.PutUint64(v, 1_500_000)
	for _, layout := range []struct {
		name string
		make func([][]byte, func(int) []byte) ([][]byte, [][]byte)
	}{{"compact", compactBlocks}, {"wide", wideBlocks}} {
		blocks, firsts := layout.make(keys, func(int) []byte { return v })
		size := 0
		for _, blk := range blocks {
			size += len(blk)
		}
		// One block every 4 KiB of one buffer, as in the file's pages
		// (the same alignment for both layouts).
		all := make([]byte, 4096*len(blocks))
		for i, blk := range blocks {
			blocks[i] = all[4096*i : 4096*i+copy(all[4096*i:], blk)]
		}
		// The blocks of random ids, found before the clock starts: what
		// is timed is the search within a block, as bbolt's cursor or
		// the block directory has found it.
		type probe struct{ blk, k []byte }
		probes := make([]probe, n)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range probes {
			k := keys[rng.IntN(n)]
			j, _ := slices.BinarySearchFunc(firsts, k, bytes.Compare)
			if j == len(firsts) || !bytes.Equal(firsts[j], k) {
				j--
			}
			probes[i] = probe{blocks[j], bytes.Clone(k)}
		}
		b.Run(layout.name, func(b *testing.B) {
			var dec []byte
			runtime.GC()
			b.ResetTimer()
			// Each lookup waits for the one before (the next probe
			// depends on its value, whose first byte is 0), as lookups
			// do in a run, where other work separates them: back to
			// back and independent, the CPU would overlap one's cache
			// misses with the next one's, which favours longer chains
			// of fewer instructions (independent, wide blocks took
			// 310-330 ns and compact ones 460-490; chained, 470-580
			// against 440-480).
			j := 0
			for range b.N {
				p := probes[j]
				v := blockGet(p.blk, p.k, &dec)
				if v == nil {
					b.Fatalf("%q not found", p.k)
				}
				j = (j + 1 + int(v[0])) % n
			}
			b.ReportMetric(float64(size)/n, "bytes/entry")
		})
	}
}

// TestLookupValuesOutliveNextLookup: a value that a lookup in a compact
// block returns is decoded into a buffer the next lookup reuses, so it
// must be copied out first (callers may hold values as long as the
// mapping): through the block directory and through bbolt's cursor, every
// value found stays as it was while later lookups run.
func TestLookupValuesOutliveNextLookup(t *testing.T) {
	s := smallRunsStore(t)
	id := func(txn, i int) string { return fmt.Sprintf("%016x", uint64(txn*1000+i)*0x9e3779b97f4a7c15) }
	putTxns(t, s, "d", 6, 150, id)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte("d"))
		if _, compact := blockLayouts(t, s, "d"); compact == 0 {
			t.Fatal("no compact blocks")
		}
		for _, path := range []string{"directory", "cursor"} {
			x, err := s.datasetIndex(b, "d")
			if err != nil {
				return err
			}
			if path == "cursor" {
				x.sc = &lookupScratch{}
			}
			var got, want [][]byte
			for txn := range 6 {
				for i := 0; i < 150; i += 7 {
					k := []byte(id(txn, i))
					v := x.below(k, xxh3.Hash128(k))
					if v == nil {
						return fmt.Errorf("%s: %s not found", path, k)
					}
					got, want = append(got, v), append(want, bytes.Clone(v))
				}
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					return fmt.Errorf("%s: value %d changed under later lookups: %x, was %x", path, i, got[i], want[i])
				}
				if i > 0 && bytes.Equal(want[i], want[i-1]) {
					return fmt.Errorf("%s: values %d and %d are the same", path, i-1, i)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
