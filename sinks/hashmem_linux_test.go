package sinks

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestMakeHashesAdvisesHugePages checks that a large hash buffer lies in
// memory the kernel was advised to back with huge pages (the "hg" flag of
// its mapping in /proc/self/smaps), and a small one is left alone.
func TestMakeHashesAdvisesHugePages(t *testing.T) {
	big := makeHashes(1<<20, true) // 16 MiB
	small := makeHashes(1<<10, true)
	if cap(big) != 1<<20 || len(big) != 0 || cap(small) != 1<<10 {
		t.Fatalf("len/cap = %d/%d and %d", len(big), cap(big), cap(small))
	}
	// The middle of the big buffer is inside its 2 MiB-aligned part.
	mid := uintptr(unsafe.Pointer(unsafe.SliceData(big))) + 8<<20
	flags, err := vmFlags(mid)
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Errorf("the buffer's mapping has flags %q, want hg (MADV_HUGEPAGE)", flags)
	}
	big = append(big, idHash{1, 2}) // still usable
	if big[0] != (idHash{1, 2}) {
		t.Error("buffer not writable")
	}
}

// vmFlags returns the VmFlags line of the mapping holding addr.
func vmFlags(addr uintptr) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") && !strings.HasPrefix(line, "VmFlags") {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mapping holds %#x", addr)
}
