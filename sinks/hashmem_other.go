//go:build !linux

package sinks

// mapHashes: only Linux maps hash buffers outside the Go heap
// (hashmem_linux.go); elsewhere the Go heap serves.
func mapHashes(n int) (hs []idHash, mapping []byte, ok bool) { return nil, nil, false }

// unmapHashes is never called where mapHashes maps nothing.
func unmapHashes(b []byte) {}
