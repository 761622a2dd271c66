//go:build !linux

package sinks

// makeHashes returns an empty slice with room for n id hashes (only Linux
// is advised to use huge pages for it: hashmem_linux.go).
func makeHashes(n int, huge bool) []idHash { return make([]idHash, 0, n) }
