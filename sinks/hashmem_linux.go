package sinks

import (
	"syscall"
	"unsafe"
)

// hugeMin is the smallest hash buffer worth advising: below it the
// faults are few.
const hugeMin = 4 << 20

// makeHashes returns an empty slice with room for n id hashes, from the Go
// heap; if huge, with the kernel advised to back it with 2 MiB pages
// (MADV_HUGEPAGE on the 2 MiB-aligned part of its memory).
//
// Why: a run's seen set is ~17 MiB at 1M ids, pointer-free, filled once
// through. Fresh from the kernel, each 4 KiB of it is a page fault on
// first touch, ~11 µs on the 2-core VM (16 MiB: 45 ms; with 2 MiB pages
// 1-18 ms). (Its sort needed a scratch as large, faulted in at the end of
// the run, until the set kept its hashes in buckets sorted one by one.)
// Memory the heap had already touched does not fault either way. The slice stays in the Go
// heap, so the runtime's memory limit still counts it (mapped outside the
// heap, a 10M run's anonymous memory went from ~93 to ~121 MiB: the heap
// filled the limit beside it). The advice outlives the slice: a later
// allocation in the same range may get 2 MiB pages too, which only
// matters for memory that is touched sparsely, and the runtime returns
// free memory to the kernel in smaller pieces (the kernel splits them).
//
// Only seen sets that stay in memory ask for it: a 10M run, which spills a
// sorted run of hashes every million, used 8-10% more CPU with the advice
// (261.6 and 259.2 CPU s without it, 292.7 and 263.4 with it, writing 1M
// versions either way, when every spill sorted with a fresh 16 MiB
// scratch): 2 MiB pages, with the page cache full of the store, cost the
// kernel more than the faults they save.
func makeHashes(n int, huge bool) []idHash {
	hs := make([]idHash, 0, n)
	size := n * int(unsafe.Sizeof(idHash{}))
	if !huge || size < hugeMin {
		return hs
	}
	const page = 2 << 20
	p := unsafe.Pointer(unsafe.SliceData(hs))
	start := uintptr(p)
	lo, hi := (start+page-1)&^(page-1), (start+uintptr(size))&^(page-1)
	if hi > lo {
		// Advice only: without transparent huge pages nothing changes.
		_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo), syscall.MADV_HUGEPAGE)
	}
	return hs
}
