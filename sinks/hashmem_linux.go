package sinks

import (
	"syscall"
	"unsafe"
)

// hugeMin is the smallest hash buffer taken from the kernel directly:
// below it the Go heap serves.
const hugeMin = 4 << 20

// mapHashes returns room for n id hashes outside the Go heap, in an
// anonymous mapping the kernel may back with 2 MiB pages
// (MADV_HUGEPAGE), and the mapping to unmap when done; ok is false when
// the Go heap should serve instead (small n, or the mapping failed).
//
// Why: a run's seen set and its sort's scratch are 16 MiB each at 1M
// ids, pointer-free and short-lived (the scratch only for the sort). From the Go heap they are fresh
// pages, each first touch a 4 KiB page fault; on the 2-core VM a fault
// costs ~11 µs, so the two cost ~90 ms of a 1.2 s unchanged run, half of
// it in the sort at the end of the run, when nothing else runs. With 2
// MiB pages the same 32 MiB fault 16 times (docs/performance.md).
func mapHashes(n int) (hs []idHash, mapping []byte, ok bool) {
	size := n * int(unsafe.Sizeof(idHash{}))
	if size < hugeMin {
		return nil, nil, false
	}
	size = (size + 2<<20 - 1) &^ (2<<20 - 1)
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil, nil, false
	}
	// Advice only: without transparent huge pages the mapping still
	// works, with 4 KiB pages.
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
	return unsafe.Slice((*idHash)(unsafe.Pointer(unsafe.SliceData(b))), n)[:0], b, true
}

// unmapHashes releases a mapping from mapHashes.
func unmapHashes(b []byte) { _ = syscall.Munmap(b) }
