//go:build linux

package boltstore

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops the store file's pages from this process's page
// tables (MADV_DONTNEED on bbolt's read-only shared mapping). The data
// stays in the kernel's page cache and faults back in on the next access,
// so nothing is lost; what changes is that a process reading or writing a
// large dataset does not keep the whole file resident. It runs inside a
// read transaction, which stops bbolt from remapping meanwhile, so the
// address range is the live mapping.
func (s *Store) releaseMapped() {
	s.db.View(func(tx *bolt.Tx) error {
		s.releaseIn(tx)
		return nil
	})
}

// releaseIn releases the mapping from within an open transaction, which
// pins the current mapping (a read transaction blocks remapping; a write
// transaction only remaps on its own goroutine, inside Commit). The index
// pages of hot datasets stay mapped as far as they fit (see keepRuns);
// if that does not bring the process under its bound, everything goes.
func (s *Store) releaseIn(tx *bolt.Tx) {
	info := s.db.Info()
	size := uintptr(tx.Size())
	if info == nil || info.Data == 0 || size == 0 {
		return
	}
	ps := uintptr(info.PageSize)
	t0 := time.Now()
	defer func() { s.releaseNanos.Add(int64(time.Since(t0))) }()
	if s.residentLimit > 0 {
		var buf [128]byte
		total, shared := s.resident(buf[:])
		// What stays resident after a release: the heap, the other
		// mapped files (the binary; otherShared, from smaps at open and
		// after full releases) and what is kept. Keep room for
		// keepReserve more.
		// The heap is taken at its highest since the last full release,
		// not as it is: it swings by tens of MB between collections, and
		// a budget set at a low point (1M jq runs under a 150 MiB bound:
		// ~60 MiB, then up to 81) had the index kept push the process
		// past its bound when the heap grew back.
		anon := max(total-shared, s.anonHigh.Load())
		budget := s.residentLimit - keepReserve - anon - s.otherShared.Load()
		// Releases that follow each other closely keep the index too: a
		// keeping release costs a walk of the branch pages and one
		// process_madvise per 1,024 ranges (~4 ms at 1M ids), far less
		// than faulting the index back in page by page. (Before the
		// two-level index, a load rewrote random index pages so fast
		// that closely spaced releases dropped everything instead;
		// measured now, keeping always is faster: changed10 150k ->
		// 162-184k/s, initial and jq unchanged.)
		if runs := s.keepRuns(tx, info.PageSize, budget); runs != nil {
			gaps := make([]iovec, 0, len(runs)+1)
			var at uintptr
			for _, r := range runs {
				if start := uintptr(r.start) * ps; start > at {
					gaps = append(gaps, iovec{info.Data + at, start - at})
				}
				at = uintptr(r.end) * ps
			}
			if at < size {
				gaps = append(gaps, iovec{info.Data + at, size - at})
			}
			s.madviseRanges(gaps)
			s.keptReleases.Add(1)
			after, afterShared := s.resident(buf[:])
			// What stayed resident of the store's pages: what a release
			// before a commit could not drop (boundBeforeCommit). The
			// pages kept but not resident do not count.
			s.keptBytes.Store(max(0, afterShared-s.otherShared.Load()))
			if after <= s.residentLimit-keepReserve/2 {
				return
			}
		}
	}
	madvise(info.Data, size)
	s.fullReleases.Add(1)
	s.notePressure(true)
	s.keptBytes.Store(0)
	if s.residentLimit > 0 {
		// The file pages resident besides the store's are counted in
		// smaps, not as statm's file-backed total right after the
		// release: lookups beside it fault the store's pages back in
		// meanwhile, and in a 1M run writing 10% under a 150 MiB bound
		// that counted up to ~50 MiB more than the binary's ~10, which
		// then held every later release's budget at ~40 MiB instead
		// of ~90.
		s.noteOtherFiles()
		var buf [128]byte
		if total, shared := s.resident(buf[:]); total >= 0 {
			s.anonHigh.Store(total - shared)
		}
	}
}

// noteOtherFiles measures the file pages resident besides the store's
// (the binary's, mostly), which a release's budget leaves room for: at
// most every otherFilesEvery, since reading smaps walks every mapping
// (a 10M load under 150 MiB makes hundreds of full releases).
func (s *Store) noteOtherFiles() {
	now := time.Now().UnixNano()
	if last := s.otherAt.Load(); last != 0 && now-last < int64(otherFilesEvery) {
		return
	}
	s.otherAt.Store(now)
	if info := s.db.Info(); info != nil {
		if other := otherFileResident(info.Data); other >= 0 {
			s.otherShared.Store(other)
		}
	}
}

// otherFilesEvery is how often a full release measures the other files'
// pages at most.
const otherFilesEvery = 100 * time.Millisecond

// otherFileResident returns the file-backed resident bytes of every
// mapping but the one that starts at except (/proc/self/smaps), or -1.
func otherFileResident(except uintptr) int64 {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return -1
	}
	defer f.Close()
	return fileResident(f, except)
}

// fileResident sums, over the mappings of files in the text of
// /proc/self/smaps but the one that starts at except, their resident
// pages less the private copies (Anonymous, which statm counts as
// anonymous memory): what statm counts as file-backed. -1 if the text
// holds no mapping or cannot be read.
func fileResident(r io.Reader, except uintptr) int64 {
	var total, rss int64
	inFile, mappings := false, 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if h, ok := smapsHeader(line); ok {
			inFile = h.ok && h.start != except && len(h.path) > 0 && h.path[0] == '/'
			rss = -1
			mappings++
			continue
		}
		if !inFile {
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Rss:")); ok {
			rss = smapsKB(rest)
		} else if rest, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			if anon := smapsKB(rest); rss >= 0 && anon >= 0 {
				total += (rss - min(anon, rss)) << 10
			}
			inFile = false
		}
	}
	if sc.Err() != nil || mappings == 0 {
		return -1
	}
	return total
}

// smapsMapping is a mapping's header line in /proc/self/smaps:
// start-end perms offset dev inode [path].
type smapsMapping struct {
	start, end  uintptr
	perms, path []byte // path: the rest of the line, spaces kept ("" if none)
	ok          bool   // the addresses parse and end > start
}

// smapsHeader reports whether line is a mapping's header (not one of its
// fields) and parses it.
func smapsHeader(line []byte) (smapsMapping, bool) {
	f := bytes.Fields(line)
	if len(f) < 5 || bytes.IndexByte(f[0], '-') <= 0 || len(f[1]) != 4 {
		return smapsMapping{}, false
	}
	h := smapsMapping{perms: f[1]}
	if len(f) >= 6 {
		h.path = bytes.Join(f[5:], []byte(" "))
	}
	lo, hi, _ := bytes.Cut(f[0], []byte("-"))
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	h.start, h.end, h.ok = uintptr(start), uintptr(end), err1 == nil && err2 == nil && end > start
	return h, true
}

// smapsKB parses the value of an smaps field ("   8912 kB"), or -1.
func smapsKB(v []byte) int64 {
	kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
	if err != nil {
		return -1
	}
	return kb
}

// keepReserve is the room a release that keeps index pages leaves below
// the bound for the mapping to grow into before the next release.
const keepReserve = 24 << 20

// iovec is struct iovec: an address range for process_madvise.
type iovec struct{ base, len uintptr }

// Syscall numbers shared by every Linux architecture (the unified table
// from 424 on).
const (
	sysPidfdOpen      = 434
	sysProcessMadvise = 440
)

// openSelfPidfd returns a pidfd for this process, or -1. process_madvise
// with it applies MADV_DONTNEED to many ranges in one call (Linux 6.13 and
// later accept any advice for the calling process).
func openSelfPidfd() int {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(os.Getpid()), 0, 0)
	if errno != 0 {
		return -1
	}
	return int(fd)
}

func closePidfd(fd int) {
	if fd >= 0 {
		syscall.Close(fd)
	}
}

// madviseRanges drops the pages of every range from the page tables:
// batched through process_madvise when the kernel allows it, one madvise
// per range otherwise. rs may be changed.
//
// process_madvise advises at most MAX_RW_COUNT bytes (just under 2 GiB) a
// call and reports how many it did: batches stay under a GiB, a longer
// range goes in pieces, and a short count resumes where it stopped. (Taken
// for a refusal, a short count on a store file past 2 GiB sent every later
// release through one madvise per range: 44,000 calls in a 1M run writing
// 10% under a 150 MiB bound.)
func (s *Store) madviseRanges(rs []iovec) {
	for len(rs) > 0 && s.pidfd >= 0 && !s.noProcessMadvise.Load() {
		n, want := 0, uintptr(0)
		for n < len(rs) && n < madviseBatch && want+rs[n].len <= madviseBatchBytes {
			want += rs[n].len
			n++
		}
		batch := rs[:n]
		if n == 0 {
			// The first range alone is longer than a batch.
			batch = []iovec{{rs[0].base, madviseBatchBytes}}
		}
		got, _, errno := syscall.Syscall6(sysProcessMadvise, uintptr(s.pidfd), uintptr(unsafe.Pointer(&batch[0])), uintptr(len(batch)), uintptr(syscall.MADV_DONTNEED), 0, 0)
		if errno != 0 || got == 0 {
			s.noProcessMadvise.Store(true)
			break
		}
		rs = advanceRanges(rs, got)
	}
	for _, r := range rs {
		madvise(r.base, r.len)
	}
}

// madviseBatch and madviseBatchBytes bound one process_madvise call: the
// kernel's limit on its vector (UIO_MAXIOV) and half its byte count.
const (
	madviseBatch      = 1024
	madviseBatchBytes = 1 << 30
)

// advanceRanges drops the first n bytes of rs, in order.
func advanceRanges(rs []iovec, n uintptr) []iovec {
	for len(rs) > 0 && n >= rs[0].len {
		n -= rs[0].len
		rs = rs[1:]
	}
	if len(rs) > 0 && n > 0 {
		rs[0].base += n
		rs[0].len -= n
	}
	return rs
}

func madvise(addr, n uintptr) {
	syscall.Syscall(syscall.SYS_MADVISE, addr, n, uintptr(syscall.MADV_DONTNEED))
}

// boundMapped releases the mapping from within tx when the process's
// resident memory is within boundSlack of the store's bound. Hot loops
// call it every few dozen operations: random index access maps whole
// neighbourhoods of the file, faster than a background watcher can
// notice.
func (s *Store) boundMapped(tx *bolt.Tx) { s.boundAhead(tx, boundSlack) }

// boundSlack is how close to its bound a hot loop lets the process come
// before it releases: what the loop maps before its next check (64
// lookups, each faulting up to 64 KiB around a page) must fit below the
// bound, which is the peak, not where releases start. (Released at the
// bound itself, 1M runs writing 10% under 150 MiB peaked at up to 153.8.)
const boundSlack = 4 << 20

// boundAhead releases the mapping from within tx when the process's
// resident memory is within room bytes of the bound: for a step about to
// map up to room bytes with no check in between.
func (s *Store) boundAhead(tx *bolt.Tx, room int64) {
	if s.residentLimit <= 0 {
		return
	}
	var buf [128]byte
	total, shared := s.resident(buf[:])
	if total > s.residentLimit-room && shared > minReleasable {
		s.releaseIn(tx)
	}
}

// commitHeadroom is kept free below the bound before a commit: bbolt
// allocates a buffer for every dirty page while it commits, a spike no
// check can interrupt.
const commitHeadroom = 48 << 20

// boundBeforeCommit releases the mapping if the process is within
// commitHeadroom of its bound and a release could drop at least
// minCommitRelease.
func (s *Store) boundBeforeCommit(tx *bolt.Tx) {
	if s.residentLimit <= 0 {
		return
	}
	var buf [128]byte
	total, shared := s.resident(buf[:])
	// The commit reads the header of the old copy of every page this
	// transaction changed (bbolt frees it), which maps up to 64 KiB
	// around each one that is not mapped: start it low enough.
	st := tx.Stats()
	expect := max(commitHeadroom, min(st.GetNodeCount()<<16, s.residentLimit/2))
	if total <= s.residentLimit-expect || shared <= minReleasable {
		return
	}
	// Where what is mapped is the index the last release kept, and
	// little else, a release drops next to nothing: a 1M run writing 10%
	// under a 150 MiB bound, its whole index kept (~87 MB), released
	// before every commit for a few MB of other pages.
	if shared-s.otherShared.Load()-s.keptBytes.Load() < minCommitRelease {
		return
	}
	s.releaseIn(tx)
}

// minCommitRelease is the least a release before a commit must be able
// to drop (file pages resident beyond what the last release kept and the
// binary's).
const minCommitRelease = 16 << 20

// minReleasable is how much of the file must be resident before a release
// is worth it; it also keeps a process whose heap alone exceeds the bound
// from releasing on every check.
const minReleasable = 16 << 20

// resident returns the process's resident memory and its file-backed part
// in bytes (fields "resident" and "shared" of /proc/self/statm), or -1s if
// unknown. statm is kept open and read with pread: one cheap syscall per
// check.
func (s *Store) resident(buf []byte) (total, shared int64) {
	if s.statm == nil {
		return -1, -1
	}
	n, _ := s.statm.ReadAt(buf, 0)
	// Fields: size resident shared ... (pages, decimal, space-separated);
	// parsed in place, as this runs every few dozen index operations.
	var f [3]int64
	i, b := 0, buf[:n]
	for j := range f {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		start := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			f[j] = f[j]*10 + int64(b[i]-'0')
		}
		if i == start {
			return -1, -1
		}
	}
	page := int64(os.Getpagesize())
	total, shared = f[1]*page, f[2]*page
	// The highest anonymous memory since the last full release: what a
	// release leaves room for (releaseIn).
	for anon := total - shared; ; {
		high := s.anonHigh.Load()
		if anon <= high || s.anonHigh.CompareAndSwap(high, anon) {
			break
		}
	}
	return total, shared
}

// openStatm opens /proc/self/statm for resident.
func openStatm() *os.File {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil
	}
	return f
}

// watchMapped keeps the process's resident memory near the store's bound:
// every interval it reads /proc/self/statm (a few microseconds) and
// releases the file mapping when the bound is exceeded. Random lookups
// fault in whole neighbourhoods of the file (fault-around, large folios),
// so counting traffic cannot bound residency; measuring it can.
func (s *Store) watchMapped(limit int64, interval time.Duration) {
	buf := make([]byte, 128)
	near := false
	for {
		wait := interval
		if near || s.bulk.Load() > 0 {
			// Close to the bound, or bbolt is touching pages on its own
			// (a commit frees the old copy of every changed page;
			// deleting a dataset frees all of its pages) where no loop
			// of ours checks: the mapping can grow by several MB per
			// millisecond.
			wait = time.Millisecond
		}
		select {
		case <-s.closing:
			return
		case <-time.After(wait):
			total, shared := s.resident(buf)
			trigger := limit
			if s.bulk.Load() > 0 {
				trigger = limit - bulkSlack
			}
			if total > trigger && shared > minReleasable {
				s.releaseMapped()
				total, _ = s.resident(buf)
			}
			near = total > limit-nearBound
			s.notePressure(false)
		}
	}
}

// noHugePages advises the kernel (MADV_NOHUGEPAGE) not to map the store
// file with huge pages, over the part of bbolt's mapping that a read
// transaction reaches (the transaction pins the mapping meanwhile, as in
// releaseMapped). A bounded store calls it as it opens and after each
// commit: bbolt remaps, and the file grows, only while committing.
//
// Since Linux's file systems keep large folios in the page cache (ext4
// from 6.x, XFS earlier), a file read sequentially by anything (a copy,
// a backup, readahead) can hold 2 MiB folios, and a fault in a shared
// mapping of one maps all 2 MiB at once. A 1M store copied with cp then
// faulted 2 MiB per lookup: 2,900-4,800 releases a run, 91k-190k/s at
// 163-180 MiB under a 150 MiB bound, against 916k-993k/s at 140-147 MiB
// for its copy. Advised, faults map 4 KiB pages (and fault-around's 64
// KiB). The advice is one system call, which leaves the mapping as it is
// where it is already advised.
func (s *Store) noHugePages() {
	s.db.View(func(tx *bolt.Tx) error {
		info := s.db.Info()
		if info == nil || info.Data == 0 || tx.Size() <= 0 {
			return nil
		}
		// Best effort: where the kernel has no transparent huge pages
		// the advice fails and changes nothing.
		syscall.Syscall(syscall.SYS_MADVISE, info.Data, uintptr(tx.Size()), syscall.MADV_NOHUGEPAGE)
		return nil
	})
}

// nearBound is how close to its bound a process must be for the watcher
// to check every millisecond.
const nearBound = 32 << 20

// bulkSlack is how far below its bound the watcher releases while bbolt
// touches pages on its own (bulk): a commit that frees thousands of pages
// maps several MB a millisecond, and goes on mapping during the release
// itself, so a release at the bound came too late. At 10M ids under a
// 150 MiB bound, loads (with runs' filters sized for their entries)
// peaked at 147.7-150.4 MiB with it in eleven of twelve loads (one went
// to 154.9) and 148.6-151.0 without (four; docs/performance.md): a small
// gain, with as many releases. 12 MiB did no better.
const bulkSlack = 8 << 20

// dropExecutable drops the clean pages of this process's executable from
// its page tables, once, when a bounded store opens. By then the binary's
// start-up (package initialisation, flag and config parsing, connector
// expansion) has mapped about 17 MiB of it with fault-around, of which a
// run touches about half again; the rest would count in RSS until the
// process ends. What a run uses faults back in from the page cache.
func (s *Store) dropExecutable() {
	if exe, err := os.Executable(); err == nil {
		s.dropClean(exe)
	}
}

// dropClean drops the clean mappings of file (cleanMappings) from the page
// tables.
func (s *Store) dropClean(file string) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	rs := cleanMappings(f, file)
	f.Close()
	if len(rs) > 0 {
		s.madviseRanges(rs)
	}
}

// cleanMappings returns, from the text of /proc/self/smaps, the mappings of
// file that are not writable and hold no private (copy-on-write) page:
// only clean file pages, which MADV_DONTNEED drops without losing
// anything. A writable mapping, or one written before it was made
// read-only (a position-independent binary's relocated data), is left
// alone.
func cleanMappings(r io.Reader, file string) []iovec {
	var out []iovec
	var cur iovec
	inFile := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if h, ok := smapsHeader(line); ok {
			inFile = false
			if !h.ok || string(h.path) != file || h.perms[1] == 'w' {
				continue
			}
			cur, inFile = iovec{h.start, h.end - h.start}, true
			continue
		}
		if !inFile {
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			inFile = false
			if smapsKB(rest) == 0 {
				out = append(out, cur)
			}
		}
	}
	if sc.Err() != nil {
		return nil
	}
	return out
}
