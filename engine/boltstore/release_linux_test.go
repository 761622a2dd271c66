//go:build linux

package boltstore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// smapsFixture is /proc/self/smaps as Linux writes it, shortened: the
// binary's text, its read-only data, read-only data written before it was
// made read-only (relocations of a position-independent binary), its
// writable data, another file, an anonymous mapping and the binary's path
// with a space in another process's view.
const smapsFixture = `00400000-00ec2000 r-xp 00000000 fe:00 9978634                            /opt/ferry/bin/ferry
Size:              11016 kB
Rss:                8912 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
00ec2000-019fe000 r--p 00ac2000 fe:00 9978634                            /opt/ferry/bin/ferry
Size:              11504 kB
Rss:                8004 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
019fe000-01a00000 r--p 015fe000 fe:00 9978634                            /opt/ferry/bin/ferry
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
VmFlags: rd mr mw me dw ac sd
01a00000-01aa7000 rw-p 01600000 fe:00 9978634                            /opt/ferry/bin/ferry
Size:                668 kB
Rss:                 544 kB
Anonymous:            84 kB
VmFlags: rd wr mr mw me dw ac sd
7eff14000000-7eff94000000 r--s 00000000 fe:00 9977979                    /data/ferry.db
Size:            2097152 kB
Rss:               88460 kB
Anonymous:             0 kB
VmFlags: rd sh mr mw me ms sd
7effb40f8000-7effb42d8000 rw-p 00000000 00:00 0 
Size:               1920 kB
Rss:                1612 kB
Anonymous:          1612 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0000001000 r-xp 00000000 fe:00 1234                       /opt/my ferry/ferry
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me dw sd
`

// TestFileResident: the file pages resident besides the store's mapping
// are the binary's and other files', less their private copies.
func TestFileResident(t *testing.T) {
	// 8912 + 8004 + (8 - 8) + (544 - 84) kB of the binary, 4 of the other.
	if got, want := fileResident(strings.NewReader(smapsFixture), 0x7eff14000000), int64(17380<<10); got != want {
		t.Errorf("besides the store: %d, want %d", got, want)
	}
	if got, want := fileResident(strings.NewReader(smapsFixture), 0x400000), int64((17380-8912+88460)<<10); got != want {
		t.Errorf("besides the binary's text: %d, want %d", got, want)
	}
	if other := otherFileResident(0); other <= 0 {
		t.Errorf("this process's file pages: %d", other)
	}
	// No mapping: unknown, not none. A mapping without its Rss line
	// counts nothing, not the one before's.
	if got := fileResident(strings.NewReader("garbage\n"), 0); got != -1 {
		t.Errorf("text without a mapping: %d, want -1", got)
	}
	noRss := "00400000-00401000 r-xp 00000000 fe:00 1 /a\nRss: 8 kB\nAnonymous: 0 kB\n00500000-00501000 r-xp 00000000 fe:00 2 /b\nAnonymous: 0 kB\n"
	if got := fileResident(strings.NewReader(noRss), 0); got != 8<<10 {
		t.Errorf("a mapping without Rss: %d, want %d", got, 8<<10)
	}
}

// TestCleanMappings: only the binary's mappings that are read-only and
// were never written are dropped; its data, pages relocated at start-up,
// other files and anonymous memory are left alone.
func TestCleanMappings(t *testing.T) {
	got := cleanMappings(strings.NewReader(smapsFixture), "/opt/ferry/bin/ferry")
	want := []iovec{{0x400000, 0xec2000 - 0x400000}, {0xec2000, 0x19fe000 - 0xec2000}}
	if !slices.Equal(got, want) {
		t.Fatalf("cleanMappings = %x, want %x", got, want)
	}
	if got := cleanMappings(strings.NewReader(smapsFixture), "/opt/my ferry/ferry"); !slices.Equal(got, []iovec{{0x7f0000000000, 0x1000}}) {
		t.Fatalf("a path with a space: %x", got)
	}
	if got := cleanMappings(strings.NewReader(smapsFixture), "/data/ferry.db"); len(got) != 1 {
		t.Fatalf("any file can be named: %x", got)
	}
	// A mapping whose Anonymous line is missing (cut short) is not
	// known to be clean.
	cut := smapsFixture[:strings.Index(smapsFixture, "Anonymous:")]
	if got := cleanMappings(strings.NewReader(cut), "/opt/ferry/bin/ferry"); len(got) != 0 {
		t.Fatalf("without an Anonymous line: %x", got)
	}
}

// TestDropClean: the pages of a file's read-only mapping leave the page
// tables; a private writable mapping of the same file keeps what was
// written to it. (The executable is not measured: the package's other
// tests run code, so open stores, at the same time.)
func TestDropClean(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mapped")
	const size = 8 << 20
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ro, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Munmap(ro)
	rw, err := syscall.Mmap(int(f.Fd()), 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Munmap(rw)
	var sum int
	for i := 0; i < size; i += os.Getpagesize() {
		sum += int(ro[i])
	}
	rw[0] = 9
	if before := mappedResident(t, path); before < size {
		t.Fatalf("%d bytes resident after reading all %d", before, size)
	}
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.dropClean(path)
	if after := mappedResident(t, path); after != 0 {
		t.Fatalf("%d bytes of the read-only mapping still resident", after)
	}
	if rw[0] != 9 || ro[0] != 7 || sum != 7*size/os.Getpagesize() {
		t.Fatalf("contents changed: written %d, read %d", rw[0], ro[0])
	}
}

// mappedResident sums Rss over the read-only mappings of file in
// /proc/self/smaps.
func mappedResident(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	var total int64
	in := false
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			in = len(f) >= 6 && strings.Join(f[5:], " ") == file && f[1][1] != 'w'
			continue
		}
		if in && len(f) == 3 && f[0] == "Rss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestMadviseRangesPast2GiB: ranges that add up to more than the ~2 GiB
// process_madvise advises per call, one of them longer than a batch, are
// all dropped, and process_madvise stays in use.
func TestMadviseRangesPast2GiB(t *testing.T) {
	const size = 5 << 30 // address space only (MAP_NORESERVE)
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Munmap(mem)
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.pidfd < 0 {
		t.Skip("no pidfd")
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	ps := uintptr(os.Getpagesize())
	// A range of 3 GiB, then ranges of one page every 64 MiB, with gaps
	// kept between them; a page is written in each.
	rs := []iovec{{base, 3 << 30}}
	for at := uintptr(3<<30) + 64<<20; at+ps <= size; at += 64 << 20 {
		rs = append(rs, iovec{base + at, ps})
	}
	kept := base + 3<<30 + 32<<20 // in a gap
	touch := func() {
		for _, r := range rs {
			mem[r.base-base] = 1
			mem[r.base-base+r.len-1] = 1
		}
		mem[kept-base] = 1
	}
	touch()
	// Kernels before 5.10 have no process_madvise and those before 6.13
	// refuse MADV_DONTNEED for it: then the per-range fallback runs.
	one := []iovec{{kept, ps}}
	_, _, errno := syscall.Syscall6(sysProcessMadvise, uintptr(s.pidfd), uintptr(unsafe.Pointer(&one[0])), 1, uintptr(syscall.MADV_DONTNEED), 0, 0)
	mem[kept-base] = 1
	s.madviseRanges(slices.Clone(rs))
	if errno == 0 && s.noProcessMadvise.Load() {
		t.Error("process_madvise was given up on ranges past 2 GiB")
	}
	for _, r := range rs {
		if mem[r.base-base] != 0 || mem[r.base-base+r.len-1] != 0 {
			t.Fatalf("range at +%#x (%d bytes) was not dropped", r.base-base, r.len)
		}
	}
	if mem[kept-base] != 1 {
		t.Fatal("a page between the ranges was dropped")
	}
	if got := advanceRanges([]iovec{{0, 10}, {100, 10}}, 15); !slices.Equal(got, []iovec{{105, 5}}) {
		t.Fatalf("advanceRanges: %v", got)
	}
}

// TestNoHugePages: a bounded store advises MADV_NOHUGEPAGE over all of its
// mapping that transactions reach, at open and again as the file grows
// (smaps shows the advice as "nh" in the mapping's VmFlags).
func TestNoHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage"); err != nil {
		t.Skip("no transparent huge pages in this kernel: nothing to advise against")
	}
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	covered := func(when string) uintptr {
		t.Helper()
		var base, size uintptr
		s.db.View(func(tx *bolt.Tx) error {
			base, size = s.db.Info().Data, uintptr(tx.Size())
			return nil
		})
		text, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			t.Fatal(err)
		}
		// The mappings of the store file, and whether each is advised.
		type span struct{ start, end uintptr }
		var cur span
		advised := map[span]bool{}
		var spans []span
		for _, line := range bytes.Split(text, []byte("\n")) {
			if h, ok := smapsHeader(line); ok {
				cur = span{}
				if h.ok && string(h.path) == s.path {
					cur = span{h.start, h.end}
					spans = append(spans, cur)
				}
				continue
			}
			if v, ok := bytes.CutPrefix(line, []byte("VmFlags:")); ok && cur.end > 0 {
				advised[cur] = slices.ContainsFunc(bytes.Fields(v), func(f []byte) bool { return string(f) == "nh" })
			}
		}
		for at := base; at < base+size; {
			i := slices.IndexFunc(spans, func(m span) bool { return m.start <= at && at < m.end })
			if i < 0 {
				t.Fatalf("%s: %#x, in the store's reach (%#x + %d), is not mapped", when, at, base, size)
			}
			if !advised[spans[i]] {
				t.Fatalf("%s: the mapping %#x-%#x, in the store's reach (%#x + %d), is not advised against huge pages", when, spans[i].start, spans[i].end, base, size)
			}
			at = spans[i].end
		}
		return size
	}
	before := covered("after open")
	putTxns(t, s, "d", 8, 2000, func(txn, i int) string { return fmt.Sprintf("%016x", uint64(txn*10000+i)*0x9e3779b97f4a7c15) })
	if after := covered("after the file grew"); after <= before {
		t.Fatalf("the file did not grow (%d -> %d bytes): the test proves nothing", before, after)
	}
}
