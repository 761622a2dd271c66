package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/ferrydata/ferry/engine"
)

var (
	bucketDatasets = []byte("datasets")
	bucketPipes    = []byte("pipes")
	bucketRuns     = []byte("runs")
	bucketKV       = []byte("kv")
	bucketLog      = []byte("log")
	bucketIndex    = []byte("index")
	keyMeta        = []byte("meta")
)

// DefaultMaxResident is the default Options.MaxResident: 150 MiB (240
// until 2026-12-06; docs/decisions.md "Memory").
const DefaultMaxResident = 150 << 20

// FileName is the name of the bbolt file inside a data directory.
const FileName = "ferry.db"

// maxRunsPerPipe bounds each pipe's run log; older records are trimmed.
const maxRunsPerPipe = 1000

// Options configures Open.
type Options struct {
	// NoSync skips fsync on commit. Much faster for bulk loads, but a power
	// loss (not a process crash) can lose or corrupt recent commits.
	NoSync bool
	// LockTimeout is how long Open waits for another process holding the
	// file; 0 means 1 second.
	LockTimeout time.Duration
	// ReadOnly opens the file without taking the write lock.
	ReadOnly bool
	// MaxResident bounds the process's resident memory by releasing the
	// memory-mapped store file's pages (they stay in the kernel's page
	// cache and fault back in when used) whenever the resident set exceeds
	// it. It cannot shrink the heap: it bounds what the mapped file adds.
	// 0 means DefaultMaxResident (150 MiB); negative disables the bound.
	// Residency is checked every 64 index operations and every 10 ms.
	MaxResident int64
	// Pressure, if set with a bound, is called with true when the store
	// had to release its whole mapping to stay under MaxResident, or could
	// not keep all of a dataset's index runs mapped (what it uses of the
	// file no longer fits beside the heap: a 10M-entity dataset under 150
	// MiB, a 1M one being re-synced), and with false once neither has
	// happened for PressureQuiet; one call at a time. The store releases
	// either way; what else the process does about it is its own: `ferry`
	// lets the heap grow twice as far between collections while not under
	// pressure (cmd/ferry, main.go).
	Pressure func(near bool)
}

// PressureQuiet is how long after the last release that dropped its
// whole mapping, or could not keep a dataset's runs mapped, a store tells
// Options.Pressure it is no longer under pressure. Under pressure such
// releases come every tenth of a second or so (a 10M load under 150 MiB);
// a 1M load under that bound has none.
const PressureQuiet = 5 * time.Second

// Store is the bbolt implementation of engine.Store.
type Store struct {
	db   *bolt.DB
	path string
	// writer serialises write transactions so Begin can honour its ctx
	// instead of blocking inside bbolt.
	writer chan struct{}
	// closing stops the goroutine that bounds mapped residency.
	closing   chan struct{}
	watchDone chan struct{}
	// residentLimit is Options.MaxResident resolved (<= 0: unbounded).
	residentLimit int64
	statm         *os.File
	closed        atomic.Bool
	// hot and pageFile let a release keep recently used index pages
	// mapped (keep.go); the counters say how releases went.
	hot                        hotDatasets
	pageFile                   *os.File
	keptReleases, fullReleases atomic.Int64
	// pread holds, per dataset, how lookups read its index runs' blocks:
	// in the mapping or with pread (runReads, blockdir.go). Releases set
	// it from what of the runs fits beside the heap under the bound.
	// preadDefault has every dataset start with pread (tests).
	// runsChanged is the id of the last transaction that wrote or
	// dropped index runs, set before it commits (blockdir.go);
	// runsChecked the last such transaction whose moved blocks were
	// looked for once it committed (checkMoves), and moveBits the
	// writer's scratch for that.
	runsChanged  atomic.Uint64
	runsChecked  atomic.Uint64
	moveBits     []uint64
	preadMu      sync.Mutex
	pread        map[string]*runReads
	preadDefault bool
	releaseNanos atomic.Int64
	otherShared  atomic.Int64 // file pages resident besides the store's, after the last full release
	anonHigh     atomic.Int64 // the most anonymous memory measured since the last full release
	keptBytes    atomic.Int64 // the store's pages resident after the last release (0 after a full one)
	otherAt      atomic.Int64 // when otherShared was measured (unix ns)
	// bulk counts bbolt operations under way that touch many pages
	// without passing through the store's checks (commits, deleting a
	// dataset); meanwhile the watcher looks every millisecond.
	bulk atomic.Int32
	// pidfd refers to this process, for process_madvise (-1: none).
	pidfd            int
	noProcessMadvise atomic.Bool
	// pressure is Options.Pressure; near is what it was last told and
	// lastFull when the last full release ended (unix nanoseconds), both
	// under pressureMu.
	pressure      func(near bool)
	pressureQuiet time.Duration // PressureQuiet, shorter in tests
	pressureMu    sync.Mutex
	near          bool
	lastFull      int64
	// recentMin is how many entries a dataset's "recent" index and a
	// flush's updates reach before they become a run (recent.go).
	recentMin int
	// l0Runs, l1Entries, runEntries and compactBudget shape the index
	// runs (runs.go; the defaults, smaller in tests).
	l0Runs, l1Entries, runEntries, compactBudget int
	// filters holds each dataset's recentFilter. Write transactions
	// build and add to them under the writer lock; read views use them
	// too (recent.go). filtersMu guards the map.
	filtersMu sync.RWMutex
	filters   map[string]*recentFilter
	// runCache holds the descriptions of index runs by id (runs.go).
	// background: merge index runs beside the writer (bgmerge.go); bg
	// holds the step under way per dataset.
	background bool
	bgMu       sync.Mutex
	bg         map[string]*bgMerge
	bgWG       sync.WaitGroup
	bgClosed   bool
	// bgSettling: the store is being closed, and bgSettleLeft more steps
	// may start (stopMerges).
	bgSettling   bool
	bgSettleLeft int
	// bgInstalled and bgDropped count steps installed and dropped (for
	// tests; only the writer changes them).
	bgInstalled, bgDropped int
	runMu                  sync.Mutex
	runCache               map[uint64]*runFile
	runDropped             map[uint64]bool // replaced runs old readers may still load (cacheRuns)
}

// maxIDSize is the longest _id the store takes: a run block's key is the
// run's 9-byte prefix and an _id (runs.go), and bbolt bounds keys.
const maxIDSize = bolt.MaxKeySize - 9

// boundEvery is how many index or log operations pass between checks of
// the mapped residency in hot loops.
const boundEvery = 64

var (
	_ engine.Store           = (*Store)(nil)
	_ engine.ResidentBounded = (*Store)(nil)
)

// newFilePageSize is the bbolt page size of a new data file. A commit
// writes each dirty page with its own pwrite: a load's 10,000 new versions
// are ~800 pages of 4 KiB, ~200 of 16 KiB, and larger nodes split and
// spill less. Alternated 1M loads on fresh stores: 7.8 against 8.4 CPU s
// (177k against 157k/s); unchanged and changed10 runs within the noise.
const newFilePageSize = 16 << 10

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (s *Store, err error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data directory %s: %w", dir, err)
		}
	}
	path := filepath.Join(dir, FileName)
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	// bbolt asserts (panics) on some kinds of corruption; never let that
	// cross into callers.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("data file %s is corrupt: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         timeout,
		NoSync:          opts.NoSync,
		NoFreelistSync:  false,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30,
		ReadOnly:        opts.ReadOnly,
		// bbolt loads a read-only file's freelist lazily, in Check's
		// goroutine, unguarded, while the watcher's releases begin read
		// transactions that read it (a data race: `ferry bench`'s final
		// check; TestReadOnlyCheckBesideReleases). Loaded as the file
		// opens, before the watcher starts: one read of the freelist
		// page, which a store always writes (NoFreelistSync false).
		PreLoadFreelist: opts.ReadOnly,
		// New files get 16 KiB pages (docs/decisions.md); a file keeps the
		// page size it was created with.
		PageSize: max(newFilePageSize, os.Getpagesize()),
	})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("data file %s is locked by another ferry process (serve or run); stop it or use another --data directory", path)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrChecksum),
			strings.Contains(err.Error(), "file size too small"):
			return nil, fmt.Errorf("data file %s is not a valid ferry store (corrupt or not a bbolt file): %w", path, err)
		}
		return nil, fmt.Errorf("opening data file %s: %w", path, err)
	}
	if err := checkFormat(db, opts.ReadOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("data file %s: %w", path, err)
	}
	s = &Store{db: db, path: path, writer: make(chan struct{}, 1), closing: make(chan struct{}), pidfd: -1, recentMin: defaultRecentMin,
		l0Runs: defaultL0Runs, l1Entries: defaultL1Entries, runEntries: defaultRunEntries, compactBudget: defaultCompactBudget, background: true}
	limit := opts.MaxResident
	if limit == 0 {
		limit = DefaultMaxResident
	}
	s.residentLimit = limit
	if limit > 0 {
		s.pressure, s.pressureQuiet = opts.Pressure, PressureQuiet
		s.statm = openStatm()
		s.pageFile = openPageFile(path)
		s.pidfd = openSelfPidfd()
		s.dropExecutable()
		s.noHugePages()
		s.noteOtherFiles()
		s.watchDone = make(chan struct{})
		go func() {
			defer close(s.watchDone)
			s.watchMapped(limit, 10*time.Millisecond)
		}()
	}
	if !opts.ReadOnly {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketDatasets, bucketPipes, bucketRuns, bucketKV} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("initialising data file %s: %w", path, err)
		}
	}
	return s, nil
}

// storeFormat is the layout this code writes, kept in the file so that a
// binary never misreads a layout it does not know:
//
//   - 1: one _id index tree per dataset (no marker in the file);
//   - 2: the two-level _id index (recent.go).
//
// Format 2 reads format 1 unchanged and marks the file when it opens it
// for writing. A binary from before the marker does not check it, so going
// back to one is not supported once a file is format 2: it would not see
// the entries in "recent".
//
// Format 3 (index runs, runs.go) reads formats 1 and 2 unchanged: their
// "index" becomes the bottom of the index and is no longer written, and
// their "recent" becomes a run with the next large enough commit. A
// format-2 binary refuses a format-3 file (it would not see the runs).
//
// Format 4 (compact run blocks, block.go) reads format 3's wide blocks
// unchanged; runs written from then on, merges included, are compact, so
// an older store's index turns compact as its levels are merged. A
// format-3 binary refuses a format-4 file (it would take compact blocks
// for corrupt ones).
//
// Format 5 (runs' Bloom filters of any whole number of words, sized for
// their entries: bloom.NewExact) reads format 4 unchanged: its filters are
// powers of two, which probe as they did. A format-4 binary refuses a
// format-5 file (it would take a filter of another size for a corrupt
// run description).
const storeFormat = 5

var (
	bucketStore = []byte("store")
	keyFormat   = []byte("format")
)

// checkFormat refuses a file written in a newer layout and, when
// writable, marks the file with storeFormat.
func checkFormat(db *bolt.DB, readOnly bool) error {
	check := func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStore)
		if b == nil {
			return nil
		}
		v := b.Get(keyFormat)
		if len(v) != 8 {
			return fmt.Errorf("corrupt store format marker")
		}
		if f := binary.BigEndian.Uint64(v); f > storeFormat {
			return fmt.Errorf("written by a newer Ferry (store format %d; this binary reads up to %d): use that version or newer", f, storeFormat)
		}
		return nil
	}
	if readOnly {
		return db.View(check)
	}
	return db.Update(func(tx *bolt.Tx) error {
		if err := check(tx); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketStore)
		if err != nil {
			return err
		}
		if v := b.Get(keyFormat); len(v) == 8 && binary.BigEndian.Uint64(v) == storeFormat {
			return nil
		}
		return b.Put(keyFormat, binary.BigEndian.AppendUint64(nil, storeFormat))
	})
}

// ReleaseStats says how often the store released its mapping to stay
// within Options.MaxResident: keeping hot index pages, or everything, and
// the time spent releasing.
func (s *Store) ReleaseStats() (keeping, full int64, spent time.Duration) {
	return s.keptReleases.Load(), s.fullReleases.Load(), time.Duration(s.releaseNanos.Load())
}

// Path is the bbolt file's path.
func (s *Store) Path() string { return s.path }

// DB exposes the bbolt handle for benchmarks and consistency checks.
func (s *Store) DB() *bolt.DB { return s.db }

// ResidentBound returns the resident memory bound the store keeps the
// process under, in bytes (engine.ResidentBounded); <= 0: none, or none it
// can enforce (no /proc/self/statm to measure residency with).
func (s *Store) ResidentBound() int64 {
	if s.statm == nil {
		return 0 // residency cannot be measured here: nothing enforces it
	}
	return s.residentLimit
}

// Close closes the file. Closing twice is harmless.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	s.stopMerges()
	if s.watchDone != nil {
		<-s.watchDone
	}
	if s.statm != nil {
		s.statm.Close()
	}
	if s.pageFile != nil {
		s.pageFile.Close()
	}
	closePidfd(s.pidfd)
	return s.db.Close()
}

// meta is the persisted part of engine.DatasetInfo.
type meta struct {
	Populated  bool      `json:"populated"`
	Versions   uint64    `json:"versions"`
	Entities   uint64    `json:"entities"`
	Deleted    uint64    `json:"deleted"`
	LastOffset uint64    `json:"last_offset"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// PrevFrom, when PrevKnown: no version at a lower offset names a
	// previous version (noPrev: none does), so a latest-only scan finds
	// every superseded version from the versions at PrevFrom on
	// (superseded). Unknown in datasets written by Ferry before it, and
	// dropped when one rewrites the metadata, which leaves it unknown.
	PrevKnown bool   `json:"prev_known,omitempty"`
	PrevFrom  uint64 `json:"prev_from,omitempty"`
}

// noPrev is meta.PrevFrom while no version names a previous one.
const noPrev = math.MaxUint64

func (m *meta) info(name string) engine.DatasetInfo {
	return engine.DatasetInfo{Name: name, Populated: m.Populated, Versions: m.Versions, Entities: m.Entities,
		Deleted: m.Deleted, LastOffset: m.LastOffset, Created: m.Created, Updated: m.Updated}
}

func readMeta(b *bolt.Bucket) (meta, error) {
	var m meta
	if v := b.Get(keyMeta); v != nil {
		if err := json.Unmarshal(v, &m); err != nil {
			return m, fmt.Errorf("corrupt dataset metadata: %w", err)
		}
	}
	return m, nil
}

// Version layout in the log: format(1) flags(1) ts(8) previous(8)
// idlen(uvarint) id body. The hash is not stored in the log: it is
// recomputed from the body when read (xxh3 costs ~30 ns for a typical
// entity), which keeps every version 16 bytes smaller.
const (
	formatV1     = 2
	flagDeleted  = 1
	flagHasPrev  = 2
	headerSize   = 18
	indexValSize = 25 // offset(8) hash(16) flags(1)
	// indexValRaw is an index value that also carries the version's
	// engine.RawTextHash (8), for versions written from JSON text.
	indexValRaw = indexValSize + 8
)

// validIndexVal reports whether v has one of the index value layouts.
func validIndexVal(v []byte) bool { return len(v) == indexValSize || len(v) == indexValRaw }

func encodeVersion(dst []byte, off uint64, p *engine.Prepared, ts int64, prev uint64, hasPrev bool) []byte {
	var flags byte
	if p.Deleted {
		flags |= flagDeleted
	}
	if hasPrev {
		flags |= flagHasPrev
	}
	dst = append(dst, formatV1, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint64(dst, prev)
	dst = binary.AppendUvarint(dst, uint64(len(p.ID)))
	dst = append(dst, p.ID...)
	return append(dst, p.Body...)
}

// decodeVersion copies a log value into a Record.
func decodeVersion(off uint64, v []byte) (engine.Record, error) {
	if len(v) < headerSize || v[0] != formatV1 {
		return engine.Record{}, fmt.Errorf("corrupt version at offset %d", off)
	}
	r := engine.Record{Offset: off}
	r.Deleted = v[1]&flagDeleted != 0
	r.HasPrev = v[1]&flagHasPrev != 0
	r.TS = int64(binary.BigEndian.Uint64(v[2:10]))
	r.Previous = binary.BigEndian.Uint64(v[10:18])
	n, k := binary.Uvarint(v[headerSize:])
	if k <= 0 || uint64(len(v)-headerSize-k) < n {
		return engine.Record{}, fmt.Errorf("corrupt version at offset %d", off)
	}
	idStart := headerSize + k
	r.ID = string(v[idStart : idStart+int(n)])
	r.Body = bytes.Clone(v[idStart+int(n):])
	r.Hash = engine.HashBytes(r.Body)
	return r, nil
}

func offsetKey(off uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), off)
}

// Begin starts a write transaction. It holds the store's writer lock from
// the start but opens bbolt's write transaction only at the first change:
// until then lookups run in a read transaction. Nobody else can write
// meanwhile (the writer lock), so what was read stays true after the
// upgrade. A transaction that changes nothing therefore never rolls back a
// bbolt write transaction, which would make bbolt reload its freelist.
func (s *Store) Begin(ctx context.Context) (engine.WriteTx, error) {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		<-s.writer
		return nil, fmt.Errorf("starting transaction: %w", err)
	}
	return &writeTx{s: s, tx: tx, sets: map[string]*dsState{}}, nil
}

// upgrade switches from the read transaction to a bbolt write transaction
// and rebinds the cached bucket handles to it.
func (w *writeTx) upgrade() error {
	if w.writable {
		return nil
	}
	if err := w.tx.Rollback(); err != nil {
		return err
	}
	tx, err := w.s.db.Begin(true)
	if err != nil {
		w.tx = nil
		return fmt.Errorf("starting write transaction: %w", err)
	}
	w.tx, w.writable = tx, true
	root := tx.Bucket(bucketDatasets)
	for name, st := range w.sets {
		b := root.Bucket([]byte(name))
		if b == nil {
			return fmt.Errorf("dataset %q disappeared during a transaction", name)
		}
		st.bucket, st.log, st.index, st.recent = b, b.Bucket(bucketLog), b.Bucket(bucketIndex), b.Bucket(bucketRecent)
		st.log.FillPercent = 1.0
		if st.rb = b.Bucket(bucketIxRuns); st.rb != nil {
			st.rb.FillPercent = 1.0
		}
	}
	return nil
}

type dsState struct {
	w      *writeTx
	bucket *bolt.Bucket
	log    *bolt.Bucket
	index  *bolt.Bucket // nil but in stores from before the runs
	recent *bolt.Bucket // nil until a flush creates it
	rstate recentState
	filter *recentFilter
	// levels are the index runs and rb their bucket (runs.go), nil
	// until the first run; levelsDirty: levels changed in this transaction.
	levels      runLevels
	rb          *bolt.Bucket
	levelsDirty bool
	// runsTouched: this transaction wrote or dropped runs (checkMoves).
	runsTouched bool
	// l0m is the merge of level 0 into level 1 in progress, or nil.
	l0m *l0Merge
	// bgPlan is the merge step to start beside the writer once this
	// transaction commits (bgmerge.go).
	bgPlan  *mergePlan
	name    string
	meta    meta
	dirty   bool
	pending map[string]pendingVal // _id -> new index value, applied sorted at commit
	// since: what was written after the states read views saw (view.go).
	since writtenSince
	// scratch serves the transaction's index lookups.
	scratch lookupScratch
	// hint is what LatestMany found for the _id it hands its callback,
	// which Put uses instead of looking the _id up again while it is
	// still true; flushes counts flush's calls, which change inRecent.
	hint    *latestHint
	flushes int
}

// latestHint is an _id's index entry as LatestMany found it, when no
// flush had been made (flushes) in the transaction.
type latestHint struct {
	id       string
	iv       []byte
	inRecent bool
	flushes  int
}

// hinted returns the hint for id if it still holds: id has not been
// written (it is not pending) and nothing was flushed since it was
// found. It clears the hint either way.
func (st *dsState) hinted(id string) (iv []byte, inRecent, ok bool) {
	h := st.hint
	st.hint = nil
	if h == nil || h.id != id || h.flushes != st.flushes {
		return nil, false, false
	}
	if _, pending := st.pending[id]; pending {
		return nil, false, false
	}
	return h.iv, h.inRecent, true
}

type writeTx struct {
	s        *Store
	tx       *bolt.Tx
	sets     map[string]*dsState
	done     bool
	changed  bool
	writable bool
	arena    arena
	ops      int
	// newRuns and dropRuns are the index runs this transaction wrote and
	// replaced, for the store's cache once it commits.
	newRuns, dropRuns []*runFile
}

// alloc returns an empty slice with capacity n that no other Put uses.
func (w *writeTx) alloc(n int) []byte { return w.arena.alloc(n) }

// arena hands out slices of 1 MiB chunks for values bbolt keeps until a
// commit: one allocation per chunk instead of one per value. Larger
// values get their own.
type arena struct{ buf []byte }

func (a *arena) alloc(n int) []byte {
	if n > 64<<10 {
		return make([]byte, 0, n)
	}
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, 1<<20)
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start : start+n]
}

func (w *writeTx) dataset(name string, create bool) (*dsState, error) {
	if st, ok := w.sets[name]; ok {
		return st, nil
	}
	if err := validDatasetName(name); err != nil {
		return nil, err
	}
	root := w.tx.Bucket(bucketDatasets)
	b := root.Bucket([]byte(name))
	if b == nil {
		if !create {
			return nil, nil
		}
		if err := w.upgrade(); err != nil {
			return nil, err
		}
		root = w.tx.Bucket(bucketDatasets)
		var err error
		if b, err = root.CreateBucket([]byte(name)); err != nil {
			return nil, fmt.Errorf("creating dataset %q: %w", name, err)
		}
		if _, err = b.CreateBucket(bucketLog); err != nil {
			return nil, err
		}
	}
	m, err := readMeta(b)
	if err != nil {
		return nil, fmt.Errorf("dataset %q: %w", name, err)
	}
	levels, rb, err := w.s.runsOf(b)
	if err != nil {
		return nil, fmt.Errorf("dataset %q: %w", name, err)
	}
	var l0m *l0Merge
	if v := b.Get(keyL0Merge); v != nil && len(levels) > 0 {
		if l0m, err = decodeL0Merge(v, levels[0]); err != nil {
			return nil, fmt.Errorf("dataset %q: %w", name, err)
		}
	}
	w.s.hot.mark(name)
	st := &dsState{name: name, l0m: l0m, w: w, bucket: b, log: b.Bucket(bucketLog), index: b.Bucket(bucketIndex), recent: b.Bucket(bucketRecent),
		rstate: readRecentState(b), filter: w.s.recentFilterFor(name, b), levels: levels, rb: rb, meta: m, pending: map[string]pendingVal{}}
	if w.writable {
		st.log.FillPercent = 1.0
		if rb != nil {
			rb.FillPercent = 1.0
		}
	}
	if st.meta.Created.IsZero() {
		st.meta.Created = time.Now().UTC()
		st.dirty = true
	}
	st.scratch.s, st.scratch.reads = w.s, w.s.reads(name)
	w.sets[name] = st
	return st, nil
}

func validDatasetName(name string) error {
	if name == "" {
		return errors.New("empty dataset name")
	}
	return nil
}

// latest returns id's current index value; inRecent says whether the
// _id has an entry in "recent" (pending or committed).
func (st *dsState) latest(id string) (v []byte, ok, inRecent bool) {
	if pv, ok := st.pending[id]; ok {
		return pv.iv, true, pv.inRecent
	}
	h := xxh3.HashString128(id)
	if st.recent != nil && st.filter.mayHave(h) {
		if v := st.recent.Get([]byte(id)); v != nil {
			return v, true, true
		}
	}
	v = st.idIndex().below([]byte(id), h)
	return v, v != nil, false
}

// seen returns the index entry a read view found for p's _id
// (Prepared.Seen) when it is still the latest: nothing was written to the
// _id since the view (UnchangedSince, which counts this transaction's own
// writes too), and the _id is not in "recent", whose membership a flush
// changes without a new version (the in-memory filter rules that out for
// almost every _id). ok false: look the _id up.
func (w *writeTx) seen(st *dsState, dataset string, p *engine.Prepared) (cur []byte, exists, ok bool, err error) {
	if p.SeenIn == (engine.ViewMark{}) {
		return nil, false, false, nil
	}
	if st.recent != nil && st.filter.mayHave(xxh3.HashString128(p.ID)) {
		return nil, false, false, nil
	}
	same, err := w.UnchangedSince(dataset, p.ID, p.SeenIn)
	if err != nil || !same {
		return nil, false, false, err
	}
	return p.Seen, p.Seen != nil, true, nil
}

// idIndex is the index as this transaction has it (pending updates
// aside).
func (st *dsState) idIndex() idIndex {
	return idIndex{recent: st.recent, main: st.index, levels: st.levels, rb: st.rb, sc: &st.scratch}
}

func (w *writeTx) Put(dataset string, p *engine.Prepared, ts int64) (engine.PutResult, engine.Record, error) {
	st, err := w.dataset(dataset, true)
	if err != nil {
		return 0, engine.Record{}, err
	}
	if len(p.ID) == 0 || len(p.ID) > maxIDSize {
		return 0, engine.Record{}, fmt.Errorf("dataset %q: an _id of %d bytes cannot be stored (at most %d)", dataset, len(p.ID), maxIDSize)
	}
	var cur []byte
	exists, inRecent := false, false
	if !p.KnownNew {
		var seen bool
		if cur, exists, seen, err = w.seen(st, dataset, p); err != nil {
			return 0, engine.Record{}, err
		}
		if !seen {
			if cur, inRecent, exists = st.hinted(p.ID); !exists {
				cur, exists, inRecent = st.latest(p.ID)
			}
			if w.ops++; w.ops%boundEvery == 0 {
				w.s.boundMapped(w.tx)
			}
		}
	}
	var prev uint64
	wasDeleted := false
	if exists {
		if !validIndexVal(cur) {
			return 0, engine.Record{}, fmt.Errorf("dataset %q: corrupt index entry for %s", dataset, engine.QuoteID(p.ID))
		}
		if bytes.Equal(cur[8:24], p.Hash[:]) {
			return engine.Unchanged, engine.Record{}, nil
		}
		prev = binary.BigEndian.Uint64(cur[:8])
		wasDeleted = cur[24]&flagDeleted != 0
	}
	if err := w.upgrade(); err != nil {
		return 0, engine.Record{}, err
	}
	off := uint64(0)
	if st.meta.Versions > 0 {
		off = st.meta.LastOffset + 1
	}
	// bbolt keeps key and value slices until commit: each Put needs its
	// own memory. Versions are carved from a per-transaction arena.
	val := w.alloc(headerSize + binary.MaxVarintLen64 + len(p.ID) + len(p.Body))
	val = encodeVersion(val, off, p, ts, prev, exists)
	if err := st.log.Put(offsetKey(off), val); err != nil {
		return 0, engine.Record{}, fmt.Errorf("dataset %q: appending %s: %w", dataset, engine.QuoteID(p.ID), err)
	}
	ivLen := indexValSize
	if p.RawHash != 0 {
		ivLen = indexValRaw
	}
	iv := w.alloc(ivLen)[:ivLen]
	binary.BigEndian.PutUint64(iv[:8], off)
	copy(iv[8:24], p.Hash[:])
	iv[24] = 0
	if p.Deleted {
		iv[24] = flagDeleted
	}
	if p.RawHash != 0 {
		binary.BigEndian.PutUint64(iv[25:], p.RawHash)
	}
	st.pending[p.ID] = pendingVal{iv: iv, inRecent: inRecent}
	w.changed = true
	m := &st.meta
	if !m.PrevKnown && m.Versions == m.Entities {
		// One version per _id so far: none names a previous one.
		m.PrevKnown, m.PrevFrom = true, noPrev
	}
	if exists && m.PrevKnown && off < m.PrevFrom {
		m.PrevFrom = off
	}
	m.Versions++
	m.LastOffset = off
	if !exists {
		m.Entities++
	}
	switch {
	case p.Deleted && (!exists || !wasDeleted):
		m.Deleted++
	case !p.Deleted && exists && wasDeleted:
		m.Deleted--
	}
	st.dirty = true
	return engine.Appended, engine.Record{Offset: off, TS: ts, Previous: prev, HasPrev: exists, Hash: p.Hash, ID: p.ID, Deleted: p.Deleted, Body: p.Body}, nil
}

func (w *writeTx) SameRaw(dataset, id string, rawHash uint64) (bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil || rawHash == 0 {
		return false, err
	}
	cur, ok, _ := st.latest(id)
	if w.ops++; w.ops%boundEvery == 0 {
		w.s.boundMapped(w.tx)
	}
	if !ok {
		return false, nil
	}
	if !validIndexVal(cur) {
		return false, fmt.Errorf("dataset %q: corrupt index entry for %s", dataset, engine.QuoteID(id))
	}
	return len(cur) == indexValRaw && binary.BigEndian.Uint64(cur[25:]) == rawHash, nil
}

func (w *writeTx) Latest(dataset, id string) (engine.Record, bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return engine.Record{}, false, err
	}
	iv, ok, _ := st.latest(id)
	if !ok {
		return engine.Record{}, false, nil
	}
	off := binary.BigEndian.Uint64(iv[:8])
	v := st.log.Get(offsetKey(off))
	if v == nil {
		return engine.Record{}, false, fmt.Errorf("dataset %q: index points at missing offset %d for %s", dataset, off, engine.QuoteID(id))
	}
	r, err := decodeVersion(off, v)
	return r, err == nil, err
}

// latestManyChunk is how many _ids LatestMany sorts by log offset at
// once (40 bytes each).
const latestManyChunk = 1 << 16

// LatestMany implements engine.TxLatestMany: it looks the _ids up (in
// the order given: deletion tracking gives them in _id order, the
// index's), then reads their versions from the log in offset order, up
// to latestManyChunk at a time. Read in _id order, the versions of a
// 1M-entity dataset's 100,000 deleted entities were one page fault
// each, 3.3 s of a 10.8 CPU-second run. It reads them with pread where
// it can (logReader). A Put of the _id fn is given
// uses the index entry found here (dsState.hint) instead of looking it
// up again, out of the index's order.
func (w *writeTx) LatestMany(dataset string, ids []string, fn func(id string, rec engine.Record) error) error {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return err
	}
	// fn may Put: make the transaction writable first, so a Put cannot
	// swap it (and with it st's buckets) underneath (ForEachLive).
	if err := w.upgrade(); err != nil {
		return err
	}
	st = w.sets[dataset]
	defer func() { st.hint = nil }()
	type at struct {
		iv       [indexValRaw]byte
		n        uint8 // iv's length
		inRecent bool
		i        int32 // in the chunk
	}
	order := make([]at, 0, min(len(ids), latestManyChunk))
	var hint latestHint
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), latestManyChunk)]
		ids = ids[len(chunk):]
		order = order[:0]
		flushes := st.flushes
		for i, id := range chunk {
			iv, ok, inRecent := st.latest(id)
			if !ok {
				continue
			}
			if !validIndexVal(iv) {
				return fmt.Errorf("dataset %q: corrupt index entry for %s", dataset, engine.QuoteID(id))
			}
			a := at{n: uint8(len(iv)), inRecent: inRecent, i: int32(i)}
			copy(a.iv[:], iv)
			order = append(order, a)
		}
		slices.SortFunc(order, func(a, b at) int { return bytes.Compare(a.iv[:8], b.iv[:8]) })
		lr := w.s.newLogReader(w.tx, st.log)
		for k := range order {
			a := &order[k]
			off := binary.BigEndian.Uint64(a.iv[:8])
			id := chunk[a.i]
			var v []byte
			if lr != nil {
				v, _ = lr.get(off)
			}
			if v == nil {
				v = st.log.Get(offsetKey(off))
			}
			if v == nil {
				return fmt.Errorf("dataset %q: index points at missing offset %d for %s", dataset, off, engine.QuoteID(id))
			}
			r, err := decodeVersion(off, v)
			if err != nil {
				return err
			}
			hint = latestHint{id: id, iv: a.iv[:a.n], inRecent: a.inRecent, flushes: flushes}
			st.hint = &hint
			if err := fn(id, r); err != nil {
				return err
			}
			if w.ops++; w.ops%boundEvery == 0 {
				w.s.boundMapped(w.tx)
			}
		}
	}
	return nil
}

func (w *writeTx) ForEachLive(dataset string, fn func(id string) error) error {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return err
	}
	if err := st.flush(); err != nil {
		return err
	}
	// fn may Put: make the transaction writable first, so a Put cannot
	// swap the transaction (and with it this cursor) underneath. Puts
	// touch the log bucket and the pending map, never the index bucket
	// being iterated (pending index updates are applied at commit).
	if err := w.upgrade(); err != nil {
		return err
	}
	st = w.sets[dataset]
	n := 0
	return st.idIndex().forEach(func(k, iv []byte) error {
		if !validIndexVal(iv) {
			return fmt.Errorf("dataset %q: corrupt index entry for %s", dataset, engine.QuoteID(string(k)))
		}
		if n++; n%(4*boundEvery) == 0 {
			w.s.boundMapped(w.tx)
		}
		if iv[24]&flagDeleted == 0 {
			return fn(string(k))
		}
		return nil
	})
}

// DatasetInfo implements engine.TxDatasetInfo.
func (w *writeTx) DatasetInfo(dataset string) (engine.DatasetInfo, bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil {
		return engine.DatasetInfo{}, false, err
	}
	return st.meta.info(dataset), true, nil
}

// Changed reports whether anything was written.
func (w *writeTx) Changed() bool { return w.changed }

func (w *writeTx) EnsureDataset(dataset string) error {
	_, err := w.dataset(dataset, true)
	return err
}

func (w *writeTx) SetPopulated(dataset string) error {
	st, err := w.dataset(dataset, true)
	if err != nil {
		return err
	}
	if !st.meta.Populated {
		st.meta.Populated = true
		st.dirty = true
		w.changed = true
	}
	return nil
}

func (w *writeTx) SetPipeState(pipe string, ps engine.PipeState) error {
	b, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	if err := w.upgrade(); err != nil {
		return err
	}
	w.changed = true
	return w.tx.Bucket(bucketPipes).Put([]byte(pipe), b)
}

func (w *writeTx) PipeState(pipe string) (engine.PipeState, error) {
	return pipeState(w.tx, pipe)
}

func pipeState(tx *bolt.Tx, pipe string) (engine.PipeState, error) {
	var ps engine.PipeState
	v := tx.Bucket(bucketPipes).Get([]byte(pipe))
	if v == nil {
		return ps, nil
	}
	if err := json.Unmarshal(v, &ps); err != nil {
		return ps, fmt.Errorf("pipe %q: corrupt state: %w", pipe, err)
	}
	return ps, nil
}

func (w *writeTx) AddRun(r engine.RunRecord) error {
	if err := w.upgrade(); err != nil {
		return err
	}
	w.changed = true
	b, err := w.tx.Bucket(bucketRuns).CreateBucketIfNotExists([]byte(r.Pipe))
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	r.Seq = seq
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := b.Put(offsetKey(seq), v); err != nil {
		return err
	}
	if seq > maxRunsPerPipe {
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq-maxRunsPerPipe; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *writeTx) Commit() error {
	if w.done {
		return errors.New("transaction already finished")
	}
	w.done = true
	released := false
	defer func() {
		if !released {
			if w.tx != nil {
				w.tx.Rollback()
			}
			<-w.s.writer
		}
	}()
	dirty := w.changed
	for _, st := range w.sets {
		dirty = dirty || st.dirty || len(st.pending) > 0 || st.levelsDirty
	}
	if !dirty {
		// Nothing was written: end the read transaction.
		released = true
		err := w.tx.Rollback()
		<-w.s.writer
		return err
	}
	if err := w.upgrade(); err != nil {
		return err
	}
	now := time.Now().UTC()
	for name, st := range w.sets {
		if err := st.flush(); err != nil {
			return fmt.Errorf("dataset %q: %w", name, err)
		}
		if !st.dirty {
			continue
		}
		st.meta.Updated = now
		b, err := json.Marshal(&st.meta)
		if err == nil {
			err = st.bucket.Put(keyMeta, b)
		}
		if err != nil {
			return fmt.Errorf("dataset %q: writing metadata: %w", name, err)
		}
	}
	txid := uint64(w.tx.ID())
	if len(w.newRuns)+len(w.dropRuns) > 0 {
		// Before the commit is seen: run block directories built
		// earlier may be stale from then on, until checkMoves has
		// marked those that are (dirmoves.go).
		w.s.runsChanged.Store(txid)
	}
	w.s.boundBeforeCommit(w.tx)
	// Committing reads the header of every page it frees (each old copy
	// of a changed leaf), which maps them and their neighbours; only the
	// watcher can bound that.
	w.s.bulk.Add(1)
	err := w.tx.Commit()
	w.s.bulk.Add(-1)
	released = true
	if err == nil {
		w.s.cacheRuns(w.newRuns, w.dropRuns)
		// Still under the writer: no commit can reuse a page this one
		// freed before the check has seen the tree as it left it.
		w.checkMoves(txid)
		// A commit that grew the file, or remapped it, reached pages
		// not yet advised against huge pages (release_linux.go):
		// advise them before any reader faults them in.
		if w.s.residentLimit > 0 {
			w.s.noHugePages()
		}
	}
	<-w.s.writer
	if err != nil {
		return fmt.Errorf("committing to %s: %w", w.s.path, err)
	}
	for name, st := range w.sets {
		if st.bgPlan != nil {
			w.s.startMerge(name, st.bgPlan)
		}
	}
	return nil
}

func (w *writeTx) Rollback() error {
	if w.done {
		return nil
	}
	w.done = true
	defer func() { <-w.s.writer }()
	if w.tx == nil {
		return nil
	}
	return w.tx.Rollback()
}

func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading %s: corrupt data file: %v", s.path, r)
		}
	}()
	return s.db.View(fn)
}

// Datasets lists all datasets.
func (s *Store) Datasets(ctx context.Context) ([]engine.DatasetInfo, error) {
	var out []engine.DatasetInfo
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDatasets).ForEachBucket(func(k []byte) error {
			m, err := readMeta(tx.Bucket(bucketDatasets).Bucket(k))
			if err != nil {
				return fmt.Errorf("dataset %q: %w", k, err)
			}
			out = append(out, m.info(string(k)))
			return nil
		})
	})
	return out, err
}

// Dataset returns one dataset's metadata.
func (s *Store) Dataset(ctx context.Context, name string) (engine.DatasetInfo, bool, error) {
	var info engine.DatasetInfo
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		b, m, err := datasetMeta(tx, name)
		if b != nil {
			info, ok = m.info(name), true
		}
		return err
	})
	return info, ok, err
}

// datasetMeta returns dataset name's bucket and metadata as tx sees them;
// a nil bucket for an unknown dataset.
func datasetMeta(tx *bolt.Tx, name string) (*bolt.Bucket, meta, error) {
	b := tx.Bucket(bucketDatasets).Bucket([]byte(name))
	if b == nil {
		return nil, meta{}, nil
	}
	m, err := readMeta(b)
	if err != nil {
		return nil, meta{}, fmt.Errorf("dataset %q: %w", name, err)
	}
	return b, m, nil
}

// scanChunk is how many versions Scan reads per read transaction. Short
// read transactions keep bbolt free to grow its memory map for writers.
const scanChunk = 1024

// Scan reads the log as opts say.
func (s *Store) Scan(ctx context.Context, dataset string, opts engine.ScanOptions, fn func(engine.Record) error) (uint64, error) {
	next := opts.From
	seen := 0
	size := scanChunk
	if opts.Limit > 0 && opts.Limit < size {
		size = opts.Limit // small reads (batch_size 1) allocate little
	}
	chunk := make([]engine.Record, 0, size)
	// sup lists, sorted, the offsets up to its end that a later version
	// supersedes (see superseded); nil: look each version up in the index.
	var sup *supersededList
	if opts.LatestOnly {
		var err error
		if sup, err = s.supersededFor(dataset, opts); err != nil {
			return next, err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return next, err
		}
		chunk = chunk[:0]
		want := scanChunk
		if opts.Limit > 0 && opts.Limit-seen < want {
			want = opts.Limit - seen
		}
		end := false
		err := s.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDatasets).Bucket([]byte(dataset))
			if b == nil {
				end = true
				return nil
			}
			index, err := s.datasetIndex(b, dataset)
			if err != nil {
				return fmt.Errorf("dataset %q: %w", dataset, err)
			}
			if opts.LatestOnly && sup == nil {
				s.hot.mark(dataset)
			}
			c := b.Bucket(bucketLog).Cursor()
			k, v := c.Seek(offsetKey(next))
			for n := 1; k != nil && len(chunk) < want; k, v = c.Next() {
				off := binary.BigEndian.Uint64(k)
				next = off + 1
				if n++; n%boundEvery == 0 {
					s.boundMapped(tx)
				}
				if sup != nil && off <= sup.end {
					if sup.has(off) {
						continue
					}
				} else if opts.LatestOnly {
					id, ok := versionID(v)
					if !ok {
						return fmt.Errorf("dataset %q: corrupt version at offset %d", dataset, off)
					}
					iv := index.get(id)
					if !validIndexVal(iv) || binary.BigEndian.Uint64(iv[:8]) != off {
						continue
					}
				}
				r, err := decodeVersion(off, v)
				if err != nil {
					return fmt.Errorf("dataset %q: %w", dataset, err)
				}
				chunk = append(chunk, r)
			}
			end = k == nil
			return nil
		})
		if err != nil {
			return next, err
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return next, err
			}
		}
		seen += len(chunk)
		if end || (opts.Limit > 0 && seen >= opts.Limit) {
			return next, nil
		}
	}
}

// maxSuperseded bounds the memory superseded may use (8 bytes each).
const maxSuperseded = 2 << 20

// supersededList is superseded's result, kept in a ScanCache.
type supersededList struct {
	dataset string
	created time.Time // the dataset's, to notice it was recreated
	from    uint64    // the offset it was computed from
	end     uint64    // the last offset it covers
	offs    []uint64  // sorted; entries below the scan's position are dropped
	// off: the tail was short or too many versions are superseded; the
	// scans use the index.
	off bool
}

// has reports whether off is superseded; offsets must be asked in
// increasing order.
func (l *supersededList) has(off uint64) bool {
	for len(l.offs) > 0 && l.offs[0] < off {
		l.offs = l.offs[1:]
	}
	return len(l.offs) > 0 && l.offs[0] == off
}

// supersededFor returns the superseded list for a latest-only scan: the
// one in opts.Cache if it still applies, else a new one when the scan is
// long enough to pay for reading the log tail (a cache, or no limit or a
// large one). nil: use the index.
func (s *Store) supersededFor(dataset string, opts engine.ScanOptions) (*supersededList, error) {
	if opts.Cache == nil && opts.Limit > 0 && opts.Limit < scanChunk {
		return nil, nil
	}
	var l *supersededList
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(dataset))
		if b == nil {
			return nil
		}
		m, err := readMeta(b)
		if err != nil {
			return nil
		}
		if opts.Cache != nil {
			if c, ok := opts.Cache.Load().(*supersededList); ok && c.dataset == dataset && c.created.Equal(m.Created) && opts.From >= c.from {
				l = c
				return nil
			}
		}
		offs, end := s.superseded(tx, b, m, opts.From)
		l = &supersededList{dataset: dataset, created: m.Created, from: opts.From, end: end, offs: offs, off: offs == nil}
		return nil
	})
	if err != nil || l == nil {
		return nil, err
	}
	if opts.Cache != nil {
		opts.Cache.Keep(l)
	}
	if l.off {
		return nil, nil
	}
	return l, nil
}

// superseded reads the log of dataset from offset from to its end, as tx
// sees it, and returns the offsets at or after from that a later version
// replaces (every version names its predecessor in _previous), sorted,
// and the last offset read. A scan of the latest versions then reads the
// log sequentially instead of looking every _id up in the index, whose
// random pages cost a page fault each once the mapping is released. It
// returns nil when the tail is short or more than
// maxSuperseded versions would be listed.
func (s *Store) superseded(tx *bolt.Tx, b *bolt.Bucket, m meta, from uint64) ([]uint64, uint64) {
	if m.Versions == 0 || m.LastOffset < from || m.LastOffset-from < scanChunk {
		return nil, 0
	}
	if m.Versions == m.Entities {
		// One version per _id (a dataset loaded once): none is
		// superseded, and the log need not be read twice.
		return []uint64{}, m.LastOffset
	}
	start := from
	if m.PrevKnown && m.PrevFrom > from {
		// A version that supersedes one names it in _previous, and none
		// below PrevFrom does: read only from there.
		if m.PrevFrom > m.LastOffset {
			return []uint64{}, m.LastOffset
		}
		start = m.PrevFrom
	}
	sup := []uint64{}
	var last uint64
	c := b.Bucket(bucketLog).Cursor()
	n := 0
	for k, v := c.Seek(offsetKey(start)); k != nil; k, v = c.Next() {
		if len(k) != 8 || len(v) < headerSize {
			return nil, 0
		}
		last = binary.BigEndian.Uint64(k)
		if v[1]&flagHasPrev != 0 {
			if prev := binary.BigEndian.Uint64(v[10:18]); prev >= from {
				if len(sup) == maxSuperseded {
					return nil, 0
				}
				sup = append(sup, prev)
			}
		}
		if n++; n%(4*boundEvery) == 0 {
			s.boundMapped(tx)
		}
	}
	slices.Sort(sup)
	return sup, last
}

// versionID returns the _id bytes of a log value without copying.
func versionID(v []byte) ([]byte, bool) {
	if len(v) < headerSize {
		return nil, false
	}
	n, k := binary.Uvarint(v[headerSize:])
	if k <= 0 || uint64(len(v)-headerSize-k) < n {
		return nil, false
	}
	return v[headerSize+k : headerSize+k+int(n)], true
}

// Get returns the latest version of id.
func (s *Store) Get(ctx context.Context, dataset, id string) (engine.Record, bool, error) {
	var r engine.Record
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(dataset))
		if b == nil {
			return nil
		}
		x, err := s.datasetIndex(b, dataset)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", dataset, err)
		}
		iv := x.get([]byte(id))
		if iv == nil {
			return nil
		}
		off := binary.BigEndian.Uint64(iv[:8])
		v := b.Bucket(bucketLog).Get(offsetKey(off))
		if v == nil {
			return fmt.Errorf("dataset %q: index points at missing offset %d for %s", dataset, off, engine.QuoteID(id))
		}
		r, err = decodeVersion(off, v)
		ok = err == nil
		return err
	})
	return r, ok, err
}

// History returns all versions of id, oldest first, following _previous.
func (s *Store) History(ctx context.Context, dataset, id string) ([]engine.Record, error) {
	var out []engine.Record
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(dataset))
		if b == nil {
			return nil
		}
		x, err := s.datasetIndex(b, dataset)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", dataset, err)
		}
		iv := x.get([]byte(id))
		if iv == nil {
			return nil
		}
		log := b.Bucket(bucketLog)
		off, more := binary.BigEndian.Uint64(iv[:8]), true
		for more {
			v := log.Get(offsetKey(off))
			if v == nil {
				return fmt.Errorf("dataset %q: missing offset %d in the history of %s", dataset, off, engine.QuoteID(id))
			}
			r, err := decodeVersion(off, v)
			if err != nil {
				return err
			}
			out = append(out, r)
			off, more = r.Previous, r.HasPrev
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// PipeState returns a pipe's stored state.
func (s *Store) PipeState(ctx context.Context, pipe string) (engine.PipeState, error) {
	var ps engine.PipeState
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		ps, err = pipeState(tx, pipe)
		return err
	})
	return ps, err
}

// Runs returns a pipe's newest runs, newest first.
func (s *Store) Runs(ctx context.Context, pipe string, limit int) ([]engine.RunRecord, error) {
	var out []engine.RunRecord
	err := s.view(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketRuns)
		collect := func(b *bolt.Bucket) error {
			c := b.Cursor()
			n := 0
			for k, v := c.Last(); k != nil && (limit <= 0 || n < limit); k, v = c.Prev() {
				var r engine.RunRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("corrupt run record: %w", err)
				}
				out = append(out, r)
				n++
			}
			return nil
		}
		if pipe != "" {
			if b := root.Bucket([]byte(pipe)); b != nil {
				return collect(b)
			}
			return nil
		}
		return root.ForEachBucket(func(k []byte) error { return collect(root.Bucket(k)) })
	})
	if pipe == "" {
		slices.SortFunc(out, func(a, b engine.RunRecord) int { return b.Start.Compare(a.Start) })
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
	}
	return out, err
}

// DeleteDataset removes a dataset.
func (s *Store) DeleteDataset(ctx context.Context, name string) error {
	tx, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	w := tx.(*writeTx)
	if err := w.upgrade(); err != nil {
		w.Rollback()
		return err
	}
	w.changed = true
	if b := w.tx.Bucket(bucketDatasets).Bucket([]byte(name)); b != nil {
		if levels, _, err := s.runsOf(b); err == nil {
			for _, lv := range levels {
				w.dropRuns = append(w.dropRuns, lv...)
			}
		}
	}
	s.bulk.Add(1)
	err = w.tx.Bucket(bucketDatasets).DeleteBucket([]byte(name))
	s.bulk.Add(-1)
	s.filtersMu.Lock()
	delete(s.filters, name) // under the writer lock; rebuilt on next use
	s.filtersMu.Unlock()
	if err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		w.Rollback()
		return fmt.Errorf("deleting dataset %q: %w", name, err)
	}
	return w.Commit()
}

// GetKV reads a key of a namespace.
func (s *Store) GetKV(ctx context.Context, ns, key string) ([]byte, bool, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketKV)
		if root == nil {
			return nil
		}
		if b := root.Bucket([]byte(ns)); b != nil {
			if v := b.Get([]byte(key)); v != nil {
				out = bytes.Clone(v)
			}
		}
		return nil
	})
	return out, out != nil, err
}

// kvBucket returns namespace ns of the transaction; with create it is
// created (upgrading to a write transaction), else it is nil when absent.
func (w *writeTx) kvBucket(ns string, create bool) (*bolt.Bucket, error) {
	if ns == "" {
		return nil, errors.New("empty key-value namespace")
	}
	if !create {
		root := w.tx.Bucket(bucketKV)
		if root == nil {
			return nil, nil
		}
		return root.Bucket([]byte(ns)), nil
	}
	if err := w.upgrade(); err != nil {
		return nil, err
	}
	root, err := w.tx.CreateBucketIfNotExists(bucketKV)
	if err != nil {
		return nil, err
	}
	return root.CreateBucketIfNotExists([]byte(ns))
}

// GetKV reads a key of a namespace as the transaction sees it.
func (w *writeTx) GetKV(ns, key string) ([]byte, bool, error) {
	b, err := w.kvBucket(ns, false)
	if err != nil || b == nil {
		return nil, false, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, false, nil
	}
	return bytes.Clone(v), true, nil
}

// PutKV writes a key of a namespace in the transaction.
func (w *writeTx) PutKV(ns, key string, value []byte) error {
	if key == "" {
		return errors.New("empty key")
	}
	b, err := w.kvBucket(ns, true)
	if err != nil {
		return err
	}
	w.changed = true
	return b.Put([]byte(key), bytes.Clone(value))
}

// DeleteKV removes a key of a namespace in the transaction.
func (w *writeTx) DeleteKV(ns, key string) error {
	b, err := w.kvBucket(ns, false)
	if err != nil || b == nil || b.Get([]byte(key)) == nil {
		return err
	}
	if b, err = w.kvBucket(ns, true); err != nil {
		return err
	}
	w.changed = true
	return b.Delete([]byte(key))
}

// ScanKV calls fn with the keys of ns starting with prefix, in order.
func (w *writeTx) ScanKV(ns, prefix string, fn func(key string, value []byte) error) error {
	b, err := w.kvBucket(ns, false)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if err := fn(string(k), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

// kvUpdate runs fn in a write transaction of its own.
func (s *Store) kvUpdate(ctx context.Context, fn func(w *writeTx) error) error {
	tx, err := s.Begin(ctx)
	if err != nil {
		return err
	}
	w := tx.(*writeTx)
	if err := fn(w); err != nil {
		w.Rollback()
		return err
	}
	return w.Commit()
}

// PutKV writes a key of a namespace.
func (s *Store) PutKV(ctx context.Context, ns, key string, value []byte) error {
	return s.kvUpdate(ctx, func(w *writeTx) error { return w.PutKV(ns, key, value) })
}

// DeleteKV removes a key of a namespace; a missing key is not an error.
func (s *Store) DeleteKV(ctx context.Context, ns, key string) error {
	if ns == "" {
		return errors.New("empty key-value namespace")
	}
	return s.kvUpdate(ctx, func(w *writeTx) error { return w.DeleteKV(ns, key) })
}

// ListKV lists a namespace's keys, sorted.
func (s *Store) ListKV(ctx context.Context, ns string) ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketKV)
		if root == nil {
			return nil
		}
		b := root.Bucket([]byte(ns))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// Check runs bbolt's consistency check and verifies that every dataset's
// log and index agree with its metadata. It reads the whole file, holding
// the writer lock: it compares figures read in several transactions, and
// bbolt's checker must not read the freelist while a merge step beside the
// writer commits (bgmerge.go).
func (s *Store) Check(ctx context.Context) error {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writer }()
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	infos, err := s.Datasets(ctx)
	if err != nil {
		return err
	}
	for _, info := range infos {
		var versions, latest uint64
		if _, err := s.Scan(ctx, info.Name, engine.ScanOptions{}, func(engine.Record) error { versions++; return nil }); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := s.Scan(ctx, info.Name, engine.ScanOptions{LatestOnly: true}, func(engine.Record) error { latest++; return nil }); err != nil {
			errs = append(errs, err)
			continue
		}
		if versions != info.Versions || latest != info.Entities {
			errs = append(errs, fmt.Errorf("dataset %q: %d versions and %d latest in the log, metadata says %d and %d", info.Name, versions, latest, info.Versions, info.Entities))
		}
		if err := s.checkIndex(info); err != nil {
			errs = append(errs, fmt.Errorf("dataset %q: %w", info.Name, err))
		}
	}
	return errors.Join(errs...)
}

// checkIndex checks the two-level _id index of one dataset: one entry per
// entity, each pointing at a version of that _id, and the count that
// steers moves out of "recent" matching the entries there.
func (s *Store) checkIndex(info engine.DatasetInfo) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(info.Name))
		if b == nil {
			return nil
		}
		x, err := s.datasetIndex(b, info.Name)
		if err != nil {
			return err
		}
		if err := x.checkRuns(); err != nil {
			return err
		}
		if err := checkL0Merge(b, x.levels); err != nil {
			return err
		}
		log := b.Bucket(bucketLog)
		var n uint64
		err = x.forEach(func(k, iv []byte) error {
			n++
			if !validIndexVal(iv) {
				return fmt.Errorf("corrupt index entry for %s", engine.QuoteID(string(k)))
			}
			off := binary.BigEndian.Uint64(iv[:8])
			v := log.Get(offsetKey(off))
			if id, ok := versionID(v); !ok || !bytes.Equal(id, k) {
				return fmt.Errorf("index entry for %s points at offset %d, which is not a version of it", engine.QuoteID(string(k)), off)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n != info.Entities {
			return fmt.Errorf("the index has %d entries, metadata says %d entities", n, info.Entities)
		}
		if x.recent != nil {
			if have, want := readRecentState(b).n, uint64(x.recent.Stats().KeyN); have != want {
				return fmt.Errorf("the recent index holds %d entries, its count says %d", want, have)
			}
		}
		return nil
	})
}

// notePressure tells Options.Pressure of a full release, or of a release
// that could not keep a dataset's runs mapped (full), or, on the
// watcher's checks (!full), that PressureQuiet has passed since the last
// one.
func (s *Store) notePressure(full bool) {
	if s.pressure == nil {
		return
	}
	s.pressureMu.Lock()
	defer s.pressureMu.Unlock()
	now := time.Now().UnixNano()
	switch {
	case full:
		s.lastFull = now
		if !s.near {
			s.near = true
			s.pressure(true)
		}
	case s.near && now-s.lastFull > int64(s.pressureQuiet):
		s.near = false
		s.pressure(false)
	}
}
